"""How the token endpoint authenticates a client: its secret or its certificate assertion.

Reads a directory through context.ClientRecord / ResourceRecord; raises EntraError with Entra's codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import jwt

from devstack.tenant.context import ClientRecord
from devstack.tenant.tokens import b64url_decode

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_LEEWAY_S = 300


class EntraError(Exception):
    """An answer of the token endpoint: HTTP status, OAuth error, AADSTS code, description."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description


def unknown_client(client_id: str, tenant: str) -> EntraError:
    return EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or "
        "consented to by any user in the tenant. You may have sent your authentication request to the "
        "wrong tenant.",
    )


def check_secret(client: ClientRecord, secret: str, now: float, delay: float) -> str:
    """The keyId of the matching, valid, propagated secret; EntraError otherwise."""
    encoded = secret.encode()
    expired = False
    for record in client.secrets:
        if not hmac.compare_digest(hashlib.sha256(record.salt + encoded).digest(), record.digest):
            continue
        age = now - record.created
        if age < delay:
            # Not yet replicated to the token service. Entra first answers as if the secret were
            # unknown (7000215), then, from replicas that hold it half-written, "expired" (7000222):
            # callers must treat both as propagation while they wait for a new secret.
            expired = expired or age >= delay / 2
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


def check_assertion(
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
