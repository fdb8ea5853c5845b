"""Proof of use against fakes: with REGISTRAR_SIGN_IN_PROOF on, a sign-in with the new keyId after
Registrar verified it confirms an after-confirm registration (source sign-in), when its retirement
is kept back or at a later watch; Registrar's own verification sign-in does not count; a 403
degrades to "no proof" (logged once); confirming converges after a crash between any two calls."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from functions.core.escalation import proof_of_use
from functions.core.escalation.at_risk import EscalationSettings, assess
from functions.core.escalation.confirmation import Confirmations
from functions.core.escalation.escalation import Escalation
from functions.core.escalation.ports import ProofUnavailable
from functions.core.escalation.proof_of_use import ProofOfUse
from functions.core.record.errors import TransientError
from functions.core.record.models import RETIRE_AFTER_CONFIRM
from functions.core.record.registration import Registration
from functions.core.record.schedule import JobAction, RotationJob
from functions.core.rotation.rotator import Outcome
from functions.signals import AtRiskReason
from tests.unit.fakes import Crash, Crashing, Faults
from tests.unit.provisioning_world import fast_sleep
from tests.unit.test_confirmed_retirement import rotated
from tests.unit.test_escalation import ESCALATION, Telemetry
from tests.unit.test_rotation import SETTINGS, RotationWorld, due_job

SAMPLE = Path(__file__).resolve().parents[2] / "local.settings.sample.json"


class FakeSignInActivity:
    """The report: the last sign-in per (tenant, appId, keyId); `refuse` answers as a 403 does."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str, str], datetime] = {}
        self.refuse = False
        self.failing = False
        self.asked = 0

    def signed_in(self, record: Registration, at: datetime) -> None:
        assert record.app_id is not None and record.credential is not None
        self.last[(record.tenant_id, record.app_id, record.credential.key_id)] = at

    async def last_sign_in(self, tenant_id: str, app_id: str, key_id: str) -> datetime | None:
        self.asked += 1
        if self.refuse:
            raise ProofUnavailable("Graph GET reports/appCredentialSignInActivities: 403 Forbidden")
        if self.failing:
            raise TransientError("503 Service Unavailable")
        return self.last.get((tenant_id, app_id, key_id))


def escalation_with_proof(
    world: RotationWorld,
    activity: FakeSignInActivity,
    *,
    store: object = None,
    index: object = None,
    telemetry: Telemetry | None = None,
) -> tuple[Telemetry, Escalation]:
    """The escalation with proof of use; `telemetry` shares the stored state (the watchlist) of
    an earlier one, as another process would through Table storage."""
    telemetry = telemetry or Telemetry(world)
    confirmations = Confirmations(
        store=store or world.store,  # type: ignore[arg-type]
        index=index or world.index,  # type: ignore[arg-type]
        clock=world.clock,
        owner="proof",
        sleep=fast_sleep,
    )
    escalation = Escalation(
        sources=telemetry.sources,
        queue=world.queue,
        instruments=telemetry.instruments,
        settings=EscalationSettings(sign_in_proof=True),
        owner="escalation",
        sleep=fast_sleep,
        proof=ProofOfUse(activity=activity, confirmations=confirmations),
    )
    return telemetry, escalation


async def kept_back(world: RotationWorld) -> tuple[Registration, Registration, RotationJob]:
    """An after-confirm registration rotated, its overlap over, the old credential kept back."""
    before, after = await rotated(world, RETIRE_AFTER_CONFIRM)
    world.clock.advance(SETTINGS.overlap + timedelta(minutes=1))
    job = due_job(world, JobAction.RETIRE)
    assert await world.rotator().run(job) is Outcome.KEPT
    return before, after, job


def at_risk_events(world: RotationWorld) -> list[dict[str, object]]:
    return [json.loads(d.body) for d in world.queue.deliveries() if d.event_type == "credential.at_risk"]


async def retire_what_is_due(world: RotationWorld) -> list[Outcome]:
    due = [j for j in await world.index.due(world.clock.now()) if j.action is JobAction.RETIRE]
    return [await world.rotator().run(j) for j in due]


