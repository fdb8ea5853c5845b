"""Webhook signing secrets kept in memory after their first read from Key Vault.

Key Vault's guidance is to cache secrets rather than read one per operation: a vault serves a
bounded number of transactions per 10 seconds, and one event to a thousand subscribers, with
their retries, would spend them on reads. A subscription's signing secret never changes (a new
secret is a new subscription), so what the cache can get wrong is only a removed subscription:
the instance that removes it forgets it at once; another instance keeps signing that
subscription's queued deliveries for at most `ttl`, after which Key Vault answers NotFound and the
delivery ends as gone. A miss is not cached. Values stay SecretValue (a repr that shows nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from functions.core.ports import SecretReader, VaultSecretRef
from functions.core.record.models import SecretValue

WEBHOOK_SECRET_CONTENT_TYPE = "text/plain; registrar=webhook-signing-secret"  # noqa: S105
SIGNING_SECRET_TTL = timedelta(minutes=5)
SIGNING_SECRET_CAPACITY = 10_000


def webhook_secret_name(subscription_id: str) -> str:
    """The Key Vault secret that holds a webhook subscription's signing secret."""
    return f"webhook-{subscription_id}"


class CachedSecrets:
    """SecretReader in front of another: the latest version of each name, for `ttl`, at most
    `capacity` names (the least recently used goes first). Concurrent misses of one name share
    one read; a read under way when the name is forgotten is not kept."""

    def __init__(
        self,
        source: SecretReader,
        *,
        ttl: timedelta = SIGNING_SECRET_TTL,
        capacity: int = SIGNING_SECRET_CAPACITY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl.total_seconds()
        self._capacity = capacity
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[float, VaultSecretRef, SecretValue]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[tuple[VaultSecretRef, SecretValue]]] = {}

    async def get_secret(self, name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        if version is not None:
            return await self._source.get_secret(name, version)
        entry = self._entries.get(name)
        if entry is not None and self._monotonic() - entry[0] < self._ttl_s:
            self._entries.move_to_end(name)
            return entry[1], entry[2]
        reading = self._reading.get(name)
        if reading is None:
            reading = asyncio.ensure_future(self._read(name))
            self._reading[name] = reading
            reading.add_done_callback(lambda done: self._read_done(name, done))
        return await asyncio.shield(reading)  # one caller cancelled does not cancel the others' read

    async def _read(self, name: str) -> tuple[VaultSecretRef, SecretValue]:
        started = self._monotonic()
        ref, value = await self._source.get_secret(name)  # NotFound propagates, uncached
        if self._reading.get(name) is asyncio.current_task():  # not forgotten meanwhile
            self._entries[name] = (started, ref, value)
            self._entries.move_to_end(name)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return ref, value

    def _read_done(self, name: str, done: asyncio.Future[tuple[VaultSecretRef, SecretValue]]) -> None:
        if self._reading.get(name) is done:
            del self._reading[name]
        if not done.cancelled():
            done.exception()  # retrieved here too: every awaiting caller may have been cancelled

    def forget(self, name: str) -> None:
        """From now on the name is read afresh; a read under way is not kept (nor shared)."""
        self._entries.pop(name, None)
        self._reading.pop(name, None)

    def __repr__(self) -> str:
        return f"CachedSecrets({len(self._entries)} names, ttl={self._ttl_s:.0f}s)"
