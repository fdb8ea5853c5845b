"""ports.Vault on azure-keyvault-secrets/-certificates (aio): secrets and self-signed certificates.

vault_url: REGISTRAR_KEY_VAULT_URL. The credential is the registrar's home-tenant credential.
Challenge-resource verification (the vault's 401 must name a resource under the vault's own
domain) stays on in Azure; it is switched off only for a loopback vault (the devstack), whose
domain is 127.0.0.1. Certificates are issued with content type PEM: the backing secret then holds
the private key and the certificate as PEM, which CertificateCredential reads directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from functions.adapters.graph_errors import parse_retry_after
from functions.adapters.identity import RegistrarIdentity, is_loopback_url
from functions.adapters.keyvault_reuse import (
    is_recovered,
    retire_recovered_certificate_versions,
    retire_recovered_secret_versions,
)
from functions.adapters.transport import data_plane_options
from functions.core.ports import VaultCertificate, VaultSecretRef
from functions.core.record.errors import NotFound, PermanentError, RegistrarError, TransientError
from functions.core.record.models import SecretValue

T = TypeVar("T")

MAX_TAGS = 15
MAX_TAG_LENGTH = 512
MAX_CONTENT_TYPE = 255
MAX_SECRET_BYTES = 25 * 1024
RECLAIM_ATTEMPTS = 5  # writes tried while a soft-deleted object still holds the name
RECLAIM_WAIT_SECONDS = 1.0
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


def validate_secret_write(
    name: str, value: SecretValue | None, content_type: str | None, tags: Mapping[str, str] | None
) -> None:
    """Key Vault's documented limits, checked before any call (PermanentError names the limit)."""
    if not _NAME.match(name):
        raise PermanentError(
            f"Key Vault name {name!r} must be 1-127 letters, digits or '-'", code="BadSecretName"
        )
    if value is not None and len(value.reveal().encode()) > MAX_SECRET_BYTES:
        raise PermanentError(f"secret {name} is larger than 25 KB", code="SecretTooLarge")
    if content_type is not None and len(content_type) > MAX_CONTENT_TYPE:
        raise PermanentError(
            f"content type of {name} is longer than 255 characters", code="ContentTypeTooLong"
        )
    if tags is not None:
        if len(tags) > MAX_TAGS:
            raise PermanentError(
                f"secret {name} has {len(tags)} tags; Key Vault allows 15", code="TooManyTags"
            )
        for key, tag in tags.items():
            if len(key) > MAX_TAG_LENGTH or len(str(tag)) > MAX_TAG_LENGTH:
                raise PermanentError(f"tag {key[:40]!r} of {name} exceeds 512 characters", code="TagTooLong")


def _vault_error(error: BaseException, operation: str, name: str) -> RegistrarError | None:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(error, ResourceNotFoundError):
        return NotFound("Key Vault object", name)
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TransientError(f"Key Vault unreachable during {operation} {name} ({type(error).__name__})")
    if isinstance(error, ClientAuthenticationError) and error.status_code is None:
        # The registrar's own token, with no answer from Entra or the managed identity endpoint
        # (CredentialUnavailableError included): a hiccup, unless Entra's refusal is quoted.
        from functions.adapters.identity import aadsts_code

        refused = aadsts_code(error)
        return (
            PermanentError(
                f"Key Vault {operation} {name}: Entra refused the registrar (AADSTS{refused})",
                code="RegistrarTokenRefused",
            )
            if refused
            else TransientError(f"Key Vault {operation} {name}: no token for the registrar yet")
        )
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        code = getattr(getattr(error, "error", None), "code", None)
        text = f"Key Vault {operation} {name}: {status} {code or ''}".strip()
        if status == 429 or status >= 500:
            headers = getattr(error.response, "headers", None)
            return TransientError(text, retry_after=parse_retry_after(dict(headers) if headers else None))
        return PermanentError(text, code=code or f"HTTP{status}")
    return None


async def _vault_call(operation: str, name: str, attempt: Callable[[], Awaitable[T]]) -> T:
    failure: RegistrarError | None
    try:
        return await attempt()
    except Exception as error:
        failure = _vault_error(error, operation, name)
        if failure is None:
            raise
    raise failure  # outside the except block: the SDK's message is not chained to ours


def _secret_ref(properties: Any) -> VaultSecretRef:
    return VaultSecretRef(
        name=properties.name,
        version=properties.version,
        uri=properties.id,
        expires_on=properties.expires_on,
        enabled=bool(properties.enabled),
        tags=dict(properties.tags or {}),
    )


