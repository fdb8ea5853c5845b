"""Resume after a crash for the work outside a provisioning run or a rotation job (issue 13, part 4):
decommission, approve, the settling after a run, and give_up. Each is killed after every outside
call it makes in turn; the resume sweep then re-sends the registration's envelope once its lease
lapsed, and the registration worker's run converges. A kill is a BaseException here, so no
`except Exception` path runs (as after a SIGKILL): what is left behind is what a dead process leaves.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest

from functions.core.provisioning.outcomes import settle_provisioned
from functions.core.provisioning.workflow import Provisioner
from functions.core.record.errors import NotFound, TransientError
from functions.core.record.keeper import WORK_LEASE
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration, vault_object_name
from functions.core.recovery.resume import resume_lapsed
from functions.core.rotation.rotator import RotationSettings
from functions.resources import REGISTRATION_REQUESTS_QUEUE, ROTATION_JOBS_QUEUE, WEBHOOK_DELIVERIES_QUEUE
from functions.triggers.queue_messages import Envelope, read_message
from tests.unit.fakes import Crash, Crashing, FakeExpiryIndex, FakeInFlightIndex, FakeQueue, Faults
from tests.unit.provisioning_world import WebhookSpec, World

AFTER_THE_LEASE = WORK_LEASE + timedelta(seconds=1)
TIER0 = ("Application.ReadWrite.All (application) on Microsoft Graph is tier-0",)


class Killed(BaseException):
    """The process died: unlike an Exception, nothing on the way out handles it."""


class Kill(Faults):
    def after_call(self, name: str) -> None:
        self.count += 1
        if self.crash_after is not None and self.count >= self.crash_after:
            self.crashed = True
            raise Killed(f"killed after call {self.count} ({name})")


async def resume_and_run(world: World, in_flight: FakeInFlightIndex, then: Any = None) -> list[Registration]:
    """After the dead worker's lease: one resume sweep, and the worker's run of what it re-sent."""
    world.clock.advance(AFTER_THE_LEASE)
    queue = FakeQueue()
    await resume_lapsed(in_flight, world.store, queue, world.clock)
    runs = []
    for queue_name, message in queue.sent:
        assert queue_name == REGISTRATION_REQUESTS_QUEUE
        envelope = read_message(message)
        assert isinstance(envelope, Envelope)
        # TransientError: paused again (the queue's retries take it from here), and its entry goes.
        with contextlib.suppress(TransientError):
            runs.append(await world.provisioner(in_flight=in_flight).run(envelope.registration_id, then=then))
    return runs


def count_calls(faults: Faults) -> int:
    assert not faults.crashed and faults.count > 0
    return faults.count


# ---------------------------------------------------------------- decommission


async def active_with_a_webhook(world: World) -> Registration:
    request = world.request(webhooks=(WebhookSpec("https://connector.example.com/hook"),))
    accepted = await world.accept(request)
    return await world.provisioner().run(accepted.registration.id)


async def test_a_decommission_killed_after_any_call_is_finished_by_the_registration_worker() -> None:
    world = World()
    clean = await active_with_a_webhook(world)
    faults = Faults()
    await world.lifecycle(faults=faults, in_flight=Crashing(FakeInFlightIndex(), faults)).decommission(
        clean.id, "admin"
    )
    total = count_calls(faults)
    assert total >= 8  # the entry, the lease, the save, the app's removal, the vault deletes, the end
    finished_by_the_worker = 0
    for kill_after in range(1, total):
        world = World()
        active = await active_with_a_webhook(world)
        webhook_secret = active.webhooks[0].secret_name
        in_flight = FakeInFlightIndex()
        kill = Kill(crash_after=kill_after)
        with pytest.raises((Killed, Crash)):  # Crash: a `finally` finding the process gone
            await world.lifecycle(faults=kill, in_flight=Crashing(in_flight, kill)).decommission(
                active.id, "admin"
            )
        started = (await world.store.get(active.id)).status in (
            RegistrationStatus.DECOMMISSIONING,
            RegistrationStatus.DECOMMISSIONED,
        )

        await resume_and_run(world, in_flight)

        record = await world.store.get(active.id)
        assert in_flight.entries == {}, kill_after
        if started:  # nobody calls it again: the resumed run finished it
            finished_by_the_worker += 1
            assert record.status is RegistrationStatus.DECOMMISSIONED, kill_after
            assert world.directory.apps == {}, kill_after
            assert vault_object_name(active.id) not in world.vault.secrets, kill_after
            assert webhook_secret not in world.vault.secrets, kill_after
            assert record.lease_owner is None
        else:  # killed before anything was removed: the caller saw it fail; nothing half-made
            assert record.status is RegistrationStatus.ACTIVE, kill_after
            assert len(world.directory.apps) == 1 and webhook_secret in world.vault.secrets, kill_after
            again = await world.lifecycle(in_flight=in_flight).decommission(active.id, "admin")
            assert again.status is RegistrationStatus.DECOMMISSIONED and world.directory.apps == {}
    assert finished_by_the_worker >= total - 4


async def test_a_decommission_that_fails_half_way_is_finished_without_being_called_again() -> None:
    world = World()
    active = await active_with_a_webhook(world)
    in_flight = FakeInFlightIndex()
    original = world.vault.delete_secret
    failures = [TransientError("Key Vault 503")]

    async def delete_secret(name: str) -> None:
        if failures:
            raise failures.pop()
        await original(name)

    world.vault.delete_secret = delete_secret  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        await world.lifecycle(in_flight=in_flight).decommission(active.id, "admin")
    assert (await world.store.get(active.id)).status is RegistrationStatus.DECOMMISSIONING
    assert list(in_flight.entries) == [f"{active.id}-provision"]

    (record,) = await resume_and_run(world, in_flight)

    assert record.status is RegistrationStatus.DECOMMISSIONED and world.directory.apps == {}
    assert in_flight.entries == {}


async def test_a_decommission_holds_a_work_lease_renewed_in_the_background() -> None:
    world = World()
    active = await active_with_a_webhook(world)
    seen: list[Any] = []
    original = world.directory.delete_application

    async def delete_application(*args: Any) -> Any:
        seen.append((await world.store.get(active.id)).lease_until - world.clock.now())
        return await original(*args)

    world.directory.delete_application = delete_application  # type: ignore[method-assign]
    await world.lifecycle().decommission(active.id, "admin")
    assert seen and all(held <= WORK_LEASE for held in seen)


# ---------------------------------------------------------------- approve


async def held_for_approval(world: World) -> str:
    accepted = await world.accept(plan=world.plan(approval_reasons=TIER0))
    held = await world.provisioner().run(accepted.registration.id)
    assert held.status is RegistrationStatus.PENDING_APPROVAL
    return held.id


async def test_an_approval_killed_after_any_call_or_whose_enqueue_is_lost_still_gets_provisioned() -> None:
    world = World()
    rid = await held_for_approval(world)
    faults = Faults()
    await world.lifecycle(faults=faults, in_flight=Crashing(FakeInFlightIndex(), faults)).approve(
        rid, "alice"
    )
    total = count_calls(faults)
    for kill_after in range(1, total + 2):  # the last: approve returned, the trigger died before its send
        world = World()
        rid = await held_for_approval(world)
        in_flight = FakeInFlightIndex()
        kill = Kill(crash_after=kill_after)
        lifecycle = world.lifecycle(faults=kill, in_flight=Crashing(in_flight, kill))
        if kill_after <= total:
            with pytest.raises((Killed, Crash)):  # Crash: a `finally` finding the process gone
                await lifecycle.approve(rid, "alice")
        else:
            _, enqueue = await lifecycle.approve(rid, "alice")
            assert enqueue and list(in_flight.entries) == [f"{rid}-provision"]  # handed to the worker
        approved = (await world.store.get(rid)).approval.granted  # type: ignore[union-attr]

        await resume_and_run(world, in_flight)

        record = await world.store.get(rid)
        assert in_flight.entries == {}, kill_after
        if approved:
            assert record.status is RegistrationStatus.ACTIVE, kill_after
        else:
            assert record.status is RegistrationStatus.PENDING_APPROVAL, kill_after
            assert world.directory.apps == {}, kill_after


async def test_a_refused_approval_leaves_no_entry() -> None:
    world = World()
    accepted = await world.accept()
    in_flight = FakeInFlightIndex()
    with pytest.raises(Exception, match="not pending_approval"):
        await world.lifecycle(in_flight=in_flight).approve(accepted.registration.id, "alice")
    assert in_flight.entries == {}


# ---------------------------------------------------------------- settling a run, and give_up


def settling(world: World, index: FakeExpiryIndex, queue: FakeQueue, faults: Faults | None = None) -> Any:
    """outcomes.settle_provisioned as the bootstrap wires it, its calls counting toward `faults`."""

    def wrap(target: Any) -> Any:
        return Crashing(target, faults) if faults else target

    async def settle(record: Registration) -> None:
        await settle_provisioned(
            record,
            store=wrap(world.store),
            index=wrap(index),
            queue=wrap(queue),
            clock=world.clock,
            owner="settler",
            settings=RotationSettings(),
        )

    return settle


def announced(queue: FakeQueue, event_type: str) -> set[str]:
    """Distinct webhook-ids (delivery ids) of `event_type` on the deliveries queue."""
    import json

    messages = [json.loads(m) for m in queue.messages(WEBHOOK_DELIVERIES_QUEUE)]
    return {m["deliveryId"] for m in messages if m["eventType"] == event_type}


async def test_a_run_killed_while_it_is_settled_is_resumed_and_settled_once() -> None:
    world = World()
    rid = (
        await world.accept(world.request(webhooks=(WebhookSpec("https://c.example.com/h"),)))
    ).registration.id
    faults = Faults()
    await world.provisioner().run(rid, then=settling(world, FakeExpiryIndex(), FakeQueue(), faults))
    total = count_calls(faults)
    assert total >= 5  # the rotation job indexed, the lease, the announcement, its note, the release
    for kill_after in range(1, total + 1):
        world = World()
        accepted = await world.accept(world.request(webhooks=(WebhookSpec("https://c.example.com/h"),)))
        rid = accepted.registration.id
        in_flight, index, queue = FakeInFlightIndex(), FakeExpiryIndex(), FakeQueue()
        kill = Kill(crash_after=kill_after)
        with pytest.raises((Killed, Crash)):  # Crash: a `finally` finding the process gone
            await world.provisioner(in_flight=in_flight).run(rid, then=settling(world, index, queue, kill))
        assert list(in_flight.entries) == [f"{rid}-provision"], kill_after  # active, not yet settled

        (record,) = await resume_and_run(world, in_flight, then=settling(world, index, queue))

        assert record.status is RegistrationStatus.ACTIVE and in_flight.entries == {}, kill_after
        assert [job.registration_id for job in await index.due(world.clock.now() + timedelta(days=400))] == [
            rid
        ], kill_after  # its first rotation, scheduled once
        assert len(announced(queue, "registration.active")) == 1, kill_after


async def test_a_settling_that_fails_leaves_the_entry_for_the_sweep() -> None:
    world = World()
    rid = (
        await world.accept(world.request(webhooks=(WebhookSpec("https://c.example.com/h"),)))
    ).registration.id
    in_flight, index, queue = FakeInFlightIndex(), FakeExpiryIndex(), FakeQueue()
    queue.fail_sends(1)
    with pytest.raises(TransientError):
        await world.provisioner(in_flight=in_flight).run(rid, then=settling(world, index, queue))
    assert list(in_flight.entries) == [f"{rid}-provision"]

    await resume_and_run(world, in_flight, then=settling(world, index, queue))

    assert len(announced(queue, "registration.active")) == 1 and in_flight.entries == {}


async def paused_in_verification(world: World) -> str:
    """A registration whose run keeps pausing (Entra never accepts its secret): give_up's case."""
    from functions.core.provisioning.workflow import WorkflowSettings
    from tests.unit.fakes import FakeTokenProbe

    world.probe = FakeTokenProbe(world.directory, world.vault, not_accepted_for=10_000)
    rid = (
        await world.accept(world.request(webhooks=(WebhookSpec("https://c.example.com/h"),)))
    ).registration.id
    settings = WorkflowSettings(verify_timeout=timedelta(seconds=10), lease_wait=timedelta(seconds=5))
    with pytest.raises(TransientError):
        await world.provisioner(settings=settings).run(rid)
    return rid


