"""The local tenant's managed identity endpoint (App Service protocol, api-version 2019-08-01) and
workload identity federation at its token endpoint, through azure-identity unchanged.

The identity is the home tenant's bootstrap service principal, as the function app's system-assigned
managed identity. Federation: an app in a second tenant trusts that identity (issuer = the home
tenant's v2.0 issuer, subject = its object id) and takes its api://AzureADTokenExchange token as
client assertion.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential as SyncClientAssertionCredential
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential
from azure.identity.aio import ClientAssertionCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential

from devstack.tenant.tokens import SigningKey
from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import act_as_function_app, graph_client, new_app_with_principal
from tests.integration.tenant_graph_support import RawGraph

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
EXCHANGE_SCOPE = EXCHANGE_AUDIENCE + "/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
REGISTRAR_ROLES = {"Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All", "Application.Read.All"}


@pytest.fixture
def app_service_env(tenant: TenantProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[TenantProcess]:
    """The environment App Service gives a function app: IDENTITY_ENDPOINT and IDENTITY_HEADER."""
    act_as_function_app(tenant, monkeypatch)
    yield tenant


def claims_of(tenant: TenantProcess, token: str, audience: str) -> dict[str, Any]:
    """Claims after checking the signature against the tenant's published JWKS."""
    jwks = jwt.PyJWKClient(f"{tenant.authority}/{tenant.tenant_id}/discovery/v2.0/keys")
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)


def get_json(
    url: str, ca_file: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, headers=headers or {})
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def msi_call(tenant: TenantProcess, header: str | None, **params: str) -> tuple[int, dict[str, str], Any]:
    query = urllib.parse.urlencode({"api-version": "2019-08-01", **params})
    headers = {"X-IDENTITY-HEADER": header} if header is not None else {}
    return get_json(f"{tenant['identityEndpoint']}?{query}", tenant.ca_file, headers)


def home_principal_id(tenant: TenantProcess) -> str:
    """The bootstrap identity's service principal object id, read through Graph."""
    status, _, sp = RawGraph(tenant).call("GET", f"/servicePrincipals(appId='{tenant.client_id}')?$select=id")
    assert status == 200, sp
    return str(sp["id"])


def home_issuer(tenant: TenantProcess) -> str:
    status, _, config = get_json(
        f"{tenant.authority}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration", tenant.ca_file
    )
    assert status == 200
    return str(config["issuer"])


# ---- the managed identity endpoint ------------------------------------------------------------------


def test_startup_line_and_tenant_list_carry_the_identity_endpoint(tenant: TenantProcess) -> None:
    assert tenant["identityEndpoint"] == f"{tenant.authority}/msi/token"
    assert len(tenant["identityHeader"]) >= 32
    listed = {t["tenantId"]: t for t in tenant.admin("GET", "tenants")["value"]}
    home = listed[tenant.tenant_id]
    assert home["identityEndpoint"] == tenant["identityEndpoint"]
    assert home["identityHeader"] == tenant["identityHeader"]


async def test_async_credential_gets_a_graph_token_that_graph_accepts(
    app_service_env: TenantProcess,
) -> None:
    tenant = app_service_env
    async with AsyncManagedIdentityCredential() as credential:
        token = await credential.get_token(GRAPH_SCOPE)
    claims = claims_of(tenant, token.token, "https://graph.microsoft.com")
    assert claims["tid"] == tenant.tenant_id
    assert claims["appid"] == tenant.client_id
    assert claims["appidacr"] == "2"
    assert set(claims["roles"]) >= REGISTRAR_ROLES
    assert abs(token.expires_on - claims["exp"]) <= 1

    async with graph_client(tenant, AsyncManagedIdentityCredential()) as client:
        apps = await client.applications.get()
        bootstrap = await client.service_principals_with_app_id(tenant.client_id).get()
    assert apps is not None and tenant.client_id in {a.app_id for a in apps.value or []}
    assert bootstrap is not None and bootstrap.id == claims["oid"]


