"""The credential takeover of an adopted app (issue 15 §2, "Taking over the credential"): the claim,
Registrar's generation-1 credential verified and in Key Vault, the found credentials retired per
retireExisting by rotation's RETIRE jobs, credential.rotated with reason `adopted`, and an adopted
app that no path deletes; a takeover killed after any call converges."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.core.adoption.accepting import accept_adoption
from functions.core.adoption.asking import validate_adoption
from functions.core.adoption.claims import APP_ALREADY_ADOPTED
from functions.core.adoption.ownership import OwnershipCheck
from functions.core.adoption.takeover import Takeover
from functions.core.catalogue.policy import Policy
from functions.core.credentials.verification import VerifyPolicy
from functions.core.ports import KeyCredentialSpec
from functions.core.provisioning.stuck import fail_stuck
from functions.core.record.errors import TransientError
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import CredentialType, RegistrationStatus, SecretValue
from functions.core.record.registration import (
    CredentialState,
    ErrorInfo,
    Registration,
    credential_display_name,
)
from functions.core.record.schedule import JobAction
from functions.core.rotation.rotator import Outcome, RotationSettings, Rotator, removable, retire_job
from functions.profiles import load_catalogue
from functions.resources import REGISTRATION_REQUESTS_QUEUE, ROTATION_JOBS_QUEUE, WEBHOOK_DELIVERIES_QUEUE
from functions.triggers import http_registrations as api
from functions.triggers.adoption import recheck_registration as recheck
from tests.unit.fakes import Crashing, FakeApp, FakeTokenProbe, Faults, Flaky
from tests.unit.provisioning_world import TENANT, World, crash_after_every_call, fast_sleep
from tests.unit.test_adoption_triggers import exact_app
from tests.unit.test_registration_triggers import FakeServices, as_json, deliver, http
from tests.unit.test_rotation import ImportingVault

OVERLAP = timedelta(hours=2)
ROTATION = RotationSettings(
    overlap=OVERLAP, verify=VerifyPolicy(timeout=timedelta(seconds=30), first_delay=timedelta(seconds=1))
)
HOOK = "https://connector.example.com/registrar"


class Adopted:
    """An app a person made, with the secret they pasted into the connector, adopted and owned."""

    def __init__(
        self, world: World, app: FakeApp, pasted: str, record: Registration, secret: SecretValue
    ) -> None:
        self.world, self.app, self.pasted, self.record, self.secret = world, app, pasted, record, secret


async def adopted(
    world: World | None = None,
    *,
    retire: str = "after-overlap",
    request_id: str = "ADOPT-T1",
    app: FakeApp | None = None,
    credential: str = "secret",
) -> Adopted:
    world = world or World()
    if app is None:
        app = world.directory.add_hand_made_app("CodeTwo by hand", owners=["a-person"])
        app.owners.append(world.directory.registrar_id)  # an administrator made Registrar an owner
    start = world.clock.now()
    pasted = await world.directory.add_password(
        TENANT, app.object_id, "pasted into the connector", start, start + timedelta(days=700)
    )
    validated, body = await ask(world, app, request_id, retire=retire, credential=credential)
    owned = await accept_and_own(world, validated, body)
    assert owned.status is RegistrationStatus.ADOPTING
    return Adopted(world, app, pasted.key_id, owned, pasted.secret)


async def ask(
    world: World, app: FakeApp, request_id: str, *, retire: str = "after-overlap", credential: str = "secret"
) -> tuple[Any, dict[str, Any]]:
    body: dict[str, Any] = {
        "requestId": request_id,
        "profile": "codetwo-backup-exchange",
        "adopt": {"appId": app.app_id},
        "options": {"retireExisting": retire},
        "credential": {"type": credential},
        "webhooks": [{"url": HOOK}],
    }
    validated = await validate_adoption(
        body,
        directory=world.directory,
        store=world.store,
        home_tenant_id=TENANT,
        catalogue=load_catalogue(),
        policy=Policy(allowed_tenants=frozenset({TENANT})),
    )
    return validated, body


async def accept_and_own(world: World, validated: Any, body: dict[str, Any]) -> Registration:
    accepted = await accept_adoption(validated, body, store=world.store, vault=world.vault, clock=world.clock)
    return await OwnershipCheck(world.store, world.directory, world.clock, sleep=world.record_sleep).check(
        accepted.registration.id
    )


def takeover(world: World, faults: Faults | None = None, *, wrap: Any = None, **extra: Any) -> Takeover:
    """The takeover; with `faults`, every call to Graph, Key Vault, the probe and Table storage counts;
    `wrap` wraps each of them otherwise (Flaky)."""

    def wrapped(target: Any) -> Any:
        if wrap is not None:
            return wrap(target)
        return Crashing(target, faults) if faults else target

    ports = replace(
        world.ports,
        store=wrapped(world.store),
        directory=wrapped(world.directory),
        vault=wrapped(world.vault),
        probe=wrapped(world.probe),
        sleep=fast_sleep,
    )
    return Takeover(
        ports,
        index=wrapped(world.index),
        queue=wrapped(world.queue),
        claims=wrapped(world.claims),
        rotation=ROTATION,
        **extra,
    )


def rotator(world: World) -> Rotator:
    return Rotator(
        replace(world.ports, sleep=fast_sleep), index=world.index, queue=world.queue, settings=ROTATION
    )


def registrar_passwords(app: FakeApp, record: Registration) -> list[str]:
    return [k for k, (name, *_) in app.passwords.items() if name.startswith(f"registrar-{record.id}-")]


def events(world: World) -> list[dict[str, Any]]:
    return [
        json.loads(json.loads(text)["body"])
        for queue, text in world.queue.sent
        if queue == WEBHOOK_DELIVERIES_QUEUE
    ]


async def test_the_takeover_issues_verifies_stores_and_announces_then_the_found_secret_retires_after_the_overlap() -> (
    None
):
    a = await adopted()
    world, record = a.world, a.record
    later = await world.directory.add_password(  # added by a person after the adoption: never Registrar's to remove
        TENANT, a.app.object_id, "added later", world.clock.now(), world.clock.now() + timedelta(days=30)
    )
    active = await takeover(world).run(record.id)

    assert active.status is RegistrationStatus.ACTIVE and active.last_error is None
    assert (active.app_id, active.app_object_id) == (a.app.app_id, a.app.object_id)
    assert active.service_principal_id == world.directory.service_principals[a.app.app_id]
    credential = active.credential
    assert credential is not None and credential.generation == 1 and credential.verified_at is not None
    assert credential.display_name == credential_display_name(record.id, 1)
    assert registrar_passwords(a.app, active) == [credential.key_id]
    _, stored = await world.vault.get_secret(credential.secret_name or "", credential.secret_version)
    assert (
        a.app.passwords[credential.key_id][3] == stored.reveal()
    )  # the value in Key Vault is the one on the app
    (found,) = active.retiring_credentials
    assert (found.key_id, found.generation, found.secret_uri) == (a.pasted, 0, None)
    assert found.retire_after == world.clock.now() + OVERLAP

    (rotated,) = [e for e in events(world) if e["type"] == "credential.rotated"]
    assert rotated["data"]["reason"] == "adopted" and rotated["data"]["keyId"] == credential.key_id
    assert rotated["data"]["previousKeyIds"] == [a.pasted]
    jobs = {(j.action, j.key_id) for j in world.index.entities.values()}
    assert (JobAction.RETIRE, a.pasted) in jobs and (JobAction.ROTATE, None) in jobs

    # Until the overlap ends, the connector's pasted secret keeps working.
    await world.probe.try_secret(TENANT, a.app.app_id, a.secret)  # type: ignore[union-attr]
    world.clock.advance(OVERLAP + timedelta(minutes=1))
    (retire,) = [j for j in await world.index.due(world.clock.now()) if j.action is JobAction.RETIRE]
    assert await rotator(world).run(retire) is Outcome.RETIRED
    assert a.pasted not in a.app.passwords and later.key_id in a.app.passwords
    assert world.vault.count("update_secret_version") == 0  # generation 0 has no Key Vault version to disable
    assert registrar_passwords(a.app, active) == [credential.key_id]
    retired = [e for e in events(world) if e["type"] == "credential.retired"]
    assert [e["data"]["keyId"] for e in retired] == [a.pasted]
    assert (await world.store.get(record.id)).retiring_credentials == ()
    again = await takeover(world).run(record.id)  # a re-sent envelope: nothing happens
    assert again.credential == (await world.store.get(record.id)).credential
    assert len([e for e in events(world) if e["type"] == "credential.rotated"]) == 1


async def test_retire_existing_never_keeps_the_found_credentials() -> None:
    a = await adopted(retire="never")
    active = await takeover(a.world).run(a.record.id)
    assert active.status is RegistrationStatus.ACTIVE and active.retiring_credentials == ()
    assert not any(j.action is JobAction.RETIRE for j in a.world.index.entities.values())
    assert a.pasted in a.app.passwords
    (rotated,) = [e for e in events(a.world) if e["type"] == "credential.rotated"]
    assert rotated["data"]["reason"] == "adopted" and "previousKeyIds" not in rotated["data"]


async def test_retire_existing_now_removes_the_found_secret_at_once_but_only_after_registrar_s_works() -> (
    None
):
    a = await adopted(retire="now")
    world = a.world
    active = await takeover(world).run(a.record.id)
    assert active.credential is not None and active.credential.verified_at is not None
    sent = [json.loads(text) for queue, text in world.queue.sent if queue == ROTATION_JOBS_QUEUE]
    assert [(m["action"], m["keyId"]) for m in sent] == [("retire", a.pasted)]  # not left for the sweep
    (due,) = [j for j in await world.index.due(world.clock.now()) if j.action is JobAction.RETIRE]
    assert await rotator(world).run(due) is Outcome.RETIRED
    assert list(a.app.passwords) == [active.credential.key_id]


async def edit(world: World, registration_id: str, change: Any) -> Registration:
    """What another writer (or time) did to the record: saved under its lease, as any writer does."""
    keeper = await RecordKeeper.claim(
        world.store,
        world.clock,
        registration_id,
        owner="test",
        lease_for=timedelta(seconds=30),
        wait=timedelta(0),
    )
    await keeper.update(change)
    return await keeper.release()


async def test_retirement_never_removes_a_credential_not_found_at_adoption_nor_the_last_working_one() -> None:
    a = await adopted()
    world = a.world
    active = await takeover(world).run(a.record.id)
    stranger = await world.directory.add_password(
        TENANT, a.app.object_id, "a person's", world.clock.now(), world.clock.now() + timedelta(days=9)
    )
    unknown = CredentialState(
        CredentialType.SECRET, 0, "a person's", stranger.key_id, retire_after=world.clock.now()
    )
    found_certificate = replace(unknown, type=CredentialType.CERTIFICATE, key_id=a.pasted)
    record = await edit(
        world, active.id, lambda r: replace(r, retiring_credentials=(*r.retiring_credentials, unknown))
    )
    assert not removable(record, unknown) and not removable(record, found_certificate)
    assert removable(record, record.retiring_credentials[0])
    assert await rotator(world).run(retire_job(record, unknown)) is Outcome.KEPT
    assert stranger.key_id in a.app.passwords
    assert (await world.store.get(active.id)).history[-1].outcome == "refused"

    # Registrar's credential no longer works (expired): the found one is the last working one and stays.
    record = await edit(
        world,
        active.id,
        lambda r: replace(
            r, credential=replace(r.credential, expires_on=world.clock.now()) if r.credential else None
        ),
    )
    world.clock.advance(OVERLAP + timedelta(minutes=1))
    assert await rotator(world).run(retire_job(record, record.retiring_credentials[0])) is Outcome.KEPT
    assert a.pasted in a.app.passwords


async def test_two_adoptions_of_one_app_race_and_the_loser_fails_naming_the_winner_touching_nothing() -> None:
    world = World()
    app = world.directory.add_hand_made_app(
        "CodeTwo by hand", owners=["a-person", world.directory.registrar_id]
    )
    asked = [
        await ask(world, app, "ADOPT-A"),
        await ask(world, app, "ADOPT-B"),
    ]  # both asked before either was accepted
    first_record, second_record = [await accept_and_own(world, v, b) for v, b in asked]
    assert first_record.status is second_record.status is RegistrationStatus.ADOPTING
    before = dict(app.passwords)
    ended = await asyncio.gather(takeover(world).run(first_record.id), takeover(world).run(second_record.id))
    by_status = {r.status: r for r in ended}
    assert set(by_status) == {RegistrationStatus.ACTIVE, RegistrationStatus.FAILED}
    winner, loser = by_status[RegistrationStatus.ACTIVE], by_status[RegistrationStatus.FAILED]
    assert loser.last_error is not None and loser.last_error.code == APP_ALREADY_ADOPTED
    assert winner.id in loser.last_error.message
    assert winner.credential is not None
    assert set(app.passwords) == {
        *before,
        winner.credential.key_id,
    }  # the loser added or removed nothing
    assert registrar_passwords(app, loser) == [] and loser.credential is None
    assert world.directory.apps[app.object_id] is app

    # The winner ends (decommissioned): its claim is stale, and a new adoption of the app takes it over.
    await world.lifecycle().decommission(winner.id, "admin")
    assert world.directory.apps[app.object_id] is app  # an adopted app is never deleted
    assert world.directory.registrar_id not in app.owners  # the release gave up the ownership, last
    app.owners.append(world.directory.registrar_id)  # an administrator makes Registrar an owner again
    third = await adopted(world, request_id="ADOPT-C", app=app)
    assert (await takeover(world).run(third.record.id)).status is RegistrationStatus.ACTIVE


async def test_a_permanent_failure_keeps_the_person_s_credentials_and_the_app_and_removes_registrar_s() -> (
    None
):
    a = await adopted()
    world = a.world
    world.probe = FakeTokenProbe(world.directory, world.vault)

    async def refused(tenant_id: str, client_id: str, secret: SecretValue) -> None:
        from functions.core.record.errors import PermanentError

        raise PermanentError("AADSTS7000112: Application is disabled.", code="AADSTS7000112")

    world.probe.try_secret = refused  # type: ignore[method-assign]
    failed = await takeover(world).run(a.record.id)
    assert failed.status is RegistrationStatus.FAILED and failed.last_error is not None
    assert failed.last_error.step == "verify" and failed.last_error.code == "AADSTS7000112"
    assert world.directory.apps[a.app.object_id] is a.app and list(a.app.passwords) == [a.pasted]
    assert world.directory.count("delete_application") == 0
    assert not [n for n in world.vault.secrets if n == a.record.id]  # Registrar's Key Vault entry went too


async def test_a_permissions_step_that_makes_it_wait_stops_before_the_credential() -> None:
    a = await adopted()

    class Waits:
        async def run(self, keeper: RecordKeeper) -> bool:
            await keeper.update(lambda r: replace(r, status=RegistrationStatus.PENDING_APPROVAL))
            return False

    waiting = await takeover(a.world, permissions=Waits()).run(a.record.id)
    assert waiting.status is RegistrationStatus.PENDING_APPROVAL and waiting.credential is None
    assert waiting.app_object_id == a.app.object_id and list(a.app.passwords) == [a.pasted]


async def test_no_path_deletes_an_adopted_app() -> None:
    """Failure cleanup (permanent error, covered above), give-up (retries ran out, the stuck sweep)
    and decommission all go through CredentialIssuer.remove_everything: only Registrar's own go."""
    a = await adopted()
    world = a.world
    given_up = await world.provisioner().give_up(a.record.id, "gave up after 5 attempts")
    assert given_up.status is RegistrationStatus.FAILED
    assert world.directory.apps[a.app.object_id] is a.app and list(a.app.passwords) == [a.pasted]

    b = await adopted(World(), request_id="ADOPT-D")
    active = await takeover(b.world).run(b.record.id)
    assert active.credential is not None
    ended = await b.world.lifecycle().decommission(active.id, "admin")
    assert ended.status is RegistrationStatus.DECOMMISSIONED
    assert b.world.directory.apps[b.app.object_id] is b.app and list(b.app.passwords) == [b.pasted]
    assert b.world.directory.count("delete_application") == 0
    # A provisioning run on an adoption never builds an app of its own.
    assert (await b.world.provisioner().run(active.id)).status is RegistrationStatus.DECOMMISSIONED
    assert b.world.directory.count("upsert_application") == 0