async def test_a_sign_in_with_the_new_key_when_the_retirement_is_kept_confirms_and_releases_it() -> None:
    world, activity = RotationWorld(), FakeSignInActivity()
    _, escalation = escalation_with_proof(world, activity)
    before, after, job = await kept_back(world)
    old, new = before.credential, after.credential
    assert old is not None and new is not None and new.verified_at is not None
    activity.signed_in(after, world.clock.now() - timedelta(minutes=5))  # the connector, after verification

    await escalation.retirement_kept(job)

    record = await world.store.get(after.id)
    assert record.credential is not None and record.credential.confirmed_at == world.clock.now()
    assert [e.detail for e in record.history if e.step == "confirm"] == [f"keyId {new.key_id} (sign-in)"]
    assert at_risk_events(world) == []  # proven in use: nobody needs paging
    assert assess(record, world.clock.now(), ESCALATION) is None
    assert await retire_what_is_due(world) == [Outcome.RETIRED]
    assert old.key_id not in world.app().passwords and new.key_id in world.app().passwords


async def test_registrars_own_verification_sign_in_is_no_proof() -> None:
    world, activity = RotationWorld(), FakeSignInActivity()
    _, escalation = escalation_with_proof(world, activity)
    before, after, job = await kept_back(world)
    assert after.credential is not None and after.credential.verified_at is not None
    activity.signed_in(after, after.credential.verified_at)  # the probe's token, no later one

    await escalation.retirement_kept(job)

    record = await world.store.get(after.id)
    assert record.credential is not None and record.credential.confirmed_at is None
    (event,) = at_risk_events(world)
    assert event["data"]["reason"] == "unconfirmed"  # type: ignore[index]
    assert before.credential is not None and before.credential.key_id in world.app().passwords


async def test_a_later_sign_in_is_found_by_the_watch_after_each_sweep() -> None:
    world, activity = RotationWorld(), FakeSignInActivity()
    _, escalation = escalation_with_proof(world, activity)
    _, after, job = await kept_back(world)
    await escalation.retirement_kept(job)  # no sign-in yet: at risk, on the watchlist
    assert len(at_risk_events(world)) == 1

    world.clock.advance(timedelta(hours=3))
    activity.signed_in(after, world.clock.now())
    snapshot = await escalation.watch()

    assert [i.reason for i in snapshot.at_risk] == [AtRiskReason.UNCONFIRMED]  # as the sweep began
    assert len(at_risk_events(world)) == 1  # not announced again: confirmed instead
    assert await retire_what_is_due(world) == [Outcome.RETIRED]
    assert (await escalation.health()).at_risk == ()


async def test_a_refusal_is_no_proof_logged_once_and_the_rotation_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proof_of_use._refusals_logged.clear()
    world, activity = RotationWorld(), FakeSignInActivity()
    activity.refuse = True
    _, escalation = escalation_with_proof(world, activity)
    before, after, job = await kept_back(world)
    activity.signed_in(after, world.clock.now())  # there is a sign-in, but we may not read it

    with caplog.at_level(logging.WARNING, logger=proof_of_use.__name__):
        await escalation.retirement_kept(job)
        await escalation.watch()
        await escalation.watch()

    assert activity.asked == 3  # asked each time (a permission may be granted later) ...
    refusals = [r for r in caplog.records if "no proof of use" in r.getMessage()]
    assert len(refusals) == 1  # ... but logged once
    record = await world.store.get(after.id)
    assert record.credential is not None and record.credential.confirmed_at is None
    assert [e["data"]["reason"] for e in at_risk_events(world)] == ["unconfirmed"]  # type: ignore[index]
    assert before.credential is not None and before.credential.key_id in world.app().passwords


async def test_an_outage_of_the_report_is_no_proof_this_time() -> None:
    world, activity = RotationWorld(), FakeSignInActivity()
    activity.failing = True
    _, escalation = escalation_with_proof(world, activity)
    _, after, job = await kept_back(world)
    activity.signed_in(after, world.clock.now())
    await escalation.retirement_kept(job)
    assert len(at_risk_events(world)) == 1
    activity.failing = False
    await escalation.watch()
    record = await world.store.get(after.id)
    assert record.credential is not None and record.credential.confirmed_at is not None


async def test_after_overlap_registrations_never_ask() -> None:
    world, activity = RotationWorld(), FakeSignInActivity()
    _, escalation = escalation_with_proof(world, activity)
    _, after = await rotated(world, None)
    activity.signed_in(after, world.clock.now() + timedelta(minutes=1))
    world.clock.advance(SETTINGS.overlap + timedelta(minutes=1))
    job = due_job(world, JobAction.RETIRE)
    assert await world.rotator().run(job) is Outcome.RETIRED
    await escalation.watch()
    assert activity.asked == 0


