"""The registrar's production sign-in paths (functions/adapters/identity.py) against the local tenant:

- home tenant: the function app's managed identity (REGISTRAR_CREDENTIAL=managed_identity, no
  client id or secret in the settings), through the tenant's identity endpoint as App Service
  exposes it (IDENTITY_ENDPOINT, IDENTITY_HEADER);
- another tenant: workload identity federation (REGISTRAR_TENANT_CREDENTIALS {"<tenant>":
  {"clientId": ..., "federated": true}}): the registrar's app there trusts the managed identity,
  and the registrar presents its api://AzureADTokenExchange token as the client assertion.

Graph and Key Vault are reached through the registrar's own adapters, so what is asserted is what
production would do, up to the token endpoint it cannot reach from here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential

from functions.adapters.graph import GraphDirectory
from functions.adapters.identity import IdentityConfig, RegistrarIdentity
from functions.adapters.keyvault import KeyVaultStore
from functions.core.errors import PermanentError
from functions.core.models import GRAPH_APP_ID, SecretValue
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import app_spec
from tests.integration.tenant_clients import graph_client, new_app_with_principal
from tests.integration.tenant_graph_support import RawGraph

# What Registrar needs in a tenant it provisions into (docs/security.md).
REGISTRAR_ROLES = ("Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All")
_OTHER_MI_VARIABLES = ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET")


@pytest.fixture
def app_service(tenant_admin: TenantProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[TenantProcess]:
    """The process environment of a function app with a system-assigned managed identity."""
    for name in _OTHER_MI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", tenant_admin["identityEndpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", tenant_admin["identityHeader"])
    yield tenant_admin


def settings(home: TenantProcess, federated: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "REGISTRAR_AUTHORITY_HOST": home.authority,
        "REGISTRAR_HOME_TENANT_ID": home.tenant_id,
        "REGISTRAR_CREDENTIAL": "managed_identity",
        "REGISTRAR_CLIENT_ID": "",
        "REGISTRAR_CLIENT_SECRET": "",
        "REGISTRAR_TENANT_CREDENTIALS": json.dumps(
            {tenant: {"clientId": app_id, "federated": True} for tenant, app_id in (federated or {}).items()}
        ),
    }


async def registrar_app_trusting(second: dict[str, Any], *, issuer: str, subject: str) -> tuple[str, str]:
    """In `second`, as its administrator: Registrar's app and service principal with Registrar's Graph
    roles and a federated credential for the home managed identity. Returns (app id, SP id)."""
    async with graph_client(second) as client:
        app, sp = await new_app_with_principal(client, f"registrar-{uuid.uuid4().hex[:8]}")
        graph = await client.service_principals_with_app_id(GRAPH_APP_ID).get()
        assert graph is not None and graph.id and app.id and app.app_id and sp.id
        for value in REGISTRAR_ROLES:
            role = next(r.id for r in graph.app_roles or [] if r.value == value)
            await client.service_principals.by_service_principal_id(graph.id).app_role_assigned_to.post(
                AppRoleAssignment(
                    principal_id=uuid.UUID(sp.id), resource_id=uuid.UUID(graph.id), app_role_id=role
                )
            )
        await client.applications.by_application_id(app.id).federated_identity_credentials.post(
            FederatedIdentityCredential(
                name="registrar-home-managed-identity",
                issuer=issuer,
                subject=subject,
                audiences=["api://AzureADTokenExchange"],
            )
        )
        return app.app_id, sp.id


async def owner_ids(tenant: dict[str, Any], object_id: str) -> list[str]:
    """The app's owners, read by the tenant's administrator (its bootstrap identity)."""
    async with graph_client(tenant) as client:
        owners = await client.applications.by_application_id(object_id).owners.get()
    return [o.id for o in (owners.value if owners else None) or [] if o.id]


def home_identity(home: TenantProcess) -> tuple[str, str]:
    """(v2 issuer, service principal object id) of the home tenant's managed identity."""
    status, _, sp = RawGraph(home).call("GET", f"/servicePrincipals(appId='{home.client_id}')?$select=id")
    assert status == 200, sp
    return f"{home.authority}/{home.tenant_id}/v2.0", str(sp["id"])


def test_with_the_managed_identity_the_registrar_works_in_graph_and_key_vault(
    app_service: TenantProcess,
) -> None:
    home = app_service
    config = IdentityConfig.from_env(settings(home))
    assert config.mode == "managed_identity" and config.client_secret is None

    async def main() -> tuple[str, str, list[str]]:
        identity = RegistrarIdentity(config)
        graph = GraphDirectory(identity, home.graph_url, retry_delay=0.05)
        vault = KeyVaultStore(identity, home.vault_url)
        try:
            spec = app_spec("managed")
            app = await graph.upsert_application(home.tenant_id, spec)
            name = f"managed-{uuid.uuid4().hex[:8]}"
            await vault.set_secret(
                name, SecretValue("not-a-real-secret"), content_type="text/plain", tags={}, expires_on=None
            )
            _, value = await vault.get_secret(name)
            found = await graph.find_application(home.tenant_id, spec.unique_name)
            assert found is not None
            return value.reveal(), found.object_id, [app.object_id]
        finally:
            await graph.close()
            await vault.close()
            await identity.close()

    value, found, created = asyncio.run(main())
    assert value == "not-a-real-secret"
    assert [found] == created
    # Created by the identity behind the managed identity: Graph made it the owner.
    status, _, owners = RawGraph(home).call("GET", f"/applications/{found}/owners")
    assert status == 200 and [o["id"] for o in owners["value"]] == [home_identity(home)[1]]


def test_another_tenant_is_reached_by_federation_from_the_managed_identity(
    app_service: TenantProcess,
) -> None:
    home = app_service
    second = home.create_tenant()
    issuer, subject = home_identity(home)
    app_id, registrar_sp = asyncio.run(registrar_app_trusting(second, issuer=issuer, subject=subject))
    config = IdentityConfig.from_env(settings(home, {second["tenantId"].upper(): app_id}))
    assert config.tenants[second["tenantId"].lower()].federated

    async def main() -> str:
        identity = RegistrarIdentity(config)
        graph = GraphDirectory(identity, home.graph_url, retry_delay=0.05)
        try:
            assert identity.has_tenant(second["tenantId"])
            app = await graph.upsert_application(second["tenantId"], app_spec("federated"))
            await graph.ensure_service_principal(second["tenantId"], app.app_id)
            return app.object_id
        finally:
            await graph.close()
            await identity.close()

    object_id = asyncio.run(main())
    assert asyncio.run(owner_ids(second, object_id)) == [registrar_sp]


def test_a_federated_tenant_whose_app_does_not_trust_the_identity_is_refused(
    app_service: TenantProcess,
) -> None:
    home = app_service
    second = home.create_tenant()
    issuer, _ = home_identity(home)
    app_id, _ = asyncio.run(registrar_app_trusting(second, issuer=issuer, subject=str(uuid.uuid4())))
    config = IdentityConfig.from_env(settings(home, {second["tenantId"]: app_id}))

    async def main() -> BaseException:
        identity = RegistrarIdentity(config)
        graph = GraphDirectory(identity, home.graph_url, retry_delay=0.05)
        try:
            with pytest.raises(PermanentError) as refused:
                await graph.find_application(second["tenantId"], "anything")
            return refused.value
        finally:
            await graph.close()
            await identity.close()

    error = asyncio.run(main())
    assert isinstance(error, PermanentError) and error.code == "RegistrarTokenRefused"
    assert "AADSTS700213" in str(error)  # what an operator needs to fix the federated credential