def test_sync_credential_gets_tokens_and_a_secret_client_works(app_service_env: TenantProcess) -> None:
    tenant = app_service_env
    credential = ManagedIdentityCredential()
    graph = claims_of(tenant, credential.get_token(GRAPH_SCOPE).token, "https://graph.microsoft.com")
    vault = claims_of(tenant, credential.get_token(VAULT_SCOPE).token, "https://vault.azure.net")
    assert graph["oid"] == vault["oid"] and vault["appid"] == tenant.client_id

    secrets = SecretClient(tenant.vault_url, credential, verify_challenge_resource=False)
    name = f"mi-{uuid.uuid4().hex[:12]}"
    secrets.set_secret(name, "from the managed identity")
    assert secrets.get_secret(name).value == "from the managed identity"


def test_the_identity_may_be_named_by_its_client_id_or_object_id(app_service_env: TenantProcess) -> None:
    tenant = app_service_env
    by_client_id = ManagedIdentityCredential(client_id=tenant.client_id).get_token(GRAPH_SCOPE)
    principal_id = jwt.decode(by_client_id.token, options={"verify_signature": False})["oid"]
    by_object_id = ManagedIdentityCredential(identity_config={"object_id": principal_id})
    assert (
        jwt.decode(by_object_id.get_token(GRAPH_SCOPE).token, options={"verify_signature": False})["appid"]
        == tenant.client_id
    )
    status, _, body = msi_call(
        tenant, tenant["identityHeader"], resource="https://vault.azure.net", principal_id=principal_id
    )
    assert status == 200 and body["client_id"] == tenant.client_id
    assert body["resource"] == "https://vault.azure.net" and body["token_type"] == "Bearer"
    assert int(body["expires_on"]) > time.time() + 3000 and isinstance(body["expires_on"], str)


