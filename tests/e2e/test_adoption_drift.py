"""An adoption's permissions through the local host (issue 15 §2, "Permissions"): hand-made apps
with the seeds' mistakes (declared but never consented, ReadWrite beside Read, a permission the
profile does not name) adopted with reconcile `report`, `add-missing` and `exact`, each driven to
`active`; the drift shown on the registration, and Graph's state afterwards read with the
administrator's identity. A tier-0 addition waits in `pending_approval`, changes nothing, and is
applied once approved.

It needs the takeover (engineer T's `core/adoption/takeover.py`) to run the permissions step first
(bootstrap passes `Services.adoption_permissions()` to it): until then an adoption stops in
`adopting` and these tests wait for `active` in vain."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.e2e.provisioning_support import principal
from tests.e2e.test_adoption import add_owner
from tests.e2e.test_inventory import Api, admin_graph, close

pytestmark = pytest.mark.slow
WAIT_S = 180.0
GRAPH = "00000003-0000-0000-c000-000000000000"
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
# codetwo-backup-exchange: Exchange's full_access_as_app and four Microsoft Graph roles.
PROFILE = {
    ("Office 365 Exchange Online", "full_access_as_app"),
    ("Microsoft Graph", "Directory.Read.All"),
    ("Microsoft Graph", "Group.Read.All"),
    ("Microsoft Graph", "MailboxSettings.ReadWrite"),
    ("Microsoft Graph", "User.Read.All"),
}
NAMES = {GRAPH: "Microsoft Graph", EXCHANGE: "Office 365 Exchange Online"}


async def catalogues(endpoints: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """resource appId -> (its service principal id, app role id by value), read as the admin."""
    client = admin_graph(endpoints)
    found = {}
    for app_id in (GRAPH, EXCHANGE):
        sp = await client.service_principals_with_app_id(app_id).get()
        found[app_id] = (str(sp.id), {str(r.value): str(r.id) for r in sp.app_roles or []})
    await close(client)
    return found


async def seeded_app(endpoints: dict[str, Any], name: str) -> tuple[str, str, str]:
    """A connector app as seed 002 is followed by hand: the Graph roles declared, with
    Sites.ReadWrite.All beside them (not in the profile) and Exchange's full_access_as_app
    forgotten; admin consent given to User.Read.All and Sites.ReadWrite.All only.
    Returns (appId, object id, service principal id)."""
    from msgraph.generated.models.app_role_assignment import AppRoleAssignment
    from msgraph.generated.models.application import Application
    from msgraph.generated.models.required_resource_access import RequiredResourceAccess
    from msgraph.generated.models.resource_access import ResourceAccess
    from msgraph.generated.models.service_principal import ServicePrincipal

    catalogue = await catalogues(endpoints)
    graph_sp, roles = catalogue[GRAPH]
    declared = ["Directory.Read.All", "Group.Read.All", "MailboxSettings.ReadWrite", "User.Read.All"]
    client = admin_graph(endpoints)
    app = await client.applications.post(
        Application(
            display_name=name,
            required_resource_access=[
                RequiredResourceAccess(
                    resource_app_id=GRAPH,
                    resource_access=[
                        ResourceAccess(id=uuid.UUID(roles[v]), type="Role")
                        for v in [*declared, "Sites.ReadWrite.All"]
                    ],
                )
            ],
        )
    )
    sp = await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    for value in ("User.Read.All", "Sites.ReadWrite.All"):
        await client.service_principals.by_service_principal_id(graph_sp).app_role_assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(str(sp.id)),
                resource_id=uuid.UUID(graph_sp),
                app_role_id=uuid.UUID(roles[value]),
            )
        )
    await close(client)
    return str(app.app_id), str(app.id), str(sp.id)


async def graph_state(endpoints: dict[str, Any], object_id: str, sp_id: str) -> tuple[set[Any], set[Any]]:
    """(declared, granted) application permissions of the app, named (resource, value)."""
    catalogue = await catalogues(endpoints)
    value_of = {(a, i): v for a, (_, roles) in catalogue.items() for v, i in roles.items()}
    resource_of_sp = {sp: a for a, (sp, _) in catalogue.items()}
    client = admin_graph(endpoints)
    app = await client.applications.by_application_id(object_id).get()
    assignments = await client.service_principals.by_service_principal_id(sp_id).app_role_assignments.get()
    await close(client)
    declared = {
        (NAMES[str(entry.resource_app_id)], value_of[(str(entry.resource_app_id), str(access.id))])
        for entry in app.required_resource_access or []
        for access in entry.resource_access or []
        if access.type == "Role"
    }
    granted = set()
    for assignment in assignments.value or []:
        resource = resource_of_sp[str(assignment.resource_id)]
        granted.add((NAMES[resource], value_of[(resource, str(assignment.app_role_id))]))
    return declared, granted


def wait_status(api: Api, reg_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
        if view["status"] in statuses:
            return view
        assert view["status"] != "failed", view["lastError"]
        assert time.monotonic() < deadline, f"{reg_id} not {statuses} within {WAIT_S:.0f} s: {view['status']}"
        time.sleep(0.5)


def adopt(
    api: Api, stack: dict[str, Any], run: str, reconcile: str, **body: Any
) -> tuple[str, str, str, str]:
    """A seeded app adopted with `reconcile`, Registrar made its owner by the administrator:
    (registration id, appId, object id, service principal id)."""
    app_id, object_id, sp_id = asyncio.run(seeded_app(stack, f"CodeTwo by hand {reconcile} {run}"))
    request = {"requestId": f"DRIFT-{reconcile}-{run}", "profile": "codetwo-backup-exchange",
               "adopt": {"appId": app_id}, "options": {"reconcile": reconcile}, **body}  # fmt: skip
    created = api.call("POST", "/registrations", "/registrations", json=request)
    assert created.status_code == 202, created.text
    reg_id = created.json()["id"]
    view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
    assert view["status"] == "pending_ownership" and view["adoption"]["drift"] is None
    registrar = view["adoption"]["registrarPrincipalId"]
    asyncio.run(add_owner(stack, object_id, registrar))
    rechecked = api.call("POST", f"/registrations/{reg_id}/recheck", "/registrations/{id}/recheck")
    assert rechecked.status_code == 200, rechecked.text
    return reg_id, app_id, object_id, sp_id


def named(items: list[dict[str, Any]]) -> set[tuple[str, str, bool, bool]]:
    return {(p["resource"], p["value"], p["declared"], p["granted"]) for p in items}


def test_report_add_missing_and_exact_reconcile_as_asked(stack: dict[str, Any]) -> None:
    api = Api(stack)
    run = uuid.uuid4().hex[:8]
    before = None
    for reconcile in ("report", "add-missing", "exact"):
        reg_id, _, object_id, sp_id = adopt(api, stack, run, reconcile)
        if before is None:
            before = asyncio.run(graph_state(stack, object_id, sp_id))
        view = wait_status(api, reg_id, "active")
        drift = view["adoption"]["drift"]
        assert drift["reconciledOn"], drift
        assert named(drift["missing"]) == {
            ("Office 365 Exchange Online", "full_access_as_app", False, False),
            ("Microsoft Graph", "Directory.Read.All", True, False),
            ("Microsoft Graph", "Group.Read.All", True, False),
            ("Microsoft Graph", "MailboxSettings.ReadWrite", True, False),
        }
        assert named(drift["extra"]) == {("Microsoft Graph", "Sites.ReadWrite.All", True, True)}

        declared, granted = asyncio.run(graph_state(stack, object_id, sp_id))
        extra = {("Microsoft Graph", "Sites.ReadWrite.All")}
        if reconcile == "report":
            assert (declared, granted) == before  # nothing changed in Entra
        elif reconcile == "add-missing":
            assert declared == granted == PROFILE | extra  # added, the extra kept
        else:
            assert declared == granted == PROFILE  # the extra gone from both


def test_a_tier0_addition_waits_for_approval_and_is_applied_once_approved(stack: dict[str, Any]) -> None:
    api = Api(stack)
    run = uuid.uuid4().hex[:8]
    # codetwo-migration-target with createMailboxes names Directory.ReadWrite.All (tier-0).
    reg_id, _, object_id, sp_id = adopt(
        api,
        stack,
        run,
        "add-missing",
        profile="codetwo-migration-target",
        options={"reconcile": "add-missing", "createMailboxes": True},
    )
    before = asyncio.run(graph_state(stack, object_id, sp_id))
    held = wait_status(api, reg_id, "pending_approval")
    assert any("Directory.ReadWrite.All" in reason for reason in held["approval"]["reasons"]), held[
        "approval"
    ]
    assert ("Microsoft Graph", "Directory.ReadWrite.All", False, False) in named(
        held["adoption"]["drift"]["missing"]
    )
    assert asyncio.run(graph_state(stack, object_id, sp_id)) == before  # nothing changed while it waits

    approved = api.call(
        "POST",
        f"/registrations/{reg_id}/approve",
        "/registrations/{id}/approve",
        headers={"X-MS-CLIENT-PRINCIPAL": principal("Registrar.Approver")},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] in ("adopting", "active")
    wait_status(api, reg_id, "active")
    declared, granted = asyncio.run(graph_state(stack, object_id, sp_id))
    assert ("Microsoft Graph", "Directory.ReadWrite.All") in declared & granted
