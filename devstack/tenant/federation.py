"""Workload identity federation at the token endpoint: a client assertion issued by another identity
provider (here: a tenant of this server, e.g. a managed identity token for api://AzureADTokenExchange)
checked against the app's federatedIdentityCredentials.

Entra's order, followed here: find the credentials trusting the assertion's issuer (AADSTS700211),
fetch that issuer's keys (AADSTS50166 when it cannot), verify the signature (AADSTS700027) and the
lifetime (AADSTS700024), then match the subject (AADSTS700213) and the audience (AADSTS700212).
Matching is case-sensitive, as Entra's has been since 2024. A credential younger than the
propagation delay is ignored, as if it did not exist yet (secrets and certificates behave the same).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from devstack.tenant.client_credentials import EntraError
from devstack.tenant.context import ClientRecord
from devstack.tenant.tokens import SigningKey, TokenError, b64url_decode

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
_DOCS = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
_LEEWAY_S = 300  # clock skew Entra tolerates on assertion lifetimes (as for certificate assertions)

# iss -> the signing key of the tenant that issues tokens with that iss, or None when this server
# hosts no such issuer (Entra would fetch <iss>/.well-known/openid-configuration: unreachable here).
IssuerKeys = Callable[[str], SigningKey | None]


def v2_issuer(base_url: str, tenant_id: str) -> str:
    """The `issuer` of a tenant's v2.0 openid-configuration: what federated credentials trust."""
    return f"{base_url}/{tenant_id}/v2.0"


def issuer_keys(base_url: str, registry: Any, signing_key: SigningKey) -> IssuerKeys:
    """IssuerKeys for the tenants of this server. They share one signing key (as Entra's tenants
    share theirs), but only an issuer naming a tenant that exists here has keys at all."""
    prefix = base_url + "/"

    def keys(issuer: str) -> SigningKey | None:
        if not (issuer.startswith(prefix) and issuer.endswith("/v2.0")):
            return None
        tenant_id = issuer[len(prefix) : -len("/v2.0")]
        if "/" in tenant_id or registry.get(tenant_id) is None:
            return None
        return signing_key

    return keys


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(JOSE header, claims) without any check, or None when it is not a JWT."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


def is_federated_assertion(assertion: str, client_id: str) -> bool:
    """Whether the token endpoint must treat the assertion as federated rather than as a certificate
    assertion. A certificate assertion names its certificate (x5t or x5t#S256) and is issued by the
    client itself (iss = client_id, RFC 7523). Tokens of other identity providers fail one or the
    other: most carry no thumbprint, and Entra's own tokens (which do carry x5t) have another iss."""
    parts = _unverified(assertion)
    if parts is None:
        return False  # the certificate path answers a malformed JWT as Entra does
    header, claims = parts
    names_certificate = "x5t" in header or "x5t#S256" in header
    return not names_certificate or str(claims.get("iss", "")).lower() != client_id.lower()


def _no_match(what: str, value: Any, code: int) -> EntraError:
    return EntraError(
        401,
        "invalid_client",
        code,
        f"No matching federated identity record found for presented assertion {what} '{value}'. "
        f"Check your federated identity credential Subject, Audience and Issuer against the presented "
        f"assertion. {_DOCS}",
    )


def _invalid_signature(reason: str) -> EntraError:
    return EntraError(
        401, "invalid_client", 700027, f"Client assertion contains an invalid signature. [Reason - {reason}]"
    )


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(seconds))


def _check_lifetime(claims: dict[str, Any], now: float) -> None:
    try:
        exp = float(claims["exp"])
        nbf = float(claims.get("nbf", claims.get("iat", 0)))
    except (KeyError, TypeError, ValueError):
        raise _invalid_signature("The assertion has no valid 'exp' claim.") from None
    if now > exp + _LEEWAY_S or nbf > now + _LEEWAY_S:
        raise EntraError(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {_utc(now)}, assertion "
            f"valid from {_utc(nbf)}, expiry time of assertion {_utc(exp)}. Review the documentation at "
            f"{_DOCS} .",
        )


def check_federated_assertion(
    client: ClientRecord, assertion: str, keys: IssuerKeys, now: float, delay: float
) -> str:
    """The id of the federatedIdentityCredential that accepts the assertion; EntraError otherwise."""
    parts = _unverified(assertion)
    if parts is None:
        raise _invalid_signature("The assertion is not a well-formed JWT.")
    _, claims = parts
    issuer = claims.get("iss")
    trusting = [f for f in client.federated if f.issuer == issuer and now - f.created >= delay]
    if not trusting:
        raise _no_match("issuer", issuer, 700211)
    key = keys(str(issuer))
    if key is None:
        raise EntraError(400, "invalid_request", 50166, "Request to External OIDC endpoint failed.")
    try:
        key.verify(assertion)
    except TokenError as error:
        if str(error) == "unknown signing key":
            raise _invalid_signature("The key was not found.") from None
        raise _invalid_signature(
            "The key was found, but use of the key to verify the signature failed."
        ) from None
    _check_lifetime(claims, now)
    subject = claims.get("sub")
    same_subject = [f for f in trusting if f.subject == subject]
    if not same_subject:
        raise _no_match("subject", subject, 700213)
    audience = claims.get("aud")
    presented = set(audience) if isinstance(audience, list) else {audience}
    for credential in same_subject:
        if presented & set(credential.audiences):
            return credential.id
    raise _no_match("audience", audience if not isinstance(audience, list) else " ".join(audience), 700212)