@pytest.mark.parametrize("retire", ["after-overlap", "now"])
async def test_a_takeover_killed_after_any_call_converges(retire: str) -> None:
    async def setup() -> Adopted:
        return await adopted(retire=retire)

    async def crashing_run(a: Adopted, faults: Faults) -> object:
        return await takeover(a.world, faults).run(a.record.id)

    async def recover(a: Adopted, crash_after: int) -> None:
        a.world.clock.advance(timedelta(seconds=31))  # the dead worker's lease lapses
        record = await takeover(a.world).run(a.record.id)
        assert record.status is RegistrationStatus.ACTIVE, crash_after
        assert_taken_over(a, record, crash_after)

    calls = await crash_after_every_call(setup, crashing_run, recover)
    assert calls > 15


def assert_taken_over(a: Adopted, record: Registration, crash_after: int) -> None:
    credential = record.credential
    assert credential is not None and credential.verified_at is not None, crash_after
    assert registrar_passwords(a.app, record) == [credential.key_id], crash_after  # exactly one, no orphan
    assert a.pasted in a.app.passwords, crash_after  # retired by the RETIRE job, never by the takeover
    versions = [v.ref for v in a.world.vault.secrets.get(record.id, []) if v.ref.tags.get("keyId")]
    assert {v.tags["keyId"] for v in versions} == {credential.key_id}, crash_after
    assert [c.key_id for c in record.retiring_credentials] == [a.pasted], crash_after
    assert record.pending_credential is None and a.world.claims.claims, crash_after


