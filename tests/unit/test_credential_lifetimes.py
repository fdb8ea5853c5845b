"""End dates at issue time, certificate overlap and duplicate passwords, against the fakes.

- Every new credential's end is capped when it is issued (first and at each rotation) by the
  configured maximum, the profile's and the tenant's app management policy (Entra refuses longer).
- Certificates in their overlap window survive a further rotation and the retirement of another.
- A password Entra committed twice (an SDK resend after a lost answer) does not outlive the run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.core.catalogue.lifetimes import CredentialLifetimes, add_months, certificate_months
from functions.core.catalogue.policy import Policy
from functions.core.ports import IssuedSecret
from functions.core.record.errors import PermanentError
from functions.core.record.models import CredentialSpec, CredentialType, RegistrationStatus
from functions.core.record.registration import credential_display_name, vault_object_name
from functions.core.record.schedule import JobAction
from functions.core.rotation.rotator import Outcome, Rotator, rotate_now_job
from tests.unit.fakes import FakeDirectory
from tests.unit.provisioning_world import TENANT, fast_sleep
from tests.unit.test_rotation import SETTINGS, RotationWorld, due_job


def rotator_with(world: RotationWorld, lifetimes: CredentialLifetimes) -> Rotator:
    ports = replace(world.ports, sleep=fast_sleep, lifetimes=lifetimes)
    return Rotator(ports, index=world.index, queue=world.queue, settings=SETTINGS)


# ---------------------------------------------------------------- end dates


async def test_rotation_in_a_tenant_whose_policy_caps_passwords_below_the_plan_succeeds_within_the_cap() -> (
    None
):
    world = RotationWorld(CredentialSpec(CredentialType.SECRET, timedelta(days=90)))
    before = await world.active()
    world.directory.tenant_max_lifetime[CredentialType.SECRET] = timedelta(days=30)  # set by an admin later
    world.clock.advance(timedelta(days=61))

    outcome = await world.rotator().run(due_job(world, JobAction.ROTATE))

    record = await world.store.get(before.id)
    new = record.credential
    assert outcome is Outcome.ROTATED and record.last_error is None
    assert new is not None and new.generation == 2
    assert new.expires_on == world.clock.now() + timedelta(days=30)
    _, start, end, _ = world.app().passwords[new.key_id]
    assert end - start == timedelta(days=30)


async def test_a_lowered_configured_maximum_applies_to_an_existing_registration_at_rotation() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.SECRET, timedelta(days=90)))
    before = await world.active()
    assert before.credential is not None and before.credential.expires_on == world.clock.now() + timedelta(
        days=90
    )
    world.clock.advance(timedelta(days=61))
    lowered = CredentialLifetimes(
        directory=world.directory, policy=Policy(max_credential_lifetime=timedelta(days=45))
    )

    assert await rotator_with(world, lowered).run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED

    new = (await world.store.get(before.id)).credential
    assert new is not None and new.expires_on == world.clock.now() + timedelta(days=45)


async def test_the_first_secret_respects_the_tenant_policy_too() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.SECRET, timedelta(days=90)))
    world.directory.tenant_max_lifetime[CredentialType.SECRET] = timedelta(days=14)

    record = await world.active()

    assert record.status is RegistrationStatus.ACTIVE and record.credential is not None
    assert record.credential.expires_on == world.clock.now() + timedelta(days=14)


async def test_a_certificate_gets_the_months_that_fit_under_the_tenant_cap() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    world.directory.tenant_max_lifetime[CredentialType.CERTIFICATE] = timedelta(days=180)

    record = await world.active()  # before: 12 months, refused by the tenant's policy

    assert record.status is RegistrationStatus.ACTIVE
    (key,) = world.app().keys
    assert key.end - key.start <= timedelta(days=180)
    assert key.end - key.start == timedelta(days=150)  # the fake vault counts 30 days a month: 5 months


async def test_lifetimes_use_the_profile_and_the_policy_default_when_the_plan_names_none() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.SECRET))
    record = await world.active()
    lifetimes = CredentialLifetimes(
        directory=world.directory, policy=Policy(default_credential_lifetime=timedelta(days=60))
    )
    start = world.clock.now()

    assert await lifetimes.end(record, CredentialType.SECRET, start) == start + timedelta(days=60)
    world.directory.tenant_max_lifetime[CredentialType.SECRET] = timedelta(days=7)
    assert await lifetimes.end(record, CredentialType.SECRET, start) == start + timedelta(days=7)


def test_certificate_months_count_calendar_months_and_leap_days() -> None:
    leap_ahead = datetime(2027, 3, 1, 12, tzinfo=UTC)  # 24 months later spans 2028-02-29: 731 days
    assert add_months(leap_ahead, 24) - leap_ahead == timedelta(days=731)
    assert certificate_months(leap_ahead, leap_ahead + timedelta(days=730)) == 23
    plain = datetime(2026, 11, 22, 9, tzinfo=UTC)
    assert certificate_months(plain, plain + timedelta(days=365)) == 12
    assert certificate_months(plain, plain + timedelta(days=364)) == 11
    jan31 = datetime(2027, 1, 31, tzinfo=UTC)  # one month is 28 days from here, 28 from February 1
    assert certificate_months(jan31, jan31 + timedelta(days=31)) == 1
    with pytest.raises(PermanentError) as raised:  # Key Vault cannot make a shorter certificate
        certificate_months(plain, plain + timedelta(days=29))
    assert raised.value.code == "CertificateLifetimeTooShort"


# ---------------------------------------------------------------- certificate overlap


async def test_certificates_in_their_overlap_window_survive_another_rotation_and_a_retirement() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    before = await world.active()
    await world.rotator().run(due_job(world, JobAction.ROTATE))  # g1 -> g2, g1 retires in 6 h
    world.clock.advance(timedelta(hours=1))
    g2 = await world.store.get(before.id)
    job = rotate_now_job(g2, world.clock.now(), "admin")
    assert job is not None

    assert await world.rotator().run(job) is Outcome.ROTATED  # g2 -> g3 inside g1's overlap

    def generations() -> list[str]:
        return sorted(k.display_name[-2:] for k in world.app().keys)

    assert generations() == ["g1", "g2", "g3"]  # before: g1 was dropped 5 hours early
    world.clock.advance(timedelta(hours=5, minutes=1))
    retire_g1 = next(
        j for j in world.index.jobs.values() if j.action is JobAction.RETIRE and j.generation == 1
    )
    assert await world.rotator().run(retire_g1) is Outcome.RETIRED
    assert generations() == ["g2", "g3"]  # before: g2 went with it, an hour early

    record = await world.store.get(before.id)
    g1 = before.credential
    assert g1 is not None and g1.certificate_version is not None
    assert (vault_object_name(record.id), g1.certificate_version) in world.vault.disabled_certificates
    g2_state = next(c for c in record.retiring_credentials if c.generation == 2)
    world.clock.advance(timedelta(hours=1))
    retire_g2 = next(
        j for j in world.index.jobs.values() if j.action is JobAction.RETIRE and j.generation == 2
    )
    assert await world.rotator().run(retire_g2) is Outcome.RETIRED
    assert generations() == ["g3"]
    assert (g2_state.certificate_name, g2_state.certificate_version) in world.vault.disabled_certificates
    current = (await world.store.get(before.id)).credential
    assert current is not None
    assert (current.certificate_name, current.certificate_version) not in world.vault.disabled_certificates


# ---------------------------------------------------------------- duplicates from a resent addPassword


class ResendingDirectory(FakeDirectory):
    """addPassword as the SDK's RetryHandler made it: Entra committed the first POST, its answer
    was lost (504), the resend made a second password with the same name."""

    async def add_password(
        self, tenant_id: str, app_object_id: str, display_name: str, start: datetime, end: datetime
    ) -> IssuedSecret:
        await super().add_password(tenant_id, app_object_id, display_name, start, end)
        return await super().add_password(tenant_id, app_object_id, display_name, start, end)


def named(world: RotationWorld, name: str) -> list[str]:
    return [k for k, (display, *_) in world.app().passwords.items() if display == name]


async def test_a_resent_add_password_leaves_one_password_at_provisioning_and_rotation() -> None:
    world = RotationWorld()
    world.directory = ResendingDirectory(TENANT)
    world.probe._directory = world.directory  # type: ignore[union-attr]
    before = await world.active()
    assert before.credential is not None
    assert named(world, before.credential.display_name) == [before.credential.key_id]

    assert await world.rotator().run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED

    new = (await world.store.get(before.id)).credential
    assert new is not None
    assert named(world, credential_display_name(before.id, 2)) == [new.key_id]
    assert sorted(world.app().passwords) == sorted([before.credential.key_id, new.key_id])


async def test_a_certificate_rotation_disables_its_staged_copy_through_the_certificate() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    managed = {"refused": 0}
    update_secret_version = world.vault.update_secret_version

    async def refuse_managed(name: str, version: str, **changes: object) -> None:
        if name in world.vault.certificates:  # Key Vault: 403 on a certificate's backing secret
            managed["refused"] += 1
            raise PermanentError("Operation update is not allowed on a managed secret.", code="Forbidden")
        await update_secret_version(name, version, **changes)  # type: ignore[arg-type]

    world.vault.update_secret_version = refuse_managed  # type: ignore[method-assign]
    before = await world.active()

    assert await world.rotator().run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED

    staging = f"{vault_object_name(before.id)}-staging"
    (staged,) = world.vault.certificates[staging]
    assert managed["refused"] == 1 and (staging, staged.version) in world.vault.disabled_certificates
