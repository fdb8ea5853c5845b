"""Two deliveries of one registration in one process (a queue batch) must not both hold its lease."""

from __future__ import annotations

import asyncio

from functions.core.record.errors import TransientError
from functions.core.record.models import RegistrationStatus
from tests.unit.provisioning_world import World


async def test_concurrent_runs_with_their_own_owners_make_one_credential() -> None:
    world = World()
    accepted = await world.accept()
    registration_id = accepted.registration.id

    outcomes = await asyncio.gather(
        world.provisioner(owner="host-1-run-a").run(registration_id),
        world.provisioner(owner="host-1-run-b").run(registration_id),
        return_exceptions=True,
    )
    for outcome in outcomes:  # the loser waits for the lease and gives up for a later retry
        assert not isinstance(outcome, BaseException) or isinstance(outcome, TransientError), outcome
    record = await world.provisioner(owner="host-1-run-c").run(registration_id)

    assert record.status is RegistrationStatus.ACTIVE
    (app,) = world.directory.apps.values()
    assert list(app.passwords) == [record.credential.key_id]  # type: ignore[union-attr]
    assert world.directory.count("add_password") == 1
