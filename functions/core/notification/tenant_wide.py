"""Tenant-wide webhook subscribers: they receive every registration's events (a ticketing system
opening incidents), beside each registration's own webhooks.

The announcer asks `current_tenant_wide()` for them on each announcement; every trigger's task
sets them first (bootstrap's `Services.ready()` calls `use_tenant_wide`), so no workflow needs a
new parameter; tests scope them with `tenant_wide(...)`. The list is read from storage at most once per `ttl` per process:
a new subscription hears of events within that time, a removed one's queued deliveries end as
`gone` once its signing secret is deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta

from functions.core.notification.events import WebhookSubscription
from functions.core.ports import TenantSubscriptionRecord, TenantSubscriptionStore

TENANT_SUBSCRIBERS_TTL = timedelta(seconds=30)
TENANT_SUBSCRIPTION_PREFIX = "ts-"


class TenantSubscribers:
    """The tenant-wide subscriptions, cached for `ttl` (one Table query per ttl, not per event)."""

    def __init__(self, store: TenantSubscriptionStore, ttl: timedelta = TENANT_SUBSCRIBERS_TTL) -> None:
        self._store = store
        self._ttl = ttl.total_seconds()
        self._cached: tuple[float, list[TenantSubscriptionRecord]] | None = None
        self._lock = asyncio.Lock()

    async def records(self) -> list[TenantSubscriptionRecord]:
        async with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self._ttl:
                active = [s for s in await self._store.list() if s.active]
                self._cached = (time.monotonic(), active)
            return list(self._cached[1])

    def forget(self) -> None:
        """After this process added or removed one: read again on the next announcement."""
        self._cached = None

    async def for_registration(self, registration_id: str) -> list[WebhookSubscription]:
        return [
            WebhookSubscription(
                id=r.id, registration_id=registration_id, url=r.url, events=r.events, created_at=r.created_at
            )
            for r in await self.records()
        ]


_current: ContextVar[TenantSubscribers | None] = ContextVar("tenant_subscribers", default=None)


@contextmanager
def tenant_wide(subscribers: TenantSubscribers) -> Iterator[None]:
    token = _current.set(subscribers)
    try:
        yield
    finally:
        _current.reset(token)


def use_tenant_wide(subscribers: TenantSubscribers) -> None:
    """For the rest of the calling task (a trigger's invocation): no reset, the task ends."""
    _current.set(subscribers)


def current_tenant_wide() -> TenantSubscribers | None:
    return _current.get()
