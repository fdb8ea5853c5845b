"""Which rotation jobs a registration's state calls for, and when a failed one comes back.

Pure functions over a record (core/rotation/rotator.py runs the jobs; core/record/schedule.py keys
them). Every job is idempotent to put in the index again: its id names it, not its due time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from functions.core.credentials.verification import VerifyPolicy
from functions.core.record.errors import RecordInconsistent
from functions.core.record.models import CredentialType
from functions.core.record.registration import CredentialState, Registration
from functions.core.record.schedule import JobAction, RotationJob, job_id, rotation_due_at


@dataclass(frozen=True)
class RotationSettings:
    lead_time: timedelta = timedelta(days=30)
    lifetime_fraction: float = 0.66
    overlap: timedelta = timedelta(days=1)
    default_lifetime: timedelta = timedelta(days=180)
    lease_for: timedelta = timedelta(minutes=5)  # renewed while verification waits
    lease_wait: timedelta = timedelta(seconds=10)
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    # A job refused for good (or a retirement kept back) comes back after this, doubling per
    # consecutive failure up to retry_max, instead of on every sweep.
    retry_after_failure: timedelta = timedelta(hours=1)
    retry_max: timedelta = timedelta(days=1)


def rotation_job(
    record: Registration, settings: RotationSettings, requested_by: str = "schedule"
) -> RotationJob | None:
    """The ROTATE job of the record's current credential, or None when it never needs one."""
    credential = record.credential
    if credential is None or credential.type is CredentialType.FEDERATED or credential.expires_on is None:
        return None
    start = credential.start or credential.expires_on - settings.default_lifetime
    due = rotation_due_at(
        start,
        credential.expires_on,
        lead_time=settings.lead_time,
        lifetime_fraction=settings.lifetime_fraction,
    )
    return _rotate(record, credential.generation, due, requested_by)


def _rotate(record: Registration, generation: int, due_at: datetime, requested_by: str) -> RotationJob:
    """The ROTATE job of generation `generation`: one id whoever asks (a sweep, an admin, an event)."""
    return RotationJob(
        job_id=job_id(record.id, generation, JobAction.ROTATE),
        registration_id=record.id,
        generation=generation,
        action=JobAction.ROTATE,
        due_at=due_at,
        requested_by=requested_by,
    )


def retire_job(record: Registration, old: CredentialState) -> RotationJob:
    due = old.retire_after or old.expires_on
    if due is None:
        raise RecordInconsistent(record.id, f"an end date for generation {old.generation}", "retire")
    return RotationJob(
        job_id=job_id(record.id, old.generation, JobAction.RETIRE, old.key_id),
        registration_id=record.id,
        generation=old.generation,
        action=JobAction.RETIRE,
        due_at=due,
        key_id=old.key_id,
        requested_by="rotation",
    )


def jobs_for(record: Registration, settings: RotationSettings) -> list[RotationJob]:
    """Every job the record's state calls for (idempotent to put again)."""
    jobs = [retire_job(record, old) for old in record.retiring_credentials]
    rotate = rotation_job(record, settings)
    return [*jobs, rotate] if rotate else jobs


def rotate_now_job(record: Registration, at: datetime, requested_by: str) -> RotationJob | None:
    credential = record.credential
    if credential is None or credential.type is CredentialType.FEDERATED:
        return None
    return _rotate(record, credential.generation, at, requested_by)


def failed_in_a_row(record: Registration, step: str) -> int:
    """How many times `step` failed (or was kept back) since it last succeeded."""
    count = 0
    for event in reversed(record.history):
        if event.step == step and event.outcome == "done":
            break
        if event.step == step and event.outcome in ("failed", "kept"):
            count += 1
    return count


def retry_later(job: RotationJob, now: datetime, failures: int, settings: RotationSettings) -> RotationJob:
    """The same job, due again after a backoff that doubles with each consecutive failure."""
    backoff = settings.retry_after_failure * (2 ** max(0, min(failures - 1, 16)))
    return replace(job, due_at=now + min(backoff, settings.retry_max))
