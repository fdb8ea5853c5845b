"""Purge protection of the local vault, through the official clients: on by default, as infra's
vault (enablePurgeProtection: true); switchable through /_sim/config for tests of the other case."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.secrets import SecretClient

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import secret_credential

T = TypeVar("T")

PROTECTED_MESSAGE = (
    'Operation "purge" is not allowed because purge protection is enabled for this vault. '
    "Key Vault service will automatically purge it after the retention period has passed."
)


@pytest.fixture(scope="module")
def credential(tenant: TenantProcess) -> ClientSecretCredential:
    return secret_credential(tenant)


@pytest.fixture(scope="module")
def secrets(tenant: TenantProcess, credential: ClientSecretCredential) -> SecretClient:
    return SecretClient(tenant.vault_url, credential, verify_challenge_resource=False)


@pytest.fixture(scope="module")
def certificates(tenant: TenantProcess, credential: ClientSecretCredential) -> CertificateClient:
    return CertificateClient(tenant.vault_url, credential, verify_challenge_resource=False)


@pytest.fixture
def unprotected(tenant_admin: TenantProcess) -> Iterator[TenantProcess]:
    tenant_admin.configure(purgeProtection=False)
    yield tenant_admin  # tenant_admin resets the settings afterwards


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_purge_protection_is_on_by_default_and_refuses_every_purge(
    tenant: TenantProcess, secrets: SecretClient, certificates: CertificateClient
) -> None:
    assert tenant.admin("GET", "config")["purgeProtection"] is True
    secret_name, cert_name = unique("protected"), unique("protected-cert")
    secret = secrets.set_secret(secret_name, "old")
    assert secret.properties.recovery_level == "Recoverable"
    cert = certificates.begin_create_certificate(cert_name, CertificatePolicy.get_default()).result()
    assert cert.properties.recovery_level == "Recoverable"

    deleted = secrets.begin_delete_secret(secret_name).result()
    assert deleted.properties.recovery_level == "Recoverable"
    with pytest.raises(HttpResponseError) as refused:
        secrets.purge_deleted_secret(secret_name)
    assert refused.value.status_code == 403
    assert refused.value.error is not None
    assert (refused.value.error.code, refused.value.error.message) == ("Forbidden", PROTECTED_MESSAGE)

    certificates.begin_delete_certificate(cert_name).result()
    with pytest.raises(HttpResponseError) as refused_cert:
        certificates.purge_deleted_certificate(cert_name)
    assert refused_cert.value.status_code == 403
    assert refused_cert.value.error is not None and refused_cert.value.error.code == "Forbidden"

    # Both stay soft-deleted and hold their names: recovering is the only way to use them again.
    with pytest.raises(ResourceExistsError) as taken:
        secrets.set_secret(secret_name, "new")
    assert "deleted but recoverable" in str(taken.value)
    recovered = secrets.begin_recover_deleted_secret(secret_name).result()
    assert recovered.version == secret.properties.version
    assert secrets.get_secret(secret_name).value == "old"
    certificates.begin_recover_deleted_certificate(cert_name).result()
    assert certificates.get_certificate(cert_name).properties.version == cert.properties.version

    # A purge of something not deleted is still 404 (checked before the protection).
    with pytest.raises(ResourceNotFoundError):
        secrets.purge_deleted_secret(unique("never-deleted"))


def until_free(write: Callable[[], T], timeout_s: float = 30.0) -> T:
    """`write` retried while it answers 409 (the name still being purged), for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return write()
        except ResourceExistsError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_without_purge_protection_a_purge_frees_the_name_after_the_purge_delay(
    unprotected: TenantProcess, secrets: SecretClient, certificates: CertificateClient
) -> None:
    # A delay no loaded machine outlasts while the 409s are asserted; the tenant reads it at each
    # request (purge time + the delay as set now), so lowering it to 0 then frees the names.
    unprotected.configure(purgeDelayS=60)
    name = unique("purgeable")
    assert secrets.set_secret(name, "old").properties.recovery_level == "Recoverable+Purgeable"
    secrets.begin_delete_secret(name).result()
    secrets.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        secrets.get_deleted_secret(name)
    with pytest.raises(ResourceExistsError) as busy:
        secrets.set_secret(name, "new")  # Key Vault purges asynchronously
    assert busy.value.status_code == 409
    assert busy.value.error is not None
    assert busy.value.error.innererror == {"code": "ObjectIsBeingDeleted"}
    assert "is currently being deleted and cannot be re-created; retry later." in str(busy.value)

    cert_name = unique("purgeable-cert")
    certificates.begin_create_certificate(cert_name, CertificatePolicy.get_default()).result()
    certificates.begin_delete_certificate(cert_name).result()
    certificates.purge_deleted_certificate(cert_name)
    with pytest.raises(ResourceExistsError) as busy_cert:
        certificates.begin_create_certificate(cert_name, CertificatePolicy.get_default())
    assert busy_cert.value.status_code == 409
    assert busy_cert.value.error is not None
    assert busy_cert.value.error.innererror == {"code": "ObjectIsBeingDeleted"}

    unprotected.configure(purgeDelayS=0)  # the purges, 60 s from done, are now complete
    again = until_free(lambda: secrets.set_secret(name, "new"))
    assert [v.version for v in secrets.list_properties_of_secret_versions(name)] == [again.properties.version]
    until_free(
        lambda: certificates.begin_create_certificate(cert_name, CertificatePolicy.get_default())
    ).result()
    assert len(list(certificates.list_properties_of_certificate_versions(cert_name))) == 1


def test_the_switch_is_validated_and_reset(tenant_admin: TenantProcess) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as bad:
        tenant_admin.configure(purgeProtection="no")
    assert bad.value.code == 400
    assert tenant_admin.configure(purgeProtection=False)["purgeProtection"] is False
    tenant_admin.reset()
    assert tenant_admin.admin("GET", "config")["purgeProtection"] is True


def test_the_command_line_sets_it_at_start() -> None:
    from devstack.tenant.__main__ import parse_args

    assert parse_args([]).no_purge_protection is False
    args = parse_args(["--no-purge-protection", "--purge-delay-s", "2.5"])
    assert (args.no_purge_protection, args.purge_delay_s) == (True, 2.5)
