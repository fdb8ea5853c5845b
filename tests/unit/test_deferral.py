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
        return Rotator(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            probe=self.probe,
            index=self.index,  # type: ignore[arg-type]
            queue=self.queue,
            clock=self.clock,
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


def test_a_tenant_whose_budget_binds_runs_a_few_jobs_at_once_and_leaves_the_slots_to_others() -> None:
    """Jobs of a throttled tenant would only queue behind each other at its budget's rate, holding
    worker slots: past busy_tenant_jobs they are deferred, while another tenant's are admitted."""
    from functions.core.record.deferral import TenantJobs

    directory = TwoTenantDirectory(TENANT)
    directory.paced_waits[TENANT] = timedelta(seconds=2)  # binds, but within what is waited in place
    jobs = TenantJobs(busy_tenant_jobs=3)
    for _ in range(3):
        jobs.admit(directory, TENANT, "job")
    with pytest.raises(Deferred) as raised:
        jobs.admit(directory, TENANT, "job")
    assert raised.value.retry_after == timedelta(seconds=3)
    for _ in range(5):  # a tenant whose budget does not bind is not limited
        jobs.admit(directory, OTHER, "job")
    assert (jobs.running(TENANT), jobs.running(OTHER)) == (3, 5)
    jobs.done(TENANT)
    jobs.admit(directory, TENANT, "job")  # a slot of its own came free
    directory.paced_waits.clear()
    jobs.admit(directory, TENANT, "job")  # the budget no longer binds: no limit
    assert jobs.running(TENANT) == 4
