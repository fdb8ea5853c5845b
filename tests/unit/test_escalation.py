"""Escalation against in-memory fakes: which credentials are at risk, the snapshot's cost, the
rotation.failed and credential.at_risk events (once each), the log events' fixed fields, the
OpenTelemetry instruments, and no secret in anything captured."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from functions.core.escalation.at_risk import EscalationSettings, assess
from functions.core.escalation.escalation import Escalation
from functions.core.escalation.instruments import Instruments
from functions.core.escalation.log_events import signal_event
from functions.core.escalation.snapshot import SWEEP_MARK, SnapshotSources, take_snapshot
from functions.core.notification.events import Delivery
from functions.core.record.errors import PermanentError
from functions.core.record.models import RegistrationStatus, WebhookSpec
from functions.core.record.registration import Registration
from functions.core.record.schedule import JobAction
from functions.core.rotation.rotator import rotate_now_job, rotation_job
from functions.resources import ROTATION_JOBS_QUEUE
from functions.signals import LOG_FIELDS, AtRiskReason, Signal
from tests.unit.fakes import FakeDeadLetters, FakeHealthMarks, FakeWatchlist
from tests.unit.provisioning_world import fast_sleep
from tests.unit.test_rotation import SETTINGS, RotationWorld, due_job

ESCALATION = EscalationSettings(at_risk_window=timedelta(days=14), failures_before_alert=3)


class Telemetry:
    """An SDK meter provider read in memory, and the escalation over the world's fakes."""

    def __init__(self, world: RotationWorld, dead_letters: int = 0) -> None:
        self.reader = InMemoryMetricReader()
        self.instruments = Instruments(MeterProvider(metric_readers=[self.reader]).get_meter("test"))
        self.marks = FakeHealthMarks()
        self.dead = FakeDeadLetters(dead_letters)
        self.watchlist = FakeWatchlist()
        self.sources = SnapshotSources(
            store=world.store,
            index=world.index,
            lengths=world.queue,
            dead_letters=self.dead,
            marks=self.marks,
            watchlist=self.watchlist,
            clock=world.clock,
        )
        self.escalation = Escalation(
            sources=self.sources,
            queue=world.queue,
            instruments=self.instruments,
            settings=ESCALATION,
            owner="escalation",
            sleep=fast_sleep,
        )

    def points(self) -> dict[str, list[tuple[dict[str, object], float]]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[tuple[dict[str, object], float]]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        found.setdefault(metric.name, []).append((dict(point.attributes or {}), point.value))
        return found


async def activate(world: RotationWorld, request_id: str) -> Registration:
    """RotationWorld.active() for a registration of its own (its own requestId)."""
    request = world.request(
        request_id, credential=world.credential, webhooks=(WebhookSpec("https://hooks.example/x"),)
    )
    accepted = await world.accept(request, world.plan(credential=world.credential))
    record = await world.provisioner().run(accepted.registration.id)
    job = rotation_job(record, SETTINGS)
    assert record.status is RegistrationStatus.ACTIVE and job is not None
    await world.index.put(job)
    return record


def events_of(world: RotationWorld, event_type: str) -> list[dict[str, object]]:
    return [json.loads(d.body) for d in world.queue.deliveries() if d.event_type == event_type]


def signals(caplog: pytest.LogCaptureFixture, signal: Signal) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "signal", None) == signal.value]


async def failing_rotation(world: RotationWorld, telemetry: Telemetry) -> Registration:
    """Run the due rotation job against an Entra that refuses addPassword (403), as the trigger does."""

    async def forbidden(*args: object, **kwargs: object) -> None:
        raise PermanentError(
            "Insufficient privileges to complete the operation.", code="Authorization_RequestDenied"
        )

    world.directory.add_password = forbidden  # type: ignore[method-assign]
    (job,) = await world.index.due(world.clock.now())
    with pytest.raises(PermanentError):
        await world.rotator().run(job)
    await telemetry.escalation.rotation_failed(job)
    return await world.store.get(job.registration_id)


# ---------------------------------------------------------------- which credentials are at risk


async def test_a_credential_is_at_risk_near_its_end_when_expired_and_when_rotation_keeps_failing() -> None:
    world = RotationWorld()
    record = await world.active()
    credential = record.credential
    assert credential is not None and credential.expires_on is not None
    end = credential.expires_on

    assert assess(record, end - timedelta(days=15), ESCALATION) is None
    near = assess(record, end - timedelta(days=14), ESCALATION)
    assert near is not None and near.reason is AtRiskReason.NEAR_EXPIRY and near.key_id == credential.key_id
    expired = assess(record, end, ESCALATION)
    assert expired is not None and expired.reason is AtRiskReason.EXPIRED

    now = end - timedelta(days=60)
    failing = record
    for n in range(3):
        assert assess(failing, now, ESCALATION) is None, f"at risk after {n} failure(s)"
        failing = failing.with_event("rotation", "failed", now, "Authorization_RequestDenied")
    item = assess(failing, now, ESCALATION)
    assert item is not None and item.reason is AtRiskReason.ROTATION_FAILING and item.failures_in_a_row == 3
    assert assess(failing.with_event("rotation", "done", now, "g2"), now, ESCALATION) is None
    assert assess(replace(record, status=RegistrationStatus.DECOMMISSIONED), end, ESCALATION) is None


