"""RS256 access tokens: minted by the token endpoint, verified by the Authenticator.

One signing key serves every tenant (as Entra's keys do); its kid is published in each tenant's JWKS.
Signing is the only per-token public-key operation; verification results are cached by auth.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(ValueError):
    """A token that is malformed or whose signature does not verify."""


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    def __init__(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self._public = key.public_key()
        der = certificate.public_bytes(serialization.Encoding.DER)
        self.kid = b64url(hashlib.sha1(der, usedforsecurity=False).digest())  # x5t: SHA-1 by definition
        numbers = self._public.public_numbers()
        self.jwk: dict[str, Any] = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _int_b64(numbers.n),
            "e": _int_b64(numbers.e),
            "x5c": [base64.b64encode(der).decode("ascii")],
        }
        header = {"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid}
        self._header_segment = b64url(json.dumps(header, separators=(",", ":")).encode())

    def sign(self, claims: dict[str, Any]) -> str:
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header_segment}.{payload}".encode("ascii")
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a token this key signed; raise TokenError otherwise (no date checks)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a JWT")
        try:
            header = json.loads(b64url_decode(parts[0]))
            signature = b64url_decode(parts[2])
        except (ValueError, binascii.Error) as error:
            raise TokenError("malformed JWT") from error
        if not isinstance(header, dict) or header.get("alg") != "RS256" or header.get("kid") != self.kid:
            raise TokenError("unknown signing key")
        try:
            self._public.verify(
                signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, UnicodeEncodeError) as error:
            raise TokenError("signature verification failed") from error
        try:
            claims = json.loads(b64url_decode(parts[1]))
        except (ValueError, binascii.Error) as error:
            raise TokenError("malformed JWT payload") from error
        if not isinstance(claims, dict):
            raise TokenError("malformed JWT payload")
        return claims
