"""Entra ID's v2.0 endpoints: OpenID configuration, JWKS and the client-credentials token endpoint."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from devstack.tenant.client_credentials import (
    ASSERTION_TYPE,
    EntraError,
    check_assertion,
    check_secret,
    unknown_client,
)
from devstack.tenant.context import BASE_URL, REGISTRY, SIM, ClientRecord, DirectoryView
from devstack.tenant.errors import entra_error, json_response
from devstack.tenant.federation import (
    check_federated_assertion,
    is_federated_assertion,
    issuer_keys,
    v2_issuer,
)
from devstack.tenant.sign_in_activity import SIGN_INS
from devstack.tenant.tokens import SigningKey

SIGNING_KEY: web.AppKey[SigningKey] = web.AppKey("signing_key", SigningKey)
TOKEN_LIFETIME_S = 3600
_REUSE_S = 300  # an identical token request within 5 min gets the same token (saves an RSA signature)
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def routes() -> list[web.RouteDef]:
    return [
        web.get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        web.get("/{tenant}/discovery/v2.0/keys", jwks),
        web.post("/{tenant}/oauth2/v2.0/token", token),
    ]


async def openid_configuration(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    directory = request.app[REGISTRY].get(tenant)
    if directory is None:
        return entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
    base = request.app[BASE_URL]
    tid = directory.tenant_id
    return json_response(
        {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": v2_issuer(base, tid),
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "roles"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }
    )


async def jwks(request: web.Request) -> web.Response:
    return json_response({"keys": [request.app[SIGNING_KEY].jwk]})


def _resource_scope(scope: str) -> str:
    scopes = [s for s in scope.split() if s.lower() not in _RESERVED_SCOPES]
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise EntraError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier (application ID URI).",
        )
    return scopes[0]


def _wants_cp1(claims_parameter: str | None) -> bool:
    if not claims_parameter:
        return False
    try:
        parsed = json.loads(claims_parameter)
        return "CP1" in parsed["access_token"]["xms_cc"]["values"]
    except (ValueError, KeyError, TypeError):
        return False


class TokenIssuer:
    """Mints access tokens; reuses a token for identical requests within a few minutes."""

    def __init__(self, signing_key: SigningKey) -> None:
        self._signing_key = signing_key
        self._recent: dict[tuple[Any, ...], tuple[str, float]] = {}

    def issue(
        self,
        *,
        directory: DirectoryView,
        client: ClientRecord,
        resource_sp_id: str,
        audience: str,
        credential_key_id: str,
        by_certificate: bool,
        cp1: bool,
    ) -> tuple[str, int]:
        assert client.service_principal_id is not None
        roles = sorted(directory.granted_app_role_values(client.service_principal_id, resource_sp_id))
        key = (directory.tenant_id, client.app_id, audience, tuple(roles), credential_key_id, cp1)
        now = time.time()
        recent = self._recent.get(key)
        if recent is not None and now - (recent[1] - TOKEN_LIFETIME_S) < _REUSE_S:
            return recent[0], int(recent[1] - now)
        issuer = f"https://sts.windows.net/{directory.tenant_id}/"
        iat = int(now)
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer,
            "iat": iat,
            "nbf": iat,
            "exp": iat + TOKEN_LIFETIME_S,
            "app_displayname": client.display_name,
            "appid": client.app_id,
            "appidacr": "2" if by_certificate else "1",
            # v1 tokens name the client in appid/appidacr only; azp/azpacr are v2 claims (Entra's
            # access token claims reference), so a v1 token carries no azp.
            "idp": issuer,
            "idtyp": "app",
            "oid": client.service_principal_id,
            "sub": client.service_principal_id,
            "tid": directory.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if roles:
            claims["roles"] = roles
        if cp1:
            claims["xms_cc"] = ["CP1"]
        access_token = self._signing_key.sign(claims)
        if len(self._recent) > 10_000:
            self._recent.clear()
        self._recent[key] = (access_token, float(iat + TOKEN_LIFETIME_S))
        return access_token, TOKEN_LIFETIME_S


TOKEN_ISSUER: web.AppKey[TokenIssuer] = web.AppKey("token_issuer", TokenIssuer)


async def token(request: web.Request) -> web.Response:
    try:
        return await _token(request)
    except EntraError as error:
        return entra_error(error.status, error.error, error.code, error.description)


def _authenticate(
    request: web.Request, values: dict[str, str], tenant: str, directory: DirectoryView, client: ClientRecord
) -> tuple[str, bool]:
    """(id of the credential that authenticated the client, whether it was an assertion: appidacr 2)."""
    now, delay = time.time(), request.app[SIM].propagation_delay_s
    if "client_secret" in values:
        return check_secret(client, values["client_secret"], now, delay), False
    if "client_assertion" not in values:
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    if values.get("client_assertion_type") != ASSERTION_TYPE:
        raise EntraError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
    assertion, base = values["client_assertion"], request.app[BASE_URL]
    if is_federated_assertion(assertion, client.app_id):
        keys = issuer_keys(base, request.app[REGISTRY], request.app[SIGNING_KEY])
        return check_federated_assertion(client, assertion, keys, now, delay), True
    audiences = {f"{base}/{t}/oauth2/v2.0/token" for t in (tenant, directory.tenant_id)}
    return check_assertion(client, assertion, audiences, now, delay), True


async def _token(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError):  # not a form (e.g. multipart without a boundary)
        form = MultiDictProxy(MultiDict())
    values = {key: str(value) for key, value in form.items()}
    if "grant_type" not in values:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )
    if values["grant_type"] != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{values.get('grant_type', '')}'.",
        )
    for name in ("client_id", "scope"):
        if not values.get(name):
            raise EntraError(
                400,
                "invalid_request",
                900144,
                f"The request body must contain the following parameter: '{name}'.",
            )
    client_id, scope = values["client_id"], _resource_scope(values["scope"])
    directory = request.app[REGISTRY].get(tenant)
    if directory is None:
        raise EntraError(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
        )
    client = directory.client_record(client_id)
    if client is None or client.service_principal_id is None:
        raise unknown_client(client_id, tenant)
    key_id, by_certificate = _authenticate(request, values, tenant, directory, client)
    resource = directory.resource_record(scope)
    if resource is None:
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {scope.removesuffix('/.default')} was not found in the tenant "
            f"named {tenant}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant.",
        )
    access_token, expires_in = request.app[TOKEN_ISSUER].issue(
        directory=directory,
        client=client,
        resource_sp_id=resource.service_principal_id,
        audience=resource.audience,
        credential_key_id=key_id,
        by_certificate=by_certificate,
        cp1=_wants_cp1(values.get("claims")),
    )
    sign_ins = request.app.get(SIGN_INS)
    if sign_ins is not None:  # the credential's last sign-in, for Graph's sign-in activity report
        sign_ins.record(directory.tenant_id, client, key_id, resource.service_principal_id, time.time())
    return json_response(
        {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        },
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )
