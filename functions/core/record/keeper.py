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

Work leases are short (WORK_LEASE, 30 s) so that a crashed worker's registration is free again
within seconds: the resume sweep (core/recovery/resume.py) then hands its work to another worker.
A worker keeps its lease alive with `renewing()`, a background renewal every third of the lease
while the work runs, whatever it waits on (a Graph call held back by Retry-After, Entra's
propagation delay, a slow consent $batch): a live worker never loses its lease to a pause, and a
dead one holds it at most 30 s. Two renewals can fail in a row before the lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from functions.core.ports import Clock, RegistrationStore
from functions.core.record.errors import ConcurrencyConflict, NotFound, RegistrarError, TransientError
from functions.core.record.registration import Registration

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Change = Callable[[Registration], Registration]

# The lease of a provisioning run or a rotation job (see the module docstring), renewed every third.
WORK_LEASE = timedelta(seconds=30)
RENEWALS_PER_LEASE = 3
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

    @contextlib.asynccontextmanager
    async def renewing(self, every: timedelta | None = None) -> AsyncIterator[RecordKeeper]:
        """Renew the lease in the background while the block runs (every third of the lease).

        A renewal that finds the lease lost stops renewing: the block's next save raises LeaseHeld.
        A renewal that fails for a passing reason (Table storage busy) is tried again next time.
        The renewal is never cancelled half-way through a save: the block's end waits for it."""
        interval = (every or self._lease_for / RENEWALS_PER_LEASE).total_seconds()
        stop = asyncio.Event()

        async def renew_until_stopped() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                if stop.is_set():
                    return
                try:
                    await self.renew()
                except (LeaseHeld, NotFound) as err:
                    log.warning("lease renewal stopped: %s", err)
                    return
                except RegistrarError as err:
                    log.warning("lease renewal failed, trying again in %.0f s: %s", interval, err)

        renewal = asyncio.create_task(renew_until_stopped())
        try:
            yield self
        finally:
            stop.set()
            await renewal

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
