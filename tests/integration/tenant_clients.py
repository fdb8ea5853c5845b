"""Official SDK clients pointed at the local tenant, for the tenant's own integration tests."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from azure.core.credentials import AccessToken
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.service_principal import ServicePrincipal

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def identity(source: Any) -> Mapping[str, str]:
    """The startup-line keys of a TenantProcess or of a POST /_sim/tenants answer."""
    return source.info if hasattr(source, "info") else source


def secret_credential(source: Any, **overrides: str) -> ClientSecretCredential:
    values = {**identity(source), **overrides}
    return ClientSecretCredential(
        values["tenantId"],
        values["clientId"],
        values["clientSecret"],
        authority=values["authority"],
        disable_instance_discovery=True,
    )


def async_secret_credential(source: Any, **overrides: str) -> AsyncClientSecretCredential:
    values = {**identity(source), **overrides}
    return AsyncClientSecretCredential(
        values["tenantId"],
        values["clientId"],
        values["clientSecret"],
        authority=values["authority"],
        disable_instance_discovery=True,
    )


class StaticToken:
    """An async credential that always presents the given access token (to send bad tokens)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


@asynccontextmanager
async def graph_client(source: Any, credential: Any = None) -> AsyncIterator[GraphServiceClient]:
    """msgraph-sdk on the local tenant, as the source's bootstrap identity unless `credential` is given."""
    async with credential or async_secret_credential(source) as active:
        client = GraphServiceClient(credentials=active, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = identity(source)["graphUrl"]
        yield client


async def new_app_with_principal(
    client: GraphServiceClient, name: str
) -> tuple[Application, ServicePrincipal]:
    app = await client.applications.post(Application(display_name=name, sign_in_audience="AzureADMyOrg"))
    assert app is not None and app.app_id is not None
    sp = await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    assert sp is not None
    return app, sp


async def add_password(
    client: GraphServiceClient,
    app: Application,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> PasswordCredential:
    assert app.id is not None
    body = AddPasswordPostRequestBody(
        password_credential=PasswordCredential(display_name="test", start_date_time=start, end_date_time=end)
    )
    created = await client.applications.by_application_id(app.id).add_password.post(body)
    assert created is not None and created.secret_text
    return created


def self_signed_certificate(days: int = 30) -> tuple[bytes, bytes]:
    """(certificate DER, PEM of private key + certificate) for CertificateCredential."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tenant test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    return certificate.public_bytes(serialization.Encoding.DER), pem


# Variables that would make azure-identity pick another managed identity flavour than App Service's.
OTHER_MANAGED_IDENTITY_VARIABLES = (
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
)


def act_as_function_app(tenant: Any, monkeypatch: Any) -> None:
    """Give this process the environment App Service gives a function app with a system-assigned
    managed identity (IDENTITY_ENDPOINT, IDENTITY_HEADER): the tenant's identity endpoint."""
    for name in OTHER_MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity(tenant)["identityEndpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", identity(tenant)["identityHeader"])
