"""functions/adapters/keyvault.py through azure-keyvault-secrets/-certificates against the local vault."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from functions.adapters.keyvault import KeyVaultStore
from functions.core.ports import KeyCredentialSpec
from functions.core.record.errors import NotFound, PermanentError, TransientError
from functions.core.record.models import SecretValue
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_secret_versions_tags_dates_disable_and_delete(
    tenant: TenantProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_name = name("reg")
    values = [f"first-value-{uuid.uuid4().hex}", f"second-value-{uuid.uuid4().hex}"]
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    not_before = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    async def main() -> None:
        async with adapters(tenant) as a:
            tags = {"registrationId": "reg-1", "generation": "1", "expiresOn": expires.isoformat()}
            first = await a.vault.set_secret(
                secret_name,
                SecretValue(values[0]),
                content_type="application/vnd.registrar.client-secret",
                tags=tags,
                expires_on=expires,
                not_before=not_before,
            )
            second = await a.vault.set_secret(
                secret_name,
                SecretValue(values[1]),
                content_type="text/plain",
                tags={"generation": "2"},
                expires_on=None,
            )
            assert first.version != second.version
            assert first.uri.endswith(f"/secrets/{secret_name}/{first.version}")
            assert (first.expires_on, dict(first.tags)) == (expires, tags)

            latest, value = await a.vault.get_secret(secret_name)
            assert (latest.version, value.reveal()) == (second.version, values[1])
            old, old_value = await a.vault.get_secret(secret_name, first.version)
            assert (old.expires_on, old_value.reveal()) == (expires, values[0])

            await a.vault.update_secret_version(
                secret_name, first.version, enabled=False, tags={"retired": "true"}
            )
            versions = {v.version: v for v in await a.vault.secret_versions(secret_name)}
            assert set(versions) == {first.version, second.version}
            assert not versions[first.version].enabled and versions[second.version].enabled
            assert versions[first.version].tags == {"retired": "true"}
            assert await a.vault.secret_versions(name("absent")) == []

            await a.vault.delete_secret(secret_name)
            await a.vault.delete_secret(secret_name)  # idempotent
            with pytest.raises(NotFound):
                await a.vault.get_secret(secret_name)

    asyncio.run(main())
    assert not any(v in caplog.text for v in values)


def test_secret_versions_follow_the_next_link(tenant: TenantProcess) -> None:
    secret_name = name("paged")

    async def main() -> list[str]:
        async with adapters(tenant) as a:
            written = [
                (
                    await a.vault.set_secret(
                        secret_name, SecretValue(f"v{i:02d}" * 8), content_type="t", tags={}, expires_on=None
                    )
                ).version
                for i in range(30)
            ]
            listed = [v.version for v in await a.vault.secret_versions(secret_name)]
            assert sorted(listed) == sorted(written)  # more than one page of 25
            return listed

    asyncio.run(main())


def test_a_name_reused_under_purge_protection_is_recovered_with_its_old_versions_retired(
    tenant: TenantProcess,
) -> None:
    """Production's vault has purge protection: re-using a deleted name always goes through
    recover, which brings the old versions back. None of them may pass for the new credential."""
    secret_name = name("again")
    old_tags = {"registrationId": secret_name, "keyId": "key-old", "generation": "1"}

    async def main() -> None:
        async with adapters(tenant) as a:
            first = await a.vault.set_secret(
                secret_name, SecretValue("old-one-" * 3), content_type="t", tags=old_tags, expires_on=None
            )
            second = await a.vault.set_secret(
                secret_name, SecretValue("old-two-" * 3), content_type="t", tags=old_tags, expires_on=None
            )
            await a.vault.delete_secret(secret_name)  # the purge is refused (403): soft-deleted
            deleted = await a.vault.secrets.get_deleted_secret(secret_name)
            assert deleted.properties.recovery_level == "Recoverable"

            new_tags = {**old_tags, "keyId": "key-new"}
            again = await a.vault.set_secret(
                secret_name, SecretValue("new-value-" * 3), content_type="t", tags=new_tags, expires_on=None
            )
            latest, value = await a.vault.get_secret(secret_name)
            assert (latest.version, value.reveal()) == (again.version, "new-value-" * 3)
            # What callers see: only the new version (adoption by keyId/generation finds nothing old).
            listed = await a.vault.secret_versions(secret_name)
            assert [(v.version, v.tags.get("keyId")) for v in listed] == [(again.version, "key-new")]
            # What the vault holds: the recovered versions, disabled and marked, their tags renamed.
            raw = {
                v.version: v async for v in a.vault.secrets.list_properties_of_secret_versions(secret_name)
            }
            assert set(raw) == {first.version, second.version, again.version}
            for old in (first, second):
                assert raw[old.version].enabled is False
                assert raw[old.version].tags["stale-keyId"] == "key-old"
                assert "recoveredStale" in raw[old.version].tags and "keyId" not in raw[old.version].tags
                with pytest.raises(PermanentError, match="403"):  # no old credential is readable
                    await a.vault.get_secret(secret_name, old.version)

    asyncio.run(main())


def test_without_purge_protection_a_reused_name_is_purged_and_its_release_waited_out(
    tenant_admin: TenantProcess,
) -> None:
    tenant_admin.configure(purgeProtection=False, purgeDelayS=1.5)  # tenant_admin resets it after
    secret_name = name("purged")

    async def main() -> None:
        async with adapters(tenant_admin) as a:
            await a.vault.set_secret(
                secret_name, SecretValue("old-" * 5), content_type="t", tags={}, expires_on=None
            )
            keep_deleted = KeyVaultStore(a.identity, tenant_admin.vault_url, purge=False)
            try:
                await keep_deleted.delete_secret(secret_name)  # soft-deleted: the name is taken
            finally:
                await keep_deleted.close()
            again = await a.vault.set_secret(
                secret_name, SecretValue("new-" * 5), content_type="t", tags={}, expires_on=None
            )  # purged, then 409 ObjectIsBeingDeleted until the purge completes
            versions = [v async for v in a.vault.secrets.list_properties_of_secret_versions(secret_name)]
            assert [v.version for v in versions] == [again.version]

    asyncio.run(main())


def test_a_name_held_longer_than_the_adapter_waits_is_a_transient_error(tenant_admin: TenantProcess) -> None:
    """A 409 that outlasts the adapter's bounded wait (a purge still running, a creation pending)
    is time's to solve: the queue retries later; the registration is not failed for it."""
    tenant_admin.configure(purgeProtection=False, purgeDelayS=60)  # tenant_admin resets it after
    secret_name = name("held")

    async def main() -> None:
        async with adapters(tenant_admin) as a:
            await a.vault.set_secret(
                secret_name, SecretValue("old-" * 5), content_type="t", tags={}, expires_on=None
            )
            keep_deleted = KeyVaultStore(a.identity, tenant_admin.vault_url, purge=False)
            try:
                await keep_deleted.delete_secret(secret_name)
            finally:
                await keep_deleted.close()
            with pytest.raises(TransientError, match="still held"):
                await a.vault.set_secret(
                    secret_name, SecretValue("new-" * 5), content_type="t", tags={}, expires_on=None
                )

    asyncio.run(main())


