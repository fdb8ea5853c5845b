"""Whether a rotation's new generation already reached the connector's Key Vault object.

A rotation publishes only after verification, so a published generation is a verified one. A
worker that dies (or meets a transient error) between publishing and recording leaves the new
credential as "latest" while the record still names it pending; whatever happens on the next
delivery must record that credential, never remove it (core/rotation/rotator.py, `_abandon`).
"""

from __future__ import annotations

from dataclasses import replace

from functions.core.credentials.issuer import certificate_key_id, kept_in_vault
from functions.core.ports import Directory, Vault
from functions.core.record.errors import NotFound, RecordInconsistent
from functions.core.record.models import CredentialType
from functions.core.record.registration import (
    CredentialState,
    PendingCredential,
    Registration,
    vault_object_name,
)
from functions.core.rotation.staging import staging_name


def pending_state(pending: PendingCredential, key_id: str) -> CredentialState:
    return CredentialState(
        type=pending.type, generation=pending.generation, display_name=pending.display_name, key_id=key_id
    )


async def published_generation(
    directory: Directory, vault: Vault, record: Registration, pending: PendingCredential
) -> CredentialState | None:
    """The pending generation as published (the state a rotation records), or None if it was not."""
    if pending.type is CredentialType.SECRET:
        return await _published_secret(directory, vault, record, pending)
    if pending.type is CredentialType.CERTIFICATE and pending.certificate_version:
        return await _published_certificate(vault, record, pending, pending.certificate_version)
    return None


async def _published_secret(
    directory: Directory, vault: Vault, record: Registration, pending: PendingCredential
) -> CredentialState | None:
    name = vault_object_name(record.id)
    if record.app_object_id is None:
        raise RecordInconsistent(record.id, "app_object_id", "publish")
    versions = [
        v for v in await vault.secret_versions(name) if v.tags.get("generation") == str(pending.generation)
    ]
    if not versions:
        return None
    named = {
        c.key_id: c
        for c in await directory.list_credentials(record.tenant_id, record.app_object_id)
        if c.kind == "password" and c.display_name == pending.display_name
    }
    version = next((v for v in reversed(versions) if v.tags.get("keyId") in named), None)
    if version is None:
        return None
    issued = named[version.tags["keyId"]]
    return replace(
        pending_state(pending, issued.key_id),
        start=issued.start,
        expires_on=issued.end or version.expires_on,
        secret_name=name,
        secret_uri=version.uri,
        secret_version=version.version,
    )


async def _published_certificate(
    vault: Vault, record: Registration, pending: PendingCredential, staged_version: str
) -> CredentialState | None:
    name = vault_object_name(record.id)
    staged = await vault.get_certificate(staging_name(record.id), staged_version)
    try:
        latest = await vault.get_certificate(name)
    except NotFound:
        return None
    if latest.thumbprint_sha1 != staged.thumbprint_sha1:
        return None
    state = replace(
        pending_state(pending, certificate_key_id(record.id, pending.generation)),
        start=latest.not_before,
        expires_on=latest.expires_on,
        thumbprint=latest.thumbprint_sha1,
    )
    return kept_in_vault(state, name, latest)
