"""The safety net: registrations no worker will finish end as `failed`, with what was made removed.

The queue worker gives up on a registration itself when its message's retries run out
(registration_worker.py). What can still strand one: a message lost after approval, a worker
killed on the last delivery, a lease still held by a dead worker on the last delivery, a cleanup
Graph or Key Vault kept refusing. So a timer (triggers/stuck_registrations.py) looks for
registrations `accepted`, `provisioning` or `adopting` (a takeover) for longer than the deadline
(setting REGISTRAR_PROVISIONING_DEADLINE, default PT1H), and `failing` ones whose cleanup has not
completed within it, and gives up on each (Provisioner.give_up: write-ahead `failing`, cleanup, `failed`).

"For longer than": since the registration entered that status (accepted: approved, or created;
provisioning: the `provisioning started` event; adopting: when Registrar became the app's owner;
failing: when its failure was recorded), not
since its last save, so retries that keep failing cannot keep a registration alive forever.

Finding them: one filtered query per status (`Status eq 'provisioning'`, paged). Table storage
has no secondary index, so the service scans the registrations table for each, but it returns only
the few non-terminal records; at the registrar's scale (thousands of registrations, one sweep per
timer run) that is a few requests. An index entry per in-flight registration would need a write
at intake, approval and every terminal transition, and could drift, for a net that should rarely
catch anything. (The in-flight index of core/record/inflight.py covers only work a worker has
started, not registrations waiting in a queue or for a person, so it cannot replace this scan.)
A registration whose lease is held (a worker is on it) is left for the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from functions.core.ports import Clock, RegistrationStore
from functions.core.record.durations import format_duration
from functions.core.record.errors import RegistrarError
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration

log = logging.getLogger(__name__)

DEADLINE_SETTING = "REGISTRAR_PROVISIONING_DEADLINE"
DEFAULT_DEADLINE = timedelta(hours=1)
STUCK_STATUSES = (
    RegistrationStatus.ACCEPTED,
    RegistrationStatus.PROVISIONING,
    RegistrationStatus.FAILING,
    RegistrationStatus.ADOPTING,  # a takeover (core/adoption/takeover.py); its give-up leaves the app
)
MAX_PER_SWEEP = 50  # give-ups per run, so one timer run stays short; the rest wait for the next run
PAGE_SIZE = 200
LEASE_WAIT = timedelta(seconds=1)  # a registration being worked on is skipped, not waited for


class GivesUp(Protocol):
    async def give_up(
        self,
        registration_id: str,
        reason: str,
        *,
        wait: timedelta | None = None,
        then: Callable[[Registration], Awaitable[None]] | None = None,
    ) -> Registration: ...


@dataclass(frozen=True)
class StuckSweep:
    examined: int  # non-terminal registrations read
    ended: tuple[Registration, ...]  # now `failed`
    left: tuple[str, ...]  # stuck, but could not be ended now (leased, transient): the next run


def in_status_since(record: Registration) -> datetime:
    """When the registration entered its current status (see the module docstring)."""
    if record.status is RegistrationStatus.FAILING and record.last_error is not None:
        return record.last_error.at
    if record.status is RegistrationStatus.PROVISIONING:
        started = [e.at for e in record.history if e.step == "provisioning" and e.outcome == "started"]
        if started:
            return started[-1]
    if record.approval is not None and record.approval.approved_at is not None:
        return record.approval.approved_at
    if record.status is RegistrationStatus.ADOPTING and record.adoption and record.adoption.owned_at:
        return record.adoption.owned_at  # adopting since Registrar became an owner
    return record.created_at


def stuck_reason(record: Registration, deadline: timedelta, since: datetime) -> str:
    reason = (
        f"gave up: still {record.status.value} {format_duration(deadline)} after "
        f"{since.isoformat().replace('+00:00', 'Z')} (deadline {DEADLINE_SETTING})"
    )
    last = record.last_error
    if last is not None:
        reason += f"; last error at step {last.step}: {last.message}"
    return reason


async def fail_stuck(
    store: RegistrationStore,
    provisioner: GivesUp,
    clock: Clock,
    *,
    deadline: timedelta = DEFAULT_DEADLINE,
    limit: int = MAX_PER_SWEEP,
    settle: Callable[[Registration], Awaitable[None]] | None = None,
) -> StuckSweep:
    """End what is stuck; `settle` (announce registration.failed) runs inside each give-up's
    in-flight entry, so a crash or a failure before it is announced is resumed by the resume sweep."""
    cutoff = clock.now() - deadline
    examined = 0
    stuck: list[tuple[Registration, datetime]] = []
    for status in STUCK_STATUSES:
        continuation: str | None = None
        while True:
            page = await store.list(status=status, limit=PAGE_SIZE, continuation=continuation)
            examined += len(page.items)
            for record in page.items:
                since = in_status_since(record)
                if record.status is status and since <= cutoff:
                    stuck.append((record, since))
            continuation = page.continuation
            if continuation is None:
                break
    stuck.sort(key=lambda found: found[1])  # the longest stuck first
    ended: list[Registration] = []
    left: list[str] = []
    for record, since in stuck[:limit]:
        try:
            result = await provisioner.give_up(
                record.id, stuck_reason(record, deadline, since), wait=LEASE_WAIT, then=settle
            )
        except RegistrarError as err:  # leased, or Graph/Key Vault busy: the next sweep tries again
            log.warning("stuck registration %s not ended this time: %s", record.id, err)
            left.append(record.id)
            continue
        if result.status is RegistrationStatus.FAILED:
            ended.append(result)
    left.extend(record.id for record, _ in stuck[limit:])
    return StuckSweep(examined=examined, ended=tuple(ended), left=tuple(left))
