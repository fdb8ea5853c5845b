"""Helpers for the adapter integration tests: the registrar's adapters wired to the session tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from functions.adapters.graph import GraphDirectory
from functions.adapters.identity import EntraTokenProbe, IdentityConfig, RegistrarIdentity
from functions.adapters.keyvault import KeyVaultStore
from functions.core.ports import ApplicationSpec
from functions.core.record.models import GRAPH_APP_ID, SecretValue


def identity_config(tenant: Any) -> IdentityConfig:
    return IdentityConfig(
        authority_host=tenant.authority,
        home_tenant_id=tenant.tenant_id,
        mode="client_secret",
        client_id=tenant.client_id,
        client_secret=SecretValue(tenant.client_secret),
    )


@dataclass
class Adapters:
    identity: RegistrarIdentity
    graph: GraphDirectory
    vault: KeyVaultStore
    probe: EntraTokenProbe
    tenant_id: str


@asynccontextmanager
async def adapters(tenant: Any, **graph_options: Any) -> AsyncIterator[Adapters]:
    """Fresh adapters for one event loop (asyncio.run per test), closed at the end."""
    identity = RegistrarIdentity(identity_config(tenant))
    options = {"retry_delay": 0.05, "lag_timeout": 20.0, **graph_options}
    graph = GraphDirectory(identity, tenant.graph_url, **options)
    vault = KeyVaultStore(identity, tenant.vault_url, certificate_poll_seconds=0.2)
    probe = EntraTokenProbe(tenant.authority)
    try:
        yield Adapters(identity, graph, vault, probe, tenant.tenant_id)
    finally:
        await graph.close()
        await vault.close()
        await probe.close()
        await identity.close()


def app_spec(prefix: str = "adapter", **changes: Any) -> ApplicationSpec:
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    return ApplicationSpec(unique_name=name, display_name=f"Test {name}", **changes)


async def graph_roles(graph: GraphDirectory, tenant_id: str, count: int) -> list[tuple[str, str]]:
    """(Graph SP id, appRoleId) pairs of `count` enabled Microsoft Graph application roles."""
    catalog = await graph.resource_catalog(tenant_id, GRAPH_APP_ID)
    roles = sorted(r.id for r in catalog.app_roles.values() if r.enabled)[:count]
    return [(catalog.service_principal_id, role) for role in roles]


def record_requests(graph: GraphDirectory, tenant_id: str) -> list[str]:
    """Every HTTP request the adapter's Graph client sends from now on, as "METHOD /path" (an httpx
    event hook on the real client: counts what goes on the wire, whatever else uses the tenant)."""
    sent: list[str] = []

    async def record(request: Any) -> None:
        sent.append(f"{request.method} {request.url.path}")

    graph.client(tenant_id).request_adapter._http_client.event_hooks["request"].append(record)
    return sent
