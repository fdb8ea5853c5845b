"""Decommissioning takes every Key Vault object of a registration, a rotation's staging copy too."""

from __future__ import annotations

from functions.core.credentials.issuer import staging_name
from functions.core.record.models import SecretValue
from functions.core.record.registration import RegistrationStatus
from tests.unit.test_rotation import RotationWorld


async def test_a_rotation_interrupted_at_staging_leaves_nothing_after_decommission() -> None:
    world = RotationWorld()
    record = await world.active()
    # What a rotation that died after staging leaves: the next secret, held where no consumer reads.
    await world.vault.set_secret(
        staging_name(record.id), SecretValue("s" * 40), content_type="t", tags={}, expires_on=None
    )

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    assert gone.status is RegistrationStatus.DECOMMISSIONED
    assert record.id not in world.vault.secrets and staging_name(record.id) not in world.vault.secrets
