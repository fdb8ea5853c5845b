"""Rotation when things go half-wrong: a save whose response was lost, a lease that ran out while
verification waited, a redelivery that fails after the new credential was already published,
jobs whose due time moves (rotate now, retry later), and jobs that keep failing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.core.record.errors import PermanentError
from functions.core.record.keeper import LeaseHeld, RecordKeeper
from functions.core.record.models import CredentialSpec, CredentialType, RegistrationStatus
from functions.core.record.registration import Registration, vault_object_name
from functions.core.record.schedule import JobAction, index_partition
from functions.core.rotation.rotator import Outcome, Rotator, rotation_job, sweep
from functions.core.rotation.staging import staging_name
from tests.unit.fakes import Crash, Crashing, Faults
from tests.unit.test_rotation import SETTINGS, RotationWorld, due_job


def recorded(r: Registration) -> bool:
    return any(e.step == "rotation" and e.outcome == "done" for e in r.history)


# ---------------------------------------------------------------- the old credential stays retiring


async def test_a_rotation_saved_but_answered_412_still_retires_the_old_credential() -> None:
    world = RotationWorld()
    before = await world.active()
    assert before.credential is not None
    lost = []

    def once_when_recorded(r: Registration) -> bool:  # the PUT of the rotation took effect; 412 on its retry
        if recorded(r) and not lost:
            lost.append(r.id)
            return True
        return False

    world.store.lose_response = once_when_recorded
    assert await world.rotator().run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED
    world.store.lose_response = None

    record = await world.store.get(before.id)
    assert lost and record.credential is not None and record.credential.generation == 2
    assert [c.key_id for c in record.retiring_credentials] == [before.credential.key_id]
    assert sum(1 for e in record.history if e.step == "rotation" and e.outcome == "done") == 1
    world.clock.advance(SETTINGS.overlap)
    assert await world.rotator().run(due_job(world, JobAction.RETIRE)) is Outcome.RETIRED
    assert list(world.app().passwords) == [record.credential.key_id]
    old_version = next(
        v
        for v in world.vault.secrets[vault_object_name(before.id)]
        if v.ref.tags["keyId"] == before.credential.key_id
    )
    assert old_version.ref.enabled is False


async def test_a_worker_whose_lease_ran_out_while_verifying_stops_and_the_retirement_survives() -> None:
    world = RotationWorld()
    before = await world.active()
    assert before.credential is not None
    job = due_job(world, JobAction.ROTATE)
    world.probe.not_accepted_for = 1  # A's first probe: not accepted yet, so A sleeps
    outcomes: list[Outcome] = []

    async def a_sleeps(seconds: float) -> None:
        if not outcomes:  # meanwhile A's lease runs out and a duplicate delivery does the job
            world.clock.advance(SETTINGS.lease_for + timedelta(seconds=1))
            outcomes.append(await world.rotator(owner="B").run(job))

    a = Rotator(
        replace(world.ports, sleep=a_sleeps),
        index=world.index,
        queue=world.queue,
        settings=SETTINGS,
        owner="A",
    )
    with pytest.raises(LeaseHeld):  # transient: A's message comes back and finds it done
        await a.run(job)
    assert await world.rotator(owner="A").run(job) is Outcome.SKIPPED

    record = await world.store.get(before.id)
    assert outcomes == [Outcome.ROTATED] and record.lease_owner is None
    assert record.credential is not None and record.credential.generation == 2
    assert [c.key_id for c in record.retiring_credentials] == [before.credential.key_id]
    assert {(j.action, j.generation) for j in world.index.jobs.values()} == {
        (JobAction.ROTATE, 2),
        (JobAction.RETIRE, 1),
    }
    assert set(world.app().passwords) == {before.credential.key_id, record.credential.key_id}


async def test_verification_that_waits_longer_than_the_lease_keeps_renewing_it() -> None:
    world = RotationWorld()
    before = await world.active()
    world.probe.not_accepted_for = 3

    async def slow_sleep(seconds: float) -> None:
        world.clock.advance(SETTINGS.lease_for - timedelta(seconds=30))
        record = await world.store.get(before.id)
        assert record.lease_until is not None and record.lease_until > world.clock.now()

    rotator = world.rotator(owner="A")
    rotator._sleep = slow_sleep  # type: ignore[attr-defined]
    assert await rotator.run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED


async def test_the_keeper_knows_its_own_committed_save_and_refuses_a_lease_it_lost() -> None:
    world = RotationWorld()
    before = await world.active()
    keeper = await RecordKeeper.claim(
        world.store, world.clock, before.id, owner="A", lease_for=timedelta(minutes=5), wait=timedelta(0)
    )
    world.store.lose_response = lambda r: True
    saved = await keeper.update(lambda r: r.with_event("test", "done", world.clock.now()))
    world.store.lose_response = None
    assert [e.step for e in saved.history].count("test") == 1
    assert (await world.store.get(before.id)).history == saved.history

    stored = await world.store.get(before.id)  # another worker claimed after our lease, then released
    await world.store.replace(replace(stored, lease_owner=None, lease_until=None))
    with pytest.raises(LeaseHeld):
        await keeper.update(lambda r: r.with_event("test", "again", world.clock.now()))
    assert all(e.outcome != "again" for e in (await world.store.get(before.id)).history)
    await keeper.release()  # not ours any more: nothing to release, no error


# ---------------------------------------------------------------- a published credential is never removed


async def crash_right_after_publishing(world: RotationWorld) -> Any:
    """A first delivery that dies right after the connector's secret got its new version."""
    for crash_after in range(1, 40):
        candidate = RotationWorld(world.credential)
        before = await candidate.active()
        job = due_job(candidate, JobAction.ROTATE)
        faults = Faults(crash_after=crash_after)
        name = vault_object_name(before.id)
        try:
            await candidate.rotator(
                directory=Crashing(candidate.directory, faults),
                vault=Crashing(candidate.vault, faults),
                owner="w1",
            ).run(job)
        except Crash:
            published = len(candidate.vault.secrets[name]) == 2
            if published and candidate.vault.secrets[name][-1].ref.tags["generation"] == "2":
                return candidate, before, job
    raise AssertionError("no crash point right after publishing")


