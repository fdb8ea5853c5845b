"""Certificate policies: validate what a client sends, fill Key Vault's defaults, describe imports."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .common import parse_attributes
from .errors import bad_parameter
from .model import now_s
from .x509gen import PEM, PKCS12, Material

DEFAULT_EKUS = [ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string]
DEFAULT_KEY_USAGE = ["digitalSignature", "keyEncipherment"]
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "P-256K"}


def _object(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_parameter(f"{what} must be a JSON object.")
    return raw


def normalize(raw: Any, *, for_create: bool) -> dict[str, Any]:
    """A complete policy (Key Vault fills defaults); for_create requires a Self issuer and a subject."""
    body = _object(raw, "policy")
    key_props = dict(_object(body.get("key_props"), "key_props"))
    kty = str(key_props.get("kty") or "RSA")
    key_props.setdefault("exportable", True)
    key_props["kty"] = kty
    if kty.upper().startswith("RSA"):
        key_props["key_size"] = key_props.get("key_size") or 2048
    else:
        key_props["crv"] = key_props.get("crv") or "P-256"
    key_props.setdefault("reuse_key", False)

    secret_props = dict(_object(body.get("secret_props"), "secret_props"))
    content_type = secret_props.get("contentType") or PKCS12
    if content_type not in (PKCS12, PEM):
        raise bad_parameter(f"Invalid contentType {content_type!r}: use {PKCS12} or {PEM}.")
    secret_props["contentType"] = content_type

    x509_props = dict(_object(body.get("x509_props"), "x509_props"))
    sans = _object(x509_props.get("sans"), "sans")
    if for_create and not x509_props.get("subject") and not any(sans.values()):
        raise bad_parameter("The policy must have a subject or subject alternative names.")
    x509_props["ekus"] = x509_props.get("ekus") or DEFAULT_EKUS
    x509_props["key_usage"] = x509_props.get("key_usage") or DEFAULT_KEY_USAGE
    months = x509_props.get("validity_months") or 12
    if not isinstance(months, int) or not 1 <= months <= 1200:
        raise bad_parameter("validity_months must be a whole number of months between 1 and 1200.")
    x509_props["validity_months"] = months
    x509_props["basic_constraints"] = {"ca": False}

    issuer = dict(_object(body.get("issuer"), "issuer"))
    issuer["name"] = issuer.get("name") or "Self"
    if for_create and issuer["name"].lower() != "self":
        raise bad_parameter(
            f"Issuer {issuer['name']!r} is not supported by the devstack vault: only the self-signed issuer 'Self'."
        )
    lifetime_actions = body.get("lifetime_actions") or [
        {"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}
    ]
    now = now_s()
    attributes = {"enabled": True, **parse_attributes(body.get("attributes")), "created": now, "updated": now}
    return {
        "key_props": key_props,
        "secret_props": secret_props,
        "x509_props": x509_props,
        "lifetime_actions": lifetime_actions,
        "issuer": issuer,
        "attributes": attributes,
    }


def merge(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """PATCH /policy: the sections sent replace the current ones, then defaults are filled."""
    body = _object(update, "policy")
    merged = {**current, **{k: v for k, v in body.items() if k in current and v is not None}}
    created = current.get("attributes", {}).get("created", now_s())
    result = normalize(merged, for_create=False)
    result["attributes"]["created"] = created
    return result


def for_import(material: Material, fmt: str, raw: Any) -> dict[str, Any]:
    """The policy Key Vault records for an imported certificate: what the certificate says."""
    body = dict(_object(raw, "policy"))
    key = material.key
    if isinstance(key, rsa.RSAPrivateKey):
        key_props: dict[str, Any] = {"kty": "RSA", "key_size": key.key_size}
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        key_props = {"kty": "EC", "crv": _CURVE_NAMES.get(key.curve.name, key.curve.name)}
    body["key_props"] = {**key_props, **_object(body.get("key_props"), "key_props")}
    secret_props = _object(body.get("secret_props"), "secret_props")
    body["secret_props"] = {"contentType": secret_props.get("contentType") or fmt}
    x509_props = dict(_object(body.get("x509_props"), "x509_props"))
    x509_props.setdefault("subject", material.certificate.subject.rfc4514_string())
    days = (material.exp - material.nbf) // 86400
    x509_props.setdefault("validity_months", max(1, round(days / 30.4)))
    body["x509_props"] = x509_props
    body.setdefault("issuer", {"name": "Unknown"})
    return normalize(body, for_create=False)


def to_json(policy: dict[str, Any], policy_id: str) -> dict[str, Any]:
    return {"id": policy_id, **policy}
