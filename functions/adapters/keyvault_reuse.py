"""Re-using a Key Vault name held by a soft-deleted object: what the recovered versions become.

Production's vault has purge protection (infra/bicep/modules/keyvault.bicep): a purge answers 403,
so a name that was deleted (a registration decommissioned or failed, then provisioned again) can
only be recovered, and recovery brings back every OLD version with its tags (registrationId,
keyId, generation, expiresOn...). Before the new version is written, each recovered version is
disabled (a get of it answers 403: no old credential is readable, by "latest" or by version) and
its tags are renamed under the RECOVERED_TAG marker (kept for the audit, no longer matched by a
caller that looks for a keyId or a generation, which repeat when a name is re-used).
KeyVaultStore.secret_versions() leaves marked versions out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

RECOVERED_TAG = "recoveredStale"  # value: when the version was retired (ISO 8601, UTC)
MAX_TAGS = 15
MAX_TAG_LENGTH = 512


def is_recovered(tags: Mapping[str, str] | None) -> bool:
    return RECOVERED_TAG in (tags or {})


def stale_tags(tags: Mapping[str, str] | None, when: str) -> dict[str, str]:
    """The marker plus the old tags as `stale-<name>` (at most 15 tags in all, as Key Vault allows)."""
    renamed = {f"stale-{k}"[:MAX_TAG_LENGTH]: v for k, v in (tags or {}).items() if k != RECOVERED_TAG}
    return {RECOVERED_TAG: when, **dict(list(renamed.items())[: MAX_TAGS - 1])}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def retire_recovered_secret_versions(secrets: Any, name: str) -> None:
    """secrets: an aio SecretClient. Every version not marked yet: disabled, tags renamed."""
    when = _now()
    async for version in secrets.list_properties_of_secret_versions(name):
        if not is_recovered(version.tags):
            await secrets.update_secret_properties(
                name, version.version, enabled=False, tags=stale_tags(version.tags, when)
            )


async def retire_recovered_certificate_versions(certificates: Any, name: str) -> None:
    """certificates: an aio CertificateClient. Disabled through the certificate version: Key Vault
    refuses updates of a certificate's managed backing secret, and applies enabled to it."""
    when = _now()
    async for version in certificates.list_properties_of_certificate_versions(name):
        if not is_recovered(version.tags):
            await certificates.update_certificate_properties(
                name, version.version, enabled=False, tags=stale_tags(version.tags, when)
            )