def test_the_setting_is_off_by_default_and_refuses_a_typo() -> None:
    assert EscalationSettings.from_values({}).sign_in_proof is False
    assert EscalationSettings.from_values({"REGISTRAR_SIGN_IN_PROOF": "true"}).sign_in_proof is True
    with pytest.raises(ValueError, match="REGISTRAR_SIGN_IN_PROOF"):
        EscalationSettings.from_values({"REGISTRAR_SIGN_IN_PROOF": "ture"})


# ------------------------------------------------------------ crash safety of confirmation


async def count_confirm_calls(world: RotationWorld, registration_id: str, key_id: str) -> int:
    faults = Faults()
    await Confirmations(
        store=Crashing(world.store, faults),  # type: ignore[arg-type]
        index=Crashing(world.index, faults),  # type: ignore[arg-type]
        clock=world.clock,
        owner="api",
        sleep=fast_sleep,
    ).confirm(registration_id, key_id)
    return faults.count


async def test_a_confirmation_killed_after_any_call_converges_when_confirmed_again() -> None:
    first = RotationWorld()
    _, after, _ = await kept_back(first)
    assert after.credential is not None
    total = await count_confirm_calls(first, after.id, after.credential.key_id)
    assert total >= 4  # claim, the release, the confirmation, release of the lease
    for crash_after in range(1, total):
        world = RotationWorld()
        before, after, _ = await kept_back(world)
        old, new = before.credential, after.credential
        assert old is not None and new is not None
        faults = Faults(crash_after=crash_after)
        crashing = Confirmations(
            store=Crashing(world.store, faults),  # type: ignore[arg-type]
            index=Crashing(world.index, faults),  # type: ignore[arg-type]
            clock=world.clock,
            owner="crashed-api",
            sleep=fast_sleep,
        )
        with pytest.raises(Crash):
            await crashing.confirm(after.id, new.key_id)

        # Whatever the crash left, the sweep may run the retirement before anyone retries: it
        # never retires an unconfirmed predecessor, and a recorded confirmation is never stranded.
        world.clock.advance(timedelta(minutes=2))  # the dead worker's lease lapses
        outcomes = await retire_what_is_due(world)
        record = await world.store.get(after.id)
        assert record.credential is not None
        if record.credential.confirmed_at is None:
            assert Outcome.RETIRED not in outcomes, crash_after
            assert old.key_id in world.app().passwords, crash_after
        else:
            assert outcomes == [Outcome.RETIRED], crash_after

        # The connector retries (its call failed): one confirmation, and the old credential retires.
        again = Confirmations(store=world.store, index=world.index, clock=world.clock, owner="api")
        await again.confirm(after.id, new.key_id)
        await retire_what_is_due(world)
        record = await world.store.get(after.id)
        assert len([e for e in record.history if e.step == "confirm"]) == 1, crash_after
        assert old.key_id not in world.app().passwords and new.key_id in world.app().passwords, crash_after
        assert record.retiring_credentials == (), crash_after


async def test_a_proof_of_use_killed_after_any_call_converges_at_the_next_watch() -> None:
    first = RotationWorld()
    _, after, _ = await kept_back(first)
    assert after.credential is not None
    total = await count_confirm_calls(first, after.id, after.credential.key_id)
    for crash_after in range(1, total):
        world, activity = RotationWorld(), FakeSignInActivity()
        faults = Faults(crash_after=crash_after)
        telemetry, crashing = escalation_with_proof(
            world, activity, store=Crashing(world.store, faults), index=Crashing(world.index, faults)
        )
        before, after, job = await kept_back(world)
        old = before.credential
        assert old is not None
        activity.signed_in(after, world.clock.now())
        with pytest.raises(Crash):
            await crashing.retirement_kept(job)

        world.clock.advance(timedelta(minutes=2))
        await retire_what_is_due(world)  # a job released ahead of a lost confirmation is kept back
        _, escalation = escalation_with_proof(world, activity, telemetry=telemetry)
        await escalation.watch()  # the next sweep asks again
        await retire_what_is_due(world)
        record = await world.store.get(after.id)
        assert len([e for e in record.history if e.step == "confirm"]) == 1, crash_after
        assert old.key_id not in world.app().passwords, crash_after


def test_services_wire_proof_of_use_only_when_the_setting_is_on() -> None:
    from functions.adapters.graph_signins import GraphSignInActivity
    from functions.bootstrap import Services
    from functions.settings import Settings

    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))["Values"]
    assert Services(Settings.from_env(sample)).proof_of_use() is None  # off by default
    proof = Services(Settings.from_env({**sample, "REGISTRAR_SIGN_IN_PROOF": "true"})).proof_of_use()
    assert isinstance(proof, ProofOfUse)
    assert isinstance(proof._activity, GraphSignInActivity)
