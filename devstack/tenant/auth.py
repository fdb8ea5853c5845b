"""Bearer token validation for Graph and Key Vault (the Authenticator of context.py).

A token is verified once (RSA signature, claims); the result is cached by the token string until the
token expires, so every later request with the same token costs a dict lookup.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from devstack.tenant.context import KEY_VAULT_RESOURCE, Principal, TenantRegistryView, Unauthorized
from devstack.tenant.errors import graph_error, vault_error
from devstack.tenant.tokens import SigningKey, TokenError

_CACHE_LIMIT = 20_000
_CLOCK_SKEW_S = 300


class Authenticator:
    """Callable as ``await authenticate(request, resource) -> Principal``; raises Unauthorized."""

    def __init__(self, signing_key: SigningKey, registry: TenantRegistryView) -> None:
        self._signing_key = signing_key
        self._registry = registry
        # token -> (principal, exp)
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def __call__(self, request: web.Request, resource: str) -> Principal:
        return self.principal_from_header(request.headers.get("Authorization"), resource)

    def principal_from_header(self, header: str | None, resource: str) -> Principal:
        if not header:
            raise Unauthorized("Access token is empty.", missing=True)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Access token is empty.", missing=True)
        return self.principal_from_token(token.strip(), resource)

    def principal_from_token(self, token: str, resource: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is None:
            principal, exp = self._validate(token, now)
            if len(self._cache) >= _CACHE_LIMIT:
                self._evict(now)
            self._cache[token] = (principal, exp)
        else:
            principal, exp = cached
        if now >= exp + _CLOCK_SKEW_S:
            raise Unauthorized("Lifetime validation failed, the token is expired.")
        if principal.audience != resource:
            raise Unauthorized("Invalid audience.")
        if self._registry.get(principal.tenant_id) is None:
            raise Unauthorized("Invalid tenant.")
        return principal

    def _validate(self, token: str, now: float) -> tuple[Principal, float]:
        try:
            claims = self._signing_key.verify(token)
        except TokenError as error:
            raise Unauthorized("IDX14100: JWT is not well formed or its signature is invalid.") from error
        try:
            exp = float(claims["exp"])
            nbf = float(claims.get("nbf", 0))
            roles = claims.get("roles") or []
            principal = Principal(
                tenant_id=str(claims["tid"]),
                app_id=str(claims["appid"]),
                service_principal_id=str(claims["oid"]),
                roles=frozenset(str(role) for role in roles),
                audience=str(claims["aud"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise Unauthorized("Access token validation failure.") from error
        if nbf > now + _CLOCK_SKEW_S:
            raise Unauthorized("Lifetime validation failed, the token is not yet valid.")
        return principal, exp

    def _evict(self, now: float) -> None:
        expired = [token for token, (_, exp) in self._cache.items() if exp + _CLOCK_SKEW_S <= now]
        for token in expired:
            del self._cache[token]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()


def graph_unauthorized(error: Unauthorized, request: web.Request | None = None) -> web.Response:
    """Graph's 401: InvalidAuthenticationToken with Graph's WWW-Authenticate header."""
    challenge = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        'client_id="00000003-0000-0000-c000-000000000000"'
    )
    message = (
        error.reason
        if error.missing or error.reason.startswith("Access token")
        else f"Access token validation failure. {error.reason}"
    )
    return graph_error(
        401, "InvalidAuthenticationToken", message, request, headers={"WWW-Authenticate": challenge}
    )


def vault_unauthorized(error: Unauthorized, authority_url: str, tenant_id: str) -> web.Response:
    """Key Vault's 401 with the challenge the SDK's challenge policy parses.

    `authority_url` is the tenant server's base URL (https://127.0.0.1:PORT); the SDK asks that
    authority's tenant `tenant_id` for a token for https://vault.azure.net/.default and retries.
    """
    challenge = f'Bearer authorization="{authority_url}/{tenant_id}", resource="{KEY_VAULT_RESOURCE}"'
    message = (
        "AKV10000: Request is missing a Bearer or PoP token."
        if error.missing
        else f"AKV10032: Invalid token. {error.reason}"
    )
    return vault_error(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})


def principal_claims(principal: Principal) -> dict[str, Any]:
    """For logging and stats: what a principal is, without anything secret."""
    return {"tid": principal.tenant_id, "appid": principal.app_id, "oid": principal.service_principal_id}
