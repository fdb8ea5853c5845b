"""When credentials are due, and how the expiry index is keyed so that a sweep costs O(due).

Pure rules; the Tables adapter stores the index and the timer trigger reads it.

Due date: the earlier of (expiry - lead time) and (start + fraction x lifetime), so a two-year
secret rotates well before its last month and a short one keeps an overlap, but never earlier
than half the lifetime: a credential whose lifetime is shorter than the lead time would
otherwise be "due" the moment it exists and rotate on every sweep.

Index: one entity per pending job, PartitionKey = the due bucket (UTC hour, sortable text),
RowKey = the job id. A sweep asks for PartitionKey <= the current bucket and DueAt <= now: Table
storage answers that from its primary index, so the sweep reads the due entities and nothing else.
Entities are deleted when their job completes, so old buckets empty themselves. A job keeps its
id when its due time moves (rotate now, retry after a failure): the index finds its entity by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

INDEX_PARTITION_PREFIX = "due-"
MIN_LIFETIME_FRACTION_BEFORE_ROTATION = 0.5


class JobAction(StrEnum):
    ROTATE = "rotate"  # issue generation N+1, verify, publish
    RETIRE = "retire"  # remove an old credential after the overlap window


def rotation_due_at(
    start: datetime, expires_on: datetime, *, lead_time: timedelta, lifetime_fraction: float
) -> datetime:
    if not 0 < lifetime_fraction <= 1:
        raise ValueError("lifetime_fraction must be in (0, 1]")
    lifetime = expires_on - start
    if lifetime <= timedelta(0):
        return start
    by_lead = expires_on - lead_time
    by_fraction = start + lifetime * lifetime_fraction
    earliest = start + lifetime * MIN_LIFETIME_FRACTION_BEFORE_ROTATION
    return max(min(by_lead, by_fraction), earliest)


def retirement_at(rotated_at: datetime, old_expires_on: datetime | None, overlap: timedelta) -> datetime:
    """Remove the old credential after the overlap window, or when it expires if that is sooner."""
    planned = rotated_at + overlap
    return min(planned, old_expires_on) if old_expires_on else planned


def index_partition(due_at: datetime) -> str:
    """Sortable UTC hour bucket: 'due-2026112203'."""
    return INDEX_PARTITION_PREFIX + due_at.astimezone(UTC).strftime("%Y%m%d%H")


def job_id(registration_id: str, generation: int, action: JobAction, key_id: str | None = None) -> str:
    """Idempotency key of a rotation job: two sweeps, or a sweep and POST .../rotate, agree on it."""
    base = f"{registration_id}-g{generation}-{action.value}"
    return f"{base}-{key_id}" if key_id else base


@dataclass(frozen=True)
class RotationJob:
    """The message on the rotation-jobs queue (and the expiry index entity it came from)."""

    job_id: str
    registration_id: str
    generation: int  # the generation the job acts on (ROTATE: the current one; RETIRE: the old one)
    action: JobAction
    due_at: datetime
    key_id: str | None = None  # RETIRE: which credential
    requested_by: str | None = None  # "timer", "keyvault-event", or the admin who asked

    def to_message(self) -> dict[str, object]:
        return {
            "jobId": self.job_id,
            "registrationId": self.registration_id,
            "generation": self.generation,
            "action": self.action.value,
            "dueAt": self.due_at.isoformat(),
            "keyId": self.key_id,
            "requestedBy": self.requested_by,
        }

    @classmethod
    def from_message(cls, data: dict[str, object]) -> RotationJob:
        action = JobAction(str(data["action"]))
        registration_id = str(data["registrationId"])
        generation = int(str(data["generation"]))
        key_id = str(data["keyId"]) if data.get("keyId") else None
        return cls(
            job_id=job_id(registration_id, generation, action, key_id),
            registration_id=registration_id,
            generation=generation,
            action=action,
            due_at=datetime.fromisoformat(str(data["dueAt"])),
            key_id=key_id,
            requested_by=str(data["requestedBy"]) if data.get("requestedBy") else None,
        )

    @property
    def index_partition(self) -> str:
        return index_partition(self.due_at)
