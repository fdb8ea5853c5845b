"""Defer instead of sleep (core/record/deferral.py and the queue triggers): a job whose tenant's
Graph budget is spoken for goes back on its queue, hidden until the budget is expected back, and
the worker serves another tenant meanwhile."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from azure.functions.queue import QueueMessage

from functions import bootstrap
from functions.core.credentials.job_ports import RegistrationJobPorts
from functions.core.record.errors import Deferred, PermanentError
from functions.core.record.models import RegistrationStatus
from functions.core.rotation.rotator import Rotator
from functions.resources import REGISTRATION_REQUESTS_QUEUE, ROTATION_JOBS_QUEUE
from functions.triggers.queue_messages import envelope
from functions.triggers.queue_registrations import registration_worker
from functions.triggers.rotation import rotation_worker
from tests.unit.fakes import FakeDirectory
from tests.unit.provisioning_world import TENANT, World
from tests.unit.test_registration_triggers import FakeServices

OTHER = "99999999-8888-7777-6666-555555555555"
BUSY = timedelta(seconds=40)


class TwoTenantDirectory(FakeDirectory):
    """The fake Graph, answering for the registrar's identity in two tenants."""

    def _tenant(self, tenant_id: str) -> None:
        if tenant_id not in {TENANT, OTHER}:
            raise PermanentError(f"no identity in tenant {tenant_id}")


class RotatingServices(FakeServices):
    def rotator(self) -> Rotator:
        # Not self.job_ports: these rotators write nothing ahead and each keeps its own TenantJobs.
        ports = RegistrationJobPorts(
            store=self.store, directory=self.directory, vault=self.vault, probe=self.probe, clock=self.clock
        )
        return Rotator(
            ports,
            index=self.index,  # type: ignore[arg-type]
            queue=self.queue,
            settings=self.rotation_settings,
            owner=self.job_owner(),
        )


@pytest.fixture
def two_tenants() -> Iterator[FakeServices]:
    services = RotatingServices(World(directory=TwoTenantDirectory(TENANT)))
    bootstrap.reset_services(services)  # type: ignore[arg-type]
    yield services
    bootstrap.reset_services(None)


def message(text: str) -> QueueMessage:
    return QueueMessage(id="m", body=text.encode(), dequeue_count=1)


async def test_a_registration_in_a_busy_tenant_is_deferred_while_another_tenant_is_served(
    two_tenants: FakeServices,
) -> None:
    world, svc = two_tenants.world, two_tenants
    busy = (await world.accept(world.request("INC-A"))).registration
    other_request = replace(world.request("INC-B", display_name="Other tenant"), tenant_id=OTHER)
    other = (await world.accept(other_request)).registration
    world.directory.paced_waits[TENANT] = BUSY  # the pacer: A's Graph budget is spoken for 40 s

    await asyncio.gather(
        registration_worker(message(envelope(busy.id))), registration_worker(message(envelope(other.id)))
    )

    assert (await svc.store.get(other.id)).status is RegistrationStatus.ACTIVE
    held = await svc.store.get(busy.id)
    assert held.status is RegistrationStatus.ACCEPTED and held.app_id is None  # nothing was made
    assert held.lease_owner is None  # the lease went back: the message that returns can take it
    # Put back on its queue, hidden until the budget is expected back (the wait plus a margin).
    assert (REGISTRATION_REQUESTS_QUEUE, envelope(busy.id)) in svc.queue.sent
    hidden = svc.queue.hidden_for[svc.queue.sent.index((REGISTRATION_REQUESTS_QUEUE, envelope(busy.id)))]
    assert hidden is not None and BUSY < hidden <= BUSY + timedelta(seconds=2)

    # The message comes back once the budget is: the registration finishes from where it was.
    world.directory.paced_waits.clear()
    await registration_worker(message(envelope(busy.id)))
    assert (await svc.store.get(busy.id)).status is RegistrationStatus.ACTIVE


async def test_a_short_wait_is_taken_in_place(two_tenants: FakeServices) -> None:
    world, svc = two_tenants.world, two_tenants
    record = (await world.accept(world.request("INC-C"))).registration
    world.directory.paced_waits[TENANT] = timedelta(seconds=2)  # a few calls queued: not worth a trip
    await registration_worker(message(envelope(record.id)))
    assert (await svc.store.get(record.id)).status is RegistrationStatus.ACTIVE
    assert svc.queue.sent.count((REGISTRATION_REQUESTS_QUEUE, envelope(record.id))) == 0


