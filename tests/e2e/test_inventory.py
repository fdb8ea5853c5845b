"""The inventory of a brownfield tenant, through the local host: what GET /api/inventory says is
exactly what Graph holds, before and after changes (issue 15, section 1)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.provisioning_support import principal
from tests.openapi_check import load_openapi, response_errors

pytestmark = pytest.mark.slow
WAIT_S = 180.0
BROWNFIELD = 40


def sim(endpoints: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{endpoints['adminUrl']}/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=endpoints["caFile"])
    with urllib.request.urlopen(request, context=context, timeout=60) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def admin_graph(endpoints: dict[str, Any]) -> Any:
    from azure.identity.aio import ClientSecretCredential
    from msgraph import GraphServiceClient

    credential = ClientSecretCredential(
        endpoints["tenantId"],
        endpoints["adminClientId"],
        endpoints["adminClientSecret"],
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    client = GraphServiceClient(credential, scopes=["https://graph.microsoft.com/.default"])
    client.request_adapter.base_url = endpoints["graphUrl"]
    client.test_credential = credential  # closed by close()
    return client


async def close(client: Any) -> None:
    await client.request_adapter._http_client.aclose()
    await client.test_credential.close()


async def graph_truth(endpoints: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(appId, keyId) -> the credential's facts, for every application and every service
    principal holding credentials, read from Graph with the administrator's identity."""
    client = admin_graph(endpoints)
    truth: dict[tuple[str, str], dict[str, Any]] = {}
    for builder, on in (
        (client.applications, "application"),
        (client.service_principals, "servicePrincipal"),
    ):
        page = await builder.get()
        while True:
            for item in page.value or []:
                for c in item.password_credentials or []:
                    truth[(item.app_id, str(c.key_id))] = {"on": on, "type": "secret", "end": c.end_date_time}
                for c in item.key_credentials or []:
                    truth[(item.app_id, str(c.key_id))] = {
                        "on": on,
                        "type": "certificate",
                        "end": c.end_date_time,
                    }
            if not page.odata_next_link:
                break
            page = await builder.with_url(page.odata_next_link).get()
    await close(client)
    return truth


class Api:
    def __init__(self, endpoints: dict[str, Any]) -> None:
        self.client = httpx.Client(base_url=endpoints["hostUrl"], timeout=60)
        self.document = load_openapi()
        self.texts: list[str] = []

    def call(self, method: str, path: str, template: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, f"/api{path}", **kwargs)
        self.texts.append(response.text)
        body = response.json() if response.content else None
        problems = response_errors(
            self.document, template, method, response.status_code, body,
            content_type=response.headers.get("content-type", ""),
        )  # fmt: skip
        assert not problems, problems
        return response

    def inventory(self, tenant_id: str, **params: str) -> tuple[list[dict[str, Any]], str | None]:
        items: list[dict[str, Any]] = []
        query = {"tenantId": tenant_id, "limit": "1000", **params}
        scanned = None
        while True:
            page = self.call("GET", "/inventory", "/inventory", params=query).json()
            items += page["items"]
            scanned = page["scannedAt"]
            if not page["continuation"]:
                return items, scanned
            query = {**query, "continuation": page["continuation"]}


def scan_and_wait(api: Api, tenant_id: str, after: str | None) -> list[dict[str, Any]]:
    accepted = api.call(
        "POST",
        "/inventory/scan",
        "/inventory/scan",
        headers={"X-MS-CLIENT-PRINCIPAL": principal("Registrar.Admin")},
    )
    assert accepted.status_code == 202 and tenant_id.lower() in accepted.json()["tenants"]
    deadline = time.monotonic() + WAIT_S
    while True:
        items, scanned = api.inventory(tenant_id)
        if scanned is not None and (after is None or scanned > after):
            return items
        assert time.monotonic() < deadline, f"no inventory scan finished within {WAIT_S:.0f} s"
        time.sleep(1.0)


def as_truth(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (i["appId"], i["keyId"]): {
            "on": i["on"],
            "type": i["type"],
            "end": datetime.fromisoformat(i["endDateTime"].replace("Z", "+00:00")),
        }
        for i in items
    }


