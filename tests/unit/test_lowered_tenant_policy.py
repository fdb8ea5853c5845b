"""A tenant that lowers its app management policy between the end date's computation and Entra's
check: the adapter turns Entra's 400 into TransientError (graph_policy.lifetime_refused), and the
retry must issue a credential that fits the new maximum, also for a certificate Key Vault already
made for the refused attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from functions.core.ports import KeyCredentialSpec
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import CredentialSpec, CredentialType, RegistrationStatus
from functions.core.record.registration import vault_object_name
from tests.unit.fakes import FakeDirectory
from tests.unit.provisioning_world import World


class LoweredOnce:
    """The tenant lowers its certificate maximum just before the first keyCredentials write."""

    def __init__(self, target: FakeDirectory, lowered_to: timedelta) -> None:
        self._target = target
        self._lowered_to = lowered_to

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    async def set_key_credentials(
        self, tenant_id: str, app_object_id: str, keys: Sequence[KeyCredentialSpec]
    ) -> None:
        self._target.tenant_max_lifetime[CredentialType.CERTIFICATE] = self._lowered_to
        try:
            await self._target.set_key_credentials(tenant_id, app_object_id, keys)
        except PermanentError as error:  # as the adapter maps a refusal under a changed policy
            raise TransientError(f"{error} (the tenant's policy changed)") from None


async def test_a_certificate_refused_under_a_lowered_policy_is_made_again_to_fit() -> None:
    world = World()
    world.directory.tenant_max_lifetime[CredentialType.CERTIFICATE] = timedelta(days=365)
    plan = world.plan(credential=CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    rid = (await world.accept(plan=plan)).registration.id

    with pytest.raises(TransientError):
        await world.provisioner(directory=LoweredOnce(world.directory, timedelta(days=70))).run(rid)
    refused = (await world.store.get(rid)).pending_credential
    assert refused is not None and refused.certificate_version is not None

    record = await world.provisioner().run(rid)

    assert record.status is RegistrationStatus.ACTIVE, record.last_error
    credential = record.credential
    assert credential is not None and credential.expires_on is not None and credential.start is not None
    assert credential.expires_on - credential.start <= timedelta(days=70)
    assert credential.certificate_version != refused.certificate_version
    (app,) = world.directory.apps.values()
    assert [k.key_id for k in app.keys] == [credential.key_id]
    assert len(world.vault.certificates[vault_object_name(rid)]) == 2  # the refused one is an old version


async def test_a_rotations_staged_certificate_refused_under_a_lowered_policy_is_made_again() -> None:
    from functions.core.record.schedule import JobAction
    from functions.core.rotation.staging import staging_name
    from tests.unit.test_rotation import RotationWorld, due_job

    world = RotationWorld(CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    world.directory.tenant_max_lifetime[CredentialType.CERTIFICATE] = timedelta(days=365)
    before = await world.active()
    job = due_job(world, JobAction.ROTATE)

    with pytest.raises(TransientError):
        await world.rotator(directory=LoweredOnce(world.directory, timedelta(days=70))).run(job)
    refused = (await world.store.get(before.id)).pending_credential
    assert refused is not None and refused.certificate_version is not None

    await world.rotator().run(job)  # the job's message, delivered again

    record = await world.store.get(before.id)
    new = record.credential
    assert new is not None and new.generation == 2, record.last_error
    assert new.expires_on is not None and new.start is not None
    assert new.expires_on - new.start <= timedelta(days=70)
    staged = world.vault.certificates[staging_name(before.id)]
    assert staged[0].version == refused.certificate_version and len(staged) == 2