async def test_through_the_triggers_the_recheck_hands_it_to_the_worker_which_takes_it_over(
    svc: FakeServices,
) -> None:
    app = await exact_app(svc.directory)
    body = {"requestId": "ADOPT-W1", "adopt": {"appId": app.app_id}, "options": {"retireExisting": "now"},
            "webhooks": [{"url": HOOK}]}  # fmt: skip
    created = as_json(await api.create_registration(http("POST", "registrations", body)))
    assert created.get("status") == "pending_ownership" and svc.queue.sent == [], created.get("problems")
    now = svc.clock.now()
    pasted = await svc.directory.add_password(TENANT, app.object_id, "pasted", now, now + timedelta(days=700))
    app.owners.append(svc.directory.registrar_id)
    rechecked = as_json(await recheck(http("POST", "r", route={"id": created["id"]})))
    assert rechecked["status"] == "adopting"
    (envelope,) = [text for queue, text in svc.queue.sent if queue == REGISTRATION_REQUESTS_QUEUE]
    assert json.loads(envelope) == {"registrationId": created["id"]}
    assert list(svc.in_flight.entries) == [f"{created['id']}-provision"]  # handed over: the sweep's if lost

    await deliver(envelope)
    shown = as_json(await api.get_registration(http("GET", "r", route={"id": created["id"]})))
    assert shown["status"] == "active" and shown["credential"]["generation"] == 1
    assert shown["credential"]["type"] == "certificate"  # the profile's default: the app had no keys to lose
    retire = [json.loads(text) for q, text in svc.queue.sent if q == ROTATION_JOBS_QUEUE]
    assert [(m["action"], m["keyId"]) for m in retire] == [("retire", pasted.key_id)]  # retireExisting now
    assert svc.in_flight.entries == {}
    announced = [
        json.loads(json.loads(text)["body"]) for q, text in svc.queue.sent if q == WEBHOOK_DELIVERIES_QUEUE
    ]
    assert [e["type"] for e in announced] == ["credential.rotated", "registration.active"]
    assert announced[0]["data"]["reason"] == "adopted"
    assert svc.directory.count("upsert_application") == 0 and svc.directory.count("delete_application") == 0


