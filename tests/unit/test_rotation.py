"""Rotation against in-memory fakes: rotate, retire, crash safety, races, certificates, sweep."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta

import pytest

from functions.core.credentials.verification import VerifyPolicy
from functions.core.notification.events import Delivery
from functions.core.ports import VaultCertificate, VaultSecretRef
from functions.core.record.errors import NotFound
from functions.core.record.models import (
    CredentialSpec,
    CredentialType,
    RegistrationStatus,
    SecretValue,
    WebhookSpec,
)
from functions.core.record.registration import Registration, vault_object_name
from functions.core.record.schedule import JobAction, RotationJob
from functions.core.rotation.rotator import (
    Outcome,
    RotationSettings,
    Rotator,
    rotate_now_job,
    rotation_job,
    sweep,
)
from functions.core.rotation.staging import staging_name
from functions.resources import ROTATION_JOBS_QUEUE, WEBHOOK_DELIVERIES_QUEUE
from tests.unit import fakes
from tests.unit.fakes import Crash, Crashing, FakeExpiryIndex, FakeTokenProbe, FakeVault, Faults, _Version
from tests.unit.provisioning_world import World, fast_sleep

SETTINGS = RotationSettings(
    lead_time=timedelta(days=30),
    lifetime_fraction=0.66,
    overlap=timedelta(hours=6),
    default_lifetime=timedelta(days=180),
    lease_wait=timedelta(seconds=2),
    verify=VerifyPolicy(timeout=timedelta(seconds=30), first_delay=timedelta(seconds=1)),
)


class ImportingVault(FakeVault):
    """FakeVault plus import_certificate (a new version of `name` from the staged PEM)."""

    async def import_certificate(
        self, name: str, pem_with_key: SecretValue, *, tags: Mapping[str, str]
    ) -> VaultCertificate:
        self.note("import_certificate")
        der = base64.b64decode(pem_with_key.reveal().removeprefix("PFX:"))
        staged = next(c for versions in self.certificates.values() for c in versions if c.der == der)
        version = uuid.uuid4().hex
        cert = VaultCertificate(
            name=name,
            version=version,
            certificate_uri=f"{self.url}/certificates/{name}/{version}",
            secret_uri=f"{self.url}/secrets/{name}/{version}",
            der=der,
            thumbprint_sha1=hashlib.sha1(der).hexdigest(),  # noqa: S324
            not_before=staged.not_before,
            expires_on=staged.expires_on,
        )
        self.certificates.setdefault(name, []).append(cert)
        ref = VaultSecretRef(name, version, cert.secret_uri, cert.expires_on, True, dict(tags))
        self.secrets.setdefault(name, []).append(_Version(ref, pem_with_key.reveal(), "application/x-pkcs12"))
        return cert


class FakeQueue(fakes.FakeQueue):
    def deliveries(self) -> list[Delivery]:
        return [Delivery.from_message(m) for q, m in self.sent if q == WEBHOOK_DELIVERIES_QUEUE]


class RotationWorld(World):
    def __init__(self, credential: CredentialSpec | None = None) -> None:
        super().__init__(vault=ImportingVault())
        self.probe = FakeTokenProbe(self.directory, self.vault)
        self.index = FakeExpiryIndex()
        self.queue = FakeQueue()
        self.credential = credential or CredentialSpec(CredentialType.SECRET, timedelta(days=90))

    async def active(self) -> Registration:
        request = self.request(credential=self.credential, webhooks=(WebhookSpec("https://hooks.example/x"),))
        accepted = await self.accept(request, self.plan(credential=self.credential))
        record = await self.provisioner().run(accepted.registration.id)
        assert record.status is RegistrationStatus.ACTIVE
        job = rotation_job(record, SETTINGS)
        assert job is not None
        await self.index.put(job)
        return record

    def rotator(self, *, directory: object = None, vault: object = None, owner: str | None = None) -> Rotator:
        ports = replace(
            self.ports,
            directory=directory or self.directory,  # type: ignore[arg-type]
            vault=vault or self.vault,  # type: ignore[arg-type]
            sleep=fast_sleep,
        )
        return Rotator(ports, index=self.index, queue=self.queue, settings=SETTINGS, owner=owner)

    def app(self):  # type: ignore[no-untyped-def]
        (app,) = self.directory.apps.values()
        return app


def due_job(world: RotationWorld, action: JobAction) -> RotationJob:
    return next(j for j in world.index.jobs.values() if j.action is action)


async def test_rotation_publishes_a_verified_new_secret_and_keeps_the_old_one_for_the_overlap() -> None:
    world = RotationWorld()
    before = await world.active()
    world.clock.advance(timedelta(days=61))

    outcome = await world.rotator().run(due_job(world, JobAction.ROTATE))

    record = await world.store.get(before.id)
    assert outcome is Outcome.ROTATED
    assert record.status is RegistrationStatus.ACTIVE and record.pending_credential is None
    new, (old,) = record.credential, record.retiring_credentials
    assert new is not None and (new.generation, old.generation) == (2, 1)
    assert old.key_id == before.credential.key_id  # type: ignore[union-attr]
    assert old.retire_after == world.clock.now() + SETTINGS.overlap
    app = world.app()
    assert set(app.passwords) == {old.key_id, new.key_id}
    name = vault_object_name(record.id)
    assert world.vault.latest_value(name) == app.passwords[new.key_id][3]  # "latest" is the new one
    assert world.vault.secrets[name][-1].ref.tags["keyId"] == new.key_id
    assert all(not v.ref.enabled for v in world.vault.secrets[staging_name(record.id)])
    assert (world.probe.accepted[-1]) == (record.app_id, new.key_id)  # verified before publishing
    jobs = {(j.action, j.generation) for j in world.index.jobs.values()}
    assert jobs == {(JobAction.ROTATE, 2), (JobAction.RETIRE, 1)}
    (delivery,) = world.queue.deliveries()
    payload = json.loads(delivery.body)
    assert payload["type"] == "credential.rotated"
    assert payload["data"]["keyId"] == new.key_id and payload["data"]["previousKeyId"] == old.key_id
    assert app.passwords[new.key_id][3] not in delivery.body


async def test_retirement_removes_the_old_secret_disables_its_version_and_announces_it() -> None:
    world = RotationWorld()
    before = await world.active()
    await world.rotator().run(due_job(world, JobAction.ROTATE))
    world.clock.advance(SETTINGS.overlap)

    outcome = await world.rotator().run(due_job(world, JobAction.RETIRE))
    again = await world.rotator().run(
        RotationJob.from_message(
            {
                **due_job(world, JobAction.ROTATE).to_message(),
                "action": "retire",
                "generation": 1,
                "keyId": before.credential.key_id,
            }
        )  # type: ignore[union-attr]
    )

    record = await world.store.get(before.id)
    assert (outcome, again) == (Outcome.RETIRED, Outcome.SKIPPED)
    assert record.retiring_credentials == ()
    assert list(world.app().passwords) == [record.credential.key_id]  # type: ignore[union-attr]
    old_version = next(
        v
        for v in world.vault.secrets[vault_object_name(record.id)]
        if v.ref.tags["keyId"] == before.credential.key_id  # type: ignore[union-attr]
    )
    assert old_version.ref.enabled is False
    assert [json.loads(d.body)["type"] for d in world.queue.deliveries()] == [
        "credential.rotated",
        "credential.retired",
    ]
    assert {j.action for j in world.index.jobs.values()} == {JobAction.ROTATE}


async def test_the_last_valid_credential_is_never_removed() -> None:
    world = RotationWorld()
    before = await world.active()
    await world.rotator().run(due_job(world, JobAction.ROTATE))
    world.clock.advance(timedelta(days=400))  # the new credential has expired too

    outcome = await world.rotator().run(due_job(world, JobAction.RETIRE))

    assert outcome is Outcome.KEPT
    assert before.credential.key_id in world.app().passwords  # type: ignore[union-attr]


async def test_a_crash_after_any_call_then_redelivery_gives_exactly_one_new_credential() -> None:
    crashed_somewhere, calls_in_a_clean_run = 0, -1
    for crash_after in range(1, 40):
        world = RotationWorld()
        before = await world.active()
        job = due_job(world, JobAction.ROTATE)
        faults = Faults(crash_after=crash_after)
        try:
            await world.rotator(
                directory=Crashing(world.directory, faults), vault=Crashing(world.vault, faults), owner="w1"
            ).run(job)
        except Crash:
            crashed_somewhere += 1
        else:
            calls_in_a_clean_run = faults.count
            break
        world.clock.advance(SETTINGS.lease_for)  # the dead worker's lease runs out
        assert await world.rotator(owner="w2").run(job) in (Outcome.ROTATED, Outcome.SKIPPED)

        record = await world.store.get(before.id)
        app = world.app()
        assert record.credential is not None and record.credential.generation == 2, crash_after
        assert set(app.passwords) == {before.credential.key_id, record.credential.key_id}, crash_after  # type: ignore[union-attr]
        name = vault_object_name(record.id)
        assert world.vault.latest_value(name) == app.passwords[record.credential.key_id][3], crash_after
        assert {(j.action, j.generation) for j in world.index.jobs.values()} == {
            (JobAction.ROTATE, 2),
            (JobAction.RETIRE, 1),
        }, crash_after
        assert len({d.delivery_id for d in world.queue.deliveries()}) == 1, crash_after
    # It crashed once after every Graph and Key Vault call the job makes, then ran clean.
    assert crashed_somewhere == calls_in_a_clean_run >= 7


async def test_two_sweeps_and_an_admin_rotate_at_once_rotate_once() -> None:
    world = RotationWorld()
    before = await world.active()
    world.clock.advance(timedelta(days=61))
    swept = await sweep(world.index, world.queue, world.clock)
    await sweep(world.index, world.queue, world.clock)
    jobs = [RotationJob.from_message(json.loads(m)) for q, m in world.queue.sent if q == ROTATION_JOBS_QUEUE]
    manual = rotate_now_job(before, world.clock.now(), "admin")
    assert manual is not None and {j.job_id for j in jobs} == {manual.job_id}

    outcomes = await asyncio.gather(*(world.rotator().run(j) for j in [*jobs, manual]))

    assert swept.read == 1
    assert sorted(outcomes) == sorted([Outcome.ROTATED, Outcome.SKIPPED, Outcome.SKIPPED])
    assert len(world.app().passwords) == 2


async def test_propagation_delay_is_waited_out_before_publishing() -> None:
    world = RotationWorld()
    before = await world.active()
    world.probe.not_accepted_for = 3
    name = vault_object_name(before.id)
    versions_before = len(world.vault.secrets[name])

    assert await world.rotator().run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED
    assert len(world.vault.secrets[name]) == versions_before + 1


async def test_certificate_rotation_overlaps_keys_then_retires_the_old_one() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    before = await world.active()

    await world.rotator().run(due_job(world, JobAction.ROTATE))
    record = await world.store.get(before.id)
    new = record.credential
    assert new is not None and new.generation == 2
    assert [k.key_id for k in world.app().keys] == [before.credential.key_id, new.key_id]  # type: ignore[union-attr]
    name = vault_object_name(record.id)
    assert world.vault.certificates[name][-1].thumbprint_sha1 == new.thumbprint
    assert new.certificate_version == world.vault.certificates[name][-1].version

    world.clock.advance(SETTINGS.overlap)
    assert await world.rotator().run(due_job(world, JobAction.RETIRE)) is Outcome.RETIRED
    assert [k.key_id for k in world.app().keys] == [new.key_id]


async def test_federated_and_unknown_registrations_are_skipped() -> None:
    world = RotationWorld(
        CredentialSpec(
            CredentialType.FEDERATED, issuer="https://token.actions.githubusercontent.com", subject="repo:x"
        )
    )
    request = world.request(credential=world.credential)
    accepted = await world.accept(request, world.plan(credential=world.credential))
    record = await world.provisioner().run(accepted.registration.id)
    assert record.status is RegistrationStatus.ACTIVE and rotation_job(record, SETTINGS) is None
    forced = RotationJob(
        job_id="forced",
        registration_id=record.id,
        generation=1,
        action=JobAction.ROTATE,
        due_at=world.clock.now(),
    )
    gone = RotationJob(
        job_id="gone",
        registration_id="reg-gone",
        generation=1,
        action=JobAction.ROTATE,
        due_at=world.clock.now(),
    )
    await world.index.put(gone)

    assert await world.rotator().run(forced) is Outcome.SKIPPED
    assert await world.rotator().run(gone) is Outcome.SKIPPED
    assert len(world.app().federated) == 1 and world.app().passwords == {}
    assert "gone" not in world.index.jobs  # a job for a deleted registration leaves the index
    with pytest.raises(NotFound):
        await world.store.get("reg-gone")


async def test_sweep_reads_only_what_is_due() -> None:
    world = RotationWorld()
    await world.active()
    early = await sweep(world.index, world.queue, world.clock)
    world.clock.advance(timedelta(days=61))
    late = await sweep(world.index, world.queue, world.clock)

    assert (early.read, late.read) == (0, 1)
    assert world.index.reads == 1
