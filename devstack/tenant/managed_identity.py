"""The managed identity endpoint of App Service and Azure Functions (api-version 2019-08-01).

azure-identity's ManagedIdentityCredential (async: its own client; sync: through MSAL) uses it when
IDENTITY_ENDPOINT and IDENTITY_HEADER are set:

    GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<resource>[&client_id=|principal_id=|
        object_id=|mi_res_id=]                 header X-IDENTITY-HEADER: <IDENTITY_HEADER>
    200 {"access_token", "expires_on" (epoch seconds, a string), "resource", "token_type", "client_id"}

Each tenant stands for one function app whose system-assigned identity is the tenant's bootstrap
service principal (the one holding the registrar's Graph app roles and Key Vault roles); its
IDENTITY_HEADER tells the endpoint which tenant asks. Tokens are those the token endpoint issues to
that service principal (same claims and roles, appidacr 2), so Graph and Key Vault accept them.
Resource api://AzureADTokenExchange gives the v2.0 token a workload identity federation trusts
(iss = the tenant's v2.0 issuer, sub = the service principal's object id): see federation.py.

Errors take App Service's shape {"statusCode", "message", "correlationId"} (errors.msi_error). Only
400 "Unable to load the proper Managed Identity." (an identity the app does not have) is documented
by observation; the statuses of the other refusals are App Service's usual ones, not documented.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from devstack.tenant.context import BASE_URL, REGISTRY, ClientRecord
from devstack.tenant.entra import SIGNING_KEY, TOKEN_ISSUER, TOKEN_LIFETIME_S
from devstack.tenant.errors import JSON, msi_error
from devstack.tenant.federation import EXCHANGE_AUDIENCE, v2_issuer
from devstack.tenant.tokens import SigningKey

MSI_PATH = "/msi/token"
API_VERSION = "2019-08-01"
IDENTITY_HEADER = "X-IDENTITY-HEADER"
_SELECTORS = ("client_id", "principal_id", "object_id", "mi_res_id")
_CREDENTIAL_KEY = "managed-identity"  # TokenIssuer's reuse key: apart from the secret's tokens
_UNKNOWN_IDENTITY = "Unable to load the proper Managed Identity."


def routes() -> list[web.RouteDef]:
    return [web.get(MSI_PATH, token)]


def endpoint(base_url: str) -> str:
    """The IDENTITY_ENDPOINT value."""
    return base_url + MSI_PATH


def _selected(query: Any, client: ClientRecord) -> bool:
    """Whether the user-assigned identity named in the query (if any) is the app's identity.

    The app has only its system-assigned identity, which client_id (its app id) and principal_id /
    object_id (its service principal's object id) may name too; mi_res_id names user-assigned
    identities (an ARM resource id) only, so it never matches."""
    if query.get("client_id"):
        return str(query["client_id"]).lower() == client.app_id.lower()
    named = query.get("principal_id") or query.get("object_id")
    if named:
        return str(named).lower() == str(client.service_principal_id).lower()
    return not query.get("mi_res_id")


def exchange_token(
    signing_key: SigningKey, base_url: str, tenant_id: str, client: ClientRecord
) -> tuple[str, int]:
    """A v2.0 token for api://AzureADTokenExchange: the assertion a federated credential trusts."""
    assert client.service_principal_id is not None
    iat = int(time.time())
    claims = {
        "aud": EXCHANGE_AUDIENCE,
        "iss": v2_issuer(base_url, tenant_id),
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME_S,
        "azp": client.app_id,
        "azpacr": "2",
        "idtyp": "app",
        "oid": client.service_principal_id,
        "sub": client.service_principal_id,
        "tid": tenant_id,
        "uti": secrets.token_urlsafe(16),
        "ver": "2.0",
    }
    return signing_key.sign(claims), TOKEN_LIFETIME_S


class _Refused(Exception):  # noqa: N818  (an answer, not a failure of the server)
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def token(request: web.Request) -> web.Response:
    try:
        return _token(request)
    except _Refused as refused:
        return msi_error(refused.status, refused.message)


def _caller(request: web.Request) -> tuple[str, Any]:
    """(tenant id, registry entry) of the app whose IDENTITY_HEADER was presented."""
    presented = request.headers.get(IDENTITY_HEADER)
    if not presented:
        raise _Refused(401, f"Unauthorized request: the {IDENTITY_HEADER} header is missing.")
    found = request.app[REGISTRY].by_identity_header(presented)
    if found is None:
        raise _Refused(401, f"Unauthorized request: the {IDENTITY_HEADER} header is not valid.")
    return found


def _token(request: web.Request) -> web.Response:
    tenant_id, entry = _caller(request)
    query = request.query
    if query.get("api-version") != API_VERSION:
        raise _Refused(
            400, f"The api-version '{query.get('api-version', '')}' is not supported; use {API_VERSION}."
        )
    resource = query.get("resource", "").strip()
    if not resource:
        raise _Refused(400, "The 'resource' query parameter is required.")
    if sum(1 for name in _SELECTORS if query.get(name)) > 1:
        raise _Refused(400, f"Only one of {', '.join(_SELECTORS)} may be given.")
    client = entry.directory.client_record(entry.client_id)
    if client is None or client.service_principal_id is None or not _selected(query, client):
        raise _Refused(400, _UNKNOWN_IDENTITY)
    base = request.app[BASE_URL]
    if resource.removesuffix("/.default") == EXCHANGE_AUDIENCE:
        access_token, expires_in = exchange_token(request.app[SIGNING_KEY], base, tenant_id, client)
    else:
        target = entry.directory.resource_record(resource)
        if target is None:
            # App Service relays Entra's refusal; MSAL notes it comes back as a vague 500.
            raise _Refused(
                500,
                f"AADSTS500011: The resource principal named {resource} was not found in the tenant "
                f"named {tenant_id}.",
            )
        access_token, expires_in = request.app[TOKEN_ISSUER].issue(
            directory=entry.directory,
            client=client,
            resource_sp_id=target.service_principal_id,
            audience=target.audience,
            credential_key_id=_CREDENTIAL_KEY,
            by_certificate=True,  # appidacr 2, as Entra marks managed identity tokens
            cp1=False,
        )
    body = {
        "access_token": access_token,
        "expires_on": str(int(time.time()) + expires_in),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client.app_id,
    }
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type=JSON,
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )
