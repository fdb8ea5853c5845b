"""Key Vault data-plane RBAC: a principal without vault roles is refused until granted one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.service_principal import ServicePrincipal

from tests.fixtures.tenant import TenantProcess

SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def credential(tenant: TenantProcess, client_id: str, client_secret: str) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant.tenant_id,
        client_id,
        client_secret,
        authority=tenant.authority,
        disable_instance_discovery=True,
    )


def new_app(tenant: TenantProcess) -> tuple[str, str, str]:
    """(appId, service principal id, client secret) of a fresh app registered through Graph."""

    async def register() -> tuple[str, str, str]:
        async with AsyncClientSecretCredential(
            tenant.tenant_id,
            tenant.client_id,
            tenant.client_secret,
            authority=tenant.authority,
            disable_instance_discovery=True,
            # aiohttp builds its default SSL context at import, possibly before SSL_CERT_FILE was set
            connection_verify=tenant.ca_file,
        ) as graph_credential:
            graph = GraphServiceClient(graph_credential, scopes=["https://graph.microsoft.com/.default"])
            graph.request_adapter.base_url = tenant.graph_url
            app = await graph.applications.post(
                Application(display_name=f"kv-rbac-{uuid.uuid4()}", sign_in_audience="AzureADMyOrg")
            )
            assert app is not None and app.id and app.app_id
            sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
            assert sp is not None and sp.id
            body = AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="kv"))
            password = await graph.applications.by_application_id(app.id).add_password.post(body)
            assert password is not None and password.secret_text
            return app.app_id, sp.id, password.secret_text

    return asyncio.run(register())


@pytest.fixture(scope="module")
def stranger(tenant: TenantProcess) -> tuple[str, str, str]:
    return new_app(tenant)


@pytest.fixture
def owner_secret(tenant: TenantProcess) -> Iterator[tuple[SecretClient, str]]:
    client = SecretClient(
        tenant.vault_url,
        credential(tenant, tenant.client_id, tenant.client_secret),
        verify_challenge_resource=False,
    )
    name = f"rbac-{uuid.uuid4().hex[:10]}"
    client.set_secret(name, "shared-value")
    yield client, name


def forbidden(call: object) -> HttpResponseError:
    assert callable(call)
    with pytest.raises(HttpResponseError) as caught:
        call()
    return caught.value


def test_principal_without_vault_roles_gets_403_forbidden_by_rbac(
    tenant: TenantProcess, stranger: tuple[str, str, str], owner_secret: tuple[SecretClient, str]
) -> None:
    app_id, _, secret = stranger
    _, name = owner_secret
    client = SecretClient(
        tenant.vault_url, credential(tenant, app_id, secret), verify_challenge_resource=False
    )
    certificates = CertificateClient(
        tenant.vault_url, credential(tenant, app_id, secret), verify_challenge_resource=False
    )

    for call in (
        lambda: client.get_secret(name),
        lambda: client.set_secret(name, "mine now"),
        lambda: list(client.list_properties_of_secrets()),
        lambda: certificates.get_certificate(name),
    ):
        error = forbidden(call)
        assert error.status_code == 403
        assert error.error is not None and error.error.code == "Forbidden"
        assert error.error.innererror == {"code": "ForbiddenByRbac"}
        assert app_id in str(error)


def test_secrets_user_may_read_but_not_write_and_loses_access_when_removed(
    tenant: TenantProcess, stranger: tuple[str, str, str], owner_secret: tuple[SecretClient, str]
) -> None:
    app_id, sp_id, secret = stranger
    _, name = owner_secret
    client = SecretClient(
        tenant.vault_url, credential(tenant, app_id, secret), verify_challenge_resource=False
    )
    assignment = tenant.admin(
        "POST",
        "vault/roleAssignments",
        {"principalId": sp_id, "role": SECRETS_USER, "scope": f"/secrets/{name}"},
    )
    try:
        assert assignment["roleName"] == "Key Vault Secrets User"
        assert client.get_secret(name).value == "shared-value"
        assert forbidden(lambda: client.set_secret(name, "overwrite")).status_code == 403
        assert forbidden(lambda: client.begin_delete_secret(name)).status_code == 403
        # The assignment is scoped to this one secret.
        assert forbidden(lambda: list(client.list_properties_of_secrets())).status_code == 403
    finally:
        tenant.admin("DELETE", f"vault/roleAssignments/{assignment['id']}")
    assert forbidden(lambda: client.get_secret(name)).status_code == 403


def test_unknown_role_is_refused_by_the_admin_api(tenant: TenantProcess) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as caught:
        tenant.admin("POST", "vault/roleAssignments", {"principalId": "x", "role": "Vault Emperor"})
    assert caught.value.code == 400
