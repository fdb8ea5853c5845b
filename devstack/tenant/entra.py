"""Entra ID's v2.0 endpoints: OpenID configuration, JWKS and the client-credentials token endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import jwt
from aiohttp import web

from devstack.tenant.context import (
    BASE_URL,
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    KEY_VAULT_RESOURCE,
    REGISTRY,
    SIM,
    CertificateRecord,
    ClientRecord,
    DirectoryView,
    ResourceRecord,
    SecretRecord,
)
from devstack.tenant.errors import entra_error, json_response
from devstack.tenant.tokens import SigningKey, b64url_decode

SIGNING_KEY: web.AppKey[SigningKey] = web.AppKey("signing_key", SigningKey)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME_S = 3600
_REUSE_S = 300  # an identical token request within 5 min gets the same token (saves an RSA signature)
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}
_ASSERTION_LEEWAY_S = 300


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description


def _client_record(directory: Any, app_id: str) -> ClientRecord | None:
    """directory.client_record(); until graph/ provides it, built from its application objects."""
    if hasattr(directory, "client_record"):
        record: ClientRecord | None = directory.client_record(app_id)
        return record
    app = directory.application_by_app_id(app_id)
    if app is None:
        return None
    sp = directory.service_principal_by_app_id(app_id)
    return ClientRecord(
        app_id=app.app_id,
        application_id=app.id,
        display_name=app.display_name,
        service_principal_id=sp.id if sp is not None else None,
        secrets=tuple(
            SecretRecord(p.key_id, p.salt, p.digest, p.start.timestamp(), p.end.timestamp(), p.created_at)
            for p in app.password_credentials
        ),
        certificates=tuple(
            CertificateRecord(
                k.key_id,
                k.thumbprint_sha1,
                k.thumbprint_sha256,
                k.certificate.public_key(),
                k.start.timestamp(),
                k.end.timestamp(),
                k.created_at,
            )
            for k in app.key_credentials
            if k.usage == "Verify"
        ),
    )


_AUDIENCES = {GRAPH_APP_ID: GRAPH_RESOURCE, KEY_VAULT_APP_ID: KEY_VAULT_RESOURCE}


def _resource_record(directory: Any, scope: str) -> ResourceRecord | None:
    """directory.resource_record(); until graph/ provides it, built from resource_for_scope()."""
    if hasattr(directory, "resource_record"):
        record: ResourceRecord | None = directory.resource_record(scope)
        return record
    sp = directory.resource_for_scope(scope)
    if sp is None:
        return None
    return ResourceRecord(sp.id, sp.app_id, _AUDIENCES.get(sp.app_id, scope.removesuffix("/.default")))


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
            "issuer": f"{base}/{tid}/v2.0",
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


def _unknown_client(client_id: str, tenant: str) -> EntraError:
    return EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or "
        "consented to by any user in the tenant. You may have sent your authentication request to the "
        "wrong tenant.",
    )


def _check_secret(client: ClientRecord, secret: str, now: float, delay: float) -> str:
    """The keyId of the matching, valid, propagated secret; EntraError otherwise."""
    encoded = secret.encode()
    expired = False
    for record in client.secrets:
        if now - record.created < delay:
            continue  # not yet replicated to the token service: as if unknown
        if not hmac.compare_digest(hashlib.sha256(record.salt + encoded).digest(), record.digest):
            continue
        if record.start <= now < record.end:
            return record.key_id
        expired = expired or now >= record.end
    if expired:
        raise EntraError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{client.app_id}' are expired. Visit the Azure "
            "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using "
            "certificate credentials for added security: https://aka.ms/certCreds.",
        )
    raise EntraError(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client "
        f"secret value, not the client secret ID, for a secret added to app '{client.app_id}'.",
    )


def _bad_assertion(reason: str, code: int = 700027) -> EntraError:
    if code == 700027:
        return EntraError(
            401,
            "invalid_client",
            code,
            f"Client assertion contains an invalid signature. [Reason - {reason}]",
        )
    return EntraError(401, "invalid_client", code, reason)


def _assertion_header(assertion: str) -> tuple[str, bytes, str]:
    """(alg, thumbprint, which CertificateRecord field it matches) from the assertion's JOSE header."""
    try:
        header = json.loads(b64url_decode(assertion.split(".", 1)[0]))
    except ValueError:
        raise _bad_assertion("The assertion is not a well-formed JWT.") from None
    if not isinstance(header, dict):
        raise _bad_assertion("The assertion is not a well-formed JWT.")
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise _bad_assertion(f"The algorithm '{alg}' is not supported.")
    try:
        if "x5t#S256" in header:
            return alg, b64url_decode(str(header["x5t#S256"])), "sha256_thumbprint"
        if "x5t" in header:
            return alg, b64url_decode(str(header["x5t"])), "sha1_thumbprint"
    except ValueError:
        pass
    raise _bad_assertion("The key was not found.")


def _check_assertion(
    client: ClientRecord, assertion: str, audiences: set[str], now: float, delay: float
) -> str:
    """The keyId of the certificate that signed a valid client assertion; EntraError otherwise."""
    alg, thumbprint, field = _assertion_header(assertion)
    certificate = next(
        (
            record
            for record in client.certificates
            if getattr(record, field) == thumbprint and now - record.created >= delay
        ),
        None,
    )
    if certificate is None:
        raise _bad_assertion(
            f"The key was not found., Thumbprint of key used by client: '{thumbprint.hex()}'"
        )
    if not certificate.start <= now < certificate.end:
        raise _bad_assertion("The key used is expired.")
    try:
        claims = jwt.decode(
            assertion,
            key=certificate.public_key,
            algorithms=[alg],
            options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]},
            leeway=_ASSERTION_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError:
        raise _bad_assertion("Client assertion is not within its valid time range.", 700024) from None
    except jwt.ImmatureSignatureError:
        raise _bad_assertion("Client assertion is not within its valid time range.", 700024) from None
    except jwt.InvalidTokenError:
        raise _bad_assertion(
            "The key was found, but use of the key to verify the signature failed."
        ) from None
    if claims.get("iss") != client.app_id or claims.get("sub") != client.app_id:
        raise _bad_assertion(
            "Client assertion application identifier doesn't match 'client_id' parameter.", 700021
        )
    audience = claims.get("aud")
    presented = set(audience) if isinstance(audience, list) else {audience}
    if not presented & audiences:
        raise _bad_assertion("The audience claim of the client assertion is invalid.")
    return certificate.key_id


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
            "azp": client.app_id,
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


async def _token(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    form = await request.post()
    values = {key: str(value) for key, value in form.items()}
    if values.get("grant_type") != "client_credentials":
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
    client = _client_record(directory, client_id)
    if client is None or client.service_principal_id is None:
        raise _unknown_client(client_id, tenant)
    now, delay = time.time(), request.app[SIM].propagation_delay_s
    if "client_secret" in values:
        key_id, by_certificate = _check_secret(client, values["client_secret"], now, delay), False
    elif "client_assertion" in values:
        if values.get("client_assertion_type") != ASSERTION_TYPE:
            raise EntraError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        base, tid = request.app[BASE_URL], directory.tenant_id
        audiences = {f"{base}/{t}/oauth2/v2.0/token" for t in (tenant, tid)}
        key_id = _check_assertion(client, values["client_assertion"], audiences, now, delay)
        by_certificate = True
    else:
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    resource = _resource_record(directory, scope)
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
    return json_response(
        {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        },
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )
