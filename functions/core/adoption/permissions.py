"""The permissions step of an adoption (issue 15 §2, "Permissions"): the app's drift recorded, then
reconciled as `options.reconcile` asks, before the credential takeover.

The takeover (core/adoption/takeover.py) calls `PermissionStep.run(keeper)` first for a
registration in `adopting`, holding its lease. It reads the app's requiredResourceAccess and what
its service principal holds (app role assignments, AllPrincipals delegated grants), records the
drift on the record (Adoption.drift: missing and extra, drift.py), then:
- report (the default): changes nothing;
- add-missing: declares and grants what the profile names and the app lacks, through the same
  Directory calls as provisioning's consent (assign_app_roles, grant_delegated);
- exact: also removes the extras, from requiredResourceAccess and the grants.

A change that grants a permission the policy ranks tier-0 waits for a person: the registration is
saved `pending_approval` with the reasons, and `run` answers False. Approving it
(provisioning/lifecycle.approve) puts it back to `adopting` and enqueues it, and the next run
applies the change. Removing extras never needs approval.

Crash-safe: the drift and `reconcile_started_at` are saved before the first write. Every write
sets a computed value (PATCH requiredResourceAccess, a grant's exact scopes), adds an assignment
(a duplicate is success) or removes one (gone is success), so a run killed between any two calls
is finished by the next: it keeps the drift recorded first (what the app had at adoption) and
plans the remaining changes from a fresh reading.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from functions.core.adoption.drift import AppPermissions, Changes, compute_drift, key_of, plan_changes
from functions.core.catalogue.policy import Policy
from functions.core.ports import Clock, DelegatedGrant, Directory
from functions.core.record.errors import NotFound, RecordInconsistent
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import RegistrationStatus, ResourceCatalog
from functions.core.record.registration import Adoption, Approval, Drift, Registration
from functions.core.record.steps import in_step

log = logging.getLogger(__name__)

STEP = "permissions"


class PermissionStep:
    def __init__(self, directory: Directory, clock: Clock, policy: Policy) -> None:
        self._directory = directory
        self._clock = clock
        self._policy = policy

    async def run(self, keeper: RecordKeeper) -> bool:
        """True: the takeover goes on. False: the registration waits (pending_approval)."""
        record = keeper.current
        adoption = record.adoption
        if adoption is None:
            raise RecordInconsistent(record.id, "adoption", STEP)
        if adoption.drift is not None and adoption.drift.reconciled_at is not None:
            return True  # done before: a re-delivered takeover goes straight on
        if record.status is RegistrationStatus.PENDING_APPROVAL:
            return False  # approve puts it back to adopting
        async with in_step(STEP):
            app = await self._read(record, adoption)
            changes = plan_changes(adoption.reconcile, record.plan.permissions, app)
            recorded = adoption.drift if adoption.drift and adoption.drift.reconcile_started_at else None
            if recorded is None:
                drift = compute_drift(record.plan.permissions, app, self._clock.now())
                if changes.none:
                    await self._done(keeper, drift, app, changes)
                    return True
                reasons = tuple(self._policy.requires_approval(changes.newly_granted))
                if reasons and not (record.approval and record.approval.granted):
                    await self._hold(keeper, drift, reasons)
                    return False
                now = self._clock.now()
                recorded = replace(drift, reconcile_started_at=now)
                await keeper.update(
                    lambda r: _with_drift(r, recorded).with_event(
                        STEP,
                        "started",
                        now,
                        f"{_drift_summary(drift)}; {adoption.reconcile}: {changes.summary()}",
                    )
                )
            await self._apply(keeper, app, changes)
            await self._done(keeper, recorded, app, changes)
        return True

    # ------------------------------------------------------------ reading

    async def _read(self, record: Registration, adoption: Adoption) -> AppPermissions:
        tenant = record.tenant_id
        directory = self._directory
        # Independent reads go together: the app and its principal, then what the principal holds.
        found, principal = await asyncio.gather(
            directory.application_by_app_id(tenant, adoption.app_id),
            self._principal(record, adoption),
        )
        if found is None:
            raise NotFound("application", adoption.app_id)
        roles: set[tuple[str, str]] = set()
        grants: dict[str, DelegatedGrant] = {}
        if principal is not None:
            assigned, granted = await asyncio.gather(
                directory.app_role_assignments(tenant, principal),
                directory.delegated_grants(tenant, principal),
            )
            roles = {(r.lower(), role.lower()) for r, role in assigned}
            grants = {k.lower(): g for k, g in granted.items()}
        resources = {p.resource_app_id.lower() for p in record.plan.permissions}
        resources |= {e.resource_app_id.lower() for e in found.required_resource_access}
        catalogs: dict[str, ResourceCatalog] = {}
        for resource in sorted(resources):
            await self._catalog(tenant, resource, catalogs)
        app_of = {c.service_principal_id.lower(): app_id for app_id, c in catalogs.items()}
        # A resource granted but neither declared nor in the profile is named through its principal.
        for resource_sp in sorted(({r for r, _ in roles} | set(grants)) - set(app_of)):
            try:
                app_of[resource_sp] = (await directory.resource_app_id_of(tenant, resource_sp)).lower()
            except NotFound:
                continue  # a resource deleted since: its grant is named by the principal's id
            await self._catalog(tenant, app_of[resource_sp], catalogs)
        return AppPermissions(
            required_resource_access=found.required_resource_access,
            service_principal_id=principal.lower() if principal else None,
            role_assignments=frozenset(roles),
            grants=grants,
            catalogs=catalogs,
            resource_app_ids=app_of,
        )

    async def _principal(self, record: Registration, adoption: Adoption) -> str | None:
        if record.service_principal_id:
            return record.service_principal_id
        return await self._directory.service_principal_of(record.tenant_id, adoption.app_id)

    async def _catalog(self, tenant: str, resource: str, catalogs: dict[str, ResourceCatalog]) -> None:
        try:
            catalog = await self._directory.resource_catalog(tenant, resource)
        except NotFound:
            return  # a resource the tenant has no service principal for: named by its ids
        catalogs[catalog.app_id.lower()] = catalog

    # ------------------------------------------------------------ writing

    async def _apply(self, keeper: RecordKeeper, app: AppPermissions, changes: Changes) -> None:
        record = keeper.current
        adoption = record.adoption
        if adoption is None:
            raise RecordInconsistent(record.id, "adoption", STEP)
        tenant = record.tenant_id
        directory = self._directory
        if changes.required_resource_access is not None:
            await directory.set_required_resource_access(
                tenant, adoption.app_object_id, changes.required_resource_access
            )
        principal = app.service_principal_id
        if principal is None and changes.needs_principal:
            principal = (await directory.ensure_service_principal(tenant, adoption.app_id)).lower()
            made = principal
            await keeper.update(lambda r: replace(r, service_principal_id=r.service_principal_id or made))
        if principal is None:
            return  # nothing is granted to an app without a service principal: nothing to remove
        pairs = [
            (self._resource_principal(app, resource), role) for resource, _, role in changes.roles_to_add
        ]
        if pairs:
            await directory.assign_app_roles(tenant, principal, pairs)
        for resource, scopes in changes.grants_to_set:
            resource_sp = self._resource_principal(app, resource)
            existing = app.grants.get(resource_sp)
            if existing is None and not scopes:
                continue
            await directory.grant_delegated(
                tenant, principal, resource_sp, scopes, existing.grant_id if existing else None
            )
        if changes.roles_to_remove:
            await directory.remove_app_roles(tenant, principal, changes.roles_to_remove)

    @staticmethod
    def _resource_principal(app: AppPermissions, resource_app_id: str) -> str:
        resource_sp = app.resource_principal(resource_app_id)
        if resource_sp is None:
            raise NotFound("resource service principal", resource_app_id)
        return resource_sp

    async def _done(self, keeper: RecordKeeper, drift: Drift, app: AppPermissions, changes: Changes) -> None:
        """The drift (as first read) with reconciled_at, and the profile's permissions the app now
        holds: all of them once add-missing or exact ran (a reading right after a restart may lag
        the writes), else those it was found holding."""
        now = self._clock.now()
        record = keeper.current
        applied = drift.reconcile_started_at is not None
        if applied:
            granted = record.plan.permissions
        else:
            held = app.granted
            granted = tuple(p for p in record.plan.permissions if key_of(p) in held)
        mode = record.adoption.reconcile if record.adoption else "report"
        app_id = record.adoption.app_id if record.adoption else record.app_id
        if not applied:
            outcome = "nothing changed"
        elif changes.none:
            outcome = "nothing left to change after a restart"
        else:
            outcome = changes.summary()
        detail = f"{_drift_summary(drift)}; {mode}: {outcome}"
        done = replace(drift, reconciled_at=now)
        await keeper.update(
            lambda r: replace(_with_drift(r, done), granted_permissions=granted).with_event(
                STEP, "done", now, detail
            )
        )
        log.info("adopted app %s: permissions %s", app_id, detail)

    async def _hold(self, keeper: RecordKeeper, drift: Drift, reasons: tuple[str, ...]) -> None:
        now = self._clock.now()
        await keeper.update(
            lambda r: replace(
                _with_drift(r, drift),
                status=RegistrationStatus.PENDING_APPROVAL,
                approval=Approval(reasons=reasons),
            ).with_event("approval", "waiting", now, "; ".join(reasons))
        )
        log.info("adoption waits for approval: %s", "; ".join(reasons))


def _with_drift(record: Registration, drift: Drift) -> Registration:
    if record.adoption is None:
        raise RecordInconsistent(record.id, "adoption", STEP)
    return replace(record, adoption=replace(record.adoption, drift=drift))


def _drift_summary(drift: Drift) -> str:
    return f"drift: {len(drift.missing)} missing, {len(drift.extra)} extra"
