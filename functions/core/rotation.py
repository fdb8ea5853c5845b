"""Credential rotation: the sweep that finds due jobs, and the jobs that rotate and retire.

The timer never rotates: `sweep` reads the expiry index (O(due)) and enqueues one job per due
entry on rotation-jobs, so work fans out over instances. A ROTATE job (DESIGN.md, "Rotation"):

    lease the registration -> skip if its generation moved on -> write-ahead generation N+1
    -> issue it into staging -> verify it by acquiring a token -> publish it as the connector's
    new "latest" -> record it, keep N as retiring (overlap window) -> schedule N+1's rotation
    and N's retirement -> disable staging -> announce credential.rotated

A RETIRE job removes the old credential (never the last valid one), disables its Key Vault
version and announces credential.retired. Both jobs are idempotent by (registration,
generation, action): two sweeps, a sweep racing POST .../rotate, or a redelivered message
converge on one new credential. Federated credentials need no rotation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from functions.core.announcer import Announcer, event_for
from functions.core.errors import NotFound, PermanentError, TransientError
from functions.core.keeper import RecordKeeper, Sleep
from functions.core.lifetimes import CredentialLifetimes
from functions.core.models import CredentialType, RegistrationStatus
from functions.core.notifications import WebhookEvent
from functions.core.ports import (
    Clock,
    Directory,
    ExpiryIndex,
    MessageQueue,
    RegistrationStore,
    TokenProbe,
    Vault,
)
from functions.core.registrations import (
    CredentialState,
    ErrorInfo,
    PendingCredential,
    Registration,
    credential_display_name,
)
from functions.core.rotation_schedule import JobAction, RotationJob, job_id, retirement_at, rotation_due_at
from functions.core.staging import NextGeneration
from functions.core.verification import VerifyPolicy, until_accepted
from functions.resources import ROTATION_JOBS_QUEUE
from functions.telemetry import log_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationSettings:
    lead_time: timedelta = timedelta(days=30)
    lifetime_fraction: float = 0.66
    overlap: timedelta = timedelta(days=1)
    default_lifetime: timedelta = timedelta(days=180)
    lease_for: timedelta = timedelta(minutes=5)
    lease_wait: timedelta = timedelta(seconds=10)
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)


class Outcome(StrEnum):
    ROTATED = "rotated"
    RETIRED = "retired"
    SKIPPED = "skipped"  # nothing to do: already done, moved on, or not rotatable
    KEPT = "kept"  # retirement refused: it is the last valid credential


# ---------------------------------------------------------------- scheduling (pure)


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
    return RotationJob(
        job_id=job_id(record.id, credential.generation, JobAction.ROTATE),
        registration_id=record.id,
        generation=credential.generation,
        action=JobAction.ROTATE,
        due_at=due,
        requested_by=requested_by,
    )


def retire_job(record: Registration, old: CredentialState) -> RotationJob:
    due = old.retire_after or old.expires_on
    assert due is not None
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
    return RotationJob(
        job_id=job_id(record.id, credential.generation, JobAction.ROTATE),
        registration_id=record.id,
        generation=credential.generation,
        action=JobAction.ROTATE,
        due_at=at,
        requested_by=requested_by,
    )


async def enqueue(queue: MessageQueue, job: RotationJob) -> None:
    await queue.send(ROTATION_JOBS_QUEUE, json.dumps(job.to_message(), separators=(",", ":")))


@dataclass(frozen=True)
class SweepResult:
    read: int
    enqueued: int


async def sweep(
    index: ExpiryIndex, queue: MessageQueue, clock: Clock, *, limit: int | None = None
) -> SweepResult:
    """Enqueue every due job; rotates nothing itself. Safe to run twice at once (jobs are idempotent)."""
    jobs = await index.due(clock.now(), limit=limit)
    await asyncio.gather(*(enqueue(queue, job) for job in jobs))
    return SweepResult(read=len(jobs), enqueued=len(jobs))


def rotated_event(record: Registration, fallback_at: datetime) -> WebhookEvent:
    """credential.rotated for the record's current generation; its id is the same from every
    path that announces it (the rotation job, or Key Vault's SecretNewVersionCreated)."""
    new = record.credential
    assert new is not None
    old = next((c for c in record.retiring_credentials if c.generation == new.generation - 1), None)
    at = next(
        (e.at for e in reversed(record.history) if e.step == "rotation" and e.outcome == "done"),
        fallback_at,
    )
    return event_for(
        record,
        "credential.rotated",
        f"g{new.generation}",
        at,
        keyId=new.key_id,
        generation=new.generation,
        secretUri=new.secret_uri,
        secretVersion=new.secret_version,
        certificateUri=new.certificate_uri,
        thumbprint=new.thumbprint,
        expiresOn=new.expires_on,
        previousKeyId=old.key_id if old else None,
        previousRetiresAt=old.retire_after if old else None,
    )


# ---------------------------------------------------------------- the jobs


class Rotator:
    def __init__(
        self,
        *,
        store: RegistrationStore,
        directory: Directory,
        vault: Vault,
        probe: TokenProbe,
        index: ExpiryIndex,
        queue: MessageQueue,
        clock: Clock,
        settings: RotationSettings | None = None,
        owner: str | None = None,
        sleep: Sleep = asyncio.sleep,
        lifetimes: CredentialLifetimes | None = None,  # end dates: configured, profile, tenant maxima
    ) -> None:
        self._store = store
        self._directory = directory
        self._probe = probe
        self._index = index
        self._clock = clock
        self._settings = settings or RotationSettings()
        self._owner = owner or f"rotator-{uuid.uuid4().hex[:12]}"
        self._sleep = sleep
        self._next = NextGeneration(
            directory=directory,
            vault=vault,
            clock=clock,
            default_lifetime=self._settings.default_lifetime,
            lifetimes=lifetimes,
        )
        self._announcer = Announcer(queue=queue, clock=clock)

    async def run(self, job: RotationJob) -> Outcome:
        try:
            keeper = await RecordKeeper.claim(
                self._store,
                self._clock,
                job.registration_id,
                owner=self._owner,
                lease_for=self._settings.lease_for,
                wait=self._settings.lease_wait,
                sleep=self._sleep,
            )
        except NotFound:
            await self._index.remove(job)
            return Outcome.SKIPPED
        record = keeper.current
        with log_context(
            registration_id=record.id, tenant_id=record.tenant_id, operation=f"rotation.{job.action}"
        ):
            try:
                if job.action is JobAction.RETIRE:
                    return await self._retire(keeper, job)
                return await self._rotate(keeper, job)
            except PermanentError as err:
                log.error("rotation job %s failed: %s", job.job_id, err)
                await self._abandon(keeper, err)
                raise
            finally:
                await keeper.release()

    # ------------------------------------------------------------ rotate

    async def _rotate(self, keeper: RecordKeeper, job: RotationJob) -> Outcome:
        record = keeper.current
        current = record.credential
        rotatable = record.status in (RegistrationStatus.ACTIVE, RegistrationStatus.ROTATING)
        if not rotatable or current is None or current.type is CredentialType.FEDERATED:
            await self._index.remove(job)
            return Outcome.SKIPPED
        pending = record.pending_credential
        if pending is None:
            if current.generation != job.generation:
                # Moved on (another job did it, or this one crashed after recording it): finish
                # whatever follow-through is missing, all of it idempotent.
                await self._follow_through(keeper, job)
                return Outcome.SKIPPED
            now = self._clock.now()
            generation = current.generation + 1
            pending = PendingCredential(
                type=current.type,
                generation=generation,
                display_name=credential_display_name(record.id, generation),
                started_at=now,
            )
            started = pending
            await keeper.update(
                lambda r: replace(
                    r, status=RegistrationStatus.ROTATING, pending_credential=started
                ).with_event("rotation", "started", now, f"generation {started.generation}")
            )
        staged, value = await self._next.stage(keeper, pending)
        assert record.app_id is not None
        await until_accepted(
            self._probe,
            tenant_id=record.tenant_id,
            client_id=record.app_id,
            kind=staged.type,
            secret=value,
            policy=self._settings.verify,
            sleep=self._sleep,
        )
        published = await self._next.publish(keeper, staged, value)
        now = self._clock.now()
        old = current
        if old is not None and old.generation < published.generation:
            old = replace(old, retire_after=retirement_at(now, old.expires_on, self._settings.overlap))
        new = replace(published, verified_at=now)

        def record_rotation(r: Registration) -> Registration:
            retiring = tuple(c for c in r.retiring_credentials if c.key_id != (old.key_id if old else None))
            if old is not None and r.credential is not None and r.credential.key_id == old.key_id:
                retiring = (*retiring, old)
            return replace(
                r,
                credential=new,
                pending_credential=None,
                retiring_credentials=retiring,
                status=RegistrationStatus.ACTIVE,
                last_error=None,
            ).with_event("rotation", "done", now, f"generation {new.generation} keyId {new.key_id}")

        await keeper.update(record_rotation)
        await self._follow_through(keeper, job)
        log.info("rotated to generation %d", new.generation)
        return Outcome.ROTATED

    async def _follow_through(self, keeper: RecordKeeper, job: RotationJob) -> None:
        """After a rotation is recorded: schedule what follows, drop the handled job, disable
        staging, announce credential.rotated. Each part is idempotent, so a re-run after a
        crash anywhere in here completes what is missing and repeats nothing visible."""
        record = keeper.current
        new = record.credential
        follow_ups = jobs_for(record, self._settings)
        for follow_up in follow_ups:
            await self._index.put(follow_up)
        if job.job_id not in {j.job_id for j in follow_ups}:
            await self._index.remove(job)
        if new is None or new.generation < 2:
            return
        await self._next.unstage(record.id)
        await self._announcer.announce(keeper, rotated_event(record, self._clock.now()))

    # ------------------------------------------------------------ retire

    async def _retire(self, keeper: RecordKeeper, job: RotationJob) -> Outcome:
        record = keeper.current
        old = next((c for c in record.retiring_credentials if c.key_id == job.key_id), None)
        if old is None:
            await self._index.remove(job)
            return Outcome.SKIPPED
        now = self._clock.now()
        current = record.credential
        if (
            current is None
            or current.verified_at is None
            or (current.expires_on is not None and current.expires_on <= now)
        ):
            log.error("keeping credential %s: it is the last valid credential of the app", old.key_id)
            return Outcome.KEPT
        await self._next.retire(keeper, old)
        await keeper.update(
            lambda r: replace(
                r, retiring_credentials=tuple(c for c in r.retiring_credentials if c.key_id != old.key_id)
            ).with_event("retire", "done", now, f"keyId {old.key_id}")
        )
        await self._index.remove(job)
        await self._announcer.announce(
            keeper,
            event_for(
                keeper.current,
                "credential.retired",
                old.key_id,
                now,
                keyId=old.key_id,
                generation=old.generation,
                secretUri=old.secret_uri,
                secretVersion=old.secret_version,
                certificateUri=old.certificate_uri,
                currentKeyId=current.key_id,
            ),
        )
        return Outcome.RETIRED

    # ------------------------------------------------------------ failure

    async def _abandon(self, keeper: RecordKeeper, err: PermanentError) -> None:
        """A rotation refused for good: the current credential still works, so the registration
        stays active with the error recorded; a half-made new credential is removed."""
        record = keeper.current
        pending = record.pending_credential
        if pending is not None and pending.type is CredentialType.SECRET and record.app_object_id:
            try:
                for c in await self._directory.list_credentials(record.tenant_id, record.app_object_id):
                    if c.kind == "password" and c.display_name == pending.display_name:
                        await self._next.retire(keeper, _as_state(pending, c.key_id))
            except (TransientError, NotFound):
                log.warning("could not remove the half-made credential yet; the next run will")
                return
        now = self._clock.now()
        info = ErrorInfo(step="rotation", kind="permanent", message=str(err), at=now, code=err.code)
        await keeper.update(
            lambda r: replace(
                r, pending_credential=None, status=RegistrationStatus.ACTIVE, last_error=info
            ).with_event("rotation", "failed", now, err.code)
        )


def _as_state(pending: PendingCredential, key_id: str) -> CredentialState:
    return CredentialState(
        type=pending.type, generation=pending.generation, display_name=pending.display_name, key_id=key_id
    )
