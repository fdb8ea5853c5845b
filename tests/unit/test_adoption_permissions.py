"""Permission drift and reconcile of an adopted app (issue 15 §2, "Permissions"): the drift recorded
(declared only, granted only, both, the seeds' Read beside ReadWrite), each reconcile mode's end
state in the tenant, tier-0 additions held for approval then applied, and a run killed after every
outside call converging on the same end state."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from functions.core.adoption.permissions import PermissionStep
from functions.core.catalogue.policy import Policy
from functions.core.ports import RequiredResourceAccess
from functions.core.provisioning.lifecycle import Lifecycle
from functions.core.record.keeper import WORK_LEASE, RecordKeeper
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    SHAREPOINT_ONLINE_APP_ID,
    PermissionKind,
    RegistrationStatus,
    ResolvedPermission,
)
from functions.core.record.registration import (
    Adoption,
    Approval,
    DriftedPermission,
    ProvisioningPlan,
    Registration,
)
from functions.resources import REGISTRATION_REQUESTS_QUEUE
from functions.triggers import http_registrations as api
from functions.triggers.http_common import registration_view
from tests.openapi_check import load_openapi, response_errors
from tests.unit.fakes import Crash, Crashing, FakeApp, Faults
from tests.unit.provisioning_world import TENANT, World
from tests.unit.test_registration_triggers import FakeServices, as_json, http, principal

APP = PermissionKind.APPLICATION
DELEGATED = PermissionKind.DELEGATED


def permission(world: World, resource: str, kind: PermissionKind, name: str) -> ResolvedPermission:
    return world.resolved(resource, kind, name)


def profile(world: World, *extra: tuple[str, PermissionKind, str]) -> tuple[ResolvedPermission, ...]:
    """The connector's profile: three Graph roles, Exchange's full_access_as_app, delegated User.Read."""
    named = [
        (GRAPH_APP_ID, APP, "User.Read.All"),
        (GRAPH_APP_ID, APP, "Sites.Read.All"),
        (GRAPH_APP_ID, APP, "Group.Read.All"),
        (EXCHANGE_ONLINE_APP_ID, APP, "full_access_as_app"),
        (GRAPH_APP_ID, DELEGATED, "User.Read"),
        *extra,
    ]
    return tuple(permission(world, *n) for n in named)


def declare(world: World, *named: tuple[str, PermissionKind, str]) -> tuple[RequiredResourceAccess, ...]:
    by_resource: dict[str, tuple[list[str], list[str]]] = {}
    for resource, kind, name in named:
        roles, scopes = by_resource.setdefault(resource, ([], []))
        (roles if kind is APP else scopes).append(permission(world, resource, kind, name).id)
    return tuple(RequiredResourceAccess(r, tuple(a), tuple(s)) for r, (a, s) in by_resource.items())


class HandMade:
    """A connector app as the seeds make it by hand: declared in the portal, consented in part."""

    def __init__(self, world: World, *, with_principal: bool = True) -> None:
        self.world = world
        self.app: FakeApp = world.directory.add_hand_made_app(
            "CodeTwo by hand",
            declare(
                world,
                (GRAPH_APP_ID, APP, "User.Read.All"),  # declared and granted
                (GRAPH_APP_ID, APP, "Sites.Read.All"),  # declared only: never consented
                (GRAPH_APP_ID, APP, "Sites.ReadWrite.All"),  # the seeds' mistake: ReadWrite beside Read
            ),
            owners=["a-person"],
        )
        self.principal: str | None = None
        if with_principal:
            self.principal = str(uuid.uuid4())
            world.directory.service_principals[self.app.app_id] = self.principal
            self.grant_role(GRAPH_APP_ID, "User.Read.All")
            self.grant_role(GRAPH_APP_ID, "Group.Read.All")  # granted only: not declared
            self.grant_role(GRAPH_APP_ID, "Sites.ReadWrite.All")
            self.grant_scopes(
                GRAPH_APP_ID, "User.Read", "Mail.Read"
            )  # User.Read not declared; Mail.Read extra
            self.grant_scopes(
                SHAREPOINT_ONLINE_APP_ID, "AllSites.Read"
            )  # a resource the profile does not name

    def grant_role(self, resource: str, name: str) -> None:
        assert self.principal is not None
        sp = self.world.directory.service_principals[resource]
        self.world.directory.assignments.add(
            (self.principal, sp, permission(self.world, resource, APP, name).id)
        )

    def grant_scopes(self, resource: str, *names: str) -> None:
        assert self.principal is not None
        sp = self.world.directory.service_principals[resource]
        self.world.directory.grants[str(uuid.uuid4())] = (self.principal, sp, frozenset(names))

    # what the tenant holds now, named
    def declared(self) -> set[tuple[str, str]]:
        names = set()
        for entry in self.app.spec.required_resource_access:
            catalog = self.world.directory.catalogs[entry.resource_app_id.lower()]
            for kind, ids in ((APP, entry.app_role_ids), (DELEGATED, entry.scope_ids)):
                by_id = {p.id: p.value for p in catalog.permissions(kind).values()}
                names.update((kind.value, by_id[i]) for i in ids)
        return names

    def roles(self) -> set[str]:
        principal = self.world.directory.service_principals.get(self.app.app_id)
        by_id = {}
        for catalog in self.world.directory.catalogs.values():
            by_id.update({p.id: p.value for p in catalog.app_roles.values()})
        return {by_id[role] for p, _, role in self.world.directory.assignments if p == principal}

    def scopes(self) -> dict[str, frozenset[str]]:
        principal = self.world.directory.service_principals.get(self.app.app_id)
        names = {c.service_principal_id: c.display_name for c in self.world.directory.catalogs.values()}
        return {names[r]: s for c, r, s in self.world.directory.grants.values() if c == principal}

    def state(self) -> tuple[set[tuple[str, str]], set[str], dict[str, frozenset[str]]]:
        return self.declared(), self.roles(), self.scopes()


async def adoption_record(
    world: World,
    hand_made: HandMade,
    reconcile: str,
    permissions: tuple[ResolvedPermission, ...],
    *,
    approval: Approval | None = None,
) -> Registration:
    now = world.clock.now()
    record = Registration(
        id=f"reg-{uuid.uuid4().hex[:24]}",
        request_id="ADOPT-P1",
        fingerprint="f",
        profile_id="codetwo-backup-exchange",
        tenant_id=TENANT,
        status=RegistrationStatus.ADOPTING,
        created_at=now,
        updated_at=now,
        plan=ProvisioningPlan(display_name="CodeTwo by hand", permissions=permissions),
        approval=approval,
        adoption=Adoption(
            app_id=hand_made.app.app_id,
            app_object_id=hand_made.app.object_id,
            display_name="CodeTwo by hand",
            reconcile=reconcile,
            registrar_principal_id=world.directory.registrar_id,
            owned_at=now,
        ),
    )
    stored, _ = await world.store.create(record)
    return stored


async def run_step(
    world: World, registration_id: str, *, directory: object = None, store: object = None
) -> bool:
    keeper = await RecordKeeper.claim(
        store or world.store,  # type: ignore[arg-type]
        world.clock,
        registration_id,
        owner=f"takeover-{uuid.uuid4().hex[:6]}",
        lease_for=WORK_LEASE,
        wait=timedelta(seconds=1),
        sleep=world.record_sleep,
    )
    step = PermissionStep(directory or world.directory, world.clock, Policy())  # type: ignore[arg-type]
    going_on = await step.run(keeper)
    await keeper.release()
    return going_on


def named(items: tuple[DriftedPermission, ...]) -> set[tuple[str, str, str, bool, bool]]:
    return {(p.resource, p.value, p.kind.value, p.declared, p.granted) for p in items}


# ---------------------------------------------------------------- drift (report)


async def test_report_records_declared_only_granted_only_and_the_seeds_extra_and_changes_nothing() -> None:
    world = World()
    hand_made = HandMade(world)
    before = hand_made.state()
    record = await adoption_record(world, hand_made, "report", profile(world))

    assert await run_step(world, record.id) is True

    saved = await world.store.get(record.id)
    assert saved.adoption is not None and saved.adoption.drift is not None
    drift = saved.adoption.drift
    assert named(drift.missing) == {
        ("Microsoft Graph", "Sites.Read.All", "application", True, False),  # declared, never consented
        ("Microsoft Graph", "Group.Read.All", "application", False, True),  # consented, not declared
        ("Office 365 Exchange Online", "full_access_as_app", "application", False, False),
        ("Microsoft Graph", "User.Read", "delegated", False, True),
    }
    assert named(drift.extra) == {
        ("Microsoft Graph", "Sites.ReadWrite.All", "application", True, True),  # ReadWrite beside Read
        ("Microsoft Graph", "Mail.Read", "delegated", False, True),
        ("Office 365 SharePoint Online", "AllSites.Read", "delegated", False, True),
    }
    assert drift.read_at == world.clock.now() and drift.reconciled_at == world.clock.now()
    assert hand_made.state() == before  # report changes nothing in Entra
    assert {p.name for p in saved.granted_permissions} == {"User.Read.All", "Group.Read.All", "User.Read"}
    assert saved.status is RegistrationStatus.ADOPTING
    assert saved.history[-1].step == "permissions" and saved.history[-1].outcome == "done"
    assert saved.history[-1].detail == "drift: 4 missing, 3 extra; report: nothing changed"
    # Done once: a re-delivered takeover goes on without reading Graph again.
    calls = len(world.directory.calls)
    assert await run_step(world, record.id) is True
    assert len(world.directory.calls) == calls


async def test_an_app_matching_its_profile_has_no_drift() -> None:
    world = World()
    hand_made = HandMade(world)
    wanted = (
        permission(world, GRAPH_APP_ID, APP, "User.Read.All"),
        permission(world, GRAPH_APP_ID, APP, "Sites.Read.All"),
        permission(world, GRAPH_APP_ID, APP, "Sites.ReadWrite.All"),
    )
    hand_made.grant_role(GRAPH_APP_ID, "Sites.Read.All")
    world.directory.assignments = {a for a in world.directory.assignments if a[0] != hand_made.principal} | {
        (hand_made.principal, world.directory.service_principals[GRAPH_APP_ID], p.id) for p in wanted
    }
    world.directory.grants.clear()
    record = await adoption_record(world, hand_made, "exact", wanted)
    assert await run_step(world, record.id) is True
    saved = await world.store.get(record.id)
    assert saved.adoption is not None and saved.adoption.drift is not None and saved.adoption.drift.none
    assert set(saved.granted_permissions) == set(wanted)


async def test_the_drift_survives_the_store_and_is_shown_as_the_openapi_document_says() -> None:
    world = World()
    record = await adoption_record(world, HandMade(world), "report", profile(world))
    await run_step(world, record.id)
    saved = await world.store.get(record.id)
    assert Registration.from_document(saved.to_document()).adoption == saved.adoption
    view = registration_view(saved, f"https://registrar.example/api/registrations/{saved.id}")
    shown = view["adoption"]["drift"]
    assert shown["readOn"] == world.clock.now().isoformat().replace("+00:00", "Z")
    assert {
        "resourceAppId": GRAPH_APP_ID,
        "resource": "Microsoft Graph",
        "value": "Sites.Read.All",
        "kind": "application",
        "id": permission(world, GRAPH_APP_ID, APP, "Sites.Read.All").id,
        "declared": True,
        "granted": False,
    } in shown["missing"]
    assert len(shown["missing"]) == 4 and len(shown["extra"]) == 3
    body = json.loads(json.dumps(view))
    found = response_errors(
        load_openapi(), "/registrations/{id}", "GET", 200, body, content_type="application/json"
    )
    assert found == []
    broken = {**body, "adoption": {**body["adoption"], "drift": {**shown, "missing": [{"value": 1}]}}}
    assert response_errors(
        load_openapi(), "/registrations/{id}", "GET", 200, broken, content_type="application/json"
    )


# ---------------------------------------------------------------- reconcile


async def test_add_missing_declares_and_grants_the_profile_and_keeps_the_extras() -> None:
    world = World()
    hand_made = HandMade(world)
    record = await adoption_record(world, hand_made, "add-missing", profile(world))

    assert await run_step(world, record.id) is True

    declared, roles, scopes = hand_made.state()
    assert declared == {
        ("application", "User.Read.All"),
        ("application", "Sites.Read.All"),
        ("application", "Sites.ReadWrite.All"),  # an extra stays with add-missing
        ("application", "Group.Read.All"),
        ("application", "full_access_as_app"),
        ("delegated", "User.Read"),
    }
    assert roles == {
        "User.Read.All",
        "Sites.Read.All",
        "Group.Read.All",
        "Sites.ReadWrite.All",
        "full_access_as_app",
    }
    assert scopes == {
        "Microsoft Graph": frozenset({"User.Read", "Mail.Read"}),
        "Office 365 SharePoint Online": frozenset({"AllSites.Read"}),
    }
    saved = await world.store.get(record.id)
    assert saved.adoption is not None and saved.adoption.drift is not None
    assert len(saved.adoption.drift.missing) == 4  # the drift as read before the change
    assert saved.granted_permissions == saved.plan.permissions
    assert [e.outcome for e in saved.history if e.step == "permissions"] == ["started", "done"]


async def test_exact_also_removes_the_extras_from_the_declaration_and_the_grants() -> None:
    world = World()
    hand_made = HandMade(world)
    record = await adoption_record(world, hand_made, "exact", profile(world))

    assert await run_step(world, record.id) is True

    declared, roles, scopes = hand_made.state()
    assert declared == {
        ("application", "User.Read.All"),
        ("application", "Sites.Read.All"),
        ("application", "Group.Read.All"),
        ("application", "full_access_as_app"),
        ("delegated", "User.Read"),
    }
    assert roles == {"User.Read.All", "Sites.Read.All", "Group.Read.All", "full_access_as_app"}
    assert scopes == {"Microsoft Graph": frozenset({"User.Read"})}  # SharePoint's grant is gone


async def test_add_missing_on_an_app_without_a_service_principal_makes_one_and_records_it() -> None:
    world = World()
    hand_made = HandMade(world, with_principal=False)
    record = await adoption_record(world, hand_made, "add-missing", profile(world))
    assert await run_step(world, record.id) is True
    principal = world.directory.service_principals[hand_made.app.app_id]
    saved = await world.store.get(record.id)
    assert saved.service_principal_id == principal
    assert hand_made.roles() == {
        "User.Read.All",
        "Sites.Read.All",
        "Group.Read.All",
        "full_access_as_app",
        "Sites.ReadWrite.All",
    } - {"Sites.ReadWrite.All"}  # nothing was granted before: only the profile's roles
    assert hand_made.scopes() == {"Microsoft Graph": frozenset({"User.Read"})}


async def test_a_resource_the_tenant_does_not_have_is_named_by_its_ids_and_exact_removes_it() -> None:
    world = World()
    hand_made = HandMade(world)
    unknown_resource, unknown_role = str(uuid.uuid4()), str(uuid.uuid4())
    hand_made.app.spec = replace(
        hand_made.app.spec,
        required_resource_access=(
            *hand_made.app.spec.required_resource_access,
            RequiredResourceAccess(unknown_resource, (unknown_role,)),
        ),
    )
    record = await adoption_record(world, hand_made, "exact", profile(world))
    assert await run_step(world, record.id) is True
    saved = await world.store.get(record.id)
    assert saved.adoption is not None and saved.adoption.drift is not None
    assert (unknown_resource, unknown_role, "application", True, False) in named(saved.adoption.drift.extra)
    assert all(e.resource_app_id != unknown_resource for e in hand_made.app.spec.required_resource_access)


# ---------------------------------------------------------------- tier-0


async def test_a_tier0_addition_waits_for_approval_then_approving_applies_it() -> None:
    world = World()
    hand_made = HandMade(world)
    wanted = profile(world, (GRAPH_APP_ID, APP, "Directory.ReadWrite.All"))
    record = await adoption_record(world, hand_made, "add-missing", wanted)
    before = hand_made.state()

    assert await run_step(world, record.id) is False

    held = await world.store.get(record.id)
    assert held.status is RegistrationStatus.PENDING_APPROVAL
    assert held.approval is not None and not held.approval.granted
    assert held.approval.reasons == (
        "Directory.ReadWrite.All (application) on Microsoft Graph is a tier-0 permission",
    )
    assert held.adoption is not None and held.adoption.drift is not None
    assert held.adoption.drift.reconciled_at is None and held.adoption.drift.reconcile_started_at is None
    assert hand_made.state() == before  # nothing changed while it waits
    assert await run_step(world, record.id) is False  # a re-delivery still waits

    lifecycle = Lifecycle(
        store=world.store, directory=world.directory, vault=world.vault, clock=world.clock, owner="approver"
    )
    approved, enqueue = await lifecycle.approve(record.id, "alice@contoso.example")
    assert approved.status is RegistrationStatus.ADOPTING and enqueue  # adopting, never accepted
    assert (await lifecycle.approve(record.id, "alice@contoso.example"))[
        1
    ]  # the enqueue again, while adopting

    assert await run_step(world, record.id) is True
    assert "Directory.ReadWrite.All" in hand_made.roles()
    assert ("application", "Directory.ReadWrite.All") in hand_made.declared()
    done = await world.store.get(record.id)
    assert done.status is RegistrationStatus.ADOPTING and done.approval is not None and done.approval.granted


async def test_approving_a_held_adoption_over_http_resumes_adopting_and_enqueues_it(
    svc: FakeServices,
) -> None:
    hand_made = HandMade(svc.world)
    wanted = profile(svc.world, (GRAPH_APP_ID, APP, "Directory.ReadWrite.All"))
    record = await adoption_record(svc.world, hand_made, "exact", wanted)
    keeper = await RecordKeeper.claim(
        svc.store, svc.clock, record.id, owner="takeover", lease_for=WORK_LEASE, wait=timedelta(seconds=1)
    )
    assert await svc.adoption_permissions().run(keeper) is False  # the wiring the takeover is given
    await keeper.release()
    assert (await svc.store.get(record.id)).status is RegistrationStatus.PENDING_APPROVAL

    route = {"id": record.id}
    denied = await api.approve_registration(http("POST", "approve", route=route))
    assert denied.status_code == 403
    approved = await api.approve_registration(
        http("POST", "approve", route=route, headers=principal("Registrar.Approver"))
    )
    assert approved.status_code == 200, approved.get_body()
    assert as_json(approved)["status"] == "adopting"
    queue, message = svc.queue.sent[-1]
    assert queue == REGISTRATION_REQUESTS_QUEUE and record.id in message  # the takeover runs it again


async def test_removing_a_tier0_extra_or_reporting_one_needs_no_approval() -> None:
    world = World()
    hand_made = HandMade(world)
    hand_made.grant_role(GRAPH_APP_ID, "Directory.ReadWrite.All")  # granted, not in the profile
    record = await adoption_record(world, hand_made, "exact", profile(world))
    assert await run_step(world, record.id) is True
    assert "Directory.ReadWrite.All" not in hand_made.roles()

    world = World()
    hand_made = HandMade(world)
    wanted = profile(world, (GRAPH_APP_ID, APP, "Directory.ReadWrite.All"))
    record = await adoption_record(world, hand_made, "report", wanted)
    assert await run_step(world, record.id) is True  # report adds nothing: nothing to approve
    assert (await world.store.get(record.id)).status is RegistrationStatus.ADOPTING


async def test_a_tier0_permission_already_granted_is_no_addition() -> None:
    world = World()
    hand_made = HandMade(world)
    hand_made.grant_role(GRAPH_APP_ID, "Directory.ReadWrite.All")  # granted, only the declaration lacks
    wanted = profile(world, (GRAPH_APP_ID, APP, "Directory.ReadWrite.All"))
    pending = Approval(
        reasons=("Directory.ReadWrite.All (application) on Microsoft Graph is a tier-0 permission",)
    )
    record = await adoption_record(world, hand_made, "add-missing", wanted, approval=pending)
    assert await run_step(world, record.id) is True
    assert ("application", "Directory.ReadWrite.All") in hand_made.declared()


# ---------------------------------------------------------------- crash after every call


@pytest.mark.parametrize("mode", ["add-missing", "exact"])
async def test_a_run_killed_after_any_call_converges_on_the_same_end_state(mode: str) -> None:
    reference_world = World()
    reference = HandMade(reference_world, with_principal=True)
    record = await adoption_record(reference_world, reference, mode, profile(reference_world))
    assert await run_step(reference_world, record.id)
    expected_state = reference.state()
    expected = await reference_world.store.get(record.id)
    assert expected.adoption is not None and expected.adoption.drift is not None

    crash_after = 1
    while True:
        world = World()
        world.directory.catalogs = reference_world.directory.catalogs  # the same ids, to compare
        world.directory.service_principals = {
            k: v
            for k, v in reference_world.directory.service_principals.items()
            if k in reference_world.directory.catalogs
        }
        hand_made = HandMade(world)
        record = await adoption_record(world, hand_made, mode, profile(world))
        faults = Faults(crash_after=crash_after)
        try:
            await run_step(
                world,
                record.id,
                directory=Crashing(world.directory, faults),
                store=Crashing(world.store, faults),
            )
        except Crash:
            world.clock.advance(WORK_LEASE + timedelta(seconds=1))  # the dead worker's lease lapses
            assert await run_step(world, record.id) is True
            saved = await world.store.get(record.id)
            assert hand_made.state() == expected_state, f"crashed after call {crash_after}"
            assert saved.adoption is not None and saved.adoption.drift is not None
            assert named(saved.adoption.drift.missing) == named(expected.adoption.drift.missing)
            assert named(saved.adoption.drift.extra) == named(expected.adoption.drift.extra)
            assert saved.adoption.drift.reconciled_at is not None
            assert saved.granted_permissions == expected.granted_permissions
            crash_after += 1
            continue
        assert hand_made.state() == expected_state
        break
    assert crash_after > 10  # every read, the write-ahead, each write and the last save were crashed after


def test_services_wire_the_permission_step_to_the_graph_directory_and_the_policy() -> None:
    from functions.adapters.graph import GraphDirectory
    from functions.bootstrap import Services
    from functions.settings import Settings

    sample = Path(__file__).resolve().parents[2] / "local.settings.sample.json"
    values = json.loads(sample.read_text(encoding="utf-8"))["Values"]
    services = Services(Settings.from_env({**values, "REGISTRAR_TIER0_PERMISSIONS": "Sites.FullControl.All"}))
    step = services.adoption_permissions()
    assert isinstance(step, PermissionStep) and isinstance(step._directory, GraphDirectory)
    assert step._policy.tier0_permissions == ("Sites.FullControl.All",)
