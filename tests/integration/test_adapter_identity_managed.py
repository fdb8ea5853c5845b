"""The registrar's production sign-in paths (functions/adapters/identity.py) against the local tenant:

- home tenant: the function app's managed identity (REGISTRAR_CREDENTIAL=managed_identity, no
  client id or secret in the settings), through the tenant's identity endpoint as App Service
  exposes it (IDENTITY_ENDPOINT, IDENTITY_HEADER);
- another tenant: workload identity federation (REGISTRAR_TENANT_CREDENTIALS {"<tenant>":
  {"clientId": ..., "federated": true}}): Registrar's multi-tenant app, registered in the home
  tenant with a federated credential trusting the managed identity, has a service principal in the
  other tenant (admin consent there); the registrar presents the identity's
  api://AzureADTokenExchange token as that app's client assertion in the other tenant.

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
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.service_principal import ServicePrincipal

from functions.adapters.graph import GraphDirectory
from functions.adapters.identity import IdentityConfig, RegistrarIdentity
from functions.adapters.keyvault import KeyVaultStore
from functions.core.record.errors import PermanentError
from functions.core.record.models import GRAPH_APP_ID, SecretValue
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import app_spec
from tests.integration.tenant_clients import act_as_function_app, graph_client
from tests.integration.tenant_graph_support import RawGraph

# What Registrar needs in a tenant it provisions into (docs/security.md).
REGISTRAR_ROLES = ("Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All", "Application.Read.All")


@pytest.fixture
def app_service(tenant_admin: TenantProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[TenantProcess]:
    """The process environment of a function app with a system-assigned managed identity."""
    act_as_function_app(tenant_admin, monkeypatch)
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


async def grant_graph_roles(client: Any, principal_id: str, values: tuple[str, ...]) -> None:
    graph = await client.service_principals_with_app_id(GRAPH_APP_ID).get()
    assert graph is not None and graph.id
    for value in values:
        role = next(r.id for r in graph.app_roles or [] if r.value == value)
        await client.service_principals.by_service_principal_id(graph.id).app_role_assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(principal_id), resource_id=uuid.UUID(graph.id), app_role_id=role
            )
        )


async def registrar_multi_tenant_app(home: TenantProcess, *, subject: str) -> str:
    """In the home tenant, as Azure is set up for other tenants (identity.py): Registrar's multi-tenant
    app registration whose federated credential trusts `subject` (the managed identity's object id)
    as issued by the home tenant. Returns its app id."""
    async with graph_client(home) as client:
        app = await client.applications.post(
            Application(
                display_name=f"Registrar {uuid.uuid4().hex[:8]}", sign_in_audience="AzureADMultipleOrgs"
            )
        )
        assert app is not None and app.id and app.app_id
        await client.applications.by_application_id(app.id).federated_identity_credentials.post(
            FederatedIdentityCredential(
                name="registrar-managed-identity",
                issuer=f"{home.authority}/{home.tenant_id}/v2.0",
                subject=subject,
                audiences=["api://AzureADTokenExchange"],
            )
        )
        return app.app_id


async def consent_in(second: dict[str, Any], app_id: str) -> str:
    """In the other tenant, what its administrator's admin consent does: the app's service principal
    there, holding Registrar's Graph roles. Returns the service principal's id."""
    async with graph_client(second) as client:
        admin = await client.service_principals_with_app_id(second["clientId"]).get()
        assert admin is not None and admin.id
        # Provisioning another tenant's app takes Application.ReadWrite.All (its owners are not here).
        await grant_graph_roles(client, admin.id, ("Application.ReadWrite.All",))
    async with graph_client(second) as client:  # a new token, with the new role
        sp = await client.service_principals.post(ServicePrincipal(app_id=app_id))
        assert sp is not None and sp.id
        await grant_graph_roles(client, sp.id, REGISTRAR_ROLES)
        return sp.id


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
    _, subject = home_identity(home)
    app_id = asyncio.run(registrar_multi_tenant_app(home, subject=subject))
    registrar_sp = asyncio.run(consent_in(second, app_id))
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
    app_id = asyncio.run(
        registrar_multi_tenant_app(home, subject=str(uuid.uuid4()))
    )  # trusts another identity
    asyncio.run(consent_in(second, app_id))
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
