"""Resume after a crash (issue 13, part 4): a worker that dies mid-way leaves an in-flight entry and a
lease that lapses in 30 s; the resume sweep re-sends its message, reading O(in flight), and the
work completes once. A process dying is a cancelled task here: no `except Exception` runs, exactly
as after a SIGKILL (a `Crash` exception would let the workflow's own failure handling run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.core.record.errors import TransientError
from functions.core.record.inflight import InFlightWork, provisioning_work, tracked
from functions.core.record.keeper import WORK_LEASE, LeaseHeld, RecordKeeper
from functions.core.record.models import RegistrationStatus
from functions.core.record.schedule import JobAction, RotationJob
from functions.core.recovery.resume import MAX_RESUMES, resume_lapsed
from functions.core.rotation.rotator import Outcome, Rotator
from functions.resources import REGISTRATION_REQUESTS_QUEUE, ROTATION_JOBS_QUEUE
from functions.triggers.queue_messages import Envelope, read_message
from tests.unit.fakes import FakeInFlightIndex, FakeQueue, FakeTokenProbe
from tests.unit.provisioning_world import World, fast_sleep
from tests.unit.test_rotation import SETTINGS, RotationWorld, due_job

AFTER_THE_LEASE = WORK_LEASE + timedelta(seconds=1)


class StallingProbe(FakeTokenProbe):
    """Entra never answers the first `stalls` token requests: the worker waits there until it dies."""

    def __init__(self, probe: FakeTokenProbe, stalls: int = 1) -> None:
        super().__init__(probe._directory, probe._vault)
        self.stalls = stalls
        self.entered = asyncio.Event()

    async def try_secret(self, tenant_id: str, client_id: str, secret: Any) -> None:
        if self.stalls > 0:
            self.stalls -= 1
            self.entered.set()
            await asyncio.Event().wait()  # forever: only the process's death ends it
        await super().try_secret(tenant_id, client_id, secret)


async def killed_while_verifying(run: Awaitable[Any], probe: StallingProbe) -> None:
    """Run until the worker waits on Entra, then kill it (cancel: no except-Exception path runs)."""
    task = asyncio.ensure_future(run)
    await asyncio.wait_for(probe.entered.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def provisioner(world: World, index: FakeInFlightIndex, probe: Any = None) -> Any:
    made = world.provisioner(probe=probe)
    made._in_flight = index  # the world's provisioner, plus the in-flight index the bootstrap gives it
    return made


def settle_many(world: World, template_id: str, count: int) -> None:
    """`count` settled (active, unleased) registrations beside the ones under test."""
    document, _ = world.store.documents[template_id]
    for n in range(count):
        copy = json.loads(json.dumps(document))
        copy["id"] = f"reg-settled-{n:05d}"
        copy["leaseOwner"] = copy["leaseUntil"] = None
        world.store.documents[copy["id"]] = (copy, f"etag-{n}")


# ---------------------------------------------------------------- provisioning


async def test_a_provisioning_killed_mid_way_resumes_after_its_lease_and_completes_once() -> None:
    world = World()
    index, queue = FakeInFlightIndex(), FakeQueue()
    accepted = await world.accept()
    registration_id = accepted.registration.id
    stalling = StallingProbe(world.probe)  # type: ignore[arg-type]

    await killed_while_verifying(provisioner(world, index, stalling).run(registration_id), stalling)

    dead = await world.store.get(registration_id)
    assert dead.status is RegistrationStatus.PROVISIONING and dead.lease_owner is not None
    assert list(index.entries) == [f"{registration_id}-provision"]
    # While the dead worker's lease lasts, the sweep leaves it alone.
    early = await resume_lapsed(index, world.store, queue, world.clock)
    assert early.resumed == () and queue.sent == []

    world.clock.advance(AFTER_THE_LEASE)
    swept = await resume_lapsed(index, world.store, queue, world.clock)

    assert swept.resumed == (f"{registration_id}-provision",)
    ((queue_name, message),) = queue.sent
    assert queue_name == REGISTRATION_REQUESTS_QUEUE
    assert read_message(message) == Envelope(registration_id)  # the worker's own envelope
    passwords_before = world.directory.count("add_password")
    done = await provisioner(world, index).run(registration_id)
    assert done.status is RegistrationStatus.ACTIVE and done.lease_owner is None
    assert index.entries == {}
    (app,) = world.directory.apps.values()
    assert len(app.passwords) == 1  # the dead worker's secret was adopted, not doubled
    assert world.directory.count("add_password") == passwords_before

    # The original message reappears after the queue's visibility timeout: it ends at once.
    calls = len(world.directory.calls)
    again = await provisioner(world, index).run(registration_id)
    assert again.status is RegistrationStatus.ACTIVE
    assert len(world.directory.calls) == calls and index.entries == {}
    assert (await resume_lapsed(index, world.store, queue, world.clock)).resumed == ()


async def test_the_entry_is_written_before_the_lease_and_before_the_first_graph_call() -> None:
    world = World()
    index = FakeInFlightIndex()
    accepted = await world.accept()
    key = f"{accepted.registration.id}-provision"
    seen: dict[str, bool] = {}
    original_upsert = world.directory.upsert_application
    original_replace = world.store.replace

    async def upsert(tenant_id: str, spec: Any) -> Any:
        seen.setdefault("graph", key in index.entries)
        return await original_upsert(tenant_id, spec)

    async def replace(record: Any) -> Any:
        seen.setdefault("lease", key in index.entries)
        return await original_replace(record)

    world.directory.upsert_application = upsert  # type: ignore[method-assign]
    world.store.replace = replace  # type: ignore[method-assign]
    record = await provisioner(world, index).run(accepted.registration.id)

    assert record.status is RegistrationStatus.ACTIVE
    assert seen == {"graph": True, "lease": True}
    assert index.entries == {}


async def test_a_duplicate_that_finds_the_lease_held_keeps_the_holders_entry() -> None:
    world = World()
    index = FakeInFlightIndex()
    accepted = await world.accept()
    holder = await RecordKeeper.claim(
        world.store, world.clock, accepted.registration.id, owner="A", lease_for=WORK_LEASE, wait=timedelta(0)
    )
    work = provisioning_work(holder.current.id, REGISTRATION_REQUESTS_QUEUE, world.clock.now())
    await index.put(work)
    duplicate = provisioner(world, index)
    duplicate._settings = type(duplicate._settings)(lease_wait=timedelta(0))

    with pytest.raises(LeaseHeld):
        await duplicate.run(accepted.registration.id)

    assert list(index.entries) == [work.key]


async def test_a_transient_failure_hands_the_work_to_the_queue_and_removes_the_entry() -> None:
    index = FakeInFlightIndex()
    work = provisioning_work("reg-x", REGISTRATION_REQUESTS_QUEUE, World().clock.now())

    with pytest.raises(TransientError):
        async with tracked(index, work):
            raise TransientError("503 from Graph")

    assert index.entries == {} and index.count("remove") == 1


async def test_an_entry_written_again_by_a_duplicate_outlives_the_first_workers_end() -> None:
    index = FakeInFlightIndex()
    work = provisioning_work("reg-x", REGISTRATION_REQUESTS_QUEUE, World().clock.now())

    async with tracked(index, work):
        # Between the first worker's release and its removal, a duplicate claims the lease and
        # writes the same entry again: its run must stay covered.
        await index.put(work)

    assert list(index.entries) == [work.key]


# ---------------------------------------------------------------- rotation


async def test_a_rotation_killed_mid_way_resumes_and_makes_exactly_one_new_credential() -> None:
    world = RotationWorld()
    before = await world.active()
    world.clock.advance(timedelta(days=61))
    job = due_job(world, JobAction.ROTATE)
    index, resend = FakeInFlightIndex(), FakeQueue()
    stalling = StallingProbe(world.probe)  # type: ignore[arg-type]

    def rotator(probe: Any = None) -> Rotator:
        ports = replace(world.ports, probe=probe or world.probe, sleep=fast_sleep, in_flight=index)
        return Rotator(ports, index=world.index, queue=world.queue, settings=SETTINGS)

    await killed_while_verifying(rotator(stalling).run(job), stalling)
    assert (await world.store.get(before.id)).status is RegistrationStatus.ROTATING
    world.clock.advance(AFTER_THE_LEASE)

    swept = await resume_lapsed(index, world.store, resend, world.clock)

    assert swept.resumed == (job.job_id,)
    ((queue_name, message),) = resend.sent
    assert queue_name == ROTATION_JOBS_QUEUE
    resumed_job = RotationJob.from_message(json.loads(message))
    assert resumed_job.job_id == job.job_id
    assert await rotator().run(resumed_job) is Outcome.ROTATED
    record = await world.store.get(before.id)
    assert record.credential is not None and record.credential.generation == 2
    assert len(world.app().passwords) == 2  # the old one (retiring) and exactly one new one
    assert index.entries == {}
    # The killed invocation's own message, much later: nothing left to do.
    adds = world.directory.count("add_password")
    assert await rotator().run(job) is Outcome.SKIPPED
    assert world.directory.count("add_password") == adds and index.entries == {}


# ---------------------------------------------------------------- the sweep


async def test_the_sweep_reads_only_the_work_in_flight_not_the_settled_registrations() -> None:
    world = World()
    index, queue = FakeInFlightIndex(), FakeQueue()
    killed: list[str] = []
    for n in range(3):
        accepted = await world.accept(world.request(f"INC-KILLED-{n}"))
        stalling = StallingProbe(world.probe)  # type: ignore[arg-type]
        await killed_while_verifying(
            provisioner(world, index, stalling).run(accepted.registration.id), stalling
        )
        killed.append(accepted.registration.id)
    settle_many(world, killed[0], 2000)
    world.clock.advance(AFTER_THE_LEASE)
    gets, lists = world.store.count("get"), world.store.count("list")

    swept = await resume_lapsed(index, world.store, queue, world.clock)

    assert len(world.store.documents) == 2003
    assert (swept.in_flight, swept.records_read) == (3, 3)
    assert index.entities_read == 3  # the index: what is in flight, and nothing else
    assert world.store.count("get") - gets == 3 and world.store.count("list") == lists
    assert sorted(swept.resumed) == sorted(f"{r}-provision" for r in killed)
    for _, message in queue.sent:
        envelope = read_message(message)
        assert isinstance(envelope, Envelope)
        assert (
            await provisioner(world, index).run(envelope.registration_id)
        ).status is RegistrationStatus.ACTIVE
    assert index.entries == {}


async def test_work_whose_worker_is_alive_is_not_resumed() -> None:
    world = World()
    index, queue = FakeInFlightIndex(), FakeQueue()
    accepted = await world.accept()
    await index.put(
        provisioning_work(accepted.registration.id, REGISTRATION_REQUESTS_QUEUE, world.clock.now())
    )
    keeper = await RecordKeeper.claim(
        world.store, world.clock, accepted.registration.id, owner="A", lease_for=WORK_LEASE, wait=timedelta(0)
    )
    world.clock.advance(WORK_LEASE - timedelta(seconds=5))
    await keeper.renew()  # a live worker renews every 10 s
    world.clock.advance(timedelta(seconds=10))

    swept = await resume_lapsed(index, world.store, queue, world.clock)

    assert swept.records_read == 1 and swept.resumed == () and queue.sent == []


async def test_two_sweeps_at_once_send_the_message_once() -> None:
    world = World()
    index, queue = FakeInFlightIndex(), FakeQueue()
    accepted = await world.accept()
    await index.put(
        provisioning_work(accepted.registration.id, REGISTRATION_REQUESTS_QUEUE, world.clock.now())
    )
    world.clock.advance(AFTER_THE_LEASE)

    first, second = await asyncio.gather(
        resume_lapsed(index, world.store, queue, world.clock),
        resume_lapsed(index, world.store, queue, world.clock),
    )

    assert len(first.resumed) + len(second.resumed) == 1 and len(queue.sent) == 1
    # The re-sent message has a lease's time to be picked up before the next re-send.
    assert (await resume_lapsed(index, world.store, queue, world.clock)).resumed == ()
    world.clock.advance(AFTER_THE_LEASE)
    assert len((await resume_lapsed(index, world.store, queue, world.clock)).resumed) == 1


async def test_work_resumed_too_often_is_dropped_and_gone_registrations_are_forgotten() -> None:
    world = World()
    index, queue = FakeInFlightIndex(), FakeQueue()
    accepted = await world.accept()
    poison = provisioning_work(accepted.registration.id, REGISTRATION_REQUESTS_QUEUE, world.clock.now())
    index.entries[poison.key] = (InFlightWork(**{**poison.__dict__, "resumes": MAX_RESUMES}), "etag")
    gone = provisioning_work("reg-deleted", REGISTRATION_REQUESTS_QUEUE, world.clock.now())
    await index.put(gone)
    world.clock.advance(AFTER_THE_LEASE)

    swept = await resume_lapsed(index, world.store, queue, world.clock)

    assert sorted(swept.dropped) == sorted([poison.key, gone.key])
    assert queue.sent == [] and index.entries == {}


# ---------------------------------------------------------------- the lease renews itself


async def test_a_held_lease_is_renewed_in_the_background_and_no_longer_after_the_block() -> None:
    world = World()
    accepted = await world.accept()
    keeper = await RecordKeeper.claim(
        world.store,
        world.clock,
        accepted.registration.id,
        owner="A",
        lease_for=timedelta(seconds=0.3),  # renewed every 0.1 s (real time)
        wait=timedelta(0),
    )
    async with keeper.renewing():
        world.clock.advance(timedelta(minutes=1))
        await asyncio.sleep(0.35)
        renewed = await world.store.get(accepted.registration.id)
        assert renewed.lease_owner == "A"
        assert renewed.lease_until is not None and renewed.lease_until > world.clock.now()
    saves = world.store.count("replace")
    await asyncio.sleep(0.35)
    assert world.store.count("replace") == saves


# ---------------------------------------------------------------- the timer


async def test_the_timer_sends_crashed_work_to_its_queue_again(svc: Any) -> None:
    from azure.functions.timer import TimerRequest

    from functions.triggers.queue_messages import envelope
    from functions.triggers.resume_work import resume_work_sweep

    accepted = await svc.world.accept()
    registration_id = accepted.registration.id
    await svc.in_flight.put(provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, svc.clock.now()))
    await resume_work_sweep(TimerRequest())
    assert svc.queue.messages(REGISTRATION_REQUESTS_QUEUE) == []  # a lease's time for its worker

    svc.clock.advance(AFTER_THE_LEASE)
    await resume_work_sweep(TimerRequest())

    assert svc.queue.messages(REGISTRATION_REQUESTS_QUEUE) == [envelope(registration_id)]


async def test_the_resumed_run_and_the_original_message_never_work_at_once() -> None:
    world = World()
    index = FakeInFlightIndex()
    accepted = await world.accept()
    registration_id = accepted.registration.id
    stalling = StallingProbe(world.probe)  # type: ignore[arg-type]
    await killed_while_verifying(provisioner(world, index, stalling).run(registration_id), stalling)
    world.clock.advance(AFTER_THE_LEASE)
    adds = world.directory.count("add_password")
    slow = StallingProbe(world.probe, stalls=0)
    working: list[str] = []
    overlapped: list[bool] = []

    async def one_at_a_time(tenant_id: str, client_id: str, secret: Any) -> None:
        overlapped.append(bool(working))
        working.append(client_id)
        await asyncio.sleep(0.05)  # Entra takes its time: the other delivery arrives meanwhile
        working.pop()
        await FakeTokenProbe.try_secret(slow, tenant_id, client_id, secret)

    slow.try_secret = one_at_a_time  # type: ignore[method-assign]

    resumed, original = await asyncio.gather(
        provisioner(world, index, slow).run(registration_id),
        provisioner(world, index, slow).run(registration_id),
        return_exceptions=True,
    )

    outcomes = [
        type(o).__name__ if isinstance(o, BaseException) else o.status.value for o in (resumed, original)
    ]
    assert "active" in outcomes and set(outcomes) <= {"active", "LeaseHeld"}
    assert overlapped and not any(overlapped)  # never two verifications (or runs) at once
    assert world.directory.count("add_password") == adds  # the dead worker's secret, adopted once
    assert (await world.store.get(registration_id)).status is RegistrationStatus.ACTIVE
    # The duplicate's write-ahead outlived the run (its ETag is the entry's now): one more sweep
    # re-sends it, and that run finds the work done and removes it.
    world.clock.advance(AFTER_THE_LEASE)
    queue = FakeQueue()
    swept = await resume_lapsed(index, world.store, queue, world.clock)
    for _, message in queue.sent:
        envelope = read_message(message)
        assert isinstance(envelope, Envelope)
        await provisioner(world, index).run(envelope.registration_id)
    assert len(swept.resumed) <= 1 and index.entries == {}
    assert world.directory.count("add_password") == adds


async def test_a_resume_is_a_structured_signal(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    index, queue = FakeInFlightIndex(), FakeQueue()
    accepted = await world.accept()
    await index.put(
        provisioning_work(accepted.registration.id, REGISTRATION_REQUESTS_QUEUE, world.clock.now())
    )
    world.clock.advance(AFTER_THE_LEASE)

    with caplog.at_level("WARNING", logger="functions.core.recovery.resume"):
        await resume_lapsed(index, world.store, queue, world.clock)

    (record,) = [r for r in caplog.records if getattr(r, "signal", None) == "work.resumed"]
    assert (record.outcome, record.registration_id, record.queue) == (  # type: ignore[attr-defined]
        "resumed",
        accepted.registration.id,
        REGISTRATION_REQUESTS_QUEUE,
    )