def test_the_inventory_of_a_brownfield_tenant_is_what_graph_holds(
    stack: dict[str, Any], stack_state_dir: Path
) -> None:
    tenant_id = stack["tenantId"]
    sim(stack, "POST", "brownfield", {"count": BROWNFIELD})
    api = Api(stack)

    refused = api.call("POST", "/inventory/scan", "/inventory/scan")
    assert refused.status_code == 403

    _, before = api.inventory(tenant_id)  # another test on this stack may have scanned already
    items = scan_and_wait(api, tenant_id, before)
    truth = asyncio.run(graph_truth(stack))
    assert as_truth(items) == truth, "the inventory holds exactly Graph's credentials"
    ends = [datetime.fromisoformat(i["endDateTime"].replace("Z", "+00:00")) for i in items]
    assert ends == sorted(ends), "by end date, expired first"
    now = datetime.now(UTC)
    assert any(end < now for end in ends)
    matched = [i for i in items if i["profileMatch"]]
    assert {i["profileMatch"]["kind"] for i in matched} >= {"exact", "superset"}

    # expiringWithin: everything ending before now + 30 days (expired included), nothing after.
    soon, _ = api.inventory(tenant_id, expiringWithin="P30D")
    limit = now + timedelta(days=30)
    assert as_truth(soon) == {k: v for k, v in truth.items() if v["end"] < limit}
    unmanaged, _ = api.inventory(tenant_id, managed="false")
    assert {(i["appId"], i["keyId"]) for i in unmanaged} == {
        (i["appId"], i["keyId"]) for i in items if not i["managed"]
    }

    # One app in detail: its facts as Graph has them.
    sample = next(i for i in items if i["on"] == "application" and i["profileMatch"])

    async def graph_app() -> tuple[Any, int]:
        client = admin_graph(stack)
        app = await client.applications_with_app_id(sample["appId"]).get()
        owners = await client.applications.by_application_id(app.id).owners.get()
        await close(client)
        return app, len(owners.value or [])

    app, owner_count = asyncio.run(graph_app())
    detail = api.call(
        "GET",
        f"/inventory/{tenant_id}/applications/{sample['appId']}",
        "/inventory/{tenantId}/applications/{appId}",
    ).json()
    assert (detail["displayName"], detail["ownerCount"], detail["objectId"]) == (
        app.display_name,
        owner_count,
        app.id,
    )
    assert {c["keyId"] for c in detail["credentials"] if c["on"] == "application"} == {
        str(c.key_id) for c in [*(app.password_credentials or []), *(app.key_credentials or [])]
    }
    missing = api.call(
        "GET",
        f"/inventory/{tenant_id}/applications/{tenant_id}",
        "/inventory/{tenantId}/applications/{appId}",
    )
    assert missing.status_code == 404
    bad = api.call(
        "GET", "/inventory", "/inventory", params={"tenantId": "nope", "expiringWithin": "soon", "limit": "0"}
    )
    assert bad.status_code == 400 and {p["field"] for p in bad.json()["problems"]} == {
        "tenantId",
        "expiringWithin",
        "limit",
    }

    # Changes: a new secret on one app, another app deleted; the next scan (a delta round) shows them.
    from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
        AddPasswordPostRequestBody,
    )
    from msgraph.generated.models.password_credential import PasswordCredential

    gone = next(i for i in items if i["on"] == "application" and i["appId"] != sample["appId"])

    async def change() -> str:
        client = admin_graph(stack)
        added = await client.applications.by_application_id(app.id).add_password.post(
            AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="added by hand"))
        )
        doomed = await client.applications_with_app_id(gone["appId"]).get()
        await client.applications.by_application_id(doomed.id).delete()
        await close(client)
        return str(added.secret_text)

    secret_text = asyncio.run(change())
    _, scanned = api.inventory(tenant_id)
    items = scan_and_wait(api, tenant_id, scanned)
    truth = asyncio.run(graph_truth(stack))
    assert as_truth(items) == truth
    assert not any(i["appId"] == gone["appId"] for i in items)
    assert all(secret_text not in text for text in api.texts), "no secret value in any answer"
    logs = [stack_state_dir / "host.log", stack_state_dir / "logs" / "tenant.log"]
    for log in logs:
        if log.exists():
            assert secret_text not in log.read_text(encoding="utf-8", errors="replace")