def test_a_certificate_name_reused_under_purge_protection_keeps_no_old_version_usable(
    tenant: TenantProcess,
) -> None:
    cert_name = name("cert-again")
    tags = {"registrationId": cert_name, "keyId": "deterministic-key-id", "generation": "1"}

    async def main() -> None:
        async with adapters(tenant) as a:
            old = await a.vault.create_certificate(cert_name, subject="CN=old", validity_months=1, tags=tags)
            await a.vault.delete_certificate(cert_name)  # purge refused: soft-deleted
            new = await a.vault.create_certificate(cert_name, subject="CN=new", validity_months=1, tags=tags)
            assert new.version != old.version
            latest = await a.vault.get_certificate(cert_name)
            assert (latest.version, latest.thumbprint_sha1) == (new.version, new.thumbprint_sha1)
            versions = {
                v.version: v
                async for v in a.vault.certificates.list_properties_of_certificate_versions(cert_name)
            }
            assert versions[old.version].enabled is False
            assert versions[old.version].tags["stale-keyId"] == "deterministic-key-id"
            assert versions[new.version].enabled is True and versions[new.version].tags == tags
            with pytest.raises(PermanentError, match="403"):  # its private key is not readable
                await a.vault.get_secret(cert_name, old.version)
            _, pem = await a.vault.get_secret(cert_name)
            assert "PRIVATE KEY" in pem.reveal()
            assert (await a.vault.get_secret(cert_name))[0].version == new.version

    asyncio.run(main())


