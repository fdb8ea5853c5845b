"""Key Vault events in the Event Grid schema, delivered to ``sim.event_subscriber_url``.

Delivery never blocks request handling: emit() only appends to an asyncio queue. One worker
posts each event as a one-element JSON array with ``aeg-event-type: Notification``; a failed
attempt (connection error or non-2xx) is rescheduled with exponential backoff without holding
up the next event, and given up after ``max_attempts``. The URL is read at delivery time, so
the admin API can change it while the tenant runs; with no URL set, events are dropped
(Event Grid has no subscription to deliver to).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from devstack.tenant.context import SimulationConfig

log = logging.getLogger(__name__)

# sim.extra overrides, changeable at run time through PUT /_sim/config {"extra": {...}}.
MAX_ATTEMPTS_KEY = "keyvault_delivery_max_attempts"
FIRST_BACKOFF_KEY = "keyvault_delivery_first_backoff_s"

SECRET_NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
SECRET_NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
SECRET_EXPIRED = "Microsoft.KeyVault.SecretExpired"
CERTIFICATE_NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
CERTIFICATE_NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
CERTIFICATE_EXPIRED = "Microsoft.KeyVault.CertificateExpired"


@dataclass
class _Delivery:
    event: dict[str, Any]
    attempt: int = 0


class EventPublisher:
    def __init__(
        self,
        sim: SimulationConfig,
        topic: str,
        vault_name: str,
        *,
        max_attempts: int = 6,
        first_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        request_timeout_s: float = 5.0,
    ) -> None:
        self._sim = sim
        self.topic = topic
        self.vault_name = vault_name
        self._max_attempts = max_attempts
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._request_timeout_s = request_timeout_s
        self._queue: asyncio.Queue[_Delivery] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retry_handles: set[asyncio.TimerHandle] = set()
        self.delivered = 0  # events the subscriber acknowledged with 2xx
        self.failed = 0  # events given up after max_attempts
        self.retried = 0  # failed attempts that were rescheduled
        self.dropped = 0  # events emitted while no subscriber URL was configured
        self.emitted = 0

    def build(
        self, event_type: str, object_type: str, name: str, object_id: str, *,
        version: str, nbf: int | None, exp: int | None,
    ) -> dict[str, Any]:  # fmt: skip
        return {
            "id": str(uuid.uuid4()),
            "topic": self.topic,
            "subject": name,
            "eventType": event_type,
            "eventTime": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "data": {
                "Id": object_id,
                "VaultName": self.vault_name,
                "ObjectType": object_type,
                "ObjectName": name,
                "Version": version,
                "NBF": nbf,
                "EXP": exp,
            },
            "dataVersion": "1",
            "metadataVersion": "1",
        }

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event; never waits. Safe to call before start() (queued until then)."""
        self.emitted += 1
        if not self._sim.event_subscriber_url:
            self.dropped += 1
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(_Delivery(event))

    async def start(self) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._request_timeout_s))
        self._worker = asyncio.create_task(self._run(), name="keyvault-event-delivery")

    async def stop(self) -> None:
        for handle in self._retry_handles:
            handle.cancel()
        self._retry_handles.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stats(self) -> dict[str, int]:
        return {
            "emitted": self.emitted,
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "dropped": self.dropped,
            "pending": (self._queue.qsize() if self._queue else 0) + len(self._retry_handles),
        }

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            try:
                ok = await self._attempt(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill delivery for good
                log.exception("event delivery crashed")
                ok = False
            if ok:
                self.delivered += 1
            else:
                self._reschedule(delivery)

    async def _attempt(self, delivery: _Delivery) -> bool:
        event = delivery.event
        url = self._sim.event_subscriber_url
        if not url or self._session is None:
            return False
        try:
            async with self._session.post(
                url,
                json=[event],
                headers={
                    "aeg-event-type": "Notification",
                    "aeg-subscription-name": "DEVSTACK",
                    "aeg-delivery-count": str(delivery.attempt),
                    "aeg-data-version": "1",
                    "aeg-metadata-version": "1",
                },
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                log.info("event %s: subscriber answered %s", event["eventType"], response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("event %s: delivery failed: %s", event["eventType"], type(exc).__name__)
        return False

    def _reschedule(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        max_attempts = int(self._sim.extra.get(MAX_ATTEMPTS_KEY, self._max_attempts))
        first_backoff_s = float(self._sim.extra.get(FIRST_BACKOFF_KEY, self._first_backoff_s))
        if delivery.attempt >= max_attempts:
            self.failed += 1
            log.warning("event %s %s given up after %d attempts", delivery.event["eventType"],
                        delivery.event["id"], delivery.attempt)  # fmt: skip
            return
        self.retried += 1
        delay = min(first_backoff_s * 2 ** (delivery.attempt - 1), self._max_backoff_s)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def requeue() -> None:
            if handle is not None:
                self._retry_handles.discard(handle)
            if self._queue is not None:
                self._queue.put_nowait(delivery)

        handle = loop.call_later(delay, requeue)
        self._retry_handles.add(handle)