def test_the_settings_read_the_window_and_threshold_and_refuse_nonsense() -> None:
    assert EscalationSettings.from_values({}) == EscalationSettings(timedelta(days=14), 3)
    read = EscalationSettings.from_values(
        {"REGISTRAR_AT_RISK_WINDOW": "P3D", "REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT": "5"}
    )
    assert read == EscalationSettings(timedelta(days=3), 5)
    for bad in ({"REGISTRAR_AT_RISK_WINDOW": "soon"}, {"REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT": "0"}):
        with pytest.raises(ValueError):
            EscalationSettings.from_values(bad)


# ---------------------------------------------------------------- the snapshot and its cost


async def test_the_snapshot_reads_only_the_credentials_due_within_the_window_not_every_registration() -> None:
    world = RotationWorld()
    records = [await activate(world, f"INC{n:07d}") for n in range(12)]
    # Nine rotate later; three are pushed near their end (their job due within the window).
    soon = records[:3]
    for record in soon:
        credential = record.credential
        assert credential is not None and credential.expires_on is not None
        near = replace(credential, expires_on=world.clock.now() + timedelta(days=5))
        stored = await world.store.replace(replace(await world.store.get(record.id), credential=near))
        job = rotation_job(stored, SETTINGS)
        assert job is not None
        old = next(j for j in world.index.jobs.values() if j.registration_id == record.id)
        await world.index.remove(old)
        await world.index.put(job)
    telemetry = Telemetry(world, dead_letters=2)
    world.queue.sent.append((ROTATION_JOBS_QUEUE + "-poison", "{}"))
    reads_before, gets_before = world.index.reads, world.store.count("get")

    snapshot = await take_snapshot(telemetry.sources, ESCALATION)

    assert sorted(a.registration_id for a in snapshot.at_risk) == sorted(r.id for r in soon)
    assert {a.reason for a in snapshot.at_risk} == {AtRiskReason.NEAR_EXPIRY}
    assert world.index.reads - reads_before == 3  # the three due within the window
    assert world.store.count("get") - gets_before == 3  # never the other nine
    assert snapshot.entity_reads == 3 + 3 + 2  # index entries, registrations, dead letters
    assert snapshot.rotation_backlog == 0  # due within the window, but not yet
    assert snapshot.poison_messages[ROTATION_JOBS_QUEUE + "-poison"] == 1
    assert snapshot.dead_letters == 2
    assert snapshot.days_to_nearest_expiry() == 5.0
    body = snapshot.to_json()
    assert body["atRisk"]["count"] == 3 and body["atRisk"]["byReason"] == {"near_expiry": 3}
    assert body["lastSweepAt"] is None and body["lastInventoryAt"] is None
    world.clock.advance(timedelta(days=4))  # their rotations are due now and not yet done
    assert (await take_snapshot(telemetry.sources, ESCALATION)).rotation_backlog == 3


async def test_the_watch_marks_the_sweep_and_announces_at_risk_once_per_credential_per_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = RotationWorld()
    record = await world.active()
    credential = record.credential
    assert credential is not None and credential.expires_on is not None
    world.clock.advance(credential.expires_on - world.clock.now() - timedelta(days=3))
    telemetry = Telemetry(world)
    caplog.set_level(logging.INFO)

    first = await telemetry.escalation.watch()
    again = await telemetry.escalation.watch()

    assert (
        [a.reason for a in first.at_risk] == [AtRiskReason.NEAR_EXPIRY] == [a.reason for a in again.at_risk]
    )
    assert telemetry.marks.at[SWEEP_MARK] == world.clock.now() and again.last_sweep_at == world.clock.now()
    (event,) = events_of(world, "credential.at_risk")
    assert event["data"]["reason"] == "near_expiry" and event["data"]["keyId"] == credential.key_id
    assert event["data"]["daysToExpiry"] == 3.0
    (logged,) = signals(caplog, Signal.CREDENTIAL_AT_RISK)
    assert logged.reason == "near_expiry" and logged.registration_id == record.id  # type: ignore[attr-defined]
    assert len(signals(caplog, Signal.HEALTH_SNAPSHOT)) == 2

    world.clock.advance(timedelta(days=1))  # still at risk the next day: announced again, once
    await telemetry.escalation.watch()
    await telemetry.escalation.watch()
    assert len(events_of(world, "credential.at_risk")) == 2
    days = [e["data"]["daysToExpiry"] for e in events_of(world, "credential.at_risk")]
    assert days == [3.0, 2.0]