def giving_up(world: World, faults: Faults, in_flight: Any) -> Provisioner:
    return world.crashing_provisioner(faults, owner="giving-up", probe=False, in_flight=in_flight)


async def test_a_give_up_killed_after_any_call_ends_failed_clean_and_announced_once() -> None:
    world = World()
    rid = await paused_in_verification(world)
    faults = Faults()
    index, queue = FakeExpiryIndex(), FakeQueue()
    await giving_up(world, faults, Crashing(FakeInFlightIndex(), faults)).give_up(
        rid, "gave up after 5 attempts", then=settling(world, index, queue, faults)
    )
    total = count_calls(faults)
    assert total >= 8
    resumed_to_the_end = 0
    for kill_after in range(1, total + 1):
        world = World()
        rid = await paused_in_verification(world)
        in_flight, index, queue = FakeInFlightIndex(), FakeExpiryIndex(), FakeQueue()
        kill = Kill(crash_after=kill_after)
        with pytest.raises((Killed, Crash)):  # Crash: a `finally` finding the process gone
            await giving_up(world, kill, Crashing(in_flight, kill)).give_up(
                rid, "gave up after 5 attempts", then=settling(world, index, queue, kill)
            )
        failing = (await world.store.get(rid)).status in (
            RegistrationStatus.FAILING,
            RegistrationStatus.FAILED,
        )

        await resume_and_run(world, in_flight, then=settling(world, index, queue))

        record = await world.store.get(rid)
        assert in_flight.entries == {}, kill_after
        if failing:  # the give-up was written: the resumed run cleans up and announces it, once
            resumed_to_the_end += 1
            assert record.status is RegistrationStatus.FAILED, kill_after
            assert world.directory.apps == {} and vault_object_name(rid) not in world.vault.secrets, (
                kill_after
            )
            assert len(announced(queue, "registration.failed")) == 1, kill_after
        else:  # killed before `failing` was written: still provisioning, for its retries or the stuck sweep
            assert record.status is RegistrationStatus.PROVISIONING, kill_after
    assert resumed_to_the_end >= total - 3


