"""The health snapshot: credentials at risk, the rotation backlog, poison queues, dead letters, and
when the sweep and the inventory last ran. `GET /api/health` answers it and the gauges report it.

Cost: O(at risk + due) entity reads, never O(all registrations). Every credential that can be at
risk has a rotation job in the expiry index due no later than its end (core/record/schedule.py:
due <= expires_on), so one index query up to now + the at-risk window finds every candidate: a
credential near its end or expired, and one whose rotation keeps failing (its job comes back
after at most RotationSettings.retry_max, well inside the window). Only those registrations are
read. A rotation forced early by an admin that then fails is seen when its scheduled job comes
due, not before.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.core.escalation.at_risk import AtRisk, EscalationSettings, assess
from functions.core.ports import (
    Clock,
    DeadLetters,
    ExpiryIndex,
    HealthMarks,
    QueueLengths,
    RegistrationStore,
    Watchlist,
)
from functions.core.record.errors import NotFound
from functions.core.record.registration import Registration
from functions.core.record.schedule import JobAction
from functions.resources import QUEUES

SWEEP_MARK = "rotation-sweep"
INVENTORY_MARK = "inventory-scan"
POISON_SUFFIX = "-poison"
READS_AT_ONCE = 16  # registrations read concurrently while taking a snapshot


@dataclass(frozen=True)
class HealthSnapshot:
    taken_at: datetime
    at_risk: tuple[AtRisk, ...]
    rotation_backlog: int  # rotation and retirement jobs due now and not yet done
    nearest_expiry: datetime | None  # of the credentials within the at-risk window (None: none is)
    poison_messages: Mapping[str, int]  # by poison queue name
    dead_letters: int
    last_sweep_at: datetime | None
    last_inventory_at: datetime | None  # None until an inventory exists
    entity_reads: int  # what it cost: index entries + registrations + dead letters read

    def at_risk_by_reason(self) -> dict[str, int]:
        return dict(Counter(item.reason.value for item in self.at_risk))

    def days_to_nearest_expiry(self) -> float | None:
        if self.nearest_expiry is None:
            return None
        return round((self.nearest_expiry - self.taken_at).total_seconds() / 86400, 2)

    def to_json(self) -> dict[str, Any]:
        """The body of GET /api/health: ids, reasons and counts only."""
        return {
            "takenAt": _iso(self.taken_at),
            "atRisk": {
                "count": len(self.at_risk),
                "byReason": self.at_risk_by_reason(),
                "items": [
                    {
                        "registrationId": item.registration_id,
                        "tenantId": item.tenant_id,
                        "appId": item.app_id,
                        "keyId": item.key_id,
                        "generation": item.generation,
                        "reason": item.reason.value,
                        "expiresOn": _iso(item.expires_on),
                        "daysToExpiry": item.days_to_expiry(self.taken_at),
                        "failuresInARow": item.failures_in_a_row,
                    }
                    for item in self.at_risk
                ],
            },
            "rotationBacklog": self.rotation_backlog,
            "daysToNearestExpiry": self.days_to_nearest_expiry(),
            "poisonMessages": dict(self.poison_messages),
            "deadLetters": self.dead_letters,
            "lastSweepAt": _iso(self.last_sweep_at),
            "lastInventoryAt": _iso(self.last_inventory_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SnapshotSources:
    store: RegistrationStore
    index: ExpiryIndex
    lengths: QueueLengths
    dead_letters: DeadLetters
    marks: HealthMarks
    watchlist: Watchlist
    clock: Clock


async def candidates(
    sources: SnapshotSources, settings: EscalationSettings, now: datetime
) -> tuple[list[Registration], int, int]:
    """The registrations that may hold an at-risk credential, the backlog, and the entities read."""
    jobs, watched = await asyncio.gather(
        sources.index.due(now + settings.at_risk_window), sources.watchlist.members()
    )
    backlog = sum(1 for job in jobs if job.due_at <= now)
    ids = sorted({job.registration_id for job in jobs if job.action is JobAction.ROTATE} | set(watched))
    slots = asyncio.Semaphore(READS_AT_ONCE)

    async def read(registration_id: str) -> Registration | None:
        async with slots:
            try:
                return await sources.store.get(registration_id)
            except NotFound:  # decommissioned meanwhile; its job removes itself when it runs
                return None

    read_back = await asyncio.gather(*(read(i) for i in ids))
    records = [r for r in read_back if r is not None]
    # Off the watchlist once no longer at risk (rotated, or gone): idempotent, O(watched).
    stale = [
        i
        for i, r in zip(ids, read_back, strict=True)
        if i in watched and (r is None or assess(r, now, settings) is None)
    ]
    await asyncio.gather(*(sources.watchlist.discard(i) for i in stale))
    return records, backlog, len(jobs) + len(watched) + len(ids)


async def take_snapshot(sources: SnapshotSources, settings: EscalationSettings) -> HealthSnapshot:
    now = sources.clock.now()
    (records, backlog, reads), lengths, dead, marks = await asyncio.gather(
        candidates(sources, settings, now),
        asyncio.gather(*(sources.lengths.approximate_length(q + POISON_SUFFIX) for q in QUEUES)),
        sources.dead_letters.count_dead_letters(),
        sources.marks.marks(),
    )
    at_risk = tuple(item for item in (assess(r, now, settings) for r in records) if item is not None)
    ends = [
        r.credential.expires_on
        for r in records
        if r.credential is not None
        and r.credential.expires_on is not None
        and r.credential.expires_on - now <= settings.at_risk_window
    ]
    return HealthSnapshot(
        taken_at=now,
        at_risk=at_risk,
        rotation_backlog=backlog,
        nearest_expiry=min(ends, default=None),
        poison_messages={q + POISON_SUFFIX: n for q, n in zip(QUEUES, lengths, strict=True)},
        dead_letters=dead,
        last_sweep_at=marks.get(SWEEP_MARK),
        last_inventory_at=marks.get(INVENTORY_MARK),
        entity_reads=reads + dead + len(marks),
    )