# ---------------------------------------------------------------- rotation failures


async def test_each_rotation_failure_is_announced_and_the_third_in_a_row_puts_the_credential_at_risk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = RotationWorld()
    record = await world.active()
    world.clock.advance(timedelta(days=61))
    telemetry = Telemetry(world)
    caplog.set_level(logging.INFO)

    for attempt in range(1, 4):
        await failing_rotation(world, telemetry)
        failed = events_of(world, "rotation.failed")
        assert len(failed) == attempt
        assert failed[-1]["data"]["reason"] == "Authorization_RequestDenied"
        assert failed[-1]["data"]["failuresInARow"] == attempt
        at_risk = events_of(world, "credential.at_risk")
        assert len(at_risk) == (1 if attempt == 3 else 0)
        world.clock.advance(timedelta(hours=2**attempt))  # past the job's backoff

    (at_risk_event,) = events_of(world, "credential.at_risk")
    assert at_risk_event["data"]["reason"] == "rotation_failing"
    assert len({e["data"]["eventId"] for e in events_of(world, "rotation.failed")}) == 3
    logged = signals(caplog, Signal.ROTATION_FAILED)
    assert [r.failures_in_a_row for r in logged] == [1, 2, 3]  # type: ignore[attr-defined]
    assert {r.registration_id for r in logged} == {record.id}  # type: ignore[attr-defined]
    assert len(signals(caplog, Signal.CREDENTIAL_AT_RISK)) == 1
    assert ("outcome", "failed") in {
        (k, v)
        for attrs, value in telemetry.points()["registrar.rotations"]
        for k, v in attrs.items()
        if value == 3
    }


async def test_a_failure_whose_announcement_was_lost_in_a_crash_is_announced_by_the_next_run() -> None:
    world = RotationWorld()
    await world.active()
    world.clock.advance(timedelta(days=61))
    telemetry = Telemetry(world)

    async def forbidden(*args: object, **kwargs: object) -> None:
        raise PermanentError("Insufficient privileges", code="Authorization_RequestDenied")

    world.directory.add_password = forbidden  # type: ignore[method-assign]
    job = due_job(world, JobAction.ROTATE)
    with pytest.raises(PermanentError):
        await world.rotator().run(job)
    # The worker died here, before escalation heard of it. The next failure announces both.
    world.clock.advance(timedelta(hours=2))
    await failing_rotation(world, telemetry)
    await telemetry.escalation.rotation_failed(job)  # and a redelivered report repeats nothing
    failed = events_of(world, "rotation.failed")
    assert [e["data"]["failuresInARow"] for e in failed] == [1, 2]


async def test_a_forced_rotation_that_keeps_failing_is_in_the_snapshot_until_a_rotation_succeeds() -> None:
    world = RotationWorld()
    record = await world.active()
    telemetry = Telemetry(world)
    real_add_password = world.directory.add_password

    async def forbidden(*args: object, **kwargs: object) -> None:
        raise PermanentError("Insufficient privileges", code="Authorization_RequestDenied")

    world.directory.add_password = forbidden  # type: ignore[method-assign]
    for _ in range(3):  # an admin's POST .../rotate each time: the job then waits at its scheduled date
        job = rotate_now_job(await world.store.get(record.id), world.clock.now(), "admin")
        assert job is not None
        await world.index.put(job)
        with pytest.raises(PermanentError):
            await world.rotator().run(job)
        await telemetry.escalation.rotation_failed(job)
        world.clock.advance(timedelta(minutes=5))
    assert not await world.index.due(world.clock.now() + ESCALATION.at_risk_window)  # beyond the window

    snapshot = await telemetry.escalation.health()
    assert [(a.registration_id, a.reason) for a in snapshot.at_risk] == [
        (record.id, AtRiskReason.ROTATION_FAILING)
    ]

    world.directory.add_password = real_add_password  # type: ignore[method-assign]
    job = rotate_now_job(await world.store.get(record.id), world.clock.now(), "admin")
    assert job is not None
    await world.rotator().run(job)
    assert (await telemetry.escalation.health()).at_risk == ()
    assert telemetry.watchlist.ids == set()  # pruned once no longer at risk


# ---------------------------------------------------------------- other signals, metrics, fields


