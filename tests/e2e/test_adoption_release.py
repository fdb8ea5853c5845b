"""Decommissioning an adopted registration through the local host (issue 15 §2, "Releasing"):
`DELETE /api/registrations/{id}` releases the person's app (Registrar's own credentials and its
ownership go; the app, the secret pasted into the connector and its tokens stay), and
`?deleteApp=true` deletes the app into deleted items. Asserted on Graph's state, read with the
tenant's administrator identity, whatever state the adoption reached before (adopting, or active
once the credential takeover runs)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.provisioning_support import principal
from tests.e2e.test_adoption import OWNER_COMMAND, add_owner, credentials_of, hand_made_app, pasted_secret
from tests.e2e.test_inventory import Api, admin_graph, close, scan_and_wait

pytestmark = pytest.mark.slow
WAIT_S = 120.0
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ADMIN = {"X-MS-CLIENT-PRINCIPAL": principal("Registrar.Admin")}
SETTLED = ("adopting", "active")


def adopted(api: Api, stack: dict[str, Any], run: str) -> tuple[str, str, str, str, str, str]:
    """A hand-made app with a pasted secret, adopted, Registrar made an owner by the administrator:
    (registration id, appId, object id, Registrar's object id, pasted keyId, pasted value)."""
    app_id, object_id, _ = asyncio.run(hand_made_app(stack, f"CodeTwo by hand {run}"))
    asyncio.run(enterprise_app(stack, app_id))
    pasted_key, pasted_value = asyncio.run(pasted_secret(stack, object_id))
    body = {"requestId": f"RELEASE-{run}", "profile": "codetwo-backup-exchange", "adopt": {"appId": app_id}}
    created = api.call("POST", "/registrations", "/registrations", json=body)
    assert created.status_code == 202, created.text
    reg_id = created.json()["id"]
    view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
    command = OWNER_COMMAND.search(view["manualSteps"][0])
    assert command is not None, view["manualSteps"]
    registrar = command["owner"]
    assert registrar in asyncio.run(add_owner(stack, object_id, registrar))
    owned = api.call("POST", f"/registrations/{reg_id}/recheck", "/registrations/{id}/recheck").json()
    assert owned["status"] in SETTLED, owned
    return reg_id, app_id, object_id, registrar, pasted_key, pasted_value


def settled(api: Api, reg_id: str) -> dict[str, Any]:
    """The registration once the work its adoption set going is done: `active` when the credential
    takeover runs, else `adopting` unchanged for a few seconds (nothing acts on it)."""
    deadline = time.monotonic() + WAIT_S
    last, since = None, time.monotonic()
    while True:
        view = api.call("GET", f"/registrations/{reg_id}", "/registrations/{id}").json()
        assert view["status"] in SETTLED, view
        if view["status"] == "active":
            return view
        if view["updatedOn"] != last:
            last, since = view["updatedOn"], time.monotonic()
        elif time.monotonic() - since > 5:
            return view
        assert time.monotonic() < deadline, f"{reg_id} still moving after {WAIT_S:.0f} s: {view}"
        time.sleep(0.5)


def decommission(api: Api, reg_id: str, **params: str) -> dict[str, Any]:
    """DELETE, waiting out a lease another worker holds (503 with Retry-After)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = api.call(
            "DELETE", f"/registrations/{reg_id}", "/registrations/{id}", headers=ADMIN, params=params
        )
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            return response.json()
        assert time.monotonic() < deadline, response.text
        time.sleep(float(response.headers.get("Retry-After", "1")))


async def enterprise_app(stack: dict[str, Any], app_id: str) -> None:
    """The service principal the portal makes with an app registration: Entra issues the app's
    tokens in this tenant only through it."""
    from msgraph.generated.models.service_principal import ServicePrincipal

    client = admin_graph(stack)
    await client.service_principals.post(ServicePrincipal(app_id=app_id))
    await close(client)


async def owners(stack: dict[str, Any], object_id: str) -> list[str]:
    client = admin_graph(stack)
    found = await client.applications.by_application_id(object_id).owners.get()
    await close(client)
    return [str(o.id) for o in found.value or []]


def admin_get(stack: dict[str, Any], path: str) -> httpx.Response:
    async def token() -> str:
        from azure.identity.aio import ClientSecretCredential

        credential = ClientSecretCredential(
            stack["tenantId"], stack["adminClientId"], stack["adminClientSecret"],
            authority=stack["authority"], disable_instance_discovery=True,
        )  # fmt: skip
        async with credential:
            return (await credential.get_token(GRAPH_SCOPE)).token

    bearer = asyncio.run(token())
    with httpx.Client(verify=stack["caFile"], timeout=60) as client:
        return client.get(f"{stack['graphUrl']}{path}", headers={"Authorization": f"Bearer {bearer}"})


def token_with(stack: dict[str, Any], app_id: str, secret: str) -> str:
    """A token for the app with a secret, as the connector gets one (Entra checks the secret)."""

    async def main() -> str:
        from azure.identity.aio import ClientSecretCredential

        credential = ClientSecretCredential(
            stack["tenantId"], app_id, secret, authority=stack["authority"], disable_instance_discovery=True
        )
        async with credential:
            return (await credential.get_token(GRAPH_SCOPE)).token

    return asyncio.run(main())


def test_decommission_releases_an_adopted_app_and_delete_app_deletes_it(
    stack: dict[str, Any], stack_state_dir: Path
) -> None:
    api = Api(stack)
    run = uuid.uuid4().hex[:8]
    reg_id, app_id, object_id, registrar, pasted_key, pasted_value = adopted(api, stack, run)
    before = settled(api, reg_id)
    on_app = asyncio.run(credentials_of(stack, object_id))
    registrars = before["credential"]["keyId"] if before["credential"] else None
    if registrars is not None:  # the takeover ran: Registrar's credential is on the app until the release
        assert registrars in on_app and pasted_key in on_app
    else:  # adopting: Registrar has issued nothing yet
        assert before["status"] == "adopting" and on_app == [pasted_key]
    refused = api.call(
        "DELETE",
        f"/registrations/{reg_id}",
        "/registrations/{id}",
        headers=ADMIN,
        params={"deleteApp": "yes"},
    )
    assert refused.status_code == 400 and refused.json()["problems"][0]["field"] == "deleteApp"
    # The inventory holds the app, managed by the adoption (a scan ran since it was adopted) ...
    tenant_id = stack["tenantId"]
    scan_and_wait(api, tenant_id, api.inventory(tenant_id)[1])
    summary = f"/inventory/{tenant_id}/applications/{app_id}", "/inventory/{tenantId}/applications/{appId}"
    assert api.call("GET", *summary).json()["registrationId"] == reg_id

    released = decommission(api, reg_id)

    # ... and shows it unmanaged as soon as the release answers, not from the next scan.
    shown = api.call("GET", *summary).json()
    assert (shown["managed"], shown["registrationId"]) == (False, None), shown

    assert released["status"] == "decommissioned"
    assert "released" in released["history"][-1]["detail"], released["history"][-1]
    assert registrar not in asyncio.run(owners(stack, object_id))
    left = asyncio.run(credentials_of(stack, object_id))
    assert pasted_key in left and (registrars is None or registrars not in left)
    assert admin_get(stack, f"/applications/{object_id}").status_code == 200  # the app stays
    assert token_with(stack, app_id, pasted_value)  # and the connector's secret still works
    again = decommission(api, reg_id)  # a no-op
    assert again["history"] == released["history"]

    # deleteApp=true: the app goes to deleted items (restorable for 30 days), its credentials with it.
    reg_id, app_id, object_id, registrar, pasted_key, pasted_value = adopted(api, stack, f"{run}-d")
    settled(api, reg_id)
    deleted = decommission(api, reg_id, deleteApp="true")

    assert deleted["status"] == "decommissioned" and "deleteApp=true" in deleted["history"][-1]["detail"]
    assert admin_get(stack, f"/applications/{object_id}").status_code == 404
    in_bin = admin_get(stack, f"/directory/deletedItems/{object_id}")
    assert in_bin.status_code == 200 and in_bin.json()["appId"] == app_id, in_bin.text
    assert admin_get(stack, f"/servicePrincipals(appId='{app_id}')").status_code == 404  # went with it

    # Leak scan: the pasted secret shows in no answer and no log line.
    host_log = stack_state_dir / "host.log"
    logged = host_log.read_text(encoding="utf-8", errors="replace") if host_log.exists() else ""
    for secret in (stack["adminClientSecret"], pasted_value):
        assert all(secret not in text for text in api.texts)
        assert secret not in logged
