"""The credential takeover of an adopted app: adopting -> active (issue 15 §2, docs/adoption.md).

Once Registrar owns the app (ownership.py) the registration worker runs this for the record:

    claim the app (one adoption per app: claims.py)
    -> the app's ids on the record (appId, object id, its service principal), so rotation works
    -> the permissions step (PermissionsStep: drift, reconcile, tier-0 approval; it may make the
       registration wait, e.g. pending_approval)
    -> Registrar's credential, generation 1: the profile's type within the tenant's policy, written
       ahead and stored in Key Vault as provisioning does (CredentialIssuer.issue_first)
    -> verified with a token (the lease renewed while Entra propagates it)
    -> the credentials found at adoption become retiring per retireExisting (never: none)
    -> the rotation jobs: RETIRE removes the found ones at retire_after, ROTATE keeps Registrar's alive
    -> credential.rotated with reason `adopted` -> `active`

Admitted like provisioning and rotation (TenantJobs.admit, record/deferral.py): in a tenant whose
Graph budget is spoken for, Deferred is raised before anything changes (the lease is given back) and
the worker puts the message back for its retry_after.

Every step is saved before the next and is idempotent, under the record's lease (renewed) and the
in-flight entry of the registration worker, so a worker killed between any two calls is resumed and
converges with exactly one Registrar credential. TransientError propagates (the message comes back);
PermanentError, ValidationFailed and NotFound end it `failed` through failures.begin/finish, whose
cleanup on an adopted app removes only Registrar's own credentials (CredentialIssuer.remove_everything):
the person's credentials and the app stay as they were.

What is never removed: a credential not found at adoption, a found certificate, and the last one
that works: a found credential retires only once Registrar's is verified (Rotator._retire and
`removable` check both). keyCredentials is replaced as a whole, so Registrar's certificate is
written beside the person's keys as Graph returns them on a $select of the one application
(Directory.set_own_key_credentials), by the takeover, every later rotation and the release alike.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from functions.core.adoption.claims import AppClaim, AppClaims, claim_app
from functions.core.credentials.issuer import CredentialIssuer
from functions.core.credentials.job_ports import RegistrationJobPorts
from functions.core.credentials.verification import accepted_holding_the_lease
from functions.core.notification.announcer import Announcer, event_for
from functions.core.ports import ExpiryIndex, MessageQueue
from functions.core.provisioning import failures
from functions.core.record.deferral import TenantJobs
from functions.core.record.errors import (
    Deferred,
    NotFound,
    PermanentError,
    RecordInconsistent,
    TransientError,
    ValidationFailed,
)
from functions.core.record.inflight import provisioning_work, tracked
from functions.core.record.keeper import WORK_LEASE, RecordKeeper
from functions.core.record.models import CredentialType, PermissionKind, RegistrationStatus, SecretValue
from functions.core.record.registration import Adoption, CredentialState, Registration
from functions.core.record.schedule import retirement_at
from functions.core.record.steps import in_step, step_of
from functions.core.rotation.rotator import RotationSettings, enqueue, jobs_for
from functions.logs import log_context
from functions.resources import REGISTRATION_REQUESTS_QUEUE

log = logging.getLogger(__name__)

Then = Callable[[Registration], Awaitable[None]]

RETIRE_NOW = "now"
RETIRE_NEVER = "never"
RECONCILE_REPORT = "report"
ADOPTED = "adopted"  # the reason credential.rotated carries for the takeover's first credential
STEP = "takeover"


class PermissionsStep(Protocol):
    async def run(self, keeper: RecordKeeper) -> bool:
        """True: go on with the credential; False: the registration now waits (pending_approval)."""
        ...


def expected_writes(record: Registration) -> int:
    """The Graph writes a takeover makes (TenantJobs.admit): the service principal (when the app has
    none) and Registrar's credential; and, when reconcile may change the permissions,
    requiredResourceAccess, one per application permission (a $batch is charged per item) and one
    grant per delegated resource. The found secrets' removals are the RETIRE jobs' own."""
    adoption = record.adoption
    if adoption is None or adoption.reconcile == RECONCILE_REPORT:
        return 2
    permissions = record.plan.permissions
    roles = sum(1 for p in permissions if p.kind is PermissionKind.APPLICATION)
    delegated = {p.resource_app_id.lower() for p in permissions if p.kind is PermissionKind.DELEGATED}
    return 3 + roles + len(delegated)


@dataclass(frozen=True)
class TakeoverSettings:
    lease_for: timedelta = WORK_LEASE  # renewed in the background while a run holds it
    lease_wait: timedelta = timedelta(seconds=30)


class Takeover:
    def __init__(
        self,
        ports: RegistrationJobPorts,
        *,
        index: ExpiryIndex,
        queue: MessageQueue,
        claims: AppClaims,
        rotation: RotationSettings | None = None,  # overlap, verify budget, and the jobs it schedules
        settings: TakeoverSettings | None = None,
        owner: str | None = None,
        permissions: PermissionsStep | None = None,
    ) -> None:
        self._jobs = ports.jobs or TenantJobs()
        self._store = ports.store
        self._directory = ports.directory
        self._vault = ports.vault
        self._probe = ports.probe
        self._index = index
        self._queue = queue
        self._claims = claims
        self._clock = ports.clock
        self._rotation = rotation or RotationSettings()
        self._settings = settings or TakeoverSettings()
        self._owner = owner or f"takeover-{uuid.uuid4().hex[:12]}"
        self._sleep = ports.sleep
        self._in_flight = ports.in_flight
        self._permissions = permissions
        self._issuer = CredentialIssuer(
            directory=ports.directory, vault=ports.vault, clock=ports.clock, lifetimes=ports.lifetimes
        )
        self._announcer = Announcer(queue=queue, clock=ports.clock)

    async def run(self, registration_id: str, *, then: Then | None = None) -> Registration:
        """Drive an adopting registration as far as it can go now. Idempotent: safe to call again.
        In flight as a provisioning run is (the same entry), so a crash is resumed by the sweep.
        A takeover its tenant's Graph budget cannot take now raises Deferred before it changes
        anything (record/deferral.py): the lease is given back, the message comes back later."""
        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, self._clock.now())
        async with tracked(self._in_flight, work) as entry:
            keeper = await RecordKeeper.claim(
                self._store,
                self._clock,
                registration_id,
                owner=self._owner,
                lease_for=self._settings.lease_for,
                wait=self._settings.lease_wait,
                sleep=self._sleep,
            )
            record = keeper.current
            with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation=STEP):
                # Only a takeover that has something to do counts (a re-sent envelope is a no-op).
                admitted = record.adoption is not None and record.status is RegistrationStatus.ADOPTING
                writes = expected_writes(record)
                if admitted:
                    try:
                        self._jobs.admit(
                            self._directory, record.tenant_id, f"registration {record.id}", writes=writes
                        )
                    except Deferred:
                        await keeper.release()  # nothing else was touched: the message comes back later
                        raise
                try:
                    ended = await self._holding(keeper)
                finally:
                    if admitted:
                        self._jobs.done(record.tenant_id, writes=writes)
            if then is not None:
                entry.keep_on_failure = True  # the outcome is saved: the sweep re-sends its settling
                await then(ended)
            return ended

    async def _holding(self, keeper: RecordKeeper) -> Registration:
        try:
            try:
                async with keeper.renewing():
                    await self._drive_or_fail(keeper)
            except TransientError as err:
                log.warning("takeover paused at step %s, will retry: %s", step_of(err), err)
                await failures.note_pause(keeper, err, self._clock)
                raise
        except Exception:
            await failures.release_quietly(keeper)
            raise
        return await keeper.release()

    async def _drive_or_fail(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        if record.adoption is None or record.status is not RegistrationStatus.ADOPTING:
            return  # done, waiting for a person, or not an adoption: a re-sent envelope is a no-op
        try:
            await self._drive(keeper, record.adoption)
        except (PermanentError, ValidationFailed, NotFound) as err:
            log.error("takeover failed at step %s: %s", step_of(err), err)
            await failures.begin(keeper, failures.error_info(err, self._clock.now()))
            await failures.finish(keeper, self._issuer, self._clock)

    async def _drive(self, keeper: RecordKeeper, adoption: Adoption) -> None:
        await self._claim(keeper, adoption)
        await self._identify(keeper, adoption)
        if self._permissions is not None and not await self._permissions.run(keeper):
            return  # the registration waits (e.g. pending_approval); approving it comes back here
        if keeper.current.status is not RegistrationStatus.ADOPTING:
            return
        await self._credential(keeper)
        await self._retire_found(keeper, adoption)
        await self._schedule(keeper)
        await self._announce(keeper)
        done = self._clock.now()
        await keeper.update(
            lambda r: replace(r, status=RegistrationStatus.ACTIVE, last_error=None).with_event(
                STEP, "done", done, "Registrar's credential is generation 1"
            )
        )
        log.info("adopted app %s is managed now", adoption.app_id)

    # ------------------------------------------------------------ the steps

    async def _claim(self, keeper: RecordKeeper, adoption: Adoption) -> None:
        if keeper.current.step_done("claim"):
            return
        record = keeper.current
        async with in_step("claim"):
            mine = AppClaim(record.tenant_id, adoption.app_id, record.id, self._clock.now())
            await claim_app(self._claims, self._store, mine)
        now = self._clock.now()
        await keeper.update(lambda r: r.with_event("claim", "done", now, f"application {adoption.app_id}"))

    async def _identify(self, keeper: RecordKeeper, adoption: Adoption) -> None:
        """The app's ids on the record (convention: adoption still marks the app as a person's)."""
        record = keeper.current
        if record.app_object_id and record.service_principal_id:
            return
        async with in_step("service_principal"):
            sp_id = await self._directory.ensure_service_principal(record.tenant_id, adoption.app_id)
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(
                r, app_id=adoption.app_id, app_object_id=adoption.app_object_id, service_principal_id=sp_id
            ).with_event("service_principal", "done", now, f"appId {adoption.app_id}")
        )

    async def _credential(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        if record.credential is None or record.pending_credential is not None:
            # A certificate goes beside the person's keys: the issuer writes back what Graph holds
            # (credentials/adopted.write_own_keys), so an app with certificates of its own is fine.
            async with in_step("credential"):
                secret = await self._issuer.issue_first(keeper)
        else:
            secret = None
        await self._verify(keeper, secret)

    async def _verify(self, keeper: RecordKeeper, secret: SecretValue | None) -> None:
        record = keeper.current
        credential = record.credential
        if credential is None or record.app_id is None:
            raise RecordInconsistent(record.id, "credential or app_id", "verify")
        if credential.verified_at is not None or record.step_done("verify"):
            return
        async with in_step("verify"):
            if credential.type is CredentialType.FEDERATED:
                now = self._clock.now()
                await keeper.update(
                    lambda r: r.with_event("verify", "skipped", now, "federated: proved by the connector")
                )
                return
            if secret is None:  # a re-run: the value is in Key Vault only
                name = credential.certificate_name or credential.secret_name
                if name is None:
                    raise RecordInconsistent(record.id, "the credential's Key Vault name", "verify")
                _, secret = await self._vault.get_secret(name, credential.secret_version)

            await accepted_holding_the_lease(
                keeper,
                self._probe,
                kind=credential.type,
                secret=secret,
                policy=self._rotation.verify,
                sleep=self._sleep,
            )
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(
                r, credential=replace(r.credential, verified_at=now) if r.credential else None
            ).with_event("verify", "done", now)
        )

    async def _retire_found(self, keeper: RecordKeeper, adoption: Adoption) -> None:
        """The credentials found at adoption become retiring (generation 0, no Key Vault fields)."""
        if keeper.current.step_done("retire_existing"):
            return
        now = self._clock.now()
        mode = adoption.retire_existing
        secrets = [c for c in adoption.found_credentials if c.type is CredentialType.SECRET]
        kept = len(adoption.found_credentials) - len(secrets)
        if mode == RETIRE_NEVER or not secrets:
            detail = f"retireExisting {mode}: {len(adoption.found_credentials)} found credential(s) kept"
            await keeper.update(lambda r: r.with_event("retire_existing", "skipped", now, detail))
            return

        def retiring(found_end: datetime | None) -> datetime:
            return now if mode == RETIRE_NOW else retirement_at(now, found_end, self._rotation.overlap)

        found = tuple(
            CredentialState(
                type=c.type,
                generation=0,
                display_name=c.display_name or "",
                key_id=c.key_id,
                expires_on=c.end,
                retire_after=retiring(c.end),
            )
            for c in secrets
        )
        detail = f"retireExisting {mode}: {len(found)} secret(s) retire" + (
            f", {kept} certificate(s) kept" if kept else ""
        )

        def add(r: Registration) -> Registration:
            known = {c.key_id for c in r.retiring_credentials}
            fresh = tuple(c for c in found if c.key_id not in known)
            return replace(r, retiring_credentials=(*r.retiring_credentials, *fresh)).with_event(
                "retire_existing", "done", now, detail
            )

        await keeper.update(add)

    async def _schedule(self, keeper: RecordKeeper) -> None:
        """ROTATE keeps Registrar's credential alive, RETIRE removes the found ones at retire_after;
        a retirement due already (retireExisting now, or a found credential past its end) is sent
        to the rotation queue at once instead of waiting for the next sweep. Idempotent by job id."""
        now = self._clock.now()
        for job in jobs_for(keeper.current, self._rotation):
            await self._index.put(job)
            if job.key_id is not None and job.due_at <= now:
                await enqueue(self._queue, job)

    async def _announce(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        new = record.credential
        if new is None:
            raise RecordInconsistent(record.id, "credential", "announce")
        issued_at = next(
            (e.at for e in reversed(record.history) if e.step == "credential" and e.outcome == "done"),
            self._clock.now(),
        )
        found = [c for c in record.retiring_credentials if c.generation == 0]
        retires = [c.retire_after for c in found if c.retire_after is not None]
        event = event_for(
            record,
            "credential.rotated",
            f"g{new.generation}",
            issued_at,
            reason=ADOPTED,
            keyId=new.key_id,
            generation=new.generation,
            secretUri=new.secret_uri,
            secretVersion=new.secret_version,
            certificateUri=new.certificate_uri,
            thumbprint=new.thumbprint,
            expiresOn=new.expires_on,
            previousKeyIds=[c.key_id for c in found] or None,
            previousRetiresAt=min(retires) if retires else None,
        )
        self._announcer.prepare(record, "credential.rotated")
        await self._announcer.announce(keeper, event)