def persons_key(world: World, key_id: str) -> KeyCredentialSpec:
    now = world.clock.now()
    return KeyCredentialSpec(
        key_id, f"{key_id} by hand", b"DER of " + key_id.encode(), now, now + timedelta(days=900)
    )


async def certificate_adoption(world: World) -> tuple[FakeApp, KeyCredentialSpec, Registration]:
    """An app holding a certificate of the person's, adopted (certificate profile default) and owned."""
    app = world.directory.add_hand_made_app(
        "CodeTwo by hand", owners=["a-person", world.directory.registrar_id]
    )
    theirs = persons_key(world, "their-key")
    app.keys.append(theirs)
    validated, body = await ask(world, app, "ADOPT-K1", credential="certificate")
    return app, theirs, await accept_and_own(world, validated, body)


async def test_a_certificate_goes_beside_the_person_s_keys_through_takeover_rotation_retirement_and_release() -> (
    None
):
    """keyCredentials is replaced as a whole: each write keeps the person's keys as Graph holds them
    (the one found at adoption and one added afterwards), and removes only Registrar's."""
    world = World(vault=ImportingVault())  # a certificate rotation imports the staged one
    app, theirs, record = await certificate_adoption(world)
    active = await takeover(world).run(record.id)
    assert active.status is RegistrationStatus.ACTIVE, active.last_error
    first = active.credential
    assert first is not None and first.type is CredentialType.CERTIFICATE and first.generation == 1
    assert app.keys[0] == theirs and [k.key_id for k in app.keys] == [theirs.key_id, first.key_id]
    later = persons_key(world, "added-after-the-takeover")
    app.keys.append(later)

    (rotate,) = [j for j in world.index.entities.values() if j.action is JobAction.ROTATE]
    world.clock.advance(rotate.due_at - world.clock.now())  # Registrar's certificate is due for rotation
    assert await rotator(world).run(rotate) is Outcome.ROTATED
    second = (await world.store.get(record.id)).credential
    assert second is not None and second.generation == 2
    assert {k.key_id for k in app.keys} == {theirs.key_id, later.key_id, first.key_id, second.key_id}

    world.clock.advance(OVERLAP + timedelta(minutes=1))
    due = [j for j in await world.index.due(world.clock.now()) if j.action is JobAction.RETIRE]
    (retire,) = [j for j in due if j.key_id == first.key_id]
    assert await rotator(world).run(retire) is Outcome.RETIRED
    assert {k.key_id for k in app.keys} == {theirs.key_id, later.key_id, second.key_id}

    released = await world.lifecycle().decommission(record.id, "an admin")
    assert released.status is RegistrationStatus.DECOMMISSIONED
    assert app.keys == [theirs, later]  # as they were: bytes, names and dates
    assert world.directory.count("set_key_credentials") == 0  # never the whole collection on a person's app


