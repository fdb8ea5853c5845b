"""When retries run out: the queue worker's last delivery ends the registration as `failed` (with
"gave up after N attempts: ...") instead of stranding it behind a poisoned message, and the timer
ends registrations stuck in accepted/provisioning/failing past the deadline; either way what was
made is removed and registration.failed is announced once. Over the fakes, through the triggers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from functions.core.provisioning.stuck import fail_stuck, in_status_since
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.keeper import WORK_LEASE, LeaseHeld
from functions.core.record.models import RegistrationStatus, SecretValue
from functions.core.record.registration import vault_object_name
from functions.resources import REGISTRATION_REQUESTS_QUEUE, WEBHOOK_DELIVERIES_QUEUE
from functions.settings import Settings
from functions.triggers import http_registrations as api
from functions.triggers.queue_retries import MAX_DEQUEUE_SETTING, max_dequeue_count
from functions.triggers.resume_work import resume_work_sweep
from functions.triggers.stuck_registrations import stuck_registrations_sweep
from tests.openapi_check import load_openapi, response_errors
from tests.unit.provisioning_world import TENANT, World
from tests.unit.test_registration_triggers import FakeServices, as_json, deliver, http, request_body

NO_BACKING = "NoBackingApplicationObject: the app is not replicated yet"


def replication_never_ends(world: World) -> None:
    async def not_yet(tenant_id: str, app_id: str) -> str:
        raise TransientError(NO_BACKING, retry_after=timedelta(seconds=5))

    world.directory.ensure_service_principal = not_yet  # type: ignore[method-assign]


async def submit(svc: FakeServices, request_id: str = "INC-GIVEUP") -> str:
    created = as_json(await api.create_registration(http("POST", "registrations", request_body(request_id))))
    return str(created["id"])


def failed_events(svc: FakeServices) -> list[dict[str, Any]]:
    events = [json.loads(m) for m in svc.queue.messages(WEBHOOK_DELIVERIES_QUEUE)]
    return [e for e in events if e["eventType"] == "registration.failed"]


def assert_nothing_left(svc: FakeServices, registration_id: str) -> None:
    d = svc.world.directory
    assert d.apps == {} and d.assignments == set() and d.grants == {}
    assert vault_object_name(registration_id) not in svc.world.vault.secrets


# ---------------------------------------------------------------- the worker's last delivery


async def test_the_last_delivery_fails_the_registration_with_the_reason_instead_of_stranding_it(
    svc: FakeServices,
) -> None:
    replication_never_ends(svc.world)
    rid = await submit(svc)
    message = svc.queue.sent[-1][1]
    for attempt in range(1, 5):  # host.json maxDequeueCount 5: the host retries these
        with pytest.raises(TransientError, match="NoBackingApplicationObject"):
            await deliver(message, dequeue_count=attempt)
        assert (await svc.store.get(rid)).status is RegistrationStatus.PROVISIONING
    await deliver(message, dequeue_count=5)  # completes: nothing goes to the poison queue

    view = as_json(await api.get_registration(http("GET", "r", route={"id": rid})))
    assert view["status"] == "failed"
    assert view["lastError"]["kind"] == "gave_up" and view["lastError"]["step"] == "service_principal"
    assert view["lastError"]["message"] == f"gave up after 5 attempts: {NO_BACKING}"
    assert_nothing_left(svc, rid)
    (event,) = failed_events(svc)
    assert json.loads(event["body"])["data"]["reason"] == view["lastError"]["message"]

    await deliver(message, dequeue_count=1)  # a duplicate of the message: nothing more happens
    assert len(failed_events(svc)) == 1 and (await svc.store.get(rid)).status is RegistrationStatus.FAILED


async def test_the_last_delivery_follows_the_app_setting_that_overrides_host_json(svc: FakeServices) -> None:
    svc.settings = Settings.from_env(
        {"REGISTRAR_HOME_TENANT_ID": TENANT, "REGISTRAR_ENVIRONMENT": "test", MAX_DEQUEUE_SETTING: "2"}
    )
    replication_never_ends(svc.world)
    rid = await submit(svc)
    with pytest.raises(TransientError):
        await deliver(svc.queue.sent[-1][1], dequeue_count=1)
    await deliver(svc.queue.sent[-1][1], dequeue_count=2)
    record = await svc.store.get(rid)
    assert record.status is RegistrationStatus.FAILED and record.last_error is not None
    assert record.last_error.message.startswith("gave up after 2 attempts: ")


async def test_a_last_delivery_that_finds_another_worker_on_it_raises_and_changes_nothing(
    svc: FakeServices,
) -> None:
    rid = await submit(svc)
    keeper = await svc.world.provisioner(owner="other-worker").claim(rid)
    with pytest.raises(LeaseHeld):
        await deliver(svc.queue.sent[-1][1], dequeue_count=5)  # poison: the sweep is the net
    assert (await svc.store.get(rid)).status is RegistrationStatus.ACCEPTED
    await keeper.release()


async def test_a_duplicates_last_delivery_never_gives_up_a_run_another_worker_is_making(
    svc: FakeServices,
) -> None:
    """A repeat POST or approve re-sends the work message, so duplicates are normal. The duplicate's
    5th delivery meets the lease held; the other worker lets it go for a moment (a 429, a retry)
    while the duplicate would wait for it: the duplicate must not take it to fail the registration."""
    rid = await submit(svc)
    message = svc.queue.sent[-1][1]
    other = await svc.world.provisioner(owner="worker-B").claim(rid)
    polls = 0
    original = svc.world.record_sleep

    async def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 25:  # the duplicate's claim has met LeaseHeld; B's run pauses, its lease free
            await other.release()
        await original(seconds)

    svc.world.record_sleep = sleep  # type: ignore[method-assign]
    with pytest.raises(LeaseHeld):
        await deliver(message, dequeue_count=5)

    record = await svc.store.get(rid)
    assert record.status is RegistrationStatus.ACCEPTED and record.last_error is None
    assert svc.world.directory.deleted_apps == []


async def test_a_permanent_failure_whose_cleanup_was_interrupted_is_finished_by_the_next_delivery(
    svc: FakeServices,
) -> None:
    class Blocked:
        async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue) -> None:
            raise PermanentError("AADSTS53003: blocked by Conditional Access", code="AADSTS53003")

    svc.world.probe = Blocked()  # type: ignore[assignment]
    original = svc.world.vault.delete_secret
    outages = [TransientError("Key Vault 503 (delete)")]

    async def delete_secret(name: str) -> None:
        if outages:
            raise outages.pop()
        await original(name)

    svc.world.vault.delete_secret = delete_secret  # type: ignore[method-assign]
    rid = await submit(svc)
    with pytest.raises(TransientError, match="503"):
        await deliver(svc.queue.sent[-1][1], dequeue_count=1)
    assert (await svc.store.get(rid)).status is RegistrationStatus.FAILING
    assert failed_events(svc) == []  # not announced before it is true
    await deliver(svc.queue.sent[-1][1], dequeue_count=2)
    view = as_json(await api.get_registration(http("GET", "r", route={"id": rid})))
    assert view["status"] == "failed" and view["lastError"]["code"] == "AADSTS53003"
    assert_nothing_left(svc, rid)
    assert len(failed_events(svc)) == 1


def test_max_dequeue_count_is_the_app_setting_else_host_json_else_the_hosts_default(tmp_path: Path) -> None:
    assert max_dequeue_count({}) == 5  # this app's host.json
    assert max_dequeue_count({MAX_DEQUEUE_SETTING: "3"}) == 3
    assert max_dequeue_count({MAX_DEQUEUE_SETTING: "three"}) == 5
    custom = tmp_path / "host.json"
    custom.write_text(json.dumps({"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 8}}}))
    assert max_dequeue_count({}, custom) == 8
    assert max_dequeue_count({}, tmp_path / "missing.json") == 5


def test_the_max_dequeue_count_setting_is_found_in_any_case_as_the_host_reads_it() -> None:
    assert max_dequeue_count({"azurefunctionsjobhost__Extensions__Queues__MAXDEQUEUECOUNT": "2"}) == 2
    assert max_dequeue_count({"AZUREFUNCTIONSJOBHOST__EXTENSIONS__QUEUES__MAXDEQUEUECOUNT": "7"}) == 7


# ---------------------------------------------------------------- the stuck-registration sweep


async def test_the_sweep_fails_only_registrations_stuck_past_the_deadline_and_reads_a_filtered_list_per_status() -> (
    None
):
    world = World()
    never_delivered = (await world.accept(world.request("INC-1"))).registration.id
    paused = (await world.accept(world.request("INC-2"))).registration.id
    replication = world.directory.ensure_service_principal
    replication_never_ends(world)
    with pytest.raises(TransientError):
        await world.provisioner().run(paused)
    world.directory.ensure_service_principal = replication  # type: ignore[method-assign]
    held_plan = world.plan(approval_reasons=("tier-0",))
    held = (await world.accept(world.request("INC-3"), held_plan)).registration.id
    await world.provisioner().run(held)
    active = (await world.accept(world.request("INC-4"))).registration.id
    await world.provisioner().run(active)
    world.clock.advance(timedelta(minutes=50))
    recent = (await world.accept(world.request("INC-5"))).registration.id
    world.clock.advance(timedelta(minutes=20))  # 70 minutes for the first four, 20 for the last

    lists = world.store.count("list")
    result = await fail_stuck(world.store, world.provisioner(), world.clock, deadline=timedelta(hours=1))
    assert world.store.count("list") - lists == 4  # accepted, provisioning, failing, adopting: a page each
    assert sorted(r.id for r in result.ended) == sorted([never_delivered, paused])
    assert result.left == () and result.examined == 3
    for rid in (never_delivered, paused):
        record = await world.store.get(rid)
        assert record.status is RegistrationStatus.FAILED and record.last_error is not None
        assert record.last_error.kind == "gave_up"
        assert record.last_error.message.startswith("gave up: still ")
    assert "last error at step service_principal: NoBackingApplicationObject" in str(
        (await world.store.get(paused)).last_error
    )
    statuses = {rid: (await world.store.get(rid)).status for rid in (held, active, recent)}
    assert statuses == {
        held: RegistrationStatus.PENDING_APPROVAL,
        active: RegistrationStatus.ACTIVE,
        recent: RegistrationStatus.ACCEPTED,
    }
    assert len(world.directory.apps) == 1  # the active one's only


async def test_the_deadline_counts_from_approval_not_from_creation() -> None:
    world = World()
    held = (await world.accept(plan=world.plan(approval_reasons=("tier-0",)))).registration.id
    await world.provisioner().run(held)
    world.clock.advance(timedelta(days=3))
    await world.lifecycle().approve(held, "alice@contoso.com")  # its enqueue was lost
    world.clock.advance(timedelta(minutes=30))
    assert in_status_since(await world.store.get(held)) == world.clock.now() - timedelta(minutes=30)
    assert (await fail_stuck(world.store, world.provisioner(), world.clock)).ended == ()
    world.clock.advance(timedelta(minutes=31))
    (ended,) = (await fail_stuck(world.store, world.provisioner(), world.clock)).ended
    assert ended.id == held and ended.status is RegistrationStatus.FAILED


async def test_the_sweep_skips_a_registration_a_worker_holds_and_ends_it_on_a_later_run() -> None:
    world = World()
    rid = (await world.accept()).registration.id
    world.clock.advance(timedelta(hours=2))
    keeper = await world.provisioner(owner="slow-worker").claim(rid)
    first = await fail_stuck(world.store, world.provisioner(), world.clock)
    assert first.ended == () and first.left == (rid,)
    assert (await world.store.get(rid)).status is RegistrationStatus.ACCEPTED
    await keeper.release()
    (ended,) = (await fail_stuck(world.store, world.provisioner(), world.clock)).ended
    assert ended.id == rid


async def test_the_timer_fails_a_stuck_registration_cleans_it_up_and_announces_it_once(
    svc: FakeServices,
) -> None:
    replication_never_ends(svc.world)
    rid = await submit(svc)
    for attempt in range(1, 5):  # the last delivery never came (a worker killed on it)
        with pytest.raises(TransientError):
            await deliver(svc.queue.sent[0][1], dequeue_count=attempt)
    svc.world.clock.advance(timedelta(minutes=61))
    await stuck_registrations_sweep(TimerRequest())
    view = as_json(await api.get_registration(http("GET", "r", route={"id": rid})))
    assert view["status"] == "failed" and view["lastError"]["kind"] == "gave_up"
    assert_nothing_left(svc, rid)
    assert len(failed_events(svc)) == 1
    await stuck_registrations_sweep(TimerRequest())
    assert len(failed_events(svc)) == 1


async def test_when_the_timer_cannot_announce_the_worker_is_asked_to(svc: FakeServices) -> None:
    rid = await submit(svc)  # accepted; its message is lost
    svc.world.clock.advance(timedelta(hours=2))
    sent_before = len(svc.queue.sent)
    svc.queue.fail_sends(1)  # the announcement's send fails
    await stuck_registrations_sweep(TimerRequest())
    assert (await svc.store.get(rid)).status is RegistrationStatus.FAILED
    assert failed_events(svc) == [] and list(svc.in_flight.entries) == [f"{rid}-provision"]
    # The give-up's in-flight entry stayed: the resume sweep hands the registration to the worker.
    svc.world.clock.advance(WORK_LEASE + timedelta(seconds=1))
    await resume_work_sweep(TimerRequest())
    assert svc.queue.sent[sent_before:] == [
        (REGISTRATION_REQUESTS_QUEUE, json.dumps({"registrationId": rid}))
    ]
    await deliver(svc.queue.sent[-1][1])
    assert len(failed_events(svc)) == 1 and svc.in_flight.entries == {}


async def test_a_failing_registration_is_listed_and_its_view_matches_the_openapi_document(
    svc: FakeServices,
) -> None:
    rid = await submit(svc)
    record = await svc.store.get(rid)
    await svc.store.replace(replace(record, status=RegistrationStatus.FAILING))
    listed = await api.list_registrations(http("GET", "registrations", params={"status": "failing"}))
    assert [item["id"] for item in as_json(listed)["items"]] == [rid]
    got = await api.get_registration(http("GET", "r", route={"id": rid}))
    document = load_openapi()
    for path, method, response in (("/registrations", "GET", listed), ("/registrations/{id}", "GET", got)):
        assert (
            response_errors(document, path, method, 200, as_json(response), content_type="application/json")
            == []
        )
