"""The registration workflow: accepted -> (pending_approval ->) provisioning -> active | (failing ->) failed.

Steps (DESIGN.md, "The registration workflow"), each idempotent and saved before the next:

    app --+--> service principal --+--> consent (app roles in one $batch; delegated per resource)
          |                        |
          +--> addPassword --------+--> verify (a token with the new secret)  --+--> active
          |          |                                                          |
          |          +--> Key Vault set_secret ---------------------------------+
          |                                                                     |
          +--> owners (owners/$ref per requested owner; core/provisioning/owners.py) --------+

The credential step needs only the app; verify needs the secret's value (in memory) and the
service principal, not the vault write. So a new registration costs about three round trips on
its critical path, not ten. Certificates and re-runs verify with the value read from Key Vault.

Failures: TransientError propagates (the queue message is retried and the re-run resumes from
the last saved step); PermanentError, ValidationFailed and NotFound end the registration as
`failed` with the reason: written ahead as `failing` first, then what was made is removed (app
with its service principal and credentials, Key Vault object), then `failed` (core/provisioning/failures.py).
A run that finds `failing` only finishes the cleanup, and one that finds `decommissioning` (a
decommission whose process died, re-sent by the resume sweep) only finishes the decommission
(lifecycle.finish_decommission). When retries run out, or a registration is
stuck past its deadline, `give_up` ends it the same way (registration_worker.py, core/provisioning/stuck.py).
The lease is given up on every path. A secret value lives only in memory, from addPassword to
set_secret and the verify right after: never in the record, a log line or an exception.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

from functions.core.catalogue.app_spec import application_spec
from functions.core.credentials.issuer import CredentialIssuer
from functions.core.credentials.job_ports import RegistrationJobPorts
from functions.core.credentials.verification import VerifyPolicy, accepted_holding_the_lease
from functions.core.ports import DelegatedGrant
from functions.core.provisioning import failures
from functions.core.provisioning.lifecycle import finish_decommission
from functions.core.provisioning.owners import add_owners
from functions.core.record.deferral import TenantJobs
from functions.core.record.errors import (
    Deferred,
    NotFound,
    PermanentError,
    RecordInconsistent,
    TransientError,
    ValidationFailed,
    saved,
)
from functions.core.record.inflight import provisioning_work, tracked
from functions.core.record.keeper import WORK_LEASE, RecordKeeper
from functions.core.record.models import CredentialType, PermissionKind, RegistrationStatus, SecretValue
from functions.core.record.registration import TERMINAL_STATUSES, Approval, Registration
from functions.core.record.steps import concurrently, in_step, step_of
from functions.logs import log_context
from functions.resources import REGISTRATION_REQUESTS_QUEUE

log = logging.getLogger(__name__)

# What follows a run or a give-up once the lease is released (outcomes.settle_provisioned: schedule
# the first rotation, announce registration.active/failed), inside the run's in-flight entry.
Then = Callable[[Registration], Awaitable[None]]

# What give_up ends: the workflow's own states before `active` (not a registration held for a person),
# and an adoption's takeover (its cleanup removes only Registrar's credentials, never the app).
GIVE_UP_STATUSES = frozenset(
    {RegistrationStatus.ACCEPTED, RegistrationStatus.PROVISIONING, RegistrationStatus.ADOPTING}
)


@dataclass(frozen=True)
class WorkflowSettings:
    lease_for: timedelta = WORK_LEASE  # renewed in the background while a run holds it
    lease_wait: timedelta = timedelta(seconds=30)
    verify_timeout: timedelta = timedelta(minutes=3)  # per run; the queue retry gives more
    verify_first_delay: timedelta = timedelta(seconds=1)
    verify_max_delay: timedelta = timedelta(seconds=20)
    # The benchmark's naive baseline: every call one after another, one assignment per call.
    concurrent: bool = True


def expected_writes(record: Registration) -> int:
    """The Graph writes a registration makes: the app, its service principal, the credential, one
    per application permission (a $batch is charged per item), one grant per delegated resource."""
    permissions = record.plan.permissions
    roles = sum(1 for p in permissions if p.kind is PermissionKind.APPLICATION)
    delegated = {p.resource_app_id.lower() for p in permissions if p.kind is PermissionKind.DELEGATED}
    return 3 + roles + len(delegated)


class Provisioner:
    def __init__(
        self,
        ports: RegistrationJobPorts,
        *,
        settings: WorkflowSettings | None = None,
        owner: str | None = None,
    ) -> None:
        self._jobs = ports.jobs or TenantJobs()
        self._store = ports.store
        self._in_flight = ports.in_flight
        self._directory = ports.directory
        self._vault = ports.vault
        self._probe = ports.probe
        self._clock = ports.clock
        self._settings = settings or WorkflowSettings()
        self._owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self._sleep = ports.sleep
        self._issuer = CredentialIssuer(
            directory=ports.directory, vault=ports.vault, clock=ports.clock, lifetimes=ports.lifetimes
        )

    async def claim(self, registration_id: str, wait: timedelta | None = None) -> RecordKeeper:
        return await RecordKeeper.claim(
            self._store,
            self._clock,
            registration_id,
            owner=self._owner,
            lease_for=self._settings.lease_for,
            wait=self._settings.lease_wait if wait is None else wait,
            sleep=self._sleep,
        )

    async def run(self, registration_id: str, *, then: Then | None = None) -> Registration:
        """Drive a registration as far as it can go now. Idempotent: safe to call again any time.

        In flight (core/record/inflight.py) from before the lease is claimed to the end of `then`
        (the settling that follows the run), so a run whose process dies, even between the run and
        its settling, is sent again by the resume sweep once its lease lapses. A run its tenant's
        Graph budget cannot take now raises Deferred before it touches anything (record/deferral.py)."""
        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, self._clock.now())
        async with tracked(self._in_flight, work) as entry:
            keeper = await self.claim(registration_id)
            record = keeper.current
            with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="provision"):
                admitted = record.status not in TERMINAL_STATUSES
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
                    ended = await self._holding(keeper, lambda: self._drive_or_fail(keeper))
                finally:
                    if admitted:
                        self._jobs.done(record.tenant_id, writes=writes)
                if then is not None:
                    # The outcome is saved: should settling it fail, the sweep re-sends the run.
                    entry.keep_on_failure = True
                    await then(ended)
                return ended

    async def give_up(
        self, registration_id: str, reason: str, *, wait: timedelta | None = None, then: Then | None = None
    ) -> Registration:
        """End a registration the workflow could not finish (retries ran out, stuck past its
        deadline) as `failed` with `reason`, removing what was made, then `then` (its settling).
        Only `accepted` and `provisioning` are given up on (a `failing` one has its cleanup
        finished); any other status is left as it is. TransientError (LeaseHeld too) when that
        cannot happen now. In flight as `run` is: once `failing` is written, a process that dies
        (or a cleanup or settling that fails) leaves the entry, and the registration worker's run
        of the re-sent envelope finishes the cleanup and settles it."""
        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, self._clock.now())
        async with tracked(self._in_flight, work) as entry:
            keeper = await self.claim(registration_id, wait)
            record = keeper.current
            with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="give_up"):

                async def end() -> None:
                    if keeper.current.status in GIVE_UP_STATUSES:
                        log.error("giving up on the registration: %s", reason)
                        await failures.begin(
                            keeper, failures.gave_up_info(keeper.current, reason, self._clock.now())
                        )
                    if keeper.current.status is RegistrationStatus.FAILING:
                        entry.keep_on_failure = True  # the failure is written: its cleanup must follow
                        await failures.finish(keeper, self._issuer, self._clock)

                ended = await self._holding(keeper, end)
                if then is not None:
                    entry.keep_on_failure = True
                    await then(ended)
                return ended

    async def _holding(self, keeper: RecordKeeper, work: Callable[[], Awaitable[None]]) -> Registration:
        """Run `work` under the lease, renewed in the background, and give the lease up on every path
        (a dead process: it lapses within WORK_LEASE)."""
        try:
            try:
                async with keeper.renewing():
                    await work()
            except TransientError as err:
                log.warning("paused at step %s, will retry: %s", step_of(err), err)
                await failures.note_pause(keeper, err, self._clock)
                raise
        except Exception:
            await failures.release_quietly(keeper)
            raise
        return await keeper.release()

    async def _drive_or_fail(self, keeper: RecordKeeper) -> None:
        if keeper.current.status is RegistrationStatus.FAILING:  # the failure is recorded: clean up
            await failures.finish(keeper, self._issuer, self._clock)
            return
        if keeper.current.status is RegistrationStatus.DECOMMISSIONING:  # one that died half-way
            await finish_decommission(keeper, self._issuer, self._vault, self._clock, self._directory)
            return
        try:
            await self._drive(keeper)
        except (PermanentError, ValidationFailed, NotFound) as err:
            log.error("provisioning failed at step %s: %s", step_of(err), err)
            await failures.begin(keeper, failures.error_info(err, self._clock.now()))
            await failures.finish(keeper, self._issuer, self._clock)

    # ------------------------------------------------------------ the steps

    async def _drive(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        if record.adoption is not None:  # a person's app: core/adoption/takeover.py, never a new app
            return
        if record.status in TERMINAL_STATUSES or record.status in (
            RegistrationStatus.DECOMMISSIONING,
            RegistrationStatus.ROTATING,
        ):
            return
        now = self._clock.now()
        if record.status in (RegistrationStatus.ACCEPTED, RegistrationStatus.PENDING_APPROVAL):
            if record.plan.approval_reasons and not (record.approval and record.approval.granted):
                if record.status is RegistrationStatus.ACCEPTED:
                    await keeper.update(
                        lambda r: replace(
                            r,
                            status=RegistrationStatus.PENDING_APPROVAL,
                            approval=r.approval or Approval(reasons=r.plan.approval_reasons),
                        ).with_event("approval", "waiting", now, "; ".join(r.plan.approval_reasons))
                    )
                return
            await keeper.update(
                lambda r: replace(r, status=RegistrationStatus.PROVISIONING).with_event(
                    "provisioning", "started", now
                )
            )

        await self._app(keeper)
        if self._settings.concurrent:
            principal_ready = asyncio.Event()

            async def principal_then_consent() -> None:
                await self._service_principal(keeper)
                principal_ready.set()
                await self._consent(keeper)

            async def credential_then_verify() -> None:
                # A new secret is proven (token) while it is being written to Key Vault: both
                # need only the value Graph returned, and the registration turns active after both.
                fresh: asyncio.Future[SecretValue | None] = asyncio.get_running_loop().create_future()
                proven: list[SecretValue] = []

                def issued(secret: SecretValue) -> None:
                    if not fresh.done():
                        fresh.set_result(secret)

                async def issue() -> None:
                    try:
                        await self._credential(keeper, on_issued=issued)
                    finally:
                        if not fresh.done():  # nothing new in memory: verify reads the vault
                            fresh.set_result(None)

                async def prove_early() -> None:
                    secret = await fresh
                    if secret is None:
                        return
                    await principal_ready.wait()
                    async with in_step("verify"):
                        await self._until_accepted(keeper, CredentialType.SECRET, secret)
                    proven.append(secret)

                await concurrently(issue(), prove_early())
                await principal_ready.wait()
                await self._verify(keeper, proven[0] if proven else None, proven=bool(proven))

            await concurrently(
                principal_then_consent(),
                credential_then_verify(),
                add_owners(keeper, self._directory, self._clock),
            )
        else:
            await add_owners(keeper, self._directory, self._clock)
            await self._service_principal(keeper)
            await self._consent(keeper)
            secret = await self._credential(keeper)
            await self._verify(keeper, secret)

        done = self._clock.now()
        await keeper.update(
            lambda r: replace(r, status=RegistrationStatus.ACTIVE, last_error=None).with_event(
                "active", "done", done
            )
        )
        log.info("registration active: app %s", keeper.current.app_id)

    async def _app(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        if record.app_object_id and record.step_done("app"):
            return
        spec = application_spec(record)
        unique_name = spec.unique_name
        async with in_step("app"):
            ref = await self._directory.upsert_application(record.tenant_id, spec)
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(
                r, unique_name=unique_name, app_object_id=ref.object_id, app_id=ref.app_id
            ).with_event("app", "done", now, f"appId {ref.app_id}")
        )

    async def _service_principal(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        if record.service_principal_id:
            return
        if record.app_id is None:
            raise RecordInconsistent(record.id, "app_id", "service principal")
        async with in_step("service_principal"):
            sp_id = await self._directory.ensure_service_principal(record.tenant_id, record.app_id)
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(r, service_principal_id=sp_id).with_event("service_principal", "done", now)
        )

    async def _consent(self, keeper: RecordKeeper) -> None:
        record = keeper.current
        if record.step_done("consent"):
            return
        tenant = record.tenant_id
        principal = saved(record.service_principal_id, record.id, "service_principal_id", "consent")
        permissions = record.plan.permissions
        async with in_step("consent"):
            resources = sorted({p.resource_app_id for p in permissions})
            catalogs = await asyncio.gather(
                *(self._directory.resource_catalog(tenant, app_id) for app_id in resources)
            )
            # Ids compare case-insensitively (Graph returns GUIDs in either case).
            sp_of = {c.app_id.lower(): c.service_principal_id.lower() for c in catalogs}
            wanted_roles = {
                (sp_of[p.resource_app_id.lower()], p.id.lower())
                for p in permissions
                if p.kind is PermissionKind.APPLICATION
            }
            wanted_scopes: dict[str, set[str]] = {}
            for p in permissions:
                if p.kind is PermissionKind.DELEGATED:
                    wanted_scopes.setdefault(sp_of[p.resource_app_id.lower()], set()).add(p.name)

            # A service principal this workflow created has no grants until this step first runs:
            # only a re-run (after a crash or retry) needs to read what exists.
            first_attempt = not record.consent_started
            if first_attempt:
                await keeper.update(lambda r: replace(r, consent_started=True))
                existing_roles: set[tuple[str, str]] = set()
                existing_grants: Mapping[str, DelegatedGrant] = {}
            else:
                roles, grants = await asyncio.gather(
                    self._directory.app_role_assignments(tenant, principal),
                    self._directory.delegated_grants(tenant, principal),
                )
                existing_roles = {(r.lower(), role.lower()) for r, role in roles}
                existing_grants = {k.lower(): g for k, g in grants.items()}
            missing = sorted(wanted_roles - existing_roles)
            calls = []
            if missing and self._settings.concurrent:
                calls.append(self._directory.assign_app_roles(tenant, principal, missing))
            elif missing:
                calls.extend(self._directory.assign_app_roles(tenant, principal, [pair]) for pair in missing)
            for resource_sp, scopes in sorted(wanted_scopes.items()):
                grant = existing_grants.get(resource_sp)
                if grant is None or grant.scopes != frozenset(scopes):
                    calls.append(
                        self._directory.grant_delegated(
                            tenant,
                            principal,
                            resource_sp,
                            frozenset(scopes),
                            grant.grant_id if grant else None,
                        )
                    )
            if self._settings.concurrent:
                await asyncio.gather(*calls)
            else:
                for call in calls:
                    await call
        now = self._clock.now()
        detail = (
            f"{len(wanted_roles)} app roles ({len(missing)} added), {len(wanted_scopes)} delegated grants"
        )
        await keeper.update(
            lambda r: replace(r, granted_permissions=r.plan.permissions).with_event(
                "consent", "done", now, detail
            )
        )

    async def _credential(
        self, keeper: RecordKeeper, on_issued: Callable[[SecretValue], None] | None = None
    ) -> SecretValue | None:
        async with in_step("credential"):
            return await self._issuer.issue_first(keeper, on_issued)

    async def _verify(
        self, keeper: RecordKeeper, secret: SecretValue | None, *, proven: bool = False
    ) -> None:
        record = keeper.current
        credential = record.credential
        if credential is None or record.app_id is None:
            raise RecordInconsistent(record.id, "credential or app_id", "verify")
        if credential.verified_at is not None:
            return
        async with in_step("verify"):
            if credential.type is CredentialType.FEDERATED:
                # Only the external issuer can mint the assertion a federated credential needs.
                now = self._clock.now()
                await keeper.update(
                    lambda r: r.with_event("verify", "skipped", now, "federated: proved by the connector")
                )
                return
            if not proven:
                if secret is None:  # a re-run: the value is in Key Vault only
                    name = credential.certificate_name or credential.secret_name
                    if name is None:
                        raise RecordInconsistent(record.id, "the credential's Key Vault name", "verify")
                    _, secret = await self._vault.get_secret(name, credential.secret_version)
                await self._until_accepted(keeper, credential.type, secret)
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(
                r, credential=replace(r.credential, verified_at=now) if r.credential else None
            ).with_event("verify", "done", now)
        )

    async def _until_accepted(self, keeper: RecordKeeper, kind: CredentialType, secret: SecretValue) -> None:
        """Entra takes a while to accept a new credential: retry with backoff, within a budget as
        long as the lease may be, so each wait renews the lease (LeaseHeld if it was lost)."""
        await accepted_holding_the_lease(
            keeper,
            self._probe,
            kind=kind,
            secret=secret,
            policy=VerifyPolicy(
                self._settings.verify_timeout,
                self._settings.verify_first_delay,
                self._settings.verify_max_delay,
            ),
            sleep=self._sleep,
        )