async def test_wrong_or_missing_header_is_refused(
    app_service_env: TenantProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = app_service_env
    for header in (None, "", str(uuid.uuid4())):
        status, headers, body = msi_call(tenant, header, resource="https://graph.microsoft.com")
        assert status == 401, body
        assert set(body) == {"statusCode", "message", "correlationId"} and body["statusCode"] == 401
        assert headers["X-CORRELATION-ID"] == body["correlationId"]
        assert "access_token" not in body

    monkeypatch.setenv("IDENTITY_HEADER", str(uuid.uuid4()))
    with pytest.raises(ClientAuthenticationError, match="X-IDENTITY-HEADER"):
        async with AsyncManagedIdentityCredential() as credential:
            await credential.get_token(GRAPH_SCOPE)
    with pytest.raises(CredentialUnavailableError, match="401"):
        ManagedIdentityCredential().get_token(GRAPH_SCOPE)


async def test_unknown_user_assigned_identity_is_refused(app_service_env: TenantProcess) -> None:
    tenant = app_service_env
    other = str(uuid.uuid4())
    with pytest.raises(ClientAuthenticationError, match="Unable to load the proper Managed Identity"):
        async with AsyncManagedIdentityCredential(client_id=other) as credential:
            await credential.get_token(GRAPH_SCOPE)
    with pytest.raises(CredentialUnavailableError, match="400, Unable to load the proper Managed Identity"):
        ManagedIdentityCredential(client_id=other).get_token(GRAPH_SCOPE)
    for selector in ({"principal_id": other}, {"mi_res_id": f"/subscriptions/{other}/x"}):
        status, _, body = msi_call(tenant, tenant["identityHeader"], resource=GRAPH_SCOPE, **selector)
        assert (status, body["message"]) == (400, "Unable to load the proper Managed Identity.")


def test_token_exchange_token_is_a_v2_assertion_of_the_identity(app_service_env: TenantProcess) -> None:
    tenant = app_service_env
    token = ManagedIdentityCredential().get_token(EXCHANGE_SCOPE).token

    claims = claims_of(tenant, token, EXCHANGE_AUDIENCE)
    assert claims["iss"] == home_issuer(tenant) == f"{tenant.authority}/{tenant.tenant_id}/v2.0"
    assert claims["sub"] == claims["oid"] == home_principal_id(tenant)
    assert claims["ver"] == "2.0" and claims["tid"] == tenant.tenant_id
    # Not an access token for Graph: Graph refuses it.
    status, _, body = get_json(
        f"{tenant.graph_url}/applications", tenant.ca_file, {"Authorization": f"Bearer {token}"}
    )
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"


def test_each_tenant_has_its_own_identity_header(tenant_admin: TenantProcess) -> None:
    second = tenant_admin.create_tenant()
    assert second["identityEndpoint"] == tenant_admin["identityEndpoint"]
    assert second["identityHeader"] != tenant_admin["identityHeader"]
    status, _, body = msi_call(tenant_admin, second["identityHeader"], resource="https://graph.microsoft.com")
    assert status == 200 and body["client_id"] == second["clientId"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["tid"] == second["tenantId"]


def test_faults_and_unknown_routes_take_the_endpoint_shape(tenant_admin: TenantProcess) -> None:
    tenant_admin.add_fault(503, "^/msi/token$", count=1)
    status, _, body = msi_call(tenant_admin, tenant_admin["identityHeader"], resource=GRAPH_SCOPE)
    assert status == 503 and body["statusCode"] == 503 and "correlationId" in body
    status, _, body = msi_call(tenant_admin, tenant_admin["identityHeader"], resource=GRAPH_SCOPE)
    assert status == 200 and body["access_token"]
    status, _, body = get_json(f"{tenant_admin.authority}/msi/other", tenant_admin.ca_file)
    assert status == 404 and body["statusCode"] == 404


def test_identity_header_survives_a_restart(make_tenant_process: Callable[..., TenantProcess]) -> None:
    process = make_tenant_process()
    header = process["identityHeader"]
    process.restart()
    assert process["identityHeader"] == header
    status, _, body = msi_call(process, header, resource="https://graph.microsoft.com")
    assert status == 200 and body["client_id"] == process.client_id


# ---- workload identity federation -------------------------------------------------------------------


async def federated_app(
    second: dict[str, Any], *, issuer: str, subject: str, audience: str = EXCHANGE_AUDIENCE
) -> str:
    """In the second tenant, as its bootstrap identity: an app + service principal holding Graph's
    Application.Read.All, with one federated credential. Returns the app id."""
    async with graph_client(second) as client:
        app, sp = await new_app_with_principal(client, f"federated-{uuid.uuid4().hex[:8]}")
        graph = await client.service_principals_with_app_id(GRAPH_APP_ID).get()
        assert graph is not None and graph.id and app.id and sp.id
        role = next(r.id for r in graph.app_roles or [] if r.value == "Application.Read.All")
        await client.service_principals.by_service_principal_id(graph.id).app_role_assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(sp.id), resource_id=uuid.UUID(graph.id), app_role_id=role
            )
        )
        await client.applications.by_application_id(app.id).federated_identity_credentials.post(
            FederatedIdentityCredential(
                name="registrar-managed-identity", issuer=issuer, subject=subject, audiences=[audience]
            )
        )
    assert app.app_id is not None
    return app.app_id


def assertion_credential(second: dict[str, Any], app_id: str, assertion: Callable[[], str]) -> Any:
    return ClientAssertionCredential(
        second["tenantId"], app_id, assertion, authority=second["authority"], disable_instance_discovery=True
    )


def managed_identity_assertion() -> Callable[[], str]:
    """What the registrar passes to ClientAssertionCredential: its sync managed identity's token."""
    source = ManagedIdentityCredential()
    return lambda: source.get_token(EXCHANGE_SCOPE).token


async def refusal(second: dict[str, Any], app_id: str, assertion: Callable[[], str]) -> str:
    with pytest.raises(ClientAuthenticationError) as caught:
        async with assertion_credential(second, app_id, assertion) as credential:
            await credential.get_token(GRAPH_SCOPE)
    return str(caught.value)