@pytest.mark.parametrize("kind", [CredentialType.SECRET, CredentialType.CERTIFICATE])
async def test_a_redelivery_that_fails_for_good_after_publishing_records_the_published_credential(
    kind: CredentialType,
) -> None:
    world, before, job = await crash_right_after_publishing(
        RotationWorld(CredentialSpec(kind, timedelta(days=365 if kind is CredentialType.CERTIFICATE else 90)))
    )
    world.clock.advance(SETTINGS.lease_for)  # the dead worker's lease runs out

    async def refused(*args: object) -> None:
        raise PermanentError("credential unusable", code="InvalidCredential")

    world.probe.try_secret = refused  # type: ignore[method-assign]
    world.probe.try_certificate = refused  # type: ignore[method-assign]
    assert await world.rotator(owner="w2").run(job) is Outcome.ROTATED

    record = await world.store.get(before.id)
    name = vault_object_name(before.id)
    latest = world.vault.secrets[name][-1].ref
    assert record.credential is not None and record.pending_credential is None
    assert record.credential.generation == 2 and record.last_error is None
    assert record.credential.secret_version == latest.version and latest.enabled
    assert [c.key_id for c in record.retiring_credentials] == [before.credential.key_id]
    if kind is CredentialType.SECRET:
        assert record.credential.key_id == latest.tags["keyId"]
        assert world.app().passwords[record.credential.key_id][3] == world.vault.latest_value(name)
        assert set(world.app().passwords) == {before.credential.key_id, record.credential.key_id}
    else:
        assert record.credential.thumbprint == world.vault.certificates[name][-1].thumbprint_sha1
        assert record.credential.key_id in {k.key_id for k in world.app().keys}
    assert {(j.action, j.generation) for j in world.index.jobs.values()} == {
        (JobAction.ROTATE, 2),
        (JobAction.RETIRE, 1),
    }
    assert all(not v.ref.enabled for v in world.vault.secrets[staging_name(before.id)])


# ---------------------------------------------------------------- jobs that keep failing back off


