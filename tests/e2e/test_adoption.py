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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.provisioning_support import enqueue
from tests.e2e.rotation_support import GRAPH_SCOPE, Host, Receiver, leaks, running_host, tag, wait_until
from tests.e2e.test_inventory import Api, admin_graph, close, scan_and_wait
from tests.e2e.test_rotation import verified

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
    # The inventory knows the app (a scan ran since it was made): not managed, until the adoption.
    scan_and_wait(api, tenant_id, api.inventory(tenant_id)[1])
    summary = f"/inventory/{tenant_id}/applications/{app_id}", "/inventory/{tenantId}/applications/{appId}"
    assert api.call("GET", *summary).json()["managed"] is False

    created = api.call("POST", "/registrations", "/registrations", json=body)
    assert created.status_code == 202, created.text
    reg_id = created.json()["id"]
    assert created.json()["status"] == "pending_ownership"
    inventoried = api.call("GET", *summary).json()  # at once, not from the next scan
    assert (inventoried["managed"], inventoried["registrationId"]) == (True, reg_id)
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
    # The takeover follows (its own test below): Registrar's certificate (the profile's default) beside
    # the pasted secret, which stays until the overlap (a day by default) ends.
    taken = wait_status(api, reg_id, "active")
    assert taken["credential"]["generation"] == 1 and taken["credential"]["type"] == "certificate"
    assert sorted(asyncio.run(credentials_of(stack, object_id))) == sorted(
        [pasted_key, taken["credential"]["keyId"]]
    )

    # The same through the queue, for a second app whose owner was added before the request.
    queued_app, queued_object, _ = asyncio.run(hand_made_app(stack, f"CodeTwo by hand, queued {run}"))
    asyncio.run(add_owner(stack, queued_object, registrar))
    message = {"requestId": f"CHG-{run}", "profile": "codetwo-backup-exchange", "adopt": {"appId": queued_app},
               "options": {"retireExisting": "never"}}  # fmt: skip
    enqueue(stack, json.dumps(message))
    queued = wait_status(api, registration_id(tenant_id, f"CHG-{run}"), "active")  # adopting, then taken over
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


# ---------------------------------------------------------------- the takeover, on a stack of its own

OVERLAP_S = 20
TAKEOVER_SETTINGS = {
    "REGISTRAR_ROTATION_SCHEDULE": "*/2 * * * * *",  # the sweep (and the ownership timer) every 2 s
    "REGISTRAR_ROTATION_OVERLAP": f"PT{OVERLAP_S}S",
    "REGISTRAR_WEBHOOK_RETRY_SCHEDULE": "PT1S,PT2S",
}
TAKEOVER_EVENTS = ["credential.rotated", "credential.retired", "registration.active"]


@pytest.fixture(scope="module")
def takeover_host(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Host]:
    with running_host(
        tmp_path_factory.mktemp("takeover-stack"),
        tenant_ca_dir,
        TAKEOVER_SETTINGS,
        ["--propagation-delay", "2"],
    ) as client:
        yield client