# ---------------------------------------------------------------- Key Vault reactions


async def test_a_reaction_killed_after_any_call_is_redelivered_by_event_grid_within_a_work_lease() -> None:
    """No in-flight entry: Event Grid delivers the event again (10 s, 30 s, 1 min...), and the
    dead reaction's lease is a work lease, so the redelivery 31 s later finds it free."""
    import json

    from functions.core.rotation.keyvault_events import KeyVaultEvent, KeyVaultEventKind, ObjectType
    from functions.core.rotation.keyvault_reactions import KeyVaultReactions, Reaction
    from tests.unit.test_rotation import RotationWorld

    def near_expiry(record: Registration) -> KeyVaultEvent:
        version = record.credential.secret_version  # type: ignore[union-attr]
        return KeyVaultEvent(
            "e", KeyVaultEventKind.NEAR_EXPIRY, ObjectType.SECRET, "v", record.id, version, None, None, None
        )

    def reactions(world: RotationWorld, faults: Faults | None = None) -> KeyVaultReactions:
        def wrap(target: Any) -> Any:
            return Crashing(target, faults) if faults else target

        return KeyVaultReactions(
            store=wrap(world.store),
            queue=wrap(world.queue),
            index=wrap(world.index),
            clock=world.clock,
            owner="events",
        )

    world = RotationWorld()
    record = await world.active()
    world.clock.advance(timedelta(days=60))  # due: near expiry enqueues a rotation
    faults = Faults()
    assert await reactions(world, faults).handle(near_expiry(record)) is Reaction.ROTATION_ENQUEUED
    total = count_calls(faults)
    for kill_after in range(1, total + 1):
        world = RotationWorld()
        record = await world.active()
        world.clock.advance(timedelta(days=60))
        kill = Kill(crash_after=kill_after)
        with pytest.raises((Killed, Crash)):  # Crash: a `finally` finding the process gone
            await reactions(world, kill).handle(near_expiry(record))
        world.clock.advance(AFTER_THE_LEASE)  # Event Grid's second retry comes 40 s after the first try

        again = await reactions(world).handle(near_expiry(record))

        assert again in (Reaction.ROTATION_ENQUEUED, Reaction.NOTIFIED), kill_after
        expiring = {
            d.delivery_id
            for d in world.queue.deliveries()
            if json.loads(d.body)["type"] == "credential.expiring"
        }
        assert len(expiring) == 1, kill_after  # one webhook-id: announced once, whatever the kill left
        rotations = {json.loads(m)["jobId"] for q, m in world.queue.sent if q == ROTATION_JOBS_QUEUE}
        assert len(rotations) == 1, kill_after  # one rotate-now job (sent again: the same job id)


@pytest.mark.parametrize("registration_id", ["\u0084", "reg-1", "reg-" + "0" * 23, "x" * 300])
async def test_an_id_registrar_never_issues_is_not_found_before_anything_is_written(
    registration_id: str,
) -> None:
    world = World()
    in_flight = FakeInFlightIndex()
    lifecycle = world.lifecycle(in_flight=in_flight)
    with pytest.raises(NotFound):
        await lifecycle.approve(registration_id, "alice")
    with pytest.raises(NotFound):
        await lifecycle.decommission(registration_id, "admin")
    assert in_flight.entries == {}