async def test_a_rotation_refused_for_good_comes_back_after_a_growing_backoff_not_every_sweep() -> None:
    world = RotationWorld()
    before = await world.active()
    world.clock.advance(timedelta(days=61))

    async def refused(*args: object) -> None:
        raise PermanentError("AADSTS7000222: the app's credentials are blocked", code="AADSTS7000222")

    world.probe.try_secret = refused  # type: ignore[method-assign]
    first = world.clock.now()
    with pytest.raises(PermanentError):
        await world.rotator().run(due_job(world, JobAction.ROTATE))
    record = await world.store.get(before.id)
    assert record.status is RegistrationStatus.ACTIVE and record.pending_credential is None
    assert record.last_error is not None and record.last_error.code == "AADSTS7000222"
    assert set(world.app().passwords) == {before.credential.key_id}  # type: ignore[union-attr]
    (entry,) = world.index.jobs.values()
    assert entry.due_at == first + SETTINGS.retry_after_failure

    world.clock.advance(timedelta(minutes=30))
    assert (await sweep(world.index, world.queue, world.clock)).read == 0  # not re-enqueued every sweep
    world.clock.advance(timedelta(minutes=30))
    second = world.clock.now()
    (job,) = await world.index.due(second)
    with pytest.raises(PermanentError):
        await world.rotator().run(job)
    (entry,) = world.index.jobs.values()
    assert entry.due_at == second + 2 * SETTINGS.retry_after_failure


async def test_an_abandoned_certificate_rotation_takes_its_staged_key_off_the_app() -> None:
    world = RotationWorld(CredentialSpec(CredentialType.CERTIFICATE, timedelta(days=365)))
    before = await world.active()
    world.clock.advance(timedelta(days=250))

    async def refused(*args: object) -> None:
        raise PermanentError("AADSTS7000112: Application is disabled.", code="AADSTS7000112")

    world.probe.try_certificate = refused  # type: ignore[method-assign]
    with pytest.raises(PermanentError):
        await world.rotator().run(due_job(world, JobAction.ROTATE))

    record = await world.store.get(before.id)
    assert record.status is RegistrationStatus.ACTIVE and record.pending_credential is None
    assert [k.key_id for k in world.app().keys] == [before.credential.key_id]  # type: ignore[union-attr]


async def test_a_retirement_kept_back_is_retried_later_and_shows_when() -> None:
    world = RotationWorld()
    before = await world.active()
    await world.rotator().run(due_job(world, JobAction.ROTATE))
    world.clock.advance(timedelta(days=400))  # the new credential has expired too
    retire = due_job(world, JobAction.RETIRE)

    assert await world.rotator().run(retire) is Outcome.KEPT
    assert before.credential.key_id in world.app().passwords  # type: ignore[union-attr]
    entry = world.index.jobs[retire.job_id]
    assert entry.due_at == world.clock.now() + SETTINGS.retry_after_failure
    assert (await sweep(world.index, world.queue, world.clock)).read == 1  # only the overdue rotation
    record = await world.store.get(before.id)
    assert any(e.step == "retire" and e.outcome == "kept" for e in record.history)


# ---------------------------------------------------------------- rotate now: one index entry, due now


async def test_rotate_now_moves_the_scheduled_entry_and_the_job_removes_it_when_done() -> None:
    from functions import bootstrap
    from functions.triggers.rotation import credentials_due, rotate_registration
    from tests.unit.test_registration_triggers import FakeServices, http, principal

    world = RotationWorld()
    before = await world.active()
    scheduled = rotation_job(before, SETTINGS)
    assert scheduled is not None and world.index.partitions_of(scheduled.job_id) == [
        scheduled.index_partition
    ]
    svc = FakeServices(world)
    svc.index = world.index  # type: ignore[assignment]
    svc.queue = world.queue  # type: ignore[assignment]
    bootstrap.reset_services(svc)  # type: ignore[arg-type]
    try:
        response = await rotate_registration(
            http(
                "POST",
                f"registrations/{before.id}/rotate",
                headers=principal("Registrar.Admin"),
                route={"id": before.id},
            )
        )
        assert response.status_code == 202, response.get_body()
        now = world.clock.now()
        assert world.index.partitions_of(scheduled.job_id) == [index_partition(now)]
        (job,) = await world.index.due(now)  # if the message dies, the next sweep runs it again
        assert job.job_id == scheduled.job_id and job.due_at == now
        listed = json.loads(
            (await credentials_due(http("GET", "credentials", params={"dueWithin": "P3650D"}))).get_body()
        )
        assert [(i["action"], i["generation"]) for i in listed["items"]] == [("rotate", 1)]

        assert await world.rotator().run(job) is Outcome.ROTATED
        assert world.index.partitions_of(scheduled.job_id) == []  # no phantom left in the future bucket
        assert {(j.action, j.generation) for j in world.index.jobs.values()} == {
            (JobAction.ROTATE, 2),
            (JobAction.RETIRE, 1),
        }
    finally:
        bootstrap.reset_services(None)
