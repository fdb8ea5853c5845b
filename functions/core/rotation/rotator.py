"""Credential rotation: the sweep that finds due jobs, and the jobs that rotate and retire.

The timer never rotates: `sweep` reads the expiry index (O(due)) and enqueues one job per due
entry on rotation-jobs, so work fans out over instances. A ROTATE job (DESIGN.md, "Rotation"):

    lease the registration -> skip if its generation moved on -> write-ahead generation N+1
    -> issue it into staging -> verify it by acquiring a token -> publish it as the connector's
    new "latest" -> record it, keep N as retiring (overlap window) -> announce
    credential.rotated -> schedule N+1's rotation and N's retirement -> disable staging

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from functions.core.credentials.issuer import certificate_key_id
from functions.core.credentials.job_ports import RegistrationJobPorts
from functions.core.credentials.verification import accepted_holding_the_lease
from functions.core.notification.announcer import Announcer, event_for
from functions.core.notification.events import WebhookEvent
from functions.core.ports import Clock, ExpiryIndex, MessageQueue
from functions.core.record.deferral import TenantJobs
from functions.core.record.errors import (
    Deferred,
    NotFound,
    PermanentError,
    RecordInconsistent,
    TransientError,
)
from functions.core.record.inflight import InFlightWork, tracked
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import CredentialType, RegistrationStatus
from functions.core.record.registration import (
    CredentialState,
    ErrorInfo,
    PendingCredential,
    Registration,
    credential_display_name,
)
from functions.core.record.schedule import JobAction, RotationJob, retirement_at
from functions.core.rotation.jobs import (
    RotationSettings,
    failed_in_a_row,
    jobs_for,
    retire_job,
    retry_later,
    rotate_now_job,
    rotation_job,
    unconfirmed,
)
from functions.core.rotation.published import pending_state, published_generation
from functions.core.rotation.staging import NextGeneration
from functions.logs import log_context
from functions.resources import ROTATION_JOBS_QUEUE

log = logging.getLogger(__name__)

__all__ = [  # the job builders live in rotation_jobs.py; callers import them from here too
    "Outcome",
    "RotationSettings",
    "Rotator",
    "SweepResult",
    "enqueue",
    "jobs_for",
    "removable",
    "retire_job",
    "rotate_now_job",
    "rotated_event",
    "rotation_job",
    "sweep",
]


class Outcome(StrEnum):
    ROTATED = "rotated"
    RETIRED = "retired"
    SKIPPED = "skipped"  # nothing to do: already done, moved on, or not rotatable
    KEPT = "kept"  # retirement refused: it is the last valid credential


# ---------------------------------------------------------------- scheduling


def job_message(job: RotationJob) -> str:
    return json.dumps(job.to_message(), separators=(",", ":"))


async def enqueue(queue: MessageQueue, job: RotationJob, *, delay: timedelta | None = None) -> None:
    """Put the job on the rotation queue; delay: invisible that long (a deferred job)."""
    await queue.send(ROTATION_JOBS_QUEUE, job_message(job), visibility_timeout=delay)


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
    if new is None:
        raise RecordInconsistent(record.id, "credential", "announce")
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


def removable(record: Registration, old: CredentialState) -> bool:
    """Whether Registrar may remove `old` from the app: one it issued (generation >= 1), or on an
    adopted app one recorded at adoption. A found certificate never: it stays the person's (Registrar's
    own certificate writes keep it as Graph holds it, credentials/adopted.write_own_keys)."""
    if old.generation >= 1:
        return True
    adoption = record.adoption
    if adoption is None or old.type is not CredentialType.SECRET:
        return False
    return old.key_id in {c.key_id for c in adoption.found_credentials}


# ---------------------------------------------------------------- the jobs


class Rotator:
    def __init__(
        self,
        ports: RegistrationJobPorts,
        *,
        index: ExpiryIndex,
        queue: MessageQueue,
        settings: RotationSettings | None = None,
        owner: str | None = None,
    ) -> None:
        self._jobs = ports.jobs or TenantJobs()
        self._store = ports.store
        self._in_flight = ports.in_flight
        self._directory = ports.directory
        self._vault = ports.vault
        self._probe = ports.probe
        self._index = index
        self._clock = ports.clock
        self._settings = settings or RotationSettings()
        self._owner = owner or f"rotator-{uuid.uuid4().hex[:12]}"
        self._sleep = ports.sleep
        self._next = NextGeneration(
            directory=ports.directory,
            vault=ports.vault,
            clock=ports.clock,
            default_lifetime=self._settings.default_lifetime,
            lifetimes=ports.lifetimes,
        )
        self._announcer = Announcer(queue=queue, clock=ports.clock)

    async def run(self, job: RotationJob) -> Outcome:
        """Run the job; in flight (core/record/inflight.py) from before the lease is claimed to its
        end, so a job whose process dies is sent again by the resume sweep once its lease lapses."""
        work = InFlightWork(
            key=job.job_id,
            registration_id=job.registration_id,
            queue=ROTATION_JOBS_QUEUE,
            message=job_message(job),
            touched_at=self._clock.now(),
        )
        async with tracked(self._in_flight, work):
            return await self._run(job)

    async def _run(self, job: RotationJob) -> Outcome:
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
                self._jobs.admit(self._directory, record.tenant_id, f"job {job.job_id}")
            except Deferred:
                await keeper.release()  # nothing else was touched: the message comes back later
                raise
            try:
                async with keeper.renewing():
                    try:
                        if job.action is JobAction.RETIRE:
                            return await self._retire(keeper, job)
                        return await self._rotate(keeper, job)
                    except PermanentError as err:
                        if await self._abandon(keeper, job, err):
                            return Outcome.ROTATED
                        log.error("rotation job %s failed: %s", job.job_id, err)
                        raise
            finally:
                self._jobs.done(record.tenant_id)
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
        # credential.rotated follows once the new credential is verified (seconds, for Entra).
        self._announcer.prepare(record, "credential.rotated")
        staged, value = await self._next.stage(keeper, pending)
        await accepted_holding_the_lease(
            keeper,
            self._probe,
            kind=staged.type,
            secret=value,
            policy=self._settings.verify,
            sleep=self._sleep,
        )
        await keeper.renew()  # still ours before "latest" changes: nobody recorded or abandoned it
        published = await self._next.publish(keeper, staged, value)
        await self._record(keeper, replace(published, verified_at=self._clock.now()))
        await self._follow_through(keeper, job)
        log.info("rotated to generation %d", published.generation)
        return Outcome.ROTATED

    async def _record(self, keeper: RecordKeeper, new: CredentialState) -> None:
        """Make `new` the current credential and the previous one retiring. Idempotent: the
        keeper re-applies it to a re-read record (an ETag race), which may already hold it."""
        now = self._clock.now()
        overlap = self._settings.overlap

        def record_rotation(r: Registration) -> Registration:
            if r.credential is not None and r.credential.key_id == new.key_id:
                return r  # already recorded
            old, retiring = r.credential, r.retiring_credentials
            if (
                old is not None
                and old.generation < new.generation
                and old.key_id not in {c.key_id for c in retiring}
            ):
                retiring = (*retiring, replace(old, retire_after=retirement_at(now, old.expires_on, overlap)))
            return replace(
                r,
                credential=new,
                pending_credential=None,
                retiring_credentials=retiring,
                status=RegistrationStatus.ACTIVE,
                last_error=None,
            ).with_event("rotation", "done", now, f"generation {new.generation} keyId {new.key_id}")

        await keeper.update(record_rotation)

    async def _follow_through(self, keeper: RecordKeeper, job: RotationJob) -> None:
        """After a rotation is recorded: announce credential.rotated, schedule what follows, drop
        the handled job, disable staging. Each part is idempotent, so a re-run after a
        crash anywhere in here completes what is missing and repeats nothing visible."""
        record = keeper.current
        new = record.credential
        if new is not None and new.generation >= 2:
            # First: the connectors are waiting to hear of it; the bookkeeping below is not.
            await self._announcer.announce(keeper, rotated_event(record, self._clock.now()))
        follow_ups = jobs_for(record, self._settings)
        for follow_up in follow_ups:
            await self._index.put(follow_up)
        if job.job_id not in {j.job_id for j in follow_ups}:
            await self._index.remove(job)
        if new is None or new.generation < 2:
            return
        await self._next.unstage(record.id)

    # ------------------------------------------------------------ retire

    async def _retire(self, keeper: RecordKeeper, job: RotationJob) -> Outcome:
        record = keeper.current
        old = next((c for c in record.retiring_credentials if c.key_id == job.key_id), None)
        if old is None:
            await self._index.remove(job)
            return Outcome.SKIPPED
        now = self._clock.now()
        if not removable(record, old):
            log.error(
                "keeping credential %s: Registrar neither issued it nor found it at adoption", old.key_id
            )
            await keeper.update(
                lambda r: r.with_event("retire", "refused", now, f"not Registrar's: keyId {old.key_id}")
            )
            await self._index.remove(job)
            return Outcome.KEPT
        current = record.credential
        if (
            current is None
            or current.verified_at is None
            or (current.expires_on is not None and current.expires_on <= now)
        ):
            log.error("keeping credential %s: it is the last valid credential of the app", old.key_id)
            await keeper.update(lambda r: r.with_event("retire", "kept", now, f"keyId {old.key_id}"))
            await self._retry_later(keeper, job, "retire")
            return Outcome.KEPT
        if unconfirmed(record, old, now):
            # after-confirm: the connector has not said it uses the new credential. The old one
            # stays until it does (POST .../confirm puts this job back to now) or until its own end.
            log.warning("keeping credential %s until the connector confirms its successor", old.key_id)
            if not any(
                e.step == "retire" and e.detail == f"unconfirmed keyId {old.key_id}" for e in record.history
            ):
                await keeper.update(
                    lambda r: r.with_event("retire", "kept", now, f"unconfirmed keyId {old.key_id}")
                )
            await self._index.put(
                replace(job, due_at=old.expires_on or retry_later(job, now, 1, self._settings).due_at)
            )
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

    async def _abandon(self, keeper: RecordKeeper, job: RotationJob, err: PermanentError) -> bool:
        """A job refused for good. True when there was nothing to abandon: the new generation had
        already been published (so it was verified) and is recorded now instead of removed.

        Otherwise the current credential still works, so the registration stays active with the
        error recorded; a half-made new credential is removed; the job comes back after a backoff.
        """
        record = keeper.current
        pending = record.pending_credential
        step = "retire" if job.action is JobAction.RETIRE else "rotation"
        if step == "rotation" and pending is not None and record.app_object_id:
            try:
                published = await published_generation(self._directory, self._vault, record, pending)
                if published is not None:
                    log.warning(
                        "generation %d is already the connector's latest: recorded, not removed",
                        pending.generation,
                    )
                    await self._record(keeper, replace(published, verified_at=self._clock.now()))
                    await self._follow_through(keeper, job)
                    return True
                staged_key = certificate_key_id(record.id, pending.generation)
                for c in await self._directory.list_credentials(record.tenant_id, record.app_object_id):
                    half_made = (
                        c.kind == "password" and c.display_name == pending.display_name
                        if pending.type is CredentialType.SECRET
                        else c.kind == "key" and c.key_id == staged_key
                    )
                    if half_made:
                        await self._next.retire(keeper, pending_state(pending, c.key_id))
            except (TransientError, NotFound):
                log.warning("could not remove the half-made credential yet; the next run will")
                return False
        now = self._clock.now()
        info = ErrorInfo(step=step, kind="permanent", message=str(err), at=now, code=err.code)

        def failed(r: Registration) -> Registration:
            if step == "rotation":
                r = replace(r, pending_credential=None, status=RegistrationStatus.ACTIVE)
            return replace(r, last_error=info).with_event(step, "failed", now, err.code)

        await keeper.update(failed)
        await self._retry_later(keeper, job, step)
        return False

    async def _retry_later(self, keeper: RecordKeeper, job: RotationJob, step: str) -> None:
        """Move the job's index entry to after a backoff (never before its scheduled time), so a
        failing job is not re-enqueued and logged on every sweep."""
        record = keeper.current
        scheduled = next((j for j in jobs_for(record, self._settings) if j.job_id == job.job_id), None)
        if scheduled is None:
            await self._index.remove(job)
            return
        later = retry_later(scheduled, self._clock.now(), failed_in_a_row(record, step), self._settings)
        await self._index.put(later if later.due_at > scheduled.due_at else scheduled)
