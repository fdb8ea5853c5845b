"""Ownership of an adopted app (issue 15 §2): pending_ownership with the exact command until
Registrar's service principal is an owner, then adopting; with Application.ReadWrite.All granted,
Registrar adds itself (written ahead); a check killed after any call converges."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core.adoption.accepting import accept_adoption
from functions.core.adoption.asking import validate_adoption
from functions.core.adoption.ownership import OwnershipCheck, OwnershipSettings
from functions.core.catalogue.policy import Policy
from functions.core.inventory.models import AppSummary
from functions.core.record.errors import Conflict, TransientError
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration
from functions.profiles import load_catalogue
from tests.unit.fakes import Crash, Crashing, FakeApp, Faults
from tests.unit.inventory_fakes import FakeInventoryStore
from tests.unit.provisioning_world import TENANT, World

TAKES_OWNERSHIP = OwnershipSettings(take_ownership=True)


async def adopted(world: World, request_id: str = "ADOPT-O1") -> tuple[Registration, FakeApp]:
    app = world.directory.add_hand_made_app("CodeTwo by hand", owners=["a-person"])
    body = {"requestId": request_id, "profile": "codetwo-backup-exchange", "adopt": {"appId": app.app_id}}
    adoption = await validate_adoption(
        body,
        directory=world.directory,
        store=world.store,
        home_tenant_id=TENANT,
        catalogue=load_catalogue(),
        policy=Policy(allowed_tenants=frozenset({TENANT})),
    )
    accepted = await accept_adoption(adoption, body, store=world.store, vault=world.vault, clock=world.clock)
    return accepted.registration, app


def checker(world: World, settings: OwnershipSettings | None = None, **wrapped: object) -> OwnershipCheck:
    return OwnershipCheck(
        wrapped.get("store", world.store),  # type: ignore[arg-type]
        wrapped.get("directory", world.directory),  # type: ignore[arg-type]
        world.clock,
        settings,
        sleep=world.record_sleep,
    )


async def test_without_ownership_it_waits_with_the_exact_command_and_says_so_once() -> None:
    world = World()
    record, app = await adopted(world)
    assert record.status is RegistrationStatus.PENDING_OWNERSHIP
    waiting = await checker(world).check(record.id)
    again = await checker(world).check(record.id)
    assert waiting.status is again.status is RegistrationStatus.PENDING_OWNERSHIP
    registrar = world.directory.registrar_id
    step = waiting.manual_steps[0]
    assert f"az ad app owner add --id {app.app_id} --owner-object-id {registrar}" in step
    assert "Entra ID > App registrations > CodeTwo by hand > Owners > Add owners" in step
    assert f"POST /api/registrations/{record.id}/recheck" in step
    assert [e.outcome for e in again.history if e.step == "ownership"] == ["waiting"]
    assert app.owners == ["a-person"]  # nothing changed in Entra

    start = world.clock.now()  # a secret a person made, before ownership
    pasted = await world.directory.add_password(
        TENANT, app.object_id, "pasted into the connector", start, start + timedelta(days=9000)
    )
    app.owners.append(registrar)  # an administrator adds Registrar (az ad app owner add)
    owned = await checker(world).check(record.id)
    assert owned.status is RegistrationStatus.ADOPTING and owned.adoption is not None
    assert owned.adoption.owned_at == world.clock.now() and not owned.adoption.owner_added_by_registrar
    assert (
        owned.history[-1].detail
        == "Registrar's service principal is an owner; 1 credential(s) found on the app"
    )
    (found,) = owned.adoption.found_credentials
    assert (found.key_id, found.type.value, found.display_name) == (
        pasted.key_id,
        "secret",
        "pasted into the connector",
    )
    assert owned.manual_steps == owned.plan.manual_steps  # the ownership step is done
    assert (await checker(world).check(record.id)).status is RegistrationStatus.ADOPTING  # a no-op now


async def test_with_application_readwrite_all_registrar_adds_itself_and_records_it() -> None:
    world = World()
    record, app = await adopted(world)
    owned = await checker(world, TAKES_OWNERSHIP).check(record.id)
    assert owned.status is RegistrationStatus.ADOPTING
    assert owned.adoption is not None and owned.adoption.owner_added_by_registrar
    assert app.owners == ["a-person", world.directory.registrar_id]
    assert [(e.outcome, e.detail) for e in owned.history if e.step == "ownership"] == [
        ("started", "Registrar adds itself as an owner"),
        (
            "done",
            "Registrar added itself as an owner (Application.ReadWrite.All); 0 credential(s) found on the app",
        ),
    ]


async def test_when_graph_refuses_the_owner_it_falls_back_to_the_manual_step() -> None:
    world = World()
    world.directory.may_add_owners = False
    record, app = await adopted(world)
    waiting = await checker(world, TAKES_OWNERSHIP).check(record.id)
    assert waiting.status is RegistrationStatus.PENDING_OWNERSHIP
    assert waiting.adoption is not None and not waiting.adoption.owner_added_by_registrar
    assert [e.outcome for e in waiting.history if e.step == "ownership"] == ["started", "skipped", "waiting"]
    assert "az ad app owner add" in waiting.manual_steps[0] and app.owners == ["a-person"]


async def test_an_app_deleted_while_waiting_fails_the_registration_and_other_registrations_are_refused() -> (
    None
):
    world = World()
    record, app = await adopted(world)
    del world.directory.apps[app.object_id]
    failed = await checker(world).check(record.id)
    assert failed.status is RegistrationStatus.FAILED and failed.last_error is not None
    assert failed.last_error.code == "AppGone" and app.app_id in failed.last_error.message

    made = await world.accept()
    with pytest.raises(Conflict):
        await checker(world).check(made.registration.id)


@pytest.mark.parametrize("take_ownership", [False, True])
async def test_a_check_killed_after_any_call_converges(take_ownership: bool) -> None:
    settings = OwnershipSettings(take_ownership=take_ownership)
    for crash_after in range(1, 30):
        world = World()
        record, app = await adopted(world)
        if not take_ownership:
            app.owners.append(world.directory.registrar_id)
        faults = Faults(crash_after=crash_after)
        try:
            await checker(
                world,
                settings,
                store=Crashing(world.store, faults),
                directory=Crashing(world.directory, faults),
            ).check(record.id)
        except Crash:
            world.clock.advance(settings.lease_for + timedelta(seconds=1))  # the dead worker's lease lapses
            owned = await checker(world, settings).check(record.id)
            assert owned.status is RegistrationStatus.ADOPTING, crash_after
            assert owned.adoption is not None and owned.adoption.owner_added_by_registrar is take_ownership
            assert app.owners.count(world.directory.registrar_id) == 1
            continue
        assert not faults.crashed and crash_after > 2, "every call was crashed after once"
        return
    raise AssertionError("the check never ran to its end")


def summaries_of(app: FakeApp, tenant: str = TENANT) -> tuple[AppSummary, AppSummary]:
    """What a scan stored for a hand-made app: its application and its service principal."""
    application = AppSummary(tenant, app.object_id, app.app_id, "application", app.spec.display_name)
    principal = AppSummary(
        tenant, f"sp-{app.object_id}", app.app_id, "servicePrincipal", app.spec.display_name
    )
    return application, principal


class CountingInventory(FakeInventoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.marks = 0

    async def set_managed_by(self, tenant_id: str, object_id: str, registration_id: str | None) -> bool:
        self.marks += 1
        return await super().set_managed_by(tenant_id, object_id, registration_id)


async def test_the_check_marks_the_adopted_app_managed_in_the_inventory_at_once() -> None:
    """As the next scan would (the registration holds the app it adopted until it releases it): the
    application's summary, not its service principal's, nor another app's; the scan's mark kept."""
    world = World()
    record, app = await adopted(world)
    other = world.directory.add_hand_made_app("another by hand", owners=["a-person"])
    inventory = CountingInventory()
    application, principal = summaries_of(app)
    await inventory.put([application, principal, summaries_of(other)[0]], "scan-1")

    def check() -> OwnershipCheck:
        return OwnershipCheck(world.store, world.directory, world.clock, sleep=world.record_sleep,
                              inventory=inventory)  # fmt: skip

    waiting = await check().check(record.id)  # at acceptance: the registration holds the app already
    assert waiting.status is RegistrationStatus.PENDING_OWNERSHIP
    marked = inventory.summaries(TENANT)
    assert marked[app.object_id].managed and marked[app.object_id].managed_by == record.id
    assert inventory.apps[(TENANT, app.object_id)][1] == "scan-1"  # a full scan running now keeps it
    assert not marked[principal.object_id].managed and not marked[other.object_id].managed
    await check().check(record.id)  # nothing new to say: nothing written, in the record or the inventory
    assert inventory.marks == 1

    # A scan that read the records before the acceptance stored it unmarked: the check that finds
    # Registrar an owner marks it again.
    await inventory.put([application], "scan-2")
    app.owners.append(world.directory.registrar_id)
    owned = await check().check(record.id)
    assert owned.status is RegistrationStatus.ADOPTING
    assert inventory.summaries(TENANT)[app.object_id].managed_by == record.id and inventory.marks == 2


async def test_an_inventory_it_cannot_write_does_not_fail_the_check(caplog: pytest.LogCaptureFixture) -> None:
    class Unreachable(FakeInventoryStore):
        async def by_app_id(self, tenant_id: str, app_id: str) -> list[AppSummary]:
            raise TransientError("table storage unreachable")

    world = World()
    record, app = await adopted(world)
    app.owners.append(world.directory.registrar_id)
    owned = await OwnershipCheck(
        world.store, world.directory, world.clock, sleep=world.record_sleep, inventory=Unreachable()
    ).check(record.id)
    assert owned.status is RegistrationStatus.ADOPTING  # the view catches up at the next scan
    assert any("not marked managed" in r.getMessage() for r in caplog.records)


async def test_an_adoption_whose_app_is_gone_is_not_marked() -> None:
    world = World()
    record, app = await adopted(world)
    inventory = CountingInventory()
    await inventory.put([summaries_of(app)[0]], "scan-1")
    del world.directory.apps[app.object_id]
    failed = await OwnershipCheck(
        world.store, world.directory, world.clock, sleep=world.record_sleep, inventory=inventory
    ).check(record.id)
    assert failed.status is RegistrationStatus.FAILED  # released: the scan would say not managed
    assert inventory.marks == 0 and not inventory.summaries(TENANT)[app.object_id].managed
