"""The local tenant's Entra endpoints, driven through azure-identity (sync via MSAL, and async)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientSecretCredential
from azure.identity.aio import CertificateCredential as AsyncCertificateCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.key_credential import KeyCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import (
    StaticToken,
    add_password,
    graph_client,
    new_app_with_principal,
    secret_credential,
    self_signed_certificate,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"


def credential(tenant: TenantProcess, **overrides: str) -> ClientSecretCredential:
    values = {
        "tenant_id": tenant.tenant_id,
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        **overrides,
    }
    return ClientSecretCredential(
        values["tenant_id"],
        values["client_id"],
        values["client_secret"],
        authority=tenant.authority,
        disable_instance_discovery=True,
    )


def verified_claims(tenant: TenantProcess, token: str, audience: str) -> dict[str, Any]:
    """Check the token's signature against the tenant's published JWKS, as a resource server would."""
    jwks = jwt.PyJWKClient(f"{tenant.authority}/{tenant.tenant_id}/discovery/v2.0/keys")
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)


def refused(tenant: TenantProcess, **overrides: str) -> str:
    with pytest.raises(ClientAuthenticationError) as caught:
        credential(tenant, **overrides).get_token(GRAPH_SCOPE)
    return str(caught.value)


def test_bootstrap_secret_gets_a_graph_token_with_its_roles(tenant: TenantProcess) -> None:
    token = credential(tenant).get_token(GRAPH_SCOPE)

    claims = verified_claims(tenant, token.token, "https://graph.microsoft.com")
    assert claims["tid"] == tenant.tenant_id
    assert claims["appid"] == tenant.client_id and claims["ver"] == "1.0"
    assert "azp" not in claims and "azpacr" not in claims  # v2-only claims, as in Entra's v1 tokens
    assert claims["idtyp"] == "app"
    assert {"Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All"} <= set(claims["roles"])
    assert claims["exp"] - claims["iat"] == 3600


def test_async_credential_gets_a_vault_token_without_roles(tenant: TenantProcess) -> None:
    async def get() -> str:
        async with AsyncClientSecretCredential(
            tenant.tenant_id,
            tenant.client_id,
            tenant.client_secret,
            authority=tenant.authority,
            disable_instance_discovery=True,
        ) as async_credential:
            return (await async_credential.get_token(VAULT_SCOPE)).token

    claims = verified_claims(tenant, asyncio.run(get()), "https://vault.azure.net")
    assert claims["appid"] == tenant.client_id
    assert "roles" not in claims


def test_wrong_secret_is_refused_with_7000215(tenant: TenantProcess) -> None:
    message = refused(tenant, client_secret="not-the-secret")
    assert "AADSTS7000215" in message
    assert "not-the-secret" not in message


def test_unknown_client_is_refused_with_700016(tenant: TenantProcess) -> None:
    assert "AADSTS700016" in refused(tenant, client_id="11111111-2222-3333-4444-555555555555")


def test_unknown_tenant_is_refused_with_90002(tenant: TenantProcess) -> None:
    unknown = "99999999-2222-3333-4444-555555555555"
    # MSAL (sync) reads the tenant's OpenID configuration first, which Entra refuses for unknown tenants.
    assert "Unable to get authority configuration" in refused(tenant, tenant_id=unknown)

    async def get() -> None:
        async with AsyncClientSecretCredential(
            unknown,
            tenant.client_id,
            tenant.client_secret,
            authority=tenant.authority,
            disable_instance_discovery=True,
        ) as async_credential:
            await async_credential.get_token(GRAPH_SCOPE)

    with pytest.raises(ClientAuthenticationError, match="AADSTS90002"):
        asyncio.run(get())


def test_unknown_resource_is_refused_with_500011(tenant: TenantProcess) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
        credential(tenant).get_token("https://contoso.example/.default")


def test_scope_without_default_suffix_is_invalid_scope(tenant: TenantProcess) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS1002012"):
        credential(tenant).get_token("https://graph.microsoft.com/User.Read")


def test_admin_created_tenant_has_its_own_identity(tenant_admin: TenantProcess) -> None:
    second = tenant_admin.create_tenant()
    assert second["tenantId"] != tenant_admin.tenant_id
    assert second["clientId"] != tenant_admin.client_id
    assert second["authority"] == tenant_admin.authority

    token = ClientSecretCredential(
        second["tenantId"],
        second["clientId"],
        second["clientSecret"],
        authority=second["authority"],
        disable_instance_discovery=True,
    ).get_token(GRAPH_SCOPE)
    claims = verified_claims(tenant_admin, token.token, "https://graph.microsoft.com")
    assert claims["tid"] == second["tenantId"]
    assert "Application.ReadWrite.OwnedBy" in claims["roles"]
    # The home tenant's identity has no service principal in the new tenant.
    assert "AADSTS700016" in refused(tenant_admin, tenant_id=second["tenantId"])


# ---- credentials made through Graph (msgraph-sdk) ----------------------------------------------


def _app_id(app: Application) -> str:
    assert app.app_id is not None
    return app.app_id


def test_expired_and_removed_secrets_are_refused(tenant: TenantProcess) -> None:
    async def arrange() -> tuple[str, str, str, str]:
        async with graph_client(tenant) as client:
            app, _ = await new_app_with_principal(client, f"entra-expiry-{uuid.uuid4()}")
            now = dt.datetime.now(dt.UTC)
            expired = await add_password(client, app, now - dt.timedelta(days=2), now - dt.timedelta(days=1))
            removed = await add_password(client, app)
            assert app.id is not None and removed.key_id is not None
            # The removed secret works before its removal...
            assert secret_credential(
                tenant, clientId=_app_id(app), clientSecret=str(removed.secret_text)
            ).get_token(GRAPH_SCOPE)
            body = RemovePasswordPostRequestBody(key_id=removed.key_id)
            await client.applications.by_application_id(app.id).remove_password.post(body)
            return _app_id(app), str(expired.secret_text), str(removed.secret_text), app.id

    app_id, expired_secret, removed_secret, _ = asyncio.run(arrange())

    assert "AADSTS7000222" in refused(tenant, client_id=app_id, client_secret=expired_secret)
    assert "AADSTS7000215" in refused(tenant, client_id=app_id, client_secret=removed_secret)


def test_new_secret_works_only_after_the_propagation_delay(tenant_admin: TenantProcess) -> None:
    # A long delay makes the first refusal certain however slow the machine; then a short one lets
    # the same secret through once it is old enough.
    tenant_admin.configure(propagationDelayS=120)

    async def arrange() -> tuple[str, str]:
        async with graph_client(tenant_admin) as client:
            app, _ = await new_app_with_principal(client, f"entra-propagation-{uuid.uuid4()}")
            return _app_id(app), str((await add_password(client, app)).secret_text)

    asked = time.monotonic()  # the secret is younger than time since `asked`, older than since `issued`
    app_id, secret = asyncio.run(arrange())
    issued = time.monotonic()
    assert "AADSTS7000215" in refused(tenant_admin, client_id=app_id, client_secret=secret)

    # In the second half of the delay Entra's replicas answer "expired" for it, as reported for
    # secrets minutes old. The delay (read per request) is set to twice the secret's least possible
    # age, once that is 8 s: the request must come before the age reaches the delay, which leaves
    # 8 s less the time arrange() took, however slow the machine.
    time.sleep(max(0.0, 8.0 - (time.monotonic() - issued)))
    youngest = time.monotonic() - issued
    tenant_admin.configure(propagationDelayS=2 * youngest)
    assert time.monotonic() - asked < 2 * youngest, "arrange() took longer than the window allows"
    assert "AADSTS7000222" in refused(tenant_admin, client_id=app_id, client_secret=secret)

    tenant_admin.configure(propagationDelayS=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            token = credential(tenant_admin, client_id=app_id, client_secret=secret).get_token(GRAPH_SCOPE)
            break
        except ClientAuthenticationError:
            assert time.monotonic() < deadline, "secret never became usable"
            time.sleep(0.25)
    assert verified_claims(tenant_admin, token.token, "https://graph.microsoft.com")["appid"] == app_id


def test_certificate_assertions_sync_and_async(tenant: TenantProcess) -> None:
    der, pem = self_signed_certificate()

    async def arrange() -> str:
        async with graph_client(tenant) as client:
            app, _ = await new_app_with_principal(client, f"entra-certificate-{uuid.uuid4()}")
            assert app.id is not None
            key = KeyCredential(key=der, type="AsymmetricX509Cert", usage="Verify", display_name="test")
            await client.applications.by_application_id(app.id).patch(Application(key_credentials=[key]))
            return _app_id(app)

    app_id = asyncio.run(arrange())
    options: dict[str, Any] = {"authority": tenant.authority, "disable_instance_discovery": True}

    sync_token = CertificateCredential(tenant.tenant_id, app_id, certificate_data=pem, **options).get_token(
        GRAPH_SCOPE
    )
    assert verified_claims(tenant, sync_token.token, "https://graph.microsoft.com")["appidacr"] == "2"

    async def get_async() -> str:
        async with AsyncCertificateCredential(
            tenant.tenant_id, app_id, certificate_data=pem, **options
        ) as async_credential:
            return (await async_credential.get_token(GRAPH_SCOPE)).token

    assert verified_claims(tenant, asyncio.run(get_async()), "https://graph.microsoft.com")["appid"] == app_id

    _, other_pem = self_signed_certificate()  # a certificate the app does not hold
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        CertificateCredential(tenant.tenant_id, app_id, certificate_data=other_pem, **options).get_token(
            GRAPH_SCOPE
        )


def test_app_without_a_service_principal_is_refused_with_700016(tenant: TenantProcess) -> None:
    async def arrange() -> tuple[str, str]:
        async with graph_client(tenant) as client:
            app = await client.applications.post(
                Application(display_name=f"entra-no-sp-{uuid.uuid4()}", sign_in_audience="AzureADMyOrg")
            )
            assert app is not None
            return _app_id(app), str((await add_password(client, app)).secret_text)

    app_id, secret = asyncio.run(arrange())
    assert "AADSTS700016" in refused(tenant, client_id=app_id, client_secret=secret)


def test_graph_refuses_tokens_for_another_audience_or_tampered(tenant: TenantProcess) -> None:
    vault_token = credential(tenant).get_token(VAULT_SCOPE).token
    graph_token = credential(tenant).get_token(GRAPH_SCOPE).token
    header, payload, signature = graph_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["Application.ReadWrite.All"]  # an attacker's wish
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    async def list_with(token: str) -> None:
        async with graph_client(tenant, StaticToken(token)) as client:
            await client.applications.get()

    for token in (vault_token, f"{header}.{forged_payload}.{signature}"):
        with pytest.raises(ODataError) as caught:
            asyncio.run(list_with(token))
        assert caught.value.response_status_code == 401
        assert caught.value.error is not None and caught.value.error.code == "InvalidAuthenticationToken"
    asyncio.run(list_with(graph_token))  # the genuine token works


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"grant_type=client_credentials"),  # no boundary: not parseable
        ("application/json", b'{"grant_type": "client_credentials"}'),  # Entra reads forms only
        ("application/x-www-form-urlencoded", b"scope=x"),
    ],
)
def test_malformed_token_requests_get_entra_errors_not_500(
    tenant: TenantProcess, content_type: str, body: bytes
) -> None:
    request = urllib.request.Request(
        f"{tenant.authority}/{tenant.tenant_id}/oauth2/v2.0/token",
        data=body,
        method="POST",
        headers={"Content-Type": content_type},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=tenant.ca_file))
    answer = json.loads(caught.value.read())
    assert caught.value.code == 400
    assert answer["error"] == "invalid_request"
    assert answer["error_codes"] == [900144]