async def test_a_certificate_takeover_killed_after_any_call_converges_keeping_the_person_s_key() -> None:
    async def setup() -> tuple[World, FakeApp, KeyCredentialSpec, Registration]:
        world = World()
        return (world, *await certificate_adoption(world))

    async def crashing_run(case: Any, faults: Faults) -> object:
        world, _, _, record = case
        return await takeover(world, faults).run(record.id)

    async def recover(case: Any, crash_after: int) -> None:
        world, app, theirs, record = case
        world.clock.advance(timedelta(seconds=31))  # the dead worker's lease lapses
        active = await takeover(world).run(record.id)
        assert active.status is RegistrationStatus.ACTIVE, (crash_after, active.last_error)
        assert active.credential is not None and active.pending_credential is None, crash_after
        assert app.keys[0] == theirs, crash_after
        assert [k.key_id for k in app.keys] == [theirs.key_id, active.credential.key_id], crash_after

    calls = await crash_after_every_call(setup, crashing_run, recover)
    assert calls > 10


async def test_a_certificate_rotation_of_an_adopted_app_killed_after_any_call_converges_keeping_the_person_s_keys() -> (
    None
):
    async def setup() -> tuple[World, FakeApp, list[str], Registration, Any]:
        world = World(vault=ImportingVault())
        app, theirs, record = await certificate_adoption(world)
        active = await takeover(world).run(record.id)
        later = persons_key(world, "added-after-the-takeover")
        app.keys.append(later)
        (rotate,) = [j for j in world.index.entities.values() if j.action is JobAction.ROTATE]
        world.clock.advance(rotate.due_at - world.clock.now())
        return world, app, [theirs.key_id, later.key_id], active, rotate

    async def crashing_run(case: Any, faults: Faults) -> object:
        world, _, _, _, rotate = case
        assert world.probe is not None
        ports = replace(
            world.ports,
            directory=Crashing(world.directory, faults),
            vault=Crashing(world.vault, faults),
            sleep=fast_sleep,
        )
        return await Rotator(ports, index=world.index, queue=world.queue, settings=ROTATION).run(rotate)

    async def recover(case: Any, crash_after: int) -> None:
        world, app, persons, active, rotate = case
        world.clock.advance(timedelta(seconds=31))  # the dead worker's lease lapses
        await rotator(world).run(rotate)  # the job delivered again
        record = await world.store.get(active.id)
        assert record.credential is not None and record.credential.generation == 2, crash_after
        assert record.pending_credential is None, crash_after
        held = [k.key_id for k in app.keys]
        assert held[:2] == persons, crash_after  # the person's, untouched
        assert set(held) == {*persons, active.credential.key_id, record.credential.key_id}, crash_after

    calls = await crash_after_every_call(setup, crashing_run, recover)
    assert calls > 5


