"""The webhook delivery worker's logic: sign, send, and retry with backoff or dead-letter.

One queue message is one event for one subscriber (notifications.Delivery). Retries are explicit:
a failed attempt re-enqueues the message with the next attempt number and a visibility delay
from the retry schedule (exponential), so backoff does not depend on the host's fixed visibility
timeout; after the last scheduled retry the delivery is dead-lettered with its last error, which
the API shows. The webhook-id is the same on every attempt. The signature is computed at send
time, so the timestamp is fresh even after hours of retries (receivers reject old ones).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from functions.core.notification.events import (
    DEFAULT_RETRY_SCHEDULE,
    SETTLED_STATUSES,
    Delivery,
    DeliveryOutcome,
    retry_delay,
    signed_headers,
)
from functions.core.notification.signing_secrets import webhook_secret_name
from functions.core.ports import (
    Clock,
    DeliveryLog,
    DeliveryRecord,
    MessageQueue,
    QueuedMessage,
    SecretReader,
    WebhookTransport,
)
from functions.core.record.errors import NotFound
from functions.resources import WEBHOOK_DELIVERIES_QUEUE

log = logging.getLogger(__name__)

# Told each attempt's outcome (delivered, retrying, dead_lettered, gone): bootstrap wires escalation's
# counter and dead-letter signal here, so notification needs nothing above it.
DeliveryObserver = Callable[[Delivery, str], None]


class DeliveryWorker:
    def __init__(
        self,
        *,
        vault: SecretReader,
        transport: WebhookTransport,
        queue: MessageQueue,
        deliveries: DeliveryLog,
        clock: Clock,
        schedule: Sequence[timedelta] = DEFAULT_RETRY_SCHEDULE,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self._observer = observer
        self._vault = vault
        self._transport = transport
        self._queue = queue
        self._log = deliveries
        self._clock = clock
        self._schedule = tuple(schedule)

    async def deliver(self, delivery: Delivery, *, held: QueuedMessage | None = None) -> str:
        """One attempt; returns the resulting status (delivered, retrying, dead_lettered, gone).

        `held`: this delivery's own message, still hidden and not received by anyone (a prompt
        attempt's, core/notification/prompt.py). A failed attempt then rewrites that message as the
        retry instead of sending another, so a crash cannot leave two retry chains."""
        status, attempted = await self._attempt(delivery, held)
        if attempted and self._observer is not None:
            try:
                self._observer(delivery, status)
            except Exception:  # telemetry must never fail a delivery
                log.exception("delivery observer failed")
        return status

    async def _attempt(self, delivery: Delivery, held: QueuedMessage | None) -> tuple[str, bool]:
        """The attempt's status, and whether this call settled or retried it (not a settled repeat)."""
        if delivery.attempt > 1 or delivery.prompt:
            # A retry is rare, so it may afford a read: a duplicate chain of this delivery (the
            # announcement re-sent after a crash) may have settled it meanwhile. So may have the
            # prompt attempt of a message the queue hands over (its invocation died before deleting it).
            settled = await self._log.get(delivery.registration_id, delivery.delivery_id)
            if settled is not None and settled.status in SETTLED_STATUSES:
                log.info(
                    "webhook delivery %s already %s: no further attempt", delivery.delivery_id, settled.status
                )
                return settled.status, False
        try:
            _, secret = await self._vault.get_secret(webhook_secret_name(delivery.subscription_id))
        except NotFound:
            await self._note(delivery, "gone", None, "the subscription was removed")
            return "gone", True
        now = self._clock.now()
        body = delivery.body.encode()
        headers = signed_headers(secret, delivery.delivery_id, int(now.timestamp()), body)
        outcome: DeliveryOutcome = await self._transport.send(delivery.url, headers, body)
        if outcome.delivered:
            await self._note(delivery, "delivered", outcome.status, None)
            return "delivered", True
        if outcome.gone:
            await self._note(delivery, "gone", outcome.status, "the receiver answered 410 Gone")
            return "gone", True
        status = await self._failed(delivery, outcome, held)
        return status, status in ("retrying", "dead_lettered")

    async def prefetch(self, subscription_ids: Sequence[str]) -> None:
        """Read these subscriptions' signing secrets ahead of their deliveries (a cache in front of
        Key Vault keeps them); a failure is left for the delivery itself to meet."""
        await asyncio.gather(
            *(self._vault.get_secret(webhook_secret_name(s)) for s in subscription_ids),
            return_exceptions=True,
        )

    async def _failed(self, delivery: Delivery, outcome: DeliveryOutcome, held: QueuedMessage | None) -> str:
        """After a failed attempt: the next one later, or dead-letter after the last; unless settled."""
        delay = retry_delay(delivery.attempt, self._schedule)
        status = "retrying" if delay is not None else "dead_lettered"
        # Noted before the next attempt is enqueued: with a short delay, that attempt's own note
        # ("delivered") could otherwise land first and be overwritten by this older "retrying".
        settled = await self._note_failure(delivery, status, outcome)
        if settled is not None:
            return settled.status  # settled by a duplicate chain of this delivery: this one ends here
        if delay is None:
            log.error(
                "webhook delivery %s dead-lettered after %d attempts: %s",
                delivery.delivery_id,
                delivery.attempt,
                outcome.describe(),
            )
            return status
        following = delivery.next_attempt()
        if held is None:
            await self._queue.send(WEBHOOK_DELIVERIES_QUEUE, following.to_message(), visibility_timeout=delay)
        elif not await self._queue.reschedule(held, following.to_message(), visibility_timeout=delay):
            # Received by the queue trigger meanwhile: that copy carries the delivery on.
            log.info("webhook delivery %s: its message was taken over", delivery.delivery_id)
            return status
        log.warning(
            "webhook delivery %s attempt %d failed (%s); retrying in %s",
            delivery.delivery_id,
            delivery.attempt,
            outcome.describe(),
            delay,
        )
        return status

    async def _note(
        self, delivery: Delivery, status: str, last_status: int | None, error: str | None
    ) -> None:
        await self._log.record(self._entry(delivery, status, last_status, error))

    async def _note_failure(
        self, delivery: Delivery, status: str, outcome: DeliveryOutcome
    ) -> DeliveryRecord | None:
        """Note a failed attempt unless the delivery settled meanwhile; returns that settled record."""
        entry = self._entry(delivery, status, outcome.status, outcome.describe())
        return await self._log.record_unless_settled(entry)

    def _entry(
        self, delivery: Delivery, status: str, last_status: int | None, error: str | None
    ) -> DeliveryRecord:
        return DeliveryRecord(
            registration_id=delivery.registration_id,
            delivery_id=delivery.delivery_id,
            subscription_id=delivery.subscription_id,
            event_type=delivery.event_type,
            status=status,
            attempts=delivery.attempt,
            last_status=last_status,
            last_error=error,
            updated_at=self._clock.now(),
        )
