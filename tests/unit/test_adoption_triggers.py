"""Adoption through the HTTP and queue triggers over in-memory fakes: 202 into pending_ownership,
idempotent, 409 for an app already under management, problem+json per the OpenAPI document, and
nothing changed in Entra (the decommission of a waiting adoption leaves the app as it was)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from azure.functions.timer import TimerRequest

from functions.core.inventory.scanner import profile_sets
from functions.core.ports import RequiredResourceAccess
from functions.core.record.models import PermissionKind, RegistrationStatus
from functions.profiles import load_catalogue
from functions.triggers import http_registrations as api
from functions.triggers.adoption import ownership_timer
from functions.triggers.adoption import recheck_registration as recheck
from tests.openapi_check import load_openapi, response_errors
from tests.unit.fakes import FakeApp, FakeDirectory
from tests.unit.provisioning_world import TENANT
from tests.unit.test_registration_triggers import (
    FakeServices,
    as_json,
    deliver,
    http,
    principal,
    request_body,
)

READS = {"application_by_app_id", "resource_catalog", "registrar_principal_id", "application_owner_ids"}


async def exact_app(directory: FakeDirectory, profile: str = "codetwo-backup-sharepoint") -> FakeApp:
    sets = await profile_sets(directory, load_catalogue(), TENANT)
    by_resource: dict[str, tuple[list[str], list[str]]] = {}
    for resource, kind, permission_id in sets.profiles[profile]:
        roles, scopes = by_resource.setdefault(resource, ([], []))
        (roles if kind == PermissionKind.APPLICATION else scopes).append(permission_id)
    required = [RequiredResourceAccess(r, tuple(a), tuple(s)) for r, (a, s) in sorted(by_resource.items())]
    return directory.add_hand_made_app(f"hand-made {profile}", required)


def conforms(response: Any, path: str, method: str) -> None:
    body = as_json(response)
    found = response_errors(
        load_openapi(), path, method, response.status_code, body, content_type=response.mimetype
    )
    assert found == [], (path, method, response.status_code, found)


async def test_an_adoption_by_http_waits_for_ownership_and_changes_nothing(svc: FakeServices) -> None:
    app = await exact_app(svc.directory)
    before = {oid: (a.spec, dict(a.passwords), list(a.owners)) for oid, a in svc.directory.apps.items()}
    body = {"requestId": "ADOPT-H1", "adopt": {"appId": app.app_id},
            "webhooks": [{"url": "https://connector.example.com/hooks/registrar"}]}  # fmt: skip
    created = await api.create_registration(http("POST", "registrations", body))
    assert created.status_code == 202, created.get_body()
    conforms(created, "/registrations", "POST")
    reply = as_json(created)
    assert reply["status"] == "pending_ownership" and reply["webhooks"][0]["secret"].startswith("whsec_")
    assert svc.queue.sent == []  # nothing for the provisioning worker: it would make a new app

    view = await api.get_registration(http("GET", "r", route={"id": reply["id"]}))
    conforms(view, "/registrations/{id}", "GET")
    shown = as_json(view)
    assert shown["profile"] == "codetwo-backup-sharepoint" and (shown["appId"], shown["objectId"]) == (
        app.app_id,
        app.object_id,
    )
    assert shown["adoption"] == {"appId": app.app_id, "objectId": app.object_id, "displayName": app.spec.display_name,
                                 "retireExisting": "after-overlap", "reconcile": "report", "profileInferred": True,
                                 "registrarPrincipalId": svc.directory.registrar_id, "ownedOn": None,
                                 "ownerAddedByRegistrar": False, "credentialsFound": [], "drift": None}  # fmt: skip

    again = await api.create_registration(http("POST", "registrations", body))
    assert again.status_code == 200 and as_json(again)["id"] == reply["id"]
    other_app = await exact_app(svc.directory)
    changed = await api.create_registration(
        http("POST", "registrations", {**body, "adopt": {"appId": other_app.app_id}})
    )
    assert changed.status_code == 409 and changed.mimetype == "application/problem+json"
    twice = await api.create_registration(http("POST", "registrations", {**body, "requestId": "ADOPT-H2"}))
    assert twice.status_code == 409
    conforms(twice, "/registrations", "POST")
    assert reply["id"] in as_json(twice)["problems"][0]["reason"]

    assert [c for c in svc.directory.calls if c not in READS] == []
    after = {oid: (a.spec, dict(a.passwords), list(a.owners)) for oid, a in svc.directory.apps.items()}
    assert {k: after[k] for k in before} == before

    registrar = svc.directory.registrar_id
    assert shown["manualSteps"][0].startswith(
        f"Add Registrar as an owner of application hand-made codetwo-backup-sharepoint ({app.app_id}): "
        f"az ad app owner add --id {app.app_id} --owner-object-id {registrar} "
    )
    waiting = await recheck(http("POST", "r", route={"id": reply["id"]}))
    assert waiting.status_code == 200 and as_json(waiting)["status"] == "pending_ownership"
    conforms(waiting, "/registrations/{id}/recheck", "POST")

    # Released while it waits: its webhook secret goes, the app stays exactly as it was.
    admin = principal("Registrar.Admin")
    gone = await api.decommission_registration(http("DELETE", "d", route={"id": reply["id"]}, headers=admin))
    assert gone.status_code == 200 and as_json(gone)["status"] == "decommissioned"
    assert "adopted app" in as_json(gone)["history"][-1]["detail"]
    assert svc.directory.apps[app.object_id].spec == before[app.object_id][0]
    assert app.object_id not in svc.directory.deleted_apps
    # ... and, released, the app may be adopted again.
    readopted = await api.create_registration(
        http("POST", "registrations", {**body, "requestId": "ADOPT-H3"})
    )
    assert readopted.status_code == 202


async def test_bad_adoptions_are_problem_json_listing_every_problem(svc: FakeServices) -> None:
    cases = [
        ({"requestId": "A1", "adopt": {"appId": "nope"}, "options": {"reconcile": "all"}}, 400),
        ({"requestId": "A2", "adopt": {"appId": "11111111-2222-4333-8444-555555555555"}}, 422),
    ]
    for body, status in cases:
        response = await api.create_registration(http("POST", "registrations", body))
        assert response.status_code == status, response.get_body()
        conforms(response, "/registrations", "POST")
    assert svc.store.documents == {} and svc.vault.calls == []


async def test_an_adoption_from_the_queue_is_accepted_once_and_a_bad_one_is_recorded(
    svc: FakeServices,
) -> None:
    app = await exact_app(svc.directory)
    message = json.dumps(
        {"requestId": "CHG-A1", "adopt": {"appId": app.app_id}, "options": {"retireExisting": "never"}}
    )
    await deliver(message)
    await deliver(message)  # redelivered: the same registration
    ((doc, _),) = svc.store.documents.values()
    assert doc["status"] == RegistrationStatus.PENDING_OWNERSHIP.value
    assert doc["adoption"]["appId"] == app.app_id and doc["adoption"]["retireExisting"] == "never"
    assert svc.queue.sent == []

    await deliver(json.dumps({"requestId": "CHG-A2", "adopt": {"appId": app.app_id.upper()}}))
    refused = next(d for d, _ in svc.store.documents.values() if d["requestId"] == "CHG-A2")
    assert refused["status"] == "failed" and refused["adoption"] is None
    assert [p["field"] for p in refused["lastError"]["problems"]] == ["adopt.appId"]
    assert [c for c in svc.directory.calls if c not in READS] == []


async def test_an_admin_adds_the_owner_and_the_recheck_or_the_timer_moves_it_on(svc: FakeServices) -> None:
    first, second = await exact_app(svc.directory), await exact_app(svc.directory)
    ids = []
    for n, app in enumerate((first, second)):
        created = await api.create_registration(
            http("POST", "registrations", {"requestId": f"ADOPT-R{n}", "adopt": {"appId": app.app_id}})
        )
        ids.append(as_json(created)["id"])
        assert as_json(created)["status"] == "pending_ownership"
    first.owners.append(svc.directory.registrar_id)  # as `az ad app owner add` would
    rechecked = await recheck(http("POST", "r", route={"id": ids[0]}))
    assert rechecked.status_code == 200 and as_json(rechecked)["status"] == "adopting"
    conforms(rechecked, "/registrations/{id}/recheck", "POST")
    assert not any("az ad app owner add" in step for step in as_json(rechecked)["manualSteps"])

    second.owners.append(svc.directory.registrar_id)
    await ownership_timer(TimerRequest())
    assert (await svc.store.get(ids[1])).status is RegistrationStatus.ADOPTING

    missing = await recheck(http("POST", "r", route={"id": "reg-nope"}))
    assert missing.status_code == 404
    conforms(missing, "/registrations/{id}/recheck", "POST")
    # An id Registrar never issues (the API fuzz test sent a control character) is a 404 before
    # any I/O: no in-flight entry is written for it (Table storage refuses such a key with 400).
    puts = svc.in_flight.calls.count("put")
    malformed = await recheck(http("POST", "r", route={"id": "\u0084"}))
    assert malformed.status_code == 404
    conforms(malformed, "/registrations/{id}/recheck", "POST")
    assert svc.in_flight.calls.count("put") == puts
    made = as_json(await api.create_registration(http("POST", "registrations", request_body("INC-N1"))))
    not_adopted = await recheck(http("POST", "r", route={"id": made["id"]}))
    assert not_adopted.status_code == 409
    conforms(not_adopted, "/registrations/{id}/recheck", "POST")


async def test_an_adoption_with_application_readwrite_all_is_owned_at_once(svc: FakeServices) -> None:
    svc.settings = replace(svc.settings, adoption_takes_ownership=True)
    app = await exact_app(svc.directory)
    created = await api.create_registration(
        http("POST", "registrations", {"requestId": "ADOPT-S1", "adopt": {"appId": app.app_id}})
    )
    assert created.status_code == 202 and as_json(created)["status"] == "adopting"
    assert app.owners == [svc.directory.registrar_id]
    history = as_json(await api.get_registration(http("GET", "r", route={"id": as_json(created)["id"]})))[
        "history"
    ]
    assert history[-1]["detail"].startswith("Registrar added itself as an owner (Application.ReadWrite.All)")


async def test_an_adopted_app_shows_managed_in_the_inventory_at_once_not_from_the_next_scan(
    svc: FakeServices,
) -> None:
    from functions.core.inventory.models import AppSummary
    from functions.triggers.inventory import inventory_application

    app = await exact_app(svc.directory)
    app.owners.append(svc.directory.registrar_id)  # an administrator made Registrar an owner beforehand
    await svc.inventory_store.put(  # as the last scan stored it
        [AppSummary(TENANT, app.object_id, app.app_id, "application", app.spec.display_name)], "scan-1"
    )

    def shown() -> Any:
        return inventory_application(http("GET", "i", route={"tenantId": TENANT, "appId": app.app_id}))

    assert as_json(await shown())["managed"] is False
    created = await api.create_registration(
        http("POST", "registrations", {"requestId": "ADOPT-I1", "adopt": {"appId": app.app_id}})
    )
    assert as_json(created)["status"] == "adopting"
    answer = await shown()
    conforms(answer, "/inventory/{tenantId}/applications/{appId}", "GET")
    assert (as_json(answer)["managed"], as_json(answer)["registrationId"]) == (True, as_json(created)["id"])


async def test_a_released_or_failed_adoption_shows_unmanaged_in_the_inventory_at_once(
    svc: FakeServices,
) -> None:
    """Decommissioned through the API, or failed in a worker run (its settle): the app is shown
    unmanaged right away, not from the next scan; the scan would say the same."""
    from functions.core.inventory.models import AppSummary
    from functions.triggers.inventory import inventory_application

    admin = principal("Registrar.Admin")
    registrations = []
    for request_id in ("ADOPT-U1", "ADOPT-U2"):
        app = await exact_app(svc.directory)
        app.owners.append(svc.directory.registrar_id)
        await svc.inventory_store.put(
            [AppSummary(TENANT, app.object_id, app.app_id, "application", app.spec.display_name)], "scan-1"
        )
        created = await api.create_registration(
            http("POST", "registrations", {"requestId": request_id, "adopt": {"appId": app.app_id}})
        )
        registrations.append((as_json(created)["id"], app))

    async def shown(app: FakeApp) -> tuple[bool, str | None]:
        answer = as_json(
            await inventory_application(http("GET", "i", route={"tenantId": TENANT, "appId": app.app_id}))
        )
        return answer["managed"], answer["registrationId"]

    (released, released_app), (failed, failed_app) = registrations
    assert await shown(released_app) == (True, released)
    assert await shown(failed_app) == (True, failed)

    answer = await api.decommission_registration(http("DELETE", "d", route={"id": released}, headers=admin))
    assert as_json(answer)["status"] == "decommissioned"
    assert await shown(released_app) == (False, None)

    record = await svc.store.get(failed)  # as a takeover's run ends it, then settles it
    await svc.store.replace(replace(record, status=RegistrationStatus.FAILED))
    await svc.settle(await svc.store.get(failed))
    assert await shown(failed_app) == (False, None)