class KeyVaultStore:
    """Vault port. vault_url: REGISTRAR_KEY_VAULT_URL; identity: the registrar's credentials.

    certificate_poll_seconds: how often to poll a certificate creation that Key Vault has not
    finished yet (its LRO); purge: purge soft-deleted objects when the vault allows it;
    retries: azure-core's retries of 408/429/5xx (honouring Retry-After) before TransientError.
    Fewer than the SDK's default 10: the queue trigger's redelivery is the outer retry, and a
    worker should not sit in backoff for minutes.
    """

    def __init__(
        self,
        identity: RegistrarIdentity,
        vault_url: str,
        *,
        certificate_poll_seconds: float = 2.0,
        purge: bool = True,
        retries: int = 3,
    ) -> None:
        self._identity = identity
        self._vault_url = vault_url.rstrip("/")
        self._poll = certificate_poll_seconds
        self._purge = purge
        self._retries = retries
        self._secrets: Any = None
        self._certificates: Any = None

    def _options(self) -> dict[str, Any]:
        return {
            "verify_challenge_resource": not is_loopback_url(self._vault_url),
            "retry_total": self._retries,
            **data_plane_options(),
        }

    @property
    def secrets(self) -> Any:
        if self._secrets is None:
            from azure.keyvault.secrets.aio import SecretClient

            self._secrets = SecretClient(self._vault_url, self._identity.credential(), **self._options())
        return self._secrets

    @property
    def certificates(self) -> Any:
        if self._certificates is None:
            from azure.keyvault.certificates.aio import CertificateClient

            self._certificates = CertificateClient(
                self._vault_url, self._identity.credential(), **self._options()
            )
        return self._certificates

    async def close(self) -> None:
        for client in (self._secrets, self._certificates):
            if client is not None:
                await client.close()
        self._secrets = self._certificates = None

    # ---------------------------------------------------------------- secrets

    async def set_secret(
        self,
        name: str,
        value: SecretValue,
        *,
        content_type: str,
        tags: Mapping[str, str],
        expires_on: datetime | None,
        not_before: datetime | None = None,
        enabled: bool = True,
    ) -> VaultSecretRef:
        validate_secret_write(name, value, content_type, tags)

        def write() -> Awaitable[Any]:
            return self.secrets.set_secret(
                name,
                value.reveal(),
                content_type=content_type,
                tags={k: str(v) for k, v in tags.items()},
                expires_on=expires_on,
                not_before=not_before,
                enabled=enabled,
            )

        secret = await self._reusing_deleted_name(
            "set",
            name,
            write,
            purge=lambda: self.secrets.purge_deleted_secret(name),
            recover=lambda: self.secrets.recover_deleted_secret(name),
            retire=lambda: retire_recovered_secret_versions(self.secrets, name),
        )
        return _secret_ref(secret.properties)

    async def _reusing_deleted_name(
        self,
        operation: str,
        name: str,
        write: Callable[[], Awaitable[T]],
        *,
        purge: Callable[[], Awaitable[Any]],
        recover: Callable[[], Awaitable[Any]],
        retire: Callable[[], Awaitable[None]],
    ) -> T:
        """Write; if the name is held by a soft-deleted object (409, e.g. a registration decommissioned
        and requested again), purge it when allowed, else recover it, then write again. Key Vault
        frees a purged name asynchronously: a few more 409s are waited out (bounded).

        Production's vault has purge protection: the purge answers 403 and the name is recovered,
        with its OLD versions and tags. `retire` (keyvault_reuse.py) disables and marks each of them
        before the write, so the write's version is "latest", no recovered credential is readable
        and secret_versions() leaves them out. A crash between the recover and the end of the
        retire leaves the rest enabled: the next write finds the name live and cannot tell."""
        for attempt in range(RECLAIM_ATTEMPTS):
            try:
                return await _vault_call(operation, name, write)
            except PermanentError as error:
                if error.code != "Conflict":
                    raise
                if attempt == RECLAIM_ATTEMPTS - 1:
                    # Still held: a purge in progress, or an operation on it pending (a certificate
                    # being created by an attempt whose answer was lost). Time frees it: retry later.
                    raise TransientError(f"{operation} {name}: the name is still held (409)") from None
            if attempt == 0:
                purged = False
                if self._purge:
                    # 403 under purge protection (always, in Azure), or without the purge right;
                    # 404 when the conflict is not a soft-deleted object of this kind.
                    with contextlib.suppress(PermanentError, NotFound):
                        await _vault_call("purge", name, purge)
                        purged = True
                if not purged:
                    try:
                        await _vault_call("recover", name, recover)
                    except NotFound:
                        pass  # being purged, or recovered already
                    else:
                        await _vault_call("retire recovered versions of", name, retire)
            else:
                await asyncio.sleep(RECLAIM_WAIT_SECONDS)
        raise AssertionError("unreachable")

    async def get_secret(self, name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        secret = await _vault_call("get", name, lambda: self.secrets.get_secret(name, version))
        return _secret_ref(secret.properties), SecretValue(secret.value or "")

    async def secret_versions(self, name: str) -> list[VaultSecretRef]:
        async def collect() -> list[VaultSecretRef]:
            return [
                _secret_ref(p)
                async for p in self.secrets.list_properties_of_secret_versions(name)
                if not is_recovered(p.tags)  # old versions a re-used name brought back
            ]

        try:
            return await _vault_call("list versions of", name, collect)
        except NotFound:
            return []

    async def update_secret_version(
        self, name: str, version: str, *, enabled: bool | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        validate_secret_write(name, None, None, tags)
        await _vault_call(
            "update",
            f"{name}/{version}",
            lambda: self.secrets.update_secret_properties(
                name, version, enabled=enabled, tags=dict(tags) if tags is not None else None
            ),
        )

    async def delete_secret(self, name: str) -> None:
        with contextlib.suppress(NotFound):  # already deleted (or never there)
            await _vault_call("delete", name, lambda: self.secrets.delete_secret(name))
        if self._purge:
            # Purge fails where purge protection is on or the role lacks purge: soft delete stands.
            with contextlib.suppress(NotFound, PermanentError):
                await _vault_call("purge", name, lambda: self.secrets.purge_deleted_secret(name))

    # ---------------------------------------------------------------- certificates

    async def create_certificate(
        self, name: str, *, subject: str, validity_months: int, tags: Mapping[str, str]
    ) -> VaultCertificate:
        from azure.keyvault.certificates import CertificateContentType, CertificatePolicy, KeyType

        validate_secret_write(name, None, None, tags)
        policy = CertificatePolicy(
            issuer_name="Self",
            subject=subject,
            key_type=KeyType.rsa,
            key_size=2048,
            exportable=True,
            reuse_key=False,
            content_type=CertificateContentType.pem,
            validity_in_months=validity_months,
        )
        created = await self._reusing_deleted_name(
            "create certificate",
            name,
            lambda: self.certificates.create_certificate(
                name, policy, tags=dict(tags), _polling_interval=self._poll
            ),
            purge=lambda: self.certificates.purge_deleted_certificate(name),
            recover=lambda: self.certificates.recover_deleted_certificate(name),
            retire=lambda: retire_recovered_certificate_versions(self.certificates, name),
        )
        if getattr(created, "cer", None) is None:  # a CertificateOperation: creation failed
            status = getattr(created, "status", None)
            raise PermanentError(
                f"Key Vault could not create certificate {name}: {status}", code="CertificateFailed"
            )
        return self._certificate(created)

    async def get_certificate(self, name: str, version: str | None = None) -> VaultCertificate:
        if version:
            cert = await _vault_call(
                "get certificate", name, lambda: self.certificates.get_certificate_version(name, version)
            )
        else:
            cert = await _vault_call("get certificate", name, lambda: self.certificates.get_certificate(name))
        return self._certificate(cert)

    async def import_certificate(
        self, name: str, pem_with_key: SecretValue, *, tags: Mapping[str, str]
    ) -> VaultCertificate:
        """A new version of `name` from a PEM bundle (certificate + private key), kept as PEM."""
        from azure.keyvault.certificates import CertificateContentType, CertificatePolicy, KeyType

        validate_secret_write(name, None, None, tags)
        policy = CertificatePolicy(
            issuer_name="Self",
            key_type=KeyType.rsa,
            key_size=2048,
            exportable=True,
            reuse_key=False,
            content_type=CertificateContentType.pem,
        )
        imported = await _vault_call(
            "import certificate",
            name,
            lambda: self.certificates.import_certificate(
                name, pem_with_key.reveal().encode(), policy=policy, tags=dict(tags)
            ),
        )
        return self._certificate(imported)

    @staticmethod
    def _certificate(cert: Any) -> VaultCertificate:
        der = bytes(cert.cer)
        properties = cert.properties
        return VaultCertificate(
            name=cert.name,
            version=properties.version,
            certificate_uri=cert.id,
            secret_uri=cert.secret_id,
            der=der,
            thumbprint_sha1=hashlib.sha1(der, usedforsecurity=False)
            .hexdigest()
            .upper(),  # x5t: Entra requires SHA-1
            not_before=properties.not_before,
            expires_on=properties.expires_on,
        )

    async def update_certificate_version(self, name: str, version: str, *, enabled: bool) -> None:
        """PATCH the version's attributes; Key Vault applies enabled to its backing secret version too."""
        await _vault_call(
            "update certificate",
            f"{name}/{version}",
            lambda: self.certificates.update_certificate_properties(name, version, enabled=enabled),
        )

    async def delete_certificate(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            await _vault_call("delete certificate", name, lambda: self.certificates.delete_certificate(name))
        if self._purge:
            with contextlib.suppress(NotFound, PermanentError):
                await _vault_call(
                    "purge certificate", name, lambda: self.certificates.purge_deleted_certificate(name)
                )
