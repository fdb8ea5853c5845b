"""The owners step: the request's owners become owners of the app, idempotently, next to the
registrar's own service principal; bad ids fail the registration; a 403 becomes a manual step."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from functions.core.ports import ApplicationSpec
from functions.core.provisioning.workflow import WorkflowSettings
from functions.core.record.errors import TransientError
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration
from functions.triggers.http_common import registration_view
from tests.unit.fakes import Crash, Crashing, Faults
from tests.unit.provisioning_world import TENANT, World


def with_owners(world: World, count: int = 2) -> tuple[str, ...]:
    """A user and service principals the fake tenant knows."""
    user = str(uuid.uuid4())
    world.directory.users.add(user)
    principals = list(world.directory.service_principals.values())[: count - 1]
    return (user, *principals)


async def provision(world: World, owners: tuple[str, ...], **settings: object) -> Registration:
    accepted = await world.accept(plan=replace(world.plan(), owners=owners))
    provisioner = world.provisioner(
        settings=WorkflowSettings(lease_wait=timedelta(seconds=5), **settings)  # type: ignore[arg-type]
    )
    return await provisioner.run(accepted.registration.id)


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "sequential"])
async def test_owners_are_added_next_to_the_registrar_and_shown(concurrent: bool) -> None:
    world = World()
    owners = with_owners(world, 3)
    record = await provision(world, owners, concurrent=concurrent)

    assert record.status is RegistrationStatus.ACTIVE
    (app,) = world.directory.apps.values()
    assert app.owners == [world.directory.registrar_id, *owners]  # Registrar stays an owner
    assert set(record.owners_added) == set(owners) and record.owners_refused is None
    assert [e.detail for e in record.history if e.step == "owners"] == ["3 owner(s) added"]
    view = registration_view(record)
    assert view["owners"] == [{"id": o, "status": "added"} for o in owners]
    assert view["manualSteps"] == list(record.plan.manual_steps)


async def test_a_registration_without_owners_makes_no_owner_call_and_no_history() -> None:
    world = World()
    record = await provision(world, ())
    assert record.status is RegistrationStatus.ACTIVE
    assert world.directory.count("add_owner") == 0
    assert not any(e.step == "owners" for e in record.history)
    assert registration_view(record)["owners"] == []


async def test_unknown_and_wrong_type_owner_ids_fail_the_registration_with_each_reason() -> None:
    world = World()
    (good,) = with_owners(world, 1)
    other_app = await world.directory.upsert_application(TENANT, ApplicationSpec("other", "Another app"))
    unknown = str(uuid.uuid4())
    record = await provision(world, (good, unknown, other_app.object_id))

    assert record.status is RegistrationStatus.FAILED
    error = record.last_error
    assert error is not None and error.step == "owners" and error.kind == "validation"
    reasons = {p.field: p.reason for p in error.problems}
    assert set(reasons) == {"owners[1]", "owners[2]"}
    assert unknown in reasons["owners[1]"] and "no user or service principal" in reasons["owners[1]"]
    assert "not a user or service principal" in reasons["owners[2]"]
    assert unknown in error.message
    # Nothing half-made: the app (and so its owners) went with the failure.
    assert list(world.directory.apps) == [other_app.object_id]
    assert record.app_object_id is None and record.owners_added == ()
    assert registration_view(record)["lastError"]["problems"][0]["field"] == "owners[1]"


async def test_a_registrar_that_may_not_add_owners_turns_active_with_a_manual_step() -> None:
    world = World()
    owners = with_owners(world, 2)
    world.directory.may_add_owners = False
    record = await provision(world, owners)

    assert record.status is RegistrationStatus.ACTIVE
    (app,) = world.directory.apps.values()
    assert app.owners == [world.directory.registrar_id]
    assert record.owners_added == () and "Application.ReadWrite.All" in (record.owners_refused or "")
    assert [e.outcome for e in record.history if e.step == "owners"] == ["skipped"]
    view = registration_view(record)
    assert view["owners"] == [{"id": o, "status": "manual"} for o in owners]
    extra = view["manualSteps"][-1]
    assert all(o in extra for o in owners) and record.app_id in extra
    calls = world.directory.count("add_owner")
    again = await world.provisioner().run(record.id)
    assert again.status is RegistrationStatus.ACTIVE and world.directory.count("add_owner") == calls


async def test_a_transient_failure_keeps_the_owners_added_and_the_retry_adds_the_rest() -> None:
    world = World()
    owners = with_owners(world, 3)
    real = world.directory.add_owner
    throttled = {owners[1]}

    async def flaky(tenant_id: str, app_object_id: str, owner_id: str) -> None:
        if owner_id in throttled:
            raise TransientError("Graph 429", retry_after=timedelta(seconds=2))
        await real(tenant_id, app_object_id, owner_id)

    world.directory.add_owner = flaky  # type: ignore[method-assign]
    accepted = await world.accept(plan=replace(world.plan(), owners=owners))
    with pytest.raises(TransientError):
        await world.provisioner().run(accepted.registration.id)
    paused = await world.store.get(accepted.registration.id)
    assert set(paused.owners_added) == {owners[0], owners[2]}
    assert paused.last_error is not None and paused.last_error.step == "owners"
    throttled.clear()
    record = await world.provisioner().run(accepted.registration.id)
    assert record.status is RegistrationStatus.ACTIVE
    (app,) = world.directory.apps.values()
    assert sorted(app.owners[1:]) == sorted(owners) and len(app.owners) == 4


async def count_calls(owners_world: World, owners: tuple[str, ...]) -> int:
    accepted = await owners_world.accept(plan=replace(owners_world.plan(), owners=owners))
    faults = Faults()
    d = owners_world
    await d.provisioner(
        directory=Crashing(d.directory, faults),
        vault=Crashing(d.vault, faults),
        store=Crashing(d.store, faults),
        probe=Crashing(d.probe, faults),
    ).run(accepted.registration.id)
    return faults.count


async def test_a_crash_after_each_outside_call_then_a_rerun_gives_each_owner_once() -> None:
    first = World()
    total = await count_calls(first, with_owners(first, 2))
    for crash_after in range(1, total + 1):
        world = World()
        owners = with_owners(world, 2)
        accepted = await world.accept(plan=replace(world.plan(), owners=owners))
        faults = Faults(crash_after=crash_after)
        with pytest.raises(Crash):
            await world.crashing_provisioner(faults, owner="crashed-worker").run(accepted.registration.id)
        world.clock.advance(timedelta(minutes=6))
        record = await world.provisioner(owner="next-worker").run(accepted.registration.id)
        assert record.status is RegistrationStatus.ACTIVE, crash_after
        (app,) = world.directory.apps.values()
        assert app.owners == [world.directory.registrar_id, *owners], crash_after
        assert set(record.owners_added) == set(owners)