async def test_the_stuck_sweep_ends_a_takeover_stuck_past_the_deadline_leaving_the_app() -> None:
    a = await adopted()
    world = a.world
    world.clock.advance(timedelta(minutes=59))
    assert (await fail_stuck(world.store, world.provisioner(), world.clock)).ended == ()  # owned 59 min ago
    world.clock.advance(timedelta(minutes=2))
    swept = await fail_stuck(world.store, world.provisioner(), world.clock)
    (ended,) = swept.ended
    assert ended.status is RegistrationStatus.FAILED and ended.last_error is not None
    assert ended.last_error.message.startswith("gave up: still adopting")
    assert world.directory.apps[a.app.object_id] is a.app and list(a.app.passwords) == [a.pasted]


async def test_a_failure_whose_cleanup_a_crash_interrupted_is_finished_by_the_worker_leaving_the_app() -> (
    None
):
    """`failing` written, the process died before the cleanup: the re-sent envelope reaches the
    Provisioner (the worker dispatches only `adopting` to the takeover), whose cleanup of an adoption
    removes Registrar's credential and Key Vault entry, and nothing of the person's."""
    a = await adopted()
    world = a.world
    active = await takeover(world).run(a.record.id)
    assert active.credential is not None
    info = ErrorInfo(step="verify", kind="permanent", message="refused", at=world.clock.now(), code="X")
    await edit(world, active.id, lambda r: replace(r, status=RegistrationStatus.FAILING, last_error=info))
    ended = await world.provisioner().run(active.id)
    assert ended.status is RegistrationStatus.FAILED and ended.last_error == info
    assert world.directory.apps[a.app.object_id] is a.app and list(a.app.passwords) == [a.pasted]
    assert world.directory.count("delete_application") == 0 and active.id not in world.vault.secrets


async def test_takeovers_redelivered_through_transient_faults_on_a_fifth_of_calls_converge() -> None:
    rng = random.Random(20261207)
    deliveries = 0
    for n in range(8):
        a = await adopted(request_id=f"ADOPT-F{n}")
        for _ in range(40):  # the queue re-delivers until the worker stops raising
            deliveries += 1
            try:
                record = await takeover(a.world, wrap=lambda target: Flaky(target, rng, 0.2)).run(a.record.id)
            except TransientError:
                a.world.clock.advance(timedelta(seconds=31))  # a lease a failed save kept lapses meanwhile
                continue
            break
        assert record.status is RegistrationStatus.ACTIVE, record.last_error
        assert_taken_over(a, record, n)
    assert deliveries > 8  # faults did happen
