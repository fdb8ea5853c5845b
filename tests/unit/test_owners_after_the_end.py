"""Owners of a registration whose app is gone: a `failed` or `decommissioned` registration shows
no owner as a manual step and no manual step naming the deleted app (the API view)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

from functions.core.provisioning.workflow import WorkflowSettings
from functions.core.record.errors import PermanentError
from functions.core.record.models import RegistrationStatus, SecretValue
from functions.core.record.registration import Registration
from functions.triggers.http_common import registration_view
from tests.unit.provisioning_world import World


def with_owners(world: World) -> tuple[str, str]:
    user = str(uuid.uuid4())
    world.directory.users.add(user)
    return user, next(iter(world.directory.service_principals.values()))


async def provision(world: World, owners: tuple[str, ...]) -> Registration:
    accepted = await world.accept(plan=replace(world.plan(), owners=owners))
    settings = WorkflowSettings(lease_wait=timedelta(seconds=5), concurrent=False)  # owners first
    return await world.provisioner(settings=settings).run(accepted.registration.id)


def assert_no_owner_step(record: Registration, owners: tuple[str, ...]) -> None:
    view = registration_view(record)
    assert record.owners_refused is None and record.owners_added == ()
    assert {o["status"] for o in view["owners"]} == {"none"}  # the app they owned is gone
    assert [o["id"] for o in view["owners"]] == list(owners)
    assert view["manualSteps"] == list(record.plan.manual_steps)  # nothing naming the deleted app
    assert not any("Add owners" in step for step in view["manualSteps"])


async def test_a_failed_registration_whose_owners_were_refused_shows_no_owner_manual_step() -> None:
    world = World()
    owners = with_owners(world)
    world.directory.may_add_owners = False

    async def refused(tenant_id: str, client_id: str, secret: SecretValue) -> None:
        raise PermanentError("AADSTS7000215: Invalid client secret provided.")

    assert world.probe is not None
    world.probe.try_secret = refused  # type: ignore[method-assign]
    record = await provision(world, owners)

    assert record.status is RegistrationStatus.FAILED and world.directory.apps == {}
    assert any(e.step == "owners" and e.outcome == "skipped" for e in record.history)  # was refused
    assert_no_owner_step(record, owners)


async def test_a_decommissioned_registration_keeps_neither_refused_nor_added_owners() -> None:
    world = World()
    owners = with_owners(world)
    world.directory.may_add_owners = False
    refused = await provision(world, owners)
    assert refused.status is RegistrationStatus.ACTIVE and refused.owners_refused is not None

    record = await world.lifecycle().decommission(refused.id, "ops@contoso.com")

    assert record.status is RegistrationStatus.DECOMMISSIONED and world.directory.apps == {}
    assert_no_owner_step(record, owners)


async def test_a_decommissioned_registration_no_longer_lists_owners_as_added() -> None:
    world = World()
    owners = with_owners(world)
    active = await provision(world, owners)
    assert set(active.owners_added) == set(owners)

    record = await world.lifecycle().decommission(active.id, "ops@contoso.com")

    assert record.status is RegistrationStatus.DECOMMISSIONED
    assert all(o["status"] != "added" for o in registration_view(record)["owners"])
    assert_no_owner_step(record, owners)
