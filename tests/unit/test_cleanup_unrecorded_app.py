"""Cleanup of an app whose creation answer was lost: the create-if-missing PATCH committed, the
answer did not arrive, and the record holds no app id. Giving up at once must not declare the
registration clean while Graph has not replicated the new app (a lookup by uniqueName still 404s):
the lookup waits out the replication window, and a miss keeps the record `failing` until a later
run (the stuck sweep) finds and deletes the app, or the attempt is old enough to trust the miss."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from functions.core.ports import ApplicationRef, ApplicationSpec
from functions.core.provisioning.stuck import fail_stuck
from functions.core.record.errors import TransientError
from functions.core.record.models import RegistrationStatus
from tests.unit.fakes import FakeDirectory
from tests.unit.provisioning_world import World


class LostCreate:
    """The directory, whose create-if-missing PATCH answers 504: after committing it (`commits`),
    or before reaching Graph."""

    def __init__(self, target: FakeDirectory, *, commits: bool = True) -> None:
        self._target = target
        self._commits = commits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    async def upsert_application(self, tenant_id: str, spec: ApplicationSpec) -> ApplicationRef:
        if not self._commits:
            raise TransientError("429 Too Many Requests (upsert_application)")
        await self._target.upsert_application(tenant_id, spec)
        raise TransientError("504 Gateway Timeout after upsert_application took effect")


async def lost_app_then_give_up(world: World, *, commits: bool = True) -> str:
    """The only delivery's run loses the create's answer; the last delivery gives up at once."""
    rid = (await world.accept()).registration.id
    with pytest.raises(TransientError):
        await world.provisioner(directory=LostCreate(world.directory, commits=commits)).run(rid)
    record = await world.store.get(rid)
    assert record.app_object_id is None and record.last_error is not None
    assert record.last_error.step == "app"
    return rid


async def test_give_up_waits_out_replication_and_deletes_the_app_whose_answer_was_lost() -> None:
    world = World()
    world.directory.lookup_lag = 2  # the first lookup right after the create misses it
    rid = await lost_app_then_give_up(world, commits=True)
    (made,) = world.directory.apps

    record = await world.provisioner().give_up(rid, "gave up after 5 attempts")

    assert record.status is RegistrationStatus.FAILED
    assert world.directory.apps == {}  # not left behind, owned by Registrar
    assert world.directory.deleted_apps == [made]


async def test_an_app_still_unreplicated_keeps_the_record_failing_until_the_sweep_deletes_it() -> None:
    world = World()
    world.directory.lookup_lag = 1000  # longer than the adapter's replication window
    rid = await lost_app_then_give_up(world, commits=True)

    with pytest.raises(TransientError, match="may not have replicated"):
        await world.provisioner().give_up(rid, "gave up after 5 attempts")
    record = await world.store.get(rid)
    assert record.status is RegistrationStatus.FAILING  # not declared clean
    assert record.last_error is not None and record.last_error.kind == "gave_up"
    assert len(world.directory.apps) == 1 and world.directory.deleted_apps == []
    assert [e.outcome for e in record.history if e.step == "cleanup"] == ["retrying"]

    world.directory.unreplicated.clear()  # Entra caught up
    world.clock.advance(timedelta(hours=2))
    (ended,) = (await fail_stuck(world.store, world.provisioner(), world.clock)).ended
    assert ended.id == rid and ended.status is RegistrationStatus.FAILED
    assert world.directory.apps == {} and len(world.directory.deleted_apps) == 1


async def test_an_app_create_that_never_committed_ends_failed_once_the_miss_can_be_trusted() -> None:
    world = World()
    rid = await lost_app_then_give_up(world, commits=False)

    with pytest.raises(TransientError):  # right after the attempt a miss may be replication
        await world.provisioner().give_up(rid, "gave up after 5 attempts")
    assert (await world.store.get(rid)).status is RegistrationStatus.FAILING

    world.clock.advance(timedelta(hours=2))  # long past any replication delay: the miss is real
    (ended,) = (await fail_stuck(world.store, world.provisioner(), world.clock)).ended
    assert ended.status is RegistrationStatus.FAILED and world.directory.apps == {}


async def test_a_registration_that_never_reached_the_app_step_is_cleaned_without_waiting() -> None:
    world = World()
    rid = (await world.accept()).registration.id

    record = await world.provisioner().give_up(rid, "stuck")

    assert record.status is RegistrationStatus.FAILED
    assert world.directory.count("find_application") == 1


async def test_decommissioning_a_failed_registration_does_not_wait_for_its_deleted_app() -> None:
    world = World()
    world.directory.lookup_lag = 2
    rid = await lost_app_then_give_up(world, commits=True)
    await world.provisioner().give_up(rid, "gave up")
    world.directory.lookup_lag = 1000

    record = await world.lifecycle().decommission(rid, "ops@contoso.com")

    assert record.status is RegistrationStatus.DECOMMISSIONED
