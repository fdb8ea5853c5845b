"""Connector-confirmed retirement against fakes: with "retirement": "after-confirm" the old
credential outlives the overlap until the connector confirms (then it retires at the next job),
credential.at_risk fires with reason unconfirmed meanwhile, confirming is idempotent, and a keyId
that is not the current credential is a 409 (an earlier one) or a 404 (unknown)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from functions.core.escalation.at_risk import assess
from functions.core.escalation.confirmation import Confirmations
from functions.core.intake.accept import accept
from functions.core.record.errors import Conflict, NotFound
from functions.core.record.models import RETIRE_AFTER_CONFIRM, RegistrationStatus, WebhookSpec
from functions.core.record.registration import Registration
from functions.core.record.schedule import JobAction
from functions.core.rotation.rotator import Outcome, rotation_job
from functions.signals import AtRiskReason
from tests.unit.provisioning_world import fast_sleep
from tests.unit.test_escalation import ESCALATION, Telemetry
from tests.unit.test_rotation import SETTINGS, RotationWorld, due_job


async def active(world: RotationWorld, retirement: str | None) -> Registration:
    request = world.request(credential=world.credential, webhooks=(WebhookSpec("https://hooks.example/x"),))
    body = {"requestId": request.request_id, "profile": request.profile_id}
    if retirement:
        request = replace(request, retirement=retirement)
        body["retirement"] = retirement
    accepted = await accept(
        request,
        world.plan(credential=world.credential),
        body,
        store=world.store,
        vault=world.vault,
        clock=world.clock,
    )
    record = await world.provisioner().run(accepted.registration.id)
    job = rotation_job(record, SETTINGS)
    assert record.status is RegistrationStatus.ACTIVE and job is not None
    await world.index.put(job)
    return record


async def rotated(world: RotationWorld, retirement: str | None) -> tuple[Registration, Registration]:
    before = await active(world, retirement)
    world.clock.advance(timedelta(days=61))
    assert await world.rotator().run(due_job(world, JobAction.ROTATE)) is Outcome.ROTATED
    return before, await world.store.get(before.id)


def confirmations(world: RotationWorld) -> Confirmations:
    return Confirmations(
        store=world.store, index=world.index, clock=world.clock, owner="api", sleep=fast_sleep
    )


async def test_after_overlap_stays_the_default_and_retires_without_confirmation() -> None:
    world = RotationWorld()
    before, after = await rotated(world, None)
    assert after.retirement == "after-overlap"
    world.clock.advance(SETTINGS.overlap)
    assert await world.rotator().run(due_job(world, JobAction.RETIRE)) is Outcome.RETIRED
    assert before.credential is not None and before.credential.key_id not in world.app().passwords


async def test_after_confirm_keeps_the_old_credential_past_the_overlap_until_confirmed() -> None:
    world = RotationWorld()
    telemetry = Telemetry(world)
    before, after = await rotated(world, RETIRE_AFTER_CONFIRM)
    old, new = before.credential, after.credential
    assert old is not None and new is not None and after.retirement == RETIRE_AFTER_CONFIRM

    world.clock.advance(SETTINGS.overlap + timedelta(minutes=1))
    job = due_job(world, JobAction.RETIRE)
    assert await world.rotator().run(job) is Outcome.KEPT
    assert old.key_id in world.app().passwords  # outlives the overlap
    (moved,) = [j for j in world.index.jobs.values() if j.action is JobAction.RETIRE]
    assert moved.due_at == old.expires_on  # at the latest at its own end
    await telemetry.escalation.retirement_kept(job)
    item = assess(await world.store.get(after.id), world.clock.now(), ESCALATION)
    assert item is not None and item.reason is AtRiskReason.UNCONFIRMED and item.key_id == old.key_id
    (event,) = [json.loads(d.body) for d in world.queue.deliveries() if d.event_type == "credential.at_risk"]
    assert event["data"]["reason"] == "unconfirmed" and event["data"]["keyId"] == old.key_id
    assert (await telemetry.escalation.health()).at_risk[
        0
    ].reason is AtRiskReason.UNCONFIRMED  # via the watchlist

    with pytest.raises(Conflict):  # the old credential is not the one to confirm
        await confirmations(world).confirm(after.id, old.key_id)
    with pytest.raises(NotFound):
        await confirmations(world).confirm(after.id, "00000000-0000-0000-0000-000000000000")
    first = await confirmations(world).confirm(after.id, new.key_id)
    world.clock.advance(timedelta(minutes=5))
    again = await confirmations(world).confirm(after.id, new.key_id)  # idempotent
    assert first.confirmed_at == again.confirmed_at and first.retiring_now == (old.key_id,)
    record = await world.store.get(after.id)
    assert [e.detail for e in record.history if e.step == "confirm"] == [f"keyId {new.key_id}"]

    (released,) = await world.index.due(world.clock.now())  # back to now: the next sweep runs it
    assert await world.rotator().run(released) is Outcome.RETIRED
    assert old.key_id not in world.app().passwords and new.key_id in world.app().passwords
    assert assess(await world.store.get(after.id), world.clock.now(), ESCALATION) is None
    assert (await telemetry.escalation.health()).at_risk == ()


async def test_an_unconfirmed_old_credential_retires_at_its_own_end() -> None:
    world = RotationWorld()
    before, _ = await rotated(world, RETIRE_AFTER_CONFIRM)
    old = before.credential
    assert old is not None and old.expires_on is not None
    world.clock.advance(SETTINGS.overlap + timedelta(minutes=1))
    assert await world.rotator().run(due_job(world, JobAction.RETIRE)) is Outcome.KEPT
    world.clock.advance(old.expires_on - world.clock.now())
    (job,) = [j for j in await world.index.due(world.clock.now()) if j.action is JobAction.RETIRE]
    assert await world.rotator().run(job) is Outcome.RETIRED


async def test_a_retirement_mode_other_than_the_two_is_refused_with_the_others_problems() -> None:
    from functions.core.catalogue.policy import Policy
    from functions.core.intake.requests import parse_registration_request
    from functions.core.record.errors import ValidationFailed
    from functions.profiles import load_catalogue
    from tests.unit.provisioning_world import TENANT

    with pytest.raises(ValidationFailed) as refused:
        parse_registration_request(
            {"requestId": "INC1", "profile": "m365-usage-connector", "retirement": "never", "notes": 5},
            home_tenant_id=TENANT,
            catalogue=load_catalogue(),
            policy=Policy(allowed_tenants=frozenset({TENANT})),
        )
    assert {p.field for p in refused.value.problems} == {"retirement", "notes"}