async def test_a_rotation_job_in_a_busy_tenant_is_put_back_on_the_rotation_queue(
    two_tenants: FakeServices,
) -> None:
    from functions.core.rotation.rotator import rotate_now_job

    world, svc = two_tenants.world, two_tenants
    record = (await world.accept(world.request("INC-D"))).registration
    await registration_worker(message(envelope(record.id)))
    active = await svc.store.get(record.id)
    job = rotate_now_job(active, svc.clock.now(), "test")
    assert job is not None
    world.directory.paced_waits[TENANT] = BUSY
    text = json.dumps(job.to_message(), separators=(",", ":"))

    await rotation_worker(message(text))

    after = await svc.store.get(record.id)
    assert (
        after.credential == active.credential
        and after.pending_credential is None
        and after.lease_owner is None
    )
    sent = [
        (q, m, h)
        for (q, m), h in zip(svc.queue.sent, svc.queue.hidden_for, strict=True)
        if q == ROTATION_JOBS_QUEUE
    ]
    assert [(json.loads(m)["jobId"], h is not None and h > BUSY) for _, m, h in sent] == [(job.job_id, True)]


async def test_deferred_is_raised_by_the_core_not_decided_by_the_adapter() -> None:
    """The core asks the directory for the predicted wait and decides; Deferred carries the wait."""
    from functions.core.record.deferral import defer_if_paced

    directory = FakeDirectory(TENANT)
    directory.paced_waits[TENANT] = timedelta(seconds=12)
    with pytest.raises(Deferred) as raised:
        defer_if_paced(directory, TENANT, "job", most=timedelta(seconds=5))
    assert raised.value.retry_after == timedelta(seconds=13)
    defer_if_paced(directory, TENANT, "job", most=timedelta(seconds=30))  # within what is waited in place


def test_a_tenant_runs_a_few_jobs_at_once_and_leaves_the_slots_to_others() -> None:
    """Jobs of one tenant would only queue behind each other at its budget's rate, holding worker
    slots: past writes_in_flight they are deferred, while another tenant's are admitted."""
    from functions.core.record.deferral import TenantJobs

    directory = TwoTenantDirectory(TENANT)
    directory.paced_waits[TENANT] = timedelta(seconds=2)  # within what is waited in place
    jobs = TenantJobs(writes_in_flight=24)
    for _ in range(3):  # three registrations of 8 writes
        jobs.admit(directory, TENANT, "job", writes=8)
    with pytest.raises(Deferred) as raised:
        jobs.admit(directory, TENANT, "job", writes=8)
    assert raised.value.retry_after == timedelta(seconds=3)  # the pacer's wait, plus the margin
    jobs.admit(directory, OTHER, "job", writes=8)  # another tenant's job runs
    assert (jobs.running(TENANT), jobs.running(OTHER)) == (3, 1)
    jobs.done(TENANT, writes=8)
    jobs.admit(directory, TENANT, "job", writes=8)  # room again
    assert jobs.running(TENANT) == 3


def test_a_backlog_is_deferred_in_turn_not_all_at_once() -> None:
    """Deferred jobs of a busy tenant come back one after another at the rate its jobs end here, so
    a backlog does not knock on every few seconds (each knock a lease claim and release)."""
    from functions.core.record.deferral import OVERSUPPLY, TenantJobs

    now = [0.0]
    directory = FakeDirectory(TENANT)
    directory.paced_waits[TENANT] = timedelta(seconds=0.5)
    jobs = TenantJobs(writes_in_flight=2, clock=lambda: now[0])
    jobs.admit(directory, TENANT, "job 0")
    jobs.admit(directory, TENANT, "job 1")
    for second in (1.0, 2.0):  # a job ends every second here
        now[0] = second
        jobs.done(TENANT)
        jobs.admit(directory, TENANT, f"job {second:.0f}+")
    waits = []
    for n in range(3):
        with pytest.raises(Deferred) as raised:
            jobs.admit(directory, TENANT, f"waiting {n}")
        waits.append(raised.value.retry_after)
    # The first waits the pacer's 0.5 s, the next ones a turn more each (plus the margin): a turn
    # is 0.8 s, the 1 s between ends here spaced for OVERSUPPLY times that rate, so the budget
    # never waits for a job that was told to come back too late.
    assert OVERSUPPLY == 1.25
    assert waits == [timedelta(seconds=1.5), timedelta(seconds=1.8), timedelta(seconds=2.6)]
    # The first, back on time, keeps its place: nobody was deferred before it.
    with pytest.raises(Deferred) as again:
        jobs.admit(directory, TENANT, "waiting 0")
    assert again.value.retry_after == timedelta(seconds=1.5)