async def test_failed_registrations_dead_letters_and_poison_messages_are_signals_with_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = RotationWorld()
    record = await world.active()
    telemetry = Telemetry(world)
    caplog.set_level(logging.INFO)
    delivery = Delivery(
        "msg_1", "wh-1", record.id, "https://hooks.example/x", "credential.rotated", "{}", attempt=7
    )

    telemetry.escalation.provisioning_ended(record)
    telemetry.escalation.provisioning_ended(replace(record, status=RegistrationStatus.FAILED))
    telemetry.escalation.delivery_settled(delivery, "delivered")
    telemetry.escalation.delivery_settled(delivery, "retrying")
    telemetry.escalation.delivery_settled(delivery, "dead_lettered")
    telemetry.escalation.message_poisoned(ROTATION_JOBS_QUEUE, "KeyError")

    (failed,) = signals(caplog, Signal.REGISTRATION_FAILED)
    assert failed.registration_id == record.id and failed.status == "failed"  # type: ignore[attr-defined]
    (dead,) = signals(caplog, Signal.DELIVERY_DEAD_LETTERED)
    assert dead.subscription_id == "wh-1" and dead.event_type == "credential.rotated"  # type: ignore[attr-defined]
    (poisoned,) = signals(caplog, Signal.MESSAGE_POISONED)
    assert poisoned.queue == ROTATION_JOBS_QUEUE  # type: ignore[attr-defined]
    points = telemetry.points()
    assert sorted((a["outcome"], v) for a, v in points["registrar.provisionings"]) == [
        ("active", 1),
        ("failed", 1),
    ]
    assert sorted((a["outcome"], v) for a, v in points["registrar.deliveries"]) == [
        ("dead_lettered", 1),
        ("delivered", 1),
        ("retried", 1),
    ]


async def test_the_gauges_report_the_latest_snapshot_with_bounded_attributes() -> None:
    world = RotationWorld()
    record = await world.active()
    credential = record.credential
    assert credential is not None and credential.expires_on is not None
    world.clock.advance(credential.expires_on - world.clock.now() + timedelta(hours=1))  # expired
    telemetry = Telemetry(world, dead_letters=4)

    await telemetry.escalation.health()

    points = telemetry.points()
    at_risk = {a["reason"]: v for a, v in points["registrar.credentials.at_risk"]}
    assert at_risk == {reason.value: (1 if reason is AtRiskReason.EXPIRED else 0) for reason in AtRiskReason}
    assert points["registrar.deliveries.dead_letters"] == [({}, 4)]
    assert points["registrar.credentials.days_to_nearest_expiry"][0][1] < 0
    assert points["registrar.rotation.backlog"][0][1] >= 1
    assert {a["queue"] for a, _ in points["registrar.queue.poison_messages"]} == {
        "registration-requests-poison",
        "rotation-jobs-poison",
        "webhook-deliveries-poison",
        "inventory-scans-poison",
    }
    for name, series in points.items():  # never an id as a dimension
        assert all(set(attrs) <= {"outcome", "reason", "queue"} for attrs, _ in series), name


def test_a_log_event_carries_only_the_fixed_fields() -> None:
    with pytest.raises(ValueError, match="secret_value"):
        signal_event(Signal.ROTATION_FAILED, "x", secret_value="nope")
    with pytest.raises(ValueError):
        Instruments(MeterProvider().get_meter("t")).count(
            __import__("functions.signals", fromlist=["ROTATIONS"]).ROTATIONS, "exploded"
        )


async def test_no_secret_value_reaches_a_log_event_an_event_or_the_snapshot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = RotationWorld()
    record = await world.active()
    world.clock.advance(timedelta(days=61))
    telemetry = Telemetry(world)
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        await failing_rotation(world, telemetry)
        world.clock.advance(timedelta(hours=8))
    snapshot = await telemetry.escalation.watch()

    app = world.app()
    secrets = [v for v in (world.directory.secret_value(record.app_id or "", k) for k in app.passwords) if v]
    assert secrets, "the test must know the credential's value to look for it"
    captured = "\n".join(
        [r.getMessage() + json.dumps({f: str(getattr(r, f, "")) for f in LOG_FIELDS}) for r in caplog.records]
        + [m for _, m in world.queue.sent]
        + [json.dumps(snapshot.to_json())]
    )
    assert "rotation.failed" in captured and "credential.at_risk" in captured
    for secret in secrets:
        assert secret not in captured


async def test_an_inventory_scan_is_the_health_snapshots_last_inventory() -> None:
    world = RotationWorld()
    telemetry = Telemetry(world)
    assert (await telemetry.escalation.health()).to_json()["lastInventoryAt"] is None

    await telemetry.escalation.inventory_scanned()

    body = (await telemetry.escalation.health()).to_json()
    assert body["lastInventoryAt"] is not None
    assert datetime.fromisoformat(body["lastInventoryAt"].replace("Z", "+00:00")) == world.clock.now()
    assert body["lastSweepAt"] is None  # a scan is not a rotation sweep
