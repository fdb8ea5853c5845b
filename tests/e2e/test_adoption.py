"""Adoption through the local host (issue 15 §2): a hand-made app asked for by HTTP and by queue,
waiting in pending_ownership with the exact command until an administrator adds Registrar as an
owner (with the tenant's admin identity, as a person would), then adopting; refusals as
problem+json per the OpenAPI document; nothing of Registrar's on the app; no secret in anything
captured."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.provisioning_support import enqueue
from tests.e2e.test_inventory import Api, admin_graph, close

pytestmark = pytest.mark.slow
WAIT_S = 120.0
OWNER_COMMAND = re.compile(
    r"az ad app owner add --id (?P<app>[0-9a-f-]{36}) --owner-object-id (?P<owner>[0-9a-f-]{36})"
)


def registration_id(tenant_id: str, request_id: str) -> str:
    """As RegistrationRequest.registration_id: what a queued request's registration is called."""
    return "reg-" + hashlib.sha256(f"{tenant_id.lower()}\n{request_id}".encode()).hexdigest()[:24]


async def hand_made_app(endpoints: dict[str, Any], name: str) -> tuple[str, str, list[str]]:
    """An app made in the portal by an administrator: (appId, object id, owner ids)."""
    from msgraph.generated.models.application import Application

    client = admin_graph(endpoints)
    app = await client.applications.post(Application(display_name=name))
    owners = await client.applications.by_application_id(app.id).owners.get()
    await close(client)
    return str(app.app_id), str(app.id), [str(o.id) for o in owners.value or []]


async def pasted_secret(endpoints: dict[str, Any], object_id: str) -> tuple[str, str]:
    """The secret a person made in the portal and pasted into the connector: (keyId, value)."""
    from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
        AddPasswordPostRequestBody,
    )
    from msgraph.generated.models.password_credential import PasswordCredential

    client = admin_graph(endpoints)
    added = await client.applications.by_application_id(object_id).add_password.post(
        AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name="pasted into the connector")
        )
    )
    await close(client)
    return str(added.key_id), str(added.secret_text)


async def add_owner(endpoints: dict[str, Any], object_id: str, owner_id: str) -> list[str]:
    from msgraph.generated.models.reference_create import ReferenceCreate

    client = admin_graph(endpoints)
    reference = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{owner_id}")
    await client.applications.by_application_id(object_id).owners.ref.post(reference)
    owners = await client.applications.by_application_id(object_id).owners.get()
    await close(client)
    return [str(o.id) for o in owners.value or []]


async def credentials_of(endpoints: dict[str, Any], object_id: str) -> list[str]:
    client = admin_graph(endpoints)
    app = await client.applications.by_application_id(object_id).get()
    await close(client)
    return [str(c.key_id) for c in [*(app.password_credentials or []), *(app.key_credentials or [])]]


def wait_status(api: Api, reg_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        response = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}")
        if response.status_code == 200 and response.json()["status"] == status:
            return response.json()
        assert time.monotonic() < deadline, f"{reg_id} not {status} within {WAIT_S:.0f} s: {response.text}"
        time.sleep(0.5)


def test_adoption_by_http_and_queue_waits_for_an_owner_then_adopts(
    stack: dict[str, Any], stack_state_dir: Path
) -> None:
    api = Api(stack)
    tenant_id = stack["tenantId"]
    run = uuid.uuid4().hex[:8]
    app_id, object_id, owners_before = asyncio.run(hand_made_app(stack, f"CodeTwo by hand {run}"))
    pasted_key, pasted_value = asyncio.run(pasted_secret(stack, object_id))
    body = {"requestId": f"ADOPT-{run}", "profile": "codetwo-backup-exchange", "adopt": {"appId": app_id}}

    created = api.call("POST", "/registrations", "/registrations", json=body)
    assert created.status_code == 202, created.text
    reg_id = created.json()["id"]
    assert created.json()["status"] == "pending_ownership"
    view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
    assert view["adoption"]["appId"] == app_id and view["objectId"] == object_id
    command = OWNER_COMMAND.search(view["manualSteps"][0])
    assert command is not None and command["app"] == app_id, view["manualSteps"]
    registrar = command["owner"]
    assert registrar not in owners_before

    again = api.call("POST", "/registrations", "/registrations", json=body)
    assert again.status_code == 200 and again.json()["id"] == reg_id
    still = api.call("POST", f"/registrations/{reg_id}/recheck", "/registrations/{id}/recheck")
    assert still.status_code == 200 and still.json()["status"] == "pending_ownership"
    twice = api.call("POST", "/registrations", "/registrations", json={**body, "requestId": f"ADOPT-{run}-2"})
    assert twice.status_code == 409 and reg_id in twice.text

    # An administrator runs the step's command (the portal's Owners > Add owners does the same).
    assert registrar in asyncio.run(add_owner(stack, object_id, registrar))
    owned = api.call("POST", f"/registrations/{reg_id}/recheck", "/registrations/{id}/recheck").json()
    assert owned["status"] == "adopting" and owned["adoption"]["ownedOn"]
    assert owned["adoption"]["registrarPrincipalId"] == registrar
    assert not any("az ad app owner add" in step for step in owned["manualSteps"])
    assert [(c["keyId"], c["type"]) for c in owned["adoption"]["credentialsFound"]] == [
        (pasted_key, "secret")
    ]
    # The takeover is not built: nothing issued, nothing removed.
    assert asyncio.run(credentials_of(stack, object_id)) == [pasted_key]

    # The same through the queue, for a second app whose owner was added before the request.
    queued_app, queued_object, _ = asyncio.run(hand_made_app(stack, f"CodeTwo by hand, queued {run}"))
    asyncio.run(add_owner(stack, queued_object, registrar))
    message = {"requestId": f"CHG-{run}", "profile": "codetwo-backup-exchange", "adopt": {"appId": queued_app},
               "options": {"retireExisting": "never"}}  # fmt: skip
    enqueue(stack, json.dumps(message))
    queued = wait_status(api, registration_id(tenant_id, f"CHG-{run}"), "adopting")
    assert queued["adoption"]["retireExisting"] == "never"

    # Refusals: every problem at once, as the document says.
    unknown = api.call("POST", "/registrations", "/registrations",
                       json={"requestId": f"BAD-{run}", "adopt": {"appId": str(uuid.uuid4())}})  # fmt: skip
    assert unknown.status_code == 422 and {p["field"] for p in unknown.json()["problems"]} == {
        "adopt.appId",
        "profile",
    }
    malformed = api.call("POST", "/registrations", "/registrations",
                         json={"requestId": f"BAD-{run}", "adopt": {"appId": "x"}, "options": {"reconcile": "all"}})  # fmt: skip
    assert malformed.status_code == 400
    assert {p["field"] for p in malformed.json()["problems"]} >= {"adopt.appId", "options.reconcile"}

    # Leak scan: the administrator's secret (used here as a person would) shows nowhere Registrar writes.
    host_log = stack_state_dir / "host.log"
    logged = host_log.read_text(encoding="utf-8", errors="replace") if host_log.exists() else ""
    for secret in (stack["adminClientSecret"], pasted_value):
        assert all(secret not in text for text in api.texts)
        assert secret not in logged