async def test_federated_app_in_another_tenant_gets_a_graph_token(app_service_env: TenantProcess) -> None:
    home = app_service_env
    second = home.create_tenant()
    app_id = await federated_app(second, issuer=home_issuer(home), subject=home_principal_id(home))

    credential = assertion_credential(second, app_id, managed_identity_assertion())
    token = await credential.get_token(GRAPH_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert (claims["tid"], claims["appid"], claims["appidacr"]) == (second["tenantId"], app_id, "2")
    assert claims["roles"] == ["Application.Read.All"]
    async with graph_client(second, credential) as client:
        found = await client.applications_with_app_id(app_id).get()
    assert found is not None and found.app_id == app_id

    # The sync credential (through MSAL and the openid-configuration) is accepted the same way.
    sync = SyncClientAssertionCredential(
        second["tenantId"],
        app_id,
        managed_identity_assertion(),
        authority=second["authority"],
        disable_instance_discovery=True,
    )
    assert (
        jwt.decode(sync.get_token(GRAPH_SCOPE).token, options={"verify_signature": False})["appid"] == app_id
    )


async def test_subject_audience_and_issuer_must_match(app_service_env: TenantProcess) -> None:
    home = app_service_env
    second = home.create_tenant()
    issuer, subject = home_issuer(home), home_principal_id(home)
    assertion = managed_identity_assertion()

    other_subject = await federated_app(second, issuer=issuer, subject=str(uuid.uuid4()))
    assert "AADSTS700213" in await refusal(second, other_subject, assertion)

    other_audience = await federated_app(second, issuer=issuer, subject=subject, audience="api://Other")
    assert "AADSTS700212" in await refusal(second, other_audience, assertion)

    # Trusts the second tenant's issuer, not the home tenant's that issued the assertion.
    other_issuer = await federated_app(
        second, issuer=f"{second['authority']}/{second['tenantId']}/v2.0", subject=subject
    )
    message = await refusal(second, other_issuer, assertion)
    assert "AADSTS700211" in message and f"issuer '{issuer}'" in message


def _signed_by(key_file: Path, cert_file: Path, claims: dict[str, Any]) -> str:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return SigningKey(key, x509.load_pem_x509_certificate(cert_file.read_bytes())).sign(claims)


async def test_expired_forged_and_unreachable_assertions_are_refused(
    app_service_env: TenantProcess, tenant_ca_dir: Path, tmp_path: Path
) -> None:
    home = app_service_env
    second = home.create_tenant()
    issuer, subject = home_issuer(home), home_principal_id(home)
    app_id = await federated_app(second, issuer=issuer, subject=subject)
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": EXCHANGE_AUDIENCE, "tid": home.tenant_id}

    # Signed with the tenants' own signing key (the session CA directory holds it), but expired.
    expired = _signed_by(
        tenant_ca_dir / "signing.key",
        tenant_ca_dir / "signing.pem",
        {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
    )
    assert "AADSTS700024" in await refusal(second, app_id, lambda: expired)

    # Names the tenant's key (same kid) but is signed by another.
    other_key = tmp_path / "other.key"
    other_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    forged = _signed_by(
        other_key, tenant_ca_dir / "signing.pem", {**claims, "iat": now, "nbf": now, "exp": now + 600}
    )
    assert "AADSTS700027" in await refusal(second, app_id, lambda: forged)

    # An issuer outside this server: Entra cannot fetch its keys.
    outside = "https://issuer.devstack.invalid"
    outside_app = await federated_app(second, issuer=outside, subject="workload")
    foreign = _signed_by(
        other_key,
        tenant_ca_dir / "signing.pem",
        {"iss": outside, "sub": "workload", "aud": EXCHANGE_AUDIENCE, "nbf": now, "exp": now + 600},
    )
    assert "AADSTS50166" in await refusal(second, outside_app, lambda: foreign)


async def test_new_federated_credential_waits_for_the_propagation_delay(
    app_service_env: TenantProcess, tenant_admin: TenantProcess
) -> None:
    home = app_service_env
    second = home.create_tenant()
    tenant_admin.configure(propagationDelayS=3)
    app_id = await federated_app(second, issuer=home_issuer(home), subject=home_principal_id(home))
    created = time.monotonic()
    assertion = managed_identity_assertion()

    message = await refusal(second, app_id, assertion)
    assert "AADSTS700211" in message  # as if it did not exist yet
    await asyncio.sleep(max(0.0, 3.2 - (time.monotonic() - created)))
    async with assertion_credential(second, app_id, assertion) as credential:
        token = await credential.get_token(GRAPH_SCOPE)
    assert jwt.decode(token.token, options={"verify_signature": False})["appid"] == app_id
