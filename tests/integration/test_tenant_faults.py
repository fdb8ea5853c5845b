"""Faults, latency and throttling injected by the local tenant, seen through the official SDKs."""

from __future__ import annotations

import asyncio
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

from tests.fixtures.tenant import TenantProcess

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def credential(tenant: TenantProcess) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant.tenant_id,
        tenant.client_id,
        tenant.client_secret,
        authority=tenant.authority,
        disable_instance_discovery=True,
    )


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
    with pytest.raises(urllib.error.HTTPError) as caught:
        tenant_admin.configure(noSuchSetting=1)
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
