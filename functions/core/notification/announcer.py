"""Announce a registration's events to its webhook subscribers, once per event.

The event fans out to one message per interested subscriber on the webhook-deliveries queue
(the delivery worker signs and sends each, with retries); inside a trigger's prompt deliveries
(core/notification/prompt.py) each message is sent hidden and attempted at once by this invocation.
The record's history remembers which events were announced, so a workflow step re-run after a
crash does not announce twice; should a crash fall between the send and that note, the re-send
carries the same deterministic webhook-id, which is what Standard Webhooks receivers deduplicate on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from functions.core.notification.events import Delivery, WebhookEvent, WebhookSubscription, fan_out
from functions.core.notification.prompt import PromptDeliveries, current_prompt
from functions.core.notification.tenant_wide import current_tenant_wide
from functions.core.ports import Clock, MessageQueue
from functions.core.record.keeper import RecordKeeper
from functions.core.record.registration import Registration
from functions.resources import WEBHOOK_DELIVERIES_QUEUE

log = logging.getLogger(__name__)

ANNOUNCE_STEP = "announce"


def subscriptions_of(record: Registration) -> list[WebhookSubscription]:
    return [
        WebhookSubscription(
            id=ref.id, registration_id=record.id, url=ref.url, events=ref.events, created_at=ref.created_at
        )
        for ref in record.webhooks
    ]


def announced(record: Registration, event_id: str) -> bool:
    return any(e.step == ANNOUNCE_STEP and e.detail == event_id for e in record.history)


def event_for(record: Registration, event_type: str, key: str, at: datetime, **data: Any) -> WebhookEvent:
    """A registration's event with the ids every payload carries; `key` makes its id unique."""
    base: dict[str, Any] = {"tenantId": record.tenant_id, "appId": record.app_id}
    base.update({name: value for name, value in data.items() if value is not None})
    return WebhookEvent(
        id=f"{record.id}:{key}:{event_type}",
        type=event_type,
        occurred_at=at,
        registration_id=record.id,
        data=base,
    )


class Announcer:
    def __init__(self, *, queue: MessageQueue, clock: Clock) -> None:
        self._queue = queue
        self._clock = clock

    def prepare(self, record: Registration, event_type: str) -> None:
        """An event of this type will likely be announced soon: within prompt deliveries, start
        reading its subscribers' signing secrets now, so that the deliveries do not wait on them."""
        prompt = current_prompt()
        if prompt is not None:
            prompt.prefetch([s.id for s in subscriptions_of(record) if s.wants(event_type)])

    async def announce(self, keeper: RecordKeeper, event: WebhookEvent) -> int:
        """Enqueue the deliveries of `event` unless it was announced before; returns how many.
        Its subscribers: the registration's webhooks, and the tenant-wide subscriptions."""
        record = keeper.current
        if announced(record, event.id):
            return 0
        tenant_wide = current_tenant_wide()
        extra = await tenant_wide.for_registration(record.id) if tenant_wide is not None else []
        deliveries = fan_out(event, [*subscriptions_of(record), *extra])
        # Sent at once: one event to many subscribers should not wait on one queue write after another.
        # Every send is awaited before a failure is raised, so none is left running unobserved; the
        # caller's retry re-sends them all with the same webhook-ids, and the delivery log keeps a
        # delivery that a first copy settled from being retried or recorded over by a second.
        prompt = current_prompt()
        results = await asyncio.gather(
            *(
                self._queue.send(WEBHOOK_DELIVERIES_QUEUE, delivery.to_message())
                if prompt is None
                else self._send_prompt(prompt, delivery)
                for delivery in deliveries
            ),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]
        now = self._clock.now()
        await keeper.update(lambda r: replace(r.with_event(ANNOUNCE_STEP, "done", now, event.id)))
        if deliveries:
            log.info("announced %s to %d subscriber(s)", event.type, len(deliveries))
        return len(deliveries)

    async def _send_prompt(self, prompt: PromptDeliveries, delivery: Delivery) -> None:
        """Enqueue hidden, then attempt at once (core/notification/prompt.py); the queue is the fallback."""
        # The queued copy is flagged (whoever takes it over checks the delivery log first); the
        # attempt made here is not (it is the first, and needs no read).
        message = await self._queue.send(
            WEBHOOK_DELIVERIES_QUEUE,
            replace(delivery, prompt=True).to_message(),
            visibility_timeout=prompt.window,
        )
        if not prompt.start(delivery, message):  # settled meanwhile (a task that outlived its block)
            await self._queue.release(message)
