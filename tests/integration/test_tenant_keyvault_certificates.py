"""The local tenant's Key Vault certificates, through the official azure-keyvault-certificates client."""

from __future__ import annotations

import base64
import datetime
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
    KeyType,
    WellKnownIssuerNames,
)
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import secret_credential


@pytest.fixture(scope="module")
def credential(tenant: TenantProcess) -> ClientSecretCredential:
    return secret_credential(tenant)


@pytest.fixture(scope="module")
def certificates(tenant: TenantProcess, credential: ClientSecretCredential) -> CertificateClient:
    return CertificateClient(tenant.vault_url, credential, verify_challenge_resource=False)


@pytest.fixture(scope="module")
def secrets(tenant: TenantProcess, credential: ClientSecretCredential) -> SecretClient:
    return SecretClient(tenant.vault_url, credential, verify_challenge_resource=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def self_signed_pfx(common_name: str) -> tuple[bytes, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    pfx = pkcs12.serialize_key_and_certificates(None, key, certificate, None, serialization.NoEncryption())
    return pfx, certificate


def test_create_self_signed_rsa_2048_and_read_the_pfx_from_the_backing_secret(
    certificates: CertificateClient, secrets: SecretClient
) -> None:
    name = unique("cert")
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self,
        subject="CN=connector.example.com",
        validity_in_months=6,
        exportable=True,
        key_type=KeyType.rsa,
        key_size=2048,
        content_type=CertificateContentType.pkcs12,
    )

    created = certificates.begin_create_certificate(name, policy).result()

    assert created.name == name and created.properties.version
    assert created.secret_id == f"{certificates.vault_url}/secrets/{name}/{created.properties.version}"
    assert created.key_id == f"{certificates.vault_url}/keys/{name}/{created.properties.version}"
    cer = x509.load_der_x509_certificate(bytes(created.cer or b""))
    assert cer.subject.rfc4514_string() == "CN=connector.example.com"
    assert created.properties.x509_thumbprint == cer.fingerprint(hashes.SHA1())  # noqa: S303
    assert created.properties.expires_on == cer.not_valid_after_utc
    assert created.properties.not_before == cer.not_valid_before_utc
    assert created.policy is not None and created.policy.key_size == 2048

    backing = secrets.get_secret(name, created.properties.version)
    assert backing.properties.content_type == "application/x-pkcs12"
    assert backing.properties.managed is True
    key, pfx_certificate, _ = pkcs12.load_key_and_certificates(base64.b64decode(backing.value or ""), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert pfx_certificate is not None and pfx_certificate == cer
    assert key.public_key().public_numbers() == cer.public_key().public_numbers()  # type: ignore[union-attr]

    operation = certificates.get_certificate_operation(name)
    assert operation.status == "completed"
    assert operation.csr


def test_pem_content_type_and_ec_key(certificates: CertificateClient, secrets: SecretClient) -> None:
    name = unique("pem")
    policy = CertificatePolicy(
        issuer_name="Self",
        subject="CN=pem.example.com",
        key_type=KeyType.ec,
        key_curve_name="P-256",
        content_type=CertificateContentType.pem,
        san_dns_names=["pem.example.com"],
    )
    created = certificates.begin_create_certificate(name, policy).result()

    backing = secrets.get_secret(name)
    assert backing.properties.content_type == "application/x-pem-file"
    pem = (backing.value or "").encode()
    key = serialization.load_pem_private_key(pem, None)
    certificate = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE") :])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert certificate == x509.load_der_x509_certificate(bytes(created.cer or b""))
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["pem.example.com"]


def test_import_pfx_then_versions_policy_and_disable(
    certificates: CertificateClient, secrets: SecretClient
) -> None:
    name = unique("imported")
    pfx, original = self_signed_pfx("imported.example.com")

    imported = certificates.import_certificate(name, pfx, tags={"source": "test"})
    assert x509.load_der_x509_certificate(bytes(imported.cer or b"")) == original
    assert imported.properties.tags == {"source": "test"}
    key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(secrets.get_secret(name).value or ""), None)
    assert key is not None
    assert key.public_key().public_numbers() == original.public_key().public_numbers()  # type: ignore[union-attr]

    renewed = certificates.begin_create_certificate(name, CertificatePolicy.get_default()).result()
    versions = {item.version for item in certificates.list_properties_of_certificate_versions(name)}
    assert versions == {imported.properties.version, renewed.properties.version}
    assert certificates.get_certificate(name).properties.version == renewed.properties.version
    assert certificates.get_certificate_version(name, imported.properties.version or "").cer == imported.cer

    policy = certificates.get_certificate_policy(name)
    assert policy.issuer_name == "Self" and policy.subject == "CN=DefaultPolicy"
    shorter = CertificatePolicy(issuer_name="Self", subject="CN=DefaultPolicy", validity_in_months=3)
    assert certificates.update_certificate_policy(name, shorter).validity_in_months == 3
    assert certificates.get_certificate_policy(name).validity_in_months == 3

    disabled = certificates.update_certificate_properties(name, enabled=False)
    assert disabled.properties.enabled is False
    with pytest.raises(HttpResponseError) as caught:
        secrets.get_secret(name)
    assert caught.value.status_code == 403


def test_import_pem(certificates: CertificateClient) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pem-import.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + certificate.public_bytes(serialization.Encoding.PEM)
    policy = CertificatePolicy(issuer_name="Unknown", content_type=CertificateContentType.pem)

    imported = certificates.import_certificate(unique("pemimport"), pem, policy=policy)

    assert x509.load_der_x509_certificate(bytes(imported.cer or b"")) == certificate
    assert imported.policy is not None and imported.policy.content_type == CertificateContentType.pem


def test_soft_delete_recover_purge_and_errors(certificates: CertificateClient, secrets: SecretClient) -> None:
    name = unique("delcert")
    certificates.begin_create_certificate(name, CertificatePolicy.get_default()).result()

    deleted = certificates.begin_delete_certificate(name).result()
    assert deleted.recovery_id == f"{certificates.vault_url}/deletedcertificates/{name}"
    with pytest.raises(ResourceNotFoundError):
        certificates.get_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret(name)  # the backing secret went with it
    with pytest.raises(ResourceExistsError):
        certificates.begin_create_certificate(name, CertificatePolicy.get_default())
    with pytest.raises(ResourceExistsError):
        secrets.set_secret(name, "takeover")  # the deleted certificate still holds its name

    certificates.begin_recover_deleted_certificate(name).result()
    assert certificates.get_certificate(name).name == name
    assert secrets.get_secret(name).properties.managed is True

    certificates.begin_delete_certificate(name).result()
    with pytest.raises(HttpResponseError) as refused:
        certificates.purge_deleted_certificate(name)  # purge protection (test_tenant_keyvault_purge.py)
    assert refused.value.status_code == 403
    with pytest.raises(ResourceNotFoundError) as caught:
        certificates.get_deleted_certificate(unique("never"))
    assert caught.value.error is not None and caught.value.error.code == "CertificateNotFound"

    with pytest.raises(HttpResponseError) as bad:
        certificates.import_certificate(unique("garbage"), b"not a certificate")
    assert bad.value.status_code == 400


def test_backing_secret_cannot_be_overwritten(certificates: CertificateClient, secrets: SecretClient) -> None:
    name = unique("managed")
    certificates.begin_create_certificate(name, CertificatePolicy.get_default()).result()
    with pytest.raises(HttpResponseError) as caught:
        secrets.set_secret(name, "overwrite")
    assert caught.value.status_code == 403


def test_certificates_deleted_secrets_and_role_assignments_survive_a_restart(
    make_tenant_process: Callable[..., TenantProcess], tmp_path: Path
) -> None:
    process = make_tenant_process(state_dir=tmp_path / "state")

    def clients() -> tuple[CertificateClient, SecretClient]:
        home = ClientSecretCredential(
            process.tenant_id,
            process.client_id,
            process.client_secret,
            authority=process.authority,
            disable_instance_discovery=True,
        )
        return (
            CertificateClient(process.vault_url, home, verify_challenge_resource=False),
            SecretClient(process.vault_url, home, verify_challenge_resource=False),
        )

    certificates, secrets = clients()
    created = certificates.begin_create_certificate("kept-cert", CertificatePolicy.get_default()).result()
    secrets.set_secret("kept-deleted", "v")
    secrets.begin_delete_secret("kept-deleted").result()
    assignment = process.admin(
        "POST", "vault/roleAssignments", {"principalId": "someone", "role": "Key Vault Secrets User"}
    )

    assert process.stop() == 0
    process.start()

    certificates, secrets = clients()
    again = certificates.get_certificate("kept-cert")
    assert again.cer == created.cer and again.properties.version == created.properties.version
    assert again.id == f"{process.vault_url}/certificates/kept-cert/{created.properties.version}"
    assert secrets.get_secret("kept-cert").properties.managed is True
    assert certificates.get_certificate_policy("kept-cert").subject == "CN=DefaultPolicy"
    assert secrets.get_deleted_secret("kept-deleted").name == "kept-deleted"
    assert assignment in process.admin("GET", "vault/roleAssignments")["value"]