def token_with(endpoints: dict[str, Any], app_id: str, secret: str) -> str | None:
    """A connector's token request with `secret`: None when Entra accepts it, else the refusal."""
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(
        endpoints["tenantId"],
        app_id,
        secret,
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    try:
        credential.get_token(GRAPH_SCOPE)
        return None
    except Exception as exc:  # the refusal, whatever its kind, is the outcome under test
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        credential.close()


def test_the_takeover_keeps_the_pasted_secret_working_until_the_overlap_ends_then_retires_it(
    takeover_host: Host, receiver: Receiver
) -> None:
    host, endpoints = takeover_host, takeover_host.endpoints
    api = Api(endpoints)
    run = tag()
    app_id, object_id, _ = asyncio.run(hand_made_app(endpoints, f"CodeTwo by hand {run}"))
    pasted_key, pasted_value = asyncio.run(pasted_secret(endpoints, object_id))
    host.seen.add(pasted_value)
    path = f"/adopt-{run}"
    body = {
        "requestId": f"ADOPT-T-{run}",
        "profile": "codetwo-backup-exchange",
        "credential": {"type": "secret"},
        "adopt": {"appId": app_id},
        "options": {"retireExisting": "after-overlap"},
        "webhooks": [{"url": receiver.url(path), "events": TAKEOVER_EVENTS}],
    }
    created = api.call("POST", "/registrations", "/registrations", json=body)
    assert created.status_code == 202, created.text
    reg_id, signing = created.json()["id"], created.json()["webhooks"][0]["secret"]
    host.seen.add(signing)
    view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
    command = OWNER_COMMAND.search(view["manualSteps"][0])
    assert command is not None
    asyncio.run(add_owner(endpoints, object_id, command["owner"]))  # as the administrator would

    # The ownership timer (every 2 s) finds Registrar an owner and hands the registration to the worker.
    active = host.wait_status(reg_id, "active", timeout_s=120)
    credential = active["credential"]
    assert credential["generation"] == 1 and credential["type"] == "secret"
    assert active["appId"] == app_id and active["objectId"] == object_id
    mine = host.secrets.get_secret(reg_id)  # what the connector reads from Key Vault
    host.seen.add(mine.value)
    assert mine.properties.tags["keyId"] == credential["keyId"]
    assert {p["keyId"] for p in host.passwords(app_id)} == {pasted_key, credential["keyId"]}
    # Within the overlap both work: the connector holding the pasted secret notices nothing yet.
    assert token_with(endpoints, app_id, pasted_value) is None
    assert wait_until(
        "Registrar's secret to be accepted", lambda: token_with(endpoints, app_id, mine.value) is None, 30
    )

    # Then the RETIRE job (due OVERLAP_S after the takeover) removes the pasted secret from Graph.
    wait_until(
        "the pasted secret's removal",
        lambda: pasted_key not in {p["keyId"] for p in host.passwords(app_id)},
        timeout_s=OVERLAP_S + 90,
    )
    assert {p["keyId"] for p in host.passwords(app_id)} == {credential["keyId"]}
    assert token_with(endpoints, app_id, pasted_value) is not None  # the person's secret is gone
    assert token_with(endpoints, app_id, mine.value) is None  # Registrar's works

    events = wait_until(
        "credential.rotated (adopted) and credential.retired",
        lambda: got if len(got := verified(receiver, path, signing)) >= 3 else None,
        timeout_s=60,
    )
    by_type = {e["type"]: e["data"] for e in events}
    assert by_type["credential.rotated"]["reason"] == "adopted"
    assert by_type["credential.rotated"]["keyId"] == credential["keyId"]
    assert by_type["credential.rotated"]["previousKeyIds"] == [pasted_key]
    assert by_type["credential.retired"]["keyId"] == pasted_key
    assert by_type["registration.active"]["keyId"] == credential["keyId"]
    kinds = [e["type"] for e in events]
    assert kinds.index("credential.rotated") < kinds.index("credential.retired")
    history = host.registration(reg_id)["history"]
    assert [e["step"] for e in history if e["step"] in ("claim", "takeover")] == ["claim", "takeover"]

    # Leak scan: the pasted secret, Registrar's, the webhook's signing secret and the administrator's.
    values = (
        host.seen | host.all_secret_values() | {endpoints["adminClientSecret"], endpoints["clientSecret"]}
    )
    bodies = {f"webhook body {i}": hit.body.decode() for i, hit in enumerate(receiver.received())}
    assert leaks(values, host.leak_places(bodies)) == []
    # The API's answers: only the webhook's signing secret, once, in the answer to the POST (by design).
    api_texts = {f"api answer {i}": text for i, text in enumerate(api.texts[1:])}
    assert leaks(values, api_texts) == []
