"""A first credential's verify may wait as long as the lease lasts (the verify budget is capped at
the lease): every wait renews the lease, so neither the stuck sweep nor a duplicate delivery's
give_up can take the registration over while Entra is still propagating the new credential."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core.provisioning.workflow import WorkflowSettings
from functions.core.record.keeper import LeaseHeld
from functions.core.record.models import RegistrationStatus
from tests.unit.fakes import FakeTokenProbe
from tests.unit.provisioning_world import World

LEASE = timedelta(minutes=5)


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "sequential"])
async def test_a_long_propagation_keeps_the_lease_ours_throughout(concurrent: bool) -> None:
    world = World()
    world.probe = FakeTokenProbe(world.directory, world.vault, not_accepted_for=30)  # ~9 minutes
    rid = (await world.accept()).registration.id
    lease_checks: list[bool] = []
    takeovers: list[str] = []
    started = world.clock.now()

    async def propagation_wait(seconds: float) -> None:
        world.clock.advance(timedelta(seconds=seconds))  # the time really passes
        stored = await world.store.get(rid)
        if stored.status is RegistrationStatus.PROVISIONING:
            lease_checks.append(
                stored.lease_owner == "first-worker"
                and stored.lease_until is not None
                and stored.lease_until > world.clock.now()
            )
            if world.clock.now() - started > LEASE and not takeovers:
                # A duplicate's last delivery gives up: it would take a lapsed lease over.
                try:
                    await world.provisioner(owner="duplicate").give_up(rid, "gave up", wait=timedelta(0))
                    takeovers.append("taken over")
                except LeaseHeld:
                    takeovers.append("refused")

    settings = WorkflowSettings(
        lease_for=LEASE,
        lease_wait=timedelta(seconds=5),
        verify_timeout=timedelta(minutes=15),
        concurrent=concurrent,
    )
    record = await world.provisioner(owner="first-worker", settings=settings, sleep=propagation_wait).run(rid)

    assert record.status is RegistrationStatus.ACTIVE
    assert world.clock.now() - record.created_at > LEASE  # the verify outlasted the lease
    assert lease_checks and all(lease_checks)
    assert takeovers == ["refused"]
    assert len(world.directory.apps) == 1 and record.lease_owner is None