def test_limits_are_refused_before_any_call(tenant: TenantProcess) -> None:
    names = [name("s") for _ in range(3)]

    async def main() -> None:
        async with adapters(tenant) as a:
            too_many = {f"t{i}": "v" for i in range(16)}
            with pytest.raises(PermanentError, match="15") as many:
                await a.vault.set_secret(
                    names[0], SecretValue("x" * 20), content_type="t", tags=too_many, expires_on=None
                )
            with pytest.raises(PermanentError, match="512"):
                await a.vault.set_secret(
                    names[1], SecretValue("x" * 20), content_type="t", tags={"t": "v" * 513}, expires_on=None
                )
            with pytest.raises(PermanentError):
                await a.vault.set_secret(
                    names[2], SecretValue("x" * 26_000), content_type="t", tags={}, expires_on=None
                )
            with pytest.raises(PermanentError):
                await a.vault.set_secret(
                    "not_valid!", SecretValue("x" * 20), content_type="t", tags={}, expires_on=None
                )
            assert many.value.code == "TooManyTags"
            for refused in names:  # nothing was written
                assert await a.vault.secret_versions(refused) == []

    asyncio.run(main())


def test_self_signed_certificate_in_pem_works_as_the_apps_key_credential(tenant: TenantProcess) -> None:
    cert_name = name("cert")

    async def main() -> None:
        async with adapters(tenant) as a:
            created = await a.vault.create_certificate(
                cert_name,
                subject="CN=connector.registrar",
                validity_months=12,
                tags={"registrationId": "reg-c"},
            )
            parsed = x509.load_der_x509_certificate(created.der)
            assert parsed.subject.rfc4514_string() == "CN=connector.registrar"
            public_key = parsed.public_key()
            assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
            assert created.expires_on > created.not_before
            assert await a.vault.get_certificate(cert_name) == created

            secret_ref, pem = await a.vault.get_secret(cert_name, created.version)
            assert secret_ref.uri == created.secret_uri
            assert "PRIVATE KEY" in pem.reveal() and "CERTIFICATE" in pem.reveal()

            app = await a.graph.upsert_application(a.tenant_id, app_spec("cert"))
            await a.graph.ensure_service_principal(a.tenant_id, app.app_id)
            key = KeyCredentialSpec(
                str(uuid.uuid4()), "gen-1", created.der, created.not_before, created.expires_on
            )
            await a.graph.set_key_credentials(a.tenant_id, app.object_id, [key])
            listed = [
                c for c in await a.graph.list_credentials(a.tenant_id, app.object_id) if c.kind == "key"
            ]
            assert [c.thumbprint for c in listed] == [created.thumbprint_sha1]
            await a.probe.try_certificate(a.tenant_id, app.app_id, pem)  # CertificateCredential gets a token

            renewed = await a.vault.create_certificate(
                cert_name, subject="CN=connector.registrar", validity_months=12, tags={}
            )
            assert renewed.version != created.version and renewed.thumbprint_sha1 != created.thumbprint_sha1
            assert await a.vault.get_certificate(cert_name, created.version) == created
            with pytest.raises(TransientError):  # the new key is not on the app: Entra refuses it
                await a.probe.try_certificate(
                    a.tenant_id, app.app_id, (await a.vault.get_secret(cert_name))[1]
                )

            await a.vault.delete_certificate(cert_name)
            await a.vault.delete_certificate(cert_name)
            with pytest.raises(NotFound):
                await a.vault.get_certificate(cert_name)

    asyncio.run(main())


def test_vault_faults_map_to_core_errors(tenant_admin: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a:
            survived = name("f")
            only_this_secret = f"/secrets/{survived}"  # other tests' traffic is untouched
            tenant_admin.add_fault(503, path_regex=only_this_secret, method="PUT", count=1)
            ref = await a.vault.set_secret(
                survived, SecretValue("v" * 20), content_type="t", tags={}, expires_on=None
            )
            assert ref.version  # the SDK retried the 503

            tenant_admin.add_fault(429, path_regex=only_this_secret, method="GET", count=10, retryAfter=1)
            with pytest.raises(TransientError) as throttled:
                await a.vault.get_secret(survived)
            assert throttled.value.retry_after == timedelta(seconds=1)
            tenant_admin.admin("DELETE", "faults")

            tenant_admin.add_fault(403, path_regex=only_this_secret, method="GET", count=1)
            with pytest.raises(PermanentError) as denied:
                await a.vault.get_secret(survived)
            assert denied.value.code == "Forbidden"

    asyncio.run(main())
