"""Certificate material made in the vault: keys, self-signed X.509, PFX/PEM for the backing secret."""

from __future__ import annotations

import base64
import calendar
import datetime
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .errors import bad_parameter

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_RDN = {
    "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME, "E": NameOID.EMAIL_ADDRESS, "DC": NameOID.DOMAIN_COMPONENT,
}  # fmt: skip
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1, "P-256K": ec.SECP256K1,
}  # fmt: skip
_KEY_USAGE = (
    "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
    "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly",
)  # fmt: skip

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class Material:
    key: PrivateKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def x5t(self) -> bytes:
        return self.certificate.fingerprint(hashes.SHA1())  # noqa: S303  (x5t is SHA-1 by definition)

    @property
    def nbf(self) -> int:
        return int(self.certificate.not_valid_before_utc.timestamp())

    @property
    def exp(self) -> int:
        return int(self.certificate.not_valid_after_utc.timestamp())

    def secret_value(self, content_type: str) -> str:
        """What the backing secret holds: base64 PFX (no password) or PEM key + certificate."""
        if content_type == PEM:
            key_pem = self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return (key_pem + self.certificate.public_bytes(serialization.Encoding.PEM)).decode()
        pfx = pkcs12.serialize_key_and_certificates(
            None, self.key, self.certificate, None, serialization.NoEncryption()
        )
        return base64.b64encode(pfx).decode()


def parse_subject(subject: str) -> x509.Name:
    attributes = []
    for part in (p.strip() for p in subject.replace(";", ",").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        oid = _RDN.get(key.strip().upper())
        if not sep or oid is None or not value.strip():
            raise bad_parameter(f"Invalid subject name: {subject[:200]}")
        attributes.append(x509.NameAttribute(oid, value.strip()))
    if not attributes:
        raise bad_parameter("The subject name is empty.")
    return x509.Name(attributes)


def _add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def generate_key(key_props: dict[str, Any]) -> PrivateKey:
    kty = str(key_props.get("kty") or "RSA").upper()
    if kty in ("RSA", "RSA-HSM"):
        size = int(key_props.get("key_size") or 2048)
        if size not in (2048, 3072, 4096):
            raise bad_parameter(f"Invalid key size {size}: RSA keys must be 2048, 3072 or 4096 bits.")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kty in ("EC", "EC-HSM"):
        curve = _CURVES.get(str(key_props.get("crv") or "P-256"))
        if curve is None:
            raise bad_parameter(f"Invalid curve {key_props.get('crv')!r}.")
        return ec.generate_private_key(curve())
    raise bad_parameter(f"Invalid key type {kty!r} for a certificate.")


def _sans(sans: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    names += [x509.DNSName(v) for v in sans.get("dns_names") or []]
    names += [x509.RFC822Name(v) for v in sans.get("emails") or []]
    names += [x509.UniformResourceIdentifier(v) for v in sans.get("uris") or []]
    for upn in sans.get("upns") or []:
        encoded = upn.encode()
        names.append(x509.OtherName(UPN_OID, b"\x0c" + bytes([len(encoded)]) + encoded))  # DER UTF8String
    for address in sans.get("ipAddresses") or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            raise bad_parameter(f"Invalid IP address {address!r} in subject alternative names.") from None
    return names


def self_signed(policy: dict[str, Any]) -> Material:
    """Make the key and a self-signed certificate as Key Vault's "Self" issuer does."""
    x509_props = policy.get("x509_props") or {}
    key = generate_key(policy.get("key_props") or {})
    subject = parse_subject(
        x509_props.get("subject") or "CN=" + (x509_props.get("sans") or {}).get("dns_names", ["devstack"])[0]
    )
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    months = int(x509_props.get("validity_months") or 12)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(_add_months(now, months))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    usages = set(x509_props.get("key_usage") or ["digitalSignature", "keyEncipherment"])
    flags = {u: u in usages for u in _KEY_USAGE}
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=flags["digitalSignature"], content_commitment=flags["nonRepudiation"],
            key_encipherment=flags["keyEncipherment"], data_encipherment=flags["dataEncipherment"],
            key_agreement=flags["keyAgreement"], key_cert_sign=flags["keyCertSign"], crl_sign=flags["cRLSign"],
            encipher_only=flags["encipherOnly"] and flags["keyAgreement"],
            decipher_only=flags["decipherOnly"] and flags["keyAgreement"],
        ),
        critical=True,
    )  # fmt: skip
    ekus = x509_props.get("ekus") or [
        ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
        ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
    ]
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ObjectIdentifier(e) for e in ekus]), critical=False
    )
    sans = _sans(x509_props.get("sans") or {})
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Material(key, builder.sign(key, hashes.SHA256()))


def load_import(value_b64: str, password: str | None) -> tuple[Material, str]:
    """Parse an imported certificate (base64 of a PFX or of PEM text); returns it and its format."""
    try:
        raw = base64.b64decode(value_b64, validate=False)
    except ValueError:
        raise bad_parameter("The certificate value is not valid base64.") from None
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(raw, password.encode() if password else None)
            certificate = x509.load_pem_x509_certificates(raw)[0]
        except (ValueError, TypeError):
            raise bad_parameter("The PEM content must hold a private key and a certificate.") from None
        fmt = PEM
    else:
        try:
            pfx_key, pfx_certificate, _ = pkcs12.load_key_and_certificates(
                raw, password.encode() if password else None
            )
        except (ValueError, TypeError):
            raise bad_parameter("Invalid PKCS#12 content or wrong password.") from None
        if pfx_key is None or pfx_certificate is None:
            raise bad_parameter("The certificate to import must contain the private key.")
        key, certificate, fmt = pfx_key, pfx_certificate, PKCS12
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise bad_parameter("Only RSA and EC keys are supported.")
    return Material(key, certificate), fmt
