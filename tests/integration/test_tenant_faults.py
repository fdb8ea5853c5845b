"""Faults, latency and throttling injected by the local tenant, seen through the official SDKs."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.keyvault.secrets import SecretClient
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import graph_client, secret_credential

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def credential(tenant: TenantProcess) -> ClientSecretCredential:
    return secret_credential(tenant)


def test_latency_is_added_to_every_call(tenant_admin: TenantProcess) -> None:
    tenant_admin.configure(latencyMs=400)
    started = time.monotonic()
    credential(tenant_admin).get_token(GRAPH_SCOPE)
    # MSAL makes two calls (OpenID configuration, token): each waits at least the latency.
    assert time.monotonic() - started >= 0.8


def test_injected_503_on_the_token_endpoint_is_retried(tenant_admin: TenantProcess) -> None:
    rule = tenant_admin.add_fault(503, r"/oauth2/v2\.0/token$", "POST", count=2)
    before = tenant_admin.stats()["faultsInjected"]

    assert credential(tenant_admin).get_token(GRAPH_SCOPE).token

    assert tenant_admin.stats()["faultsInjected"] - before == 2
    assert rule["id"] not in [r["id"] for r in tenant_admin.admin("GET", "faults")["value"]]


def test_fault_with_entra_shape_fails_the_async_credential(tenant_admin: TenantProcess) -> None:
    tenant_admin.add_fault(
        400,
        r"/oauth2/v2\.0/token$",
        body={
            "error": "invalid_request",
            "error_description": "AADSTS90099: injected",
            "error_codes": [90099],
        },
    )

    async def get() -> None:
        async with AsyncClientSecretCredential(
            tenant_admin.tenant_id,
            tenant_admin.client_id,
            tenant_admin.client_secret,
            authority=tenant_admin.authority,
            disable_instance_discovery=True,
        ) as async_credential:
            await async_credential.get_token(GRAPH_SCOPE)

    with pytest.raises(ClientAuthenticationError, match="AADSTS90099"):
        asyncio.run(get())


def test_admin_config_round_trips_and_rejects_unknown_settings(tenant_admin: TenantProcess) -> None:
    updated = tenant_admin.configure(propagationDelayS=3, throttleScale=0.5)
    assert updated["propagationDelayS"] == 3.0
    assert tenant_admin.admin("GET", "config")["throttleScale"] == 0.5
    for bad in ({"noSuchSetting": 1}, {"tenantSize": "huge"}, {"latencyMs": -1}, {"throttlingEnabled": 1}):
        with pytest.raises(urllib.error.HTTPError) as caught:
            tenant_admin.admin("PUT", "config", {"latencyMs": 7, **bad})
        assert caught.value.code == 400
    assert tenant_admin.admin("GET", "config")["latencyMs"] == 0.0  # all or nothing
    with pytest.raises(urllib.error.HTTPError) as caught:
        tenant_admin.add_fault(503, "(unclosed")
    assert caught.value.code == 400


def test_reset_restores_the_start_configuration(tenant: TenantProcess) -> None:
    tenant.configure(latencyMs=5)
    tenant.add_fault(500, "/never-called")
    tenant.reset()
    assert tenant.admin("GET", "config")["latencyMs"] == 0.0
    assert tenant.admin("GET", "faults")["value"] == []


def test_stats_count_requests_by_route_and_cpu_time(tenant: TenantProcess) -> None:
    credential(tenant).get_token(GRAPH_SCOPE)
    stats: dict[str, Any] = tenant.stats()
    assert stats["byRoute"]["POST /{tenant}/oauth2/v2.0/token"] >= 1
    assert stats["processTimeS"] > 0


def test_start_time_options_apply(make_tenant_process: Callable[..., TenantProcess]) -> None:
    process = make_tenant_process(latency_ms=25, propagation_delay=7, no_throttling=True)
    config = process.admin("GET", "config")
    assert (config["latencyMs"], config["propagationDelayS"], config["throttlingEnabled"]) == (
        25.0,
        7.0,
        False,
    )


# ---- Graph, through msgraph-sdk ------------------------------------------------------------------


def raw_graph(tenant: TenantProcess, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    """(status, headers, JSON) of one Graph call made without the SDK, to read headers and error bodies."""
    token = credential(tenant).get_token(GRAPH_SCOPE).token
    request = urllib.request.Request(
        f"{tenant.graph_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(
            request, context=ssl.create_default_context(cafile=tenant.ca_file)
        ) as response:
            payload = response.read()
            return response.status, response.headers, json.loads(payload) if payload else None
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def test_throttled_graph_calls_answer_429_and_the_sdk_retry_succeeds(tenant_admin: TenantProcess) -> None:
    tenant_admin.configure(throttleScale=5 / 3500)  # 5 resource units per 10 s for this app
    before = tenant_admin.stats()["throttled429"]

    async def read_until_throttled() -> tuple[int, int]:
        calls = found = 0
        async with graph_client(tenant_admin) as client:
            # Each call costs 1 RU; once the 5 are spent, Graph answers 429 + Retry-After: 2 and
            # the SDK's retry handler waits and succeeds. Stop after the first 429.
            while (calls < 40 and tenant_admin.stats()["throttled429"] == before) or calls < 2:
                sp = await client.service_principals_with_app_id(tenant_admin.client_id).get()
                found += sp is not None and sp.app_id == tenant_admin.client_id
                calls += 1
        return calls, found

    calls, found = asyncio.run(read_until_throttled())
    assert found == calls
    assert tenant_admin.stats()["throttled429"] > before

    for _ in range(12):
        status, headers, body = raw_graph(
            tenant_admin, "GET", f"/servicePrincipals(appId='{tenant_admin.client_id}')"
        )
        if status == 429:
            break
        assert headers["x-ms-resource-unit"] == "1"
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    assert headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert tenant_admin.client_id in headers["x-ms-throttle-scope"]
    assert body["error"]["code"] == "Request_ThrottledTemporarily"


def test_write_budget_gives_write_limit_exceeded(tenant_admin: TenantProcess) -> None:
    # 5 writes per 150 s; a large tenant's 8,000 RU per 10 s scale to ~13, so writes run out first.
    tenant_admin.configure(throttleScale=5 / 3000, tenantSize="large")
    status, _, app = raw_graph(
        tenant_admin, "POST", "/applications", {"displayName": f"writes-{uuid.uuid4()}"}
    )
    assert status == 201
    for _ in range(5):
        status, headers, _ = raw_graph(tenant_admin, "PATCH", f"/applications/{app['id']}", {"notes": "x"})
        if status == 429:
            break
    assert status == 429
    assert headers["x-ms-throttle-information"] == "WriteLimitExceeded"


def test_injected_503s_on_graph_are_retried_by_the_sdk(tenant_admin: TenantProcess) -> None:
    tenant_admin.add_fault(503, r"^/v1\.0/servicePrincipals", "GET", count=2, retryAfter=1)
    before = tenant_admin.stats()["faultsInjected"]

    async def read() -> str | None:
        async with graph_client(tenant_admin) as client:
            sp = await client.service_principals_with_app_id(tenant_admin.client_id).get()
        return sp.app_id if sp is not None else None

    assert asyncio.run(read()) == tenant_admin.client_id
    assert tenant_admin.stats()["faultsInjected"] - before == 2


def test_injected_fault_without_retry_reaches_the_sdk_in_graph_shape(tenant_admin: TenantProcess) -> None:
    tenant_admin.add_fault(409, r"^/v1\.0/applications$", "POST", count=1)

    async def create() -> None:
        async with graph_client(tenant_admin) as client:
            await client.applications.post(Application(display_name="conflicted"))

    with pytest.raises(ODataError) as caught:
        asyncio.run(create())
    assert caught.value.response_status_code == 409
    assert caught.value.error is not None and caught.value.error.code


def test_unknown_routes_get_graph_shaped_errors(tenant: TenantProcess) -> None:
    # Under /v1.0 Graph itself answers (400 "Resource not found for the segment", as Graph does).
    status, _, body = raw_graph(tenant, "GET", "/noSuchCollection/abc")
    assert status in (400, 404)
    assert set(body["error"]) >= {"code", "message", "innerError"}
    # Outside every API the server answers 404 in Graph's shape, never a bare HTML page.
    request = urllib.request.Request(f"{tenant.authority}/no/such/route")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=tenant.ca_file))
    assert caught.value.code == 404
    assert json.loads(caught.value.read())["error"]["code"] == "Request_ResourceNotFound"


def test_admin_created_tenant_serves_graph_to_its_own_identity(tenant_admin: TenantProcess) -> None:
    second = tenant_admin.create_tenant()

    async def names() -> list[str]:
        async with graph_client(second) as client:
            apps = await client.applications.get()
        assert apps is not None and apps.value is not None
        return [str(app.app_id) for app in apps.value]

    assert second["clientId"] in asyncio.run(names())
    assert tenant_admin.client_id not in asyncio.run(names())


# ---- Key Vault, through azure-keyvault-secrets ---------------------------------------------------


def test_vault_faults_take_key_vault_shape_and_429_is_retried(
    make_tenant_process: Callable[..., TenantProcess],
) -> None:
    # Its own process: azure-keyvault caches each vault URL's challenge for the whole session, and
    # other tests observe the session vault's first challenge.
    process = make_tenant_process()
    vault = SecretClient(process.vault_url, credential(process), verify_challenge_resource=False)
    name = f"faults-{uuid.uuid4().hex[:12]}"
    process.add_fault(429, rf"^/secrets/{name}$", "PUT", count=1, retryAfter=1)
    assert vault.set_secret(name, "value").name == name  # retried after Retry-After

    process.add_fault(400, rf"^/secrets/{name}/", "GET", count=1)
    with pytest.raises(HttpResponseError) as caught:
        vault.get_secret(name)
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "BadParameter"
    assert vault.get_secret(name).value == "value"  # the rule was used up
