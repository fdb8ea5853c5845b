"""One writer per registration at a time: a lease kept in the record itself, saved by ETag.

A worker claims the registration (lease owner + expiry written with the record's ETag), then
saves every step through `RecordKeeper.update`, which also extends the lease. Another worker
that finds a live lease waits a little, then gives up with TransientError so its queue message
comes back later (by then the first worker has finished and the re-run is a no-op). A worker
that crashed leaves a lease that simply expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from functions.core.errors import ConcurrencyConflict, TransientError
from functions.core.ports import Clock, RegistrationStore
from functions.core.registrations import Registration

Sleep = Callable[[float], Awaitable[None]]
Change = Callable[[Registration], Registration]

LEASE_POLL_SECONDS = 0.25
# A save that keeps losing the ETag race to something other than a lease holder (an approval,
# an operator's edit) is retried this many times before the step gives up as transient.
MAX_SAVE_ATTEMPTS = 5


class LeaseHeld(TransientError):  # noqa: N818  (names the situation, like the other core errors)
    """Another worker is working on this registration right now."""


class RecordKeeper:
    def __init__(
        self, store: RegistrationStore, clock: Clock, owner: str, lease_for: timedelta, current: Registration
    ) -> None:
        self._store = store
        self._clock = clock
        self._owner = owner
        self._lease_for = lease_for
        self._current = current
        self._lock = asyncio.Lock()  # concurrent steps of one workflow save one after another

    @classmethod
    async def claim(
        cls,
        store: RegistrationStore,
        clock: Clock,
        registration_id: str,
        *,
        owner: str,
        lease_for: timedelta,
        wait: timedelta,
        sleep: Sleep = asyncio.sleep,
    ) -> RecordKeeper:
        polls = max(1, int(wait.total_seconds() / LEASE_POLL_SECONDS))
        for _ in range(polls + 1):
            record = await store.get(registration_id)
            now = clock.now()
            held = record.lease_owner not in (None, owner) and record.lease_until and record.lease_until > now
            if held:
                await sleep(LEASE_POLL_SECONDS)
                continue
            try:
                stored = await store.replace(replace(record, lease_owner=owner, lease_until=now + lease_for))
            except ConcurrencyConflict:
                continue
            return cls(store, clock, owner, lease_for, stored)
        raise LeaseHeld(
            f"registration {registration_id} is being worked on by another worker",
            retry_after=wait,
        )

    @property
    def current(self) -> Registration:
        return self._current

    async def update(self, change: Change) -> Registration:
        """Apply `change` to the latest record and save it; the lease is extended on every save."""
        async with self._lock:
            record = self._current
            for _ in range(MAX_SAVE_ATTEMPTS):
                now = self._clock.now()
                changed = change(record)
                if changed.lease_owner == self._owner:  # a change may release the lease on purpose
                    changed = replace(changed, lease_until=now + self._lease_for)
                try:
                    self._current = await self._store.replace(replace(changed, updated_at=now))
                except ConcurrencyConflict:
                    record = await self._store.get(record.id)
                    if record.lease_owner not in (None, self._owner):
                        raise LeaseHeld(f"registration {record.id}: lease lost to another worker") from None
                    continue
                return self._current
            raise TransientError(f"registration {record.id}: could not save after {MAX_SAVE_ATTEMPTS} tries")

    async def release(self) -> Registration:
        return await self.update(lambda r: replace(r, lease_owner=None, lease_until=None))
