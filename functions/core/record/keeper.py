"""One writer per registration at a time: a lease kept in the record itself, saved by ETag.

A worker claims the registration (lease owner + expiry written with the record's ETag), then
saves every step through `RecordKeeper.update`, which also extends the lease. Another worker
that finds a live lease waits a little, then gives up with TransientError so its queue message
comes back later (by then the first worker has finished and the re-run is a no-op). A worker
that crashed leaves a lease that simply expires.

A save that loses the ETag race re-reads the record. If the stored record is exactly what we
tried to write, our write committed and only its response was lost (azure-core retried the PUT
and got 412): that is success. If the lease is no longer ours (taken over, or released by a
worker that claimed it after ours expired), the step stops with LeaseHeld: the other worker's
state wins and our queue message comes back later. Otherwise (an approval or an operator's
edit that kept our lease) the change is applied again to the fresh record, so every change
must be idempotent. A long wait (verification) calls `renew` so the lease does not run out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from functions.core.ports import Clock, RegistrationStore
from functions.core.record.errors import ConcurrencyConflict, TransientError
from functions.core.record.registration import Registration

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
        """Apply `change` to the latest record and save it; the lease is extended on every save.

        LeaseHeld when the lease was lost (another worker's owner, or none at all)."""
        async with self._lock:
            record = self._current
            for _ in range(MAX_SAVE_ATTEMPTS):
                now = self._clock.now()
                changed = change(record)
                if changed.lease_owner == self._owner:  # a change may release the lease on purpose
                    changed = replace(changed, lease_until=now + self._lease_for)
                attempt = replace(changed, updated_at=now)
                try:
                    self._current = await self._store.replace(attempt)
                except ConcurrencyConflict:
                    record = await self._store.get(record.id)
                    if _same_document(record, attempt):  # ours committed; the 412 answered a retry
                        self._current = record
                        return record
                    if record.lease_owner != self._owner:
                        raise LeaseHeld(f"registration {record.id}: lease lost to another worker") from None
                    continue
                return self._current
            raise TransientError(f"registration {record.id}: could not save after {MAX_SAVE_ATTEMPTS} tries")

    async def renew(self) -> Registration:
        """Extend the lease (during a long wait); LeaseHeld when it was lost meanwhile."""
        return await self.update(lambda r: r)

    async def release(self) -> Registration:
        """Give the lease up; a lease already lost to another worker is not ours to release."""
        try:
            return await self.update(lambda r: replace(r, lease_owner=None, lease_until=None))
        except LeaseHeld:
            return self._current


def _same_document(a: Registration, b: Registration) -> bool:
    def text(r: Registration) -> str:
        return json.dumps(r.to_document(), sort_keys=True, default=str)

    return text(a) == text(b)