def test_a_turn_reads_only_the_recent_rate_and_stays_short() -> None:
    """Jobs that ended long ago (an idle stack) say nothing of how fast a new backlog can run: a
    busy tenant's deferred jobs come back within MAX_TURN_S, not minutes apart."""
    from functions.core.record.deferral import MAX_TURN_S, RATE_HORIZON_S, TenantJobs

    now = [0.0]
    directory = FakeDirectory(TENANT)
    jobs = TenantJobs(writes_in_flight=2, clock=lambda: now[0])
    for second in (0.0, 300.0):  # two jobs, five minutes apart: a quiet tenant
        now[0] = second
        jobs.admit(directory, TENANT, f"quiet {second:.0f}")
        jobs.done(TENANT)
    now[0] = 301.0  # then a burst: two run, the rest wait
    jobs.admit(directory, TENANT, "burst 0")
    jobs.admit(directory, TENANT, "burst 1")
    waits = []
    for n in range(20):
        with pytest.raises(Deferred) as raised:
            jobs.admit(directory, TENANT, f"burst {n + 2}")
        waits.append(raised.value.retry_after)
    assert max(waits) <= timedelta(seconds=MAX_TURN_S + 1)  # plus the margin
    # Once jobs end fast (within the horizon), turns follow that rate.
    for step in range(1, 5):
        now[0] = 301.0 + step * 0.5
        jobs.done(TENANT)
        jobs.admit(directory, TENANT, f"fast {step}")
    assert now[0] - 301.0 < RATE_HORIZON_S
    with pytest.raises(Deferred) as raised:
        jobs.admit(directory, TENANT, "burst 21")
    assert raised.value.retry_after < timedelta(seconds=15)  # 20 ahead at 2 per second, plus margin


async def test_a_takeover_in_a_busy_tenant_is_deferred_before_it_changes_anything(
    two_tenants: FakeServices,
) -> None:
    """The takeover is admitted as provisioning is: Deferred before the claim or any Graph call, the
    lease given back, the envelope put back hidden for the wait; then it finishes from where it was."""
    from tests.unit.test_adoption_takeover import adopted

    world, svc = two_tenants.world, two_tenants
    a = await adopted(world)
    before = await svc.store.get(a.record.id)
    calls_before = len(world.directory.calls)
    world.directory.paced_waits[TENANT] = BUSY

    await registration_worker(message(envelope(a.record.id)))

    held = await svc.store.get(a.record.id)
    assert held.status is RegistrationStatus.ADOPTING and held.lease_owner is None
    assert (held.history, held.credential, held.app_id) == (before.history, None, before.app_id)
    assert world.directory.calls[calls_before:] == [] and world.claims.claims == {}
    assert two_tenants.tenant_jobs.running(TENANT) == 0  # a deferred job is not counted as running
    sent = (REGISTRATION_REQUESTS_QUEUE, envelope(a.record.id))
    assert svc.queue.sent == [sent]
    hidden = svc.queue.hidden_for[0]
    assert hidden is not None and BUSY < hidden <= BUSY + timedelta(seconds=2)

    world.directory.paced_waits.clear()
    await registration_worker(message(envelope(a.record.id)))
    taken = await svc.store.get(a.record.id)
    assert taken.status is RegistrationStatus.ACTIVE and taken.credential is not None
    assert two_tenants.tenant_jobs.running(TENANT) == 0  # counted while it ran, then done


async def test_a_takeover_expects_the_permission_writes_only_when_reconcile_may_make_them() -> None:
    from functions.core.adoption.takeover import expected_writes
    from functions.core.provisioning.workflow import expected_writes as provisioning_writes
    from tests.unit.test_adoption_takeover import adopted

    record = (await adopted()).record
    assert record.adoption is not None and record.adoption.reconcile == "report"
    assert expected_writes(record) == 2  # the service principal and Registrar's credential
    exact = replace(record, adoption=replace(record.adoption, reconcile="exact"))
    # requiredResourceAccess, Registrar's credential, the service principal, and the profile's grants.
    assert expected_writes(exact) == provisioning_writes(record) > 3
