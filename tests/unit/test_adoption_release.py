"""Decommissioning an adopted registration (issue 15 §2, "Releasing"): Registrar removes its own
credentials, its Key Vault entries and, last, its ownership, and leaves the person's app, its other
credentials and its permissions; `deleteApp=true` deletes the app instead. A decommission killed
after any call converges when the registration worker finishes it.

Registrar acts with Application.ReadWrite.OwnedBy here (FakeDirectory.owned_by_only): a write to
the app once its ownership is gone is Graph's 403, so the order of the steps is tested too."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.core.credentials.issuer import CredentialIssuer, certificate_key_id, staging_name
from functions.core.ports import KeyCredentialSpec
from functions.core.record.errors import Conflict
from functions.core.record.keeper import WORK_LEASE
from functions.core.record.models import CredentialType, RegistrationStatus, SecretValue
from functions.core.record.registration import (
    CredentialState,
    PendingCredential,
    Registration,
    credential_display_name,
    vault_object_name,
)
from functions.triggers import http_registrations as api
from tests.unit.fakes import Crash, FakeApp, Faults
from tests.unit.provisioning_world import TENANT, World
from tests.unit.test_adoption_ownership import adopted, checker
from tests.unit.test_adoption_triggers import conforms, exact_app
from tests.unit.test_registration_triggers import FakeServices, as_json, http, principal

PERSON = "a-person"


async def owned_adoption(
    world: World, *, registrar_added_itself: bool = False
) -> tuple[Registration, FakeApp]:
    """An adoption in `adopting`: the person's pasted secret recorded at ownership."""
    world.directory.owned_by_only = True
    record, app = await adopted(world)
    start = world.clock.now()
    app.passwords["pasted-key"] = ("pasted into the connector", start, start + timedelta(days=9000), "p" * 40)
    if registrar_added_itself:
        await world.directory.add_owner(TENANT, app.object_id, world.directory.registrar_id)
    else:
        app.owners.append(world.directory.registrar_id)  # an administrator adds Registrar
    owned = await checker(world).check(record.id)
    assert owned.status is RegistrationStatus.ADOPTING
    if registrar_added_itself:  # as the check records it with Application.ReadWrite.All
        owned = await save(world, owned, adoption=replace(owned.adoption, owner_added_by_registrar=True))
    return owned, app


async def save(world: World, record: Registration, **changes: object) -> Registration:
    current = await world.store.get(record.id)
    return await world.store.replace(replace(current, **changes))  # type: ignore[arg-type]


async def taken_over(world: World, record: Registration, app: FakeApp) -> Registration:
    """What the takeover (T) leaves: generation 1 on the app and in Key Vault, the app's ids on the
    record, the pasted secret retiring; then a rotation to generation 2 that died half-way (its
    secret on the app and in staging, not recorded yet)."""
    now = world.clock.now()
    issued = await world.directory.add_password(
        TENANT, app.object_id, credential_display_name(record.id, 1), now, now + timedelta(days=180)
    )
    ref = await world.vault.set_secret(
        vault_object_name(record.id), issued.secret, content_type="t", tags={}, expires_on=issued.end
    )
    await world.directory.add_password(
        TENANT, app.object_id, credential_display_name(record.id, 2), now, now + timedelta(days=180)
    )
    await world.vault.set_secret(
        staging_name(record.id), SecretValue("s" * 40), content_type="t", tags={}, expires_on=None
    )
    credential = CredentialState(
        type=CredentialType.SECRET,
        generation=1,
        display_name=credential_display_name(record.id, 1),
        key_id=issued.key_id,
        expires_on=issued.end,
        secret_name=vault_object_name(record.id),
        secret_uri=ref.uri,
        secret_version=ref.version,
    )
    pasted = CredentialState(
        type=CredentialType.SECRET,
        generation=0,
        display_name="pasted into the connector",
        key_id="pasted-key",
        retire_after=now + timedelta(days=7),
    )
    pending = PendingCredential(
        CredentialType.SECRET, 2, credential_display_name(record.id, 2), started_at=now
    )
    assert record.adoption is not None
    return await save(
        world,
        record,
        status=RegistrationStatus.ROTATING,
        app_id=record.adoption.app_id,
        app_object_id=record.adoption.app_object_id,
        credential=credential,
        pending_credential=pending,
        retiring_credentials=(pasted,),
    )


def release_events(record: Registration) -> list[tuple[str, str | None]]:
    return [(e.outcome, e.detail) for e in record.history if e.step in ("release", "decommission")]


async def test_release_removes_only_registrars_credentials_its_vault_entries_and_last_its_ownership(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world = World()
    record, app = await owned_adoption(world)
    record = await taken_over(world, record, app)
    later = world.clock.now()  # a secret a person added after the adoption: not the record's
    app.passwords["added-later"] = ("the person's second secret", later, later + timedelta(days=90), "q" * 40)
    world.directory.assignments.add(("app-sp", "graph-sp", "role"))  # its permissions: untouched
    assert record.credential is not None
    own = record.credential.key_id
    values = [value for (_, _, _, value) in app.passwords.values()]  # the person's and Registrar's

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    # Leak scan: no secret value in the stored record (its history included) or any log line.
    captured = json.dumps(world.store.documents[record.id][0]) + caplog.text
    assert len(values) == 4 and not [v for v in values if v in captured]

    assert gone.status is RegistrationStatus.DECOMMISSIONED
    assert app.object_id in world.directory.apps and app.object_id not in world.directory.deleted_apps
    assert set(app.passwords) == {"pasted-key", "added-later"}  # both of the person's secrets stay
    assert app.owners == [PERSON]
    assert ("app-sp", "graph-sp", "role") in world.directory.assignments
    assert vault_object_name(record.id) not in world.vault.secrets
    assert staging_name(record.id) not in world.vault.secrets
    assert gone.credential is None and gone.pending_credential is None and gone.retiring_credentials == ()
    assert gone.adoption is not None and gone.adoption.app_id == app.app_id  # what was adopted stays known
    (started, released, done) = release_events(gone)[-3:]
    assert started == ("started", "requested by admin (oid-1)")
    assert released[0] == "done" and f"removed Registrar's credentials {own}, " in (released[1] or "")
    assert "pasted-key" not in (released[1] or "") and "added-later" not in (released[1] or "")
    assert done == (
        "done",
        f"the adopted app {app.app_id} released: its other credentials and permissions left; "
        "Registrar's ownership removed (a person had added it)",
    )
    calls = world.directory.calls
    assert calls.index("remove_owner") > max(i for i, c in enumerate(calls) if c == "remove_password")

    before = list(world.directory.calls)
    again = await world.lifecycle().decommission(record.id, "admin (oid-1)")  # a no-op
    assert again.status is RegistrationStatus.DECOMMISSIONED and world.directory.calls == before
    assert release_events(again) == release_events(gone)


async def test_an_ownership_registrar_gave_itself_is_said_so_and_an_app_may_be_left_without_owners() -> None:
    world = World()
    record, app = await owned_adoption(world, registrar_added_itself=True)
    app.owners.remove(PERSON)  # the person left: Registrar is the only owner

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    assert gone.status is RegistrationStatus.DECOMMISSIONED and app.owners == []
    assert set(app.passwords) == {"pasted-key"}
    assert gone.history[-1].detail == (
        f"the adopted app {app.app_id} released: its other credentials and permissions left; "
        "Registrar's ownership removed (Registrar had added itself); the app is left without owners"
    )


async def test_an_adoption_waiting_for_ownership_just_ends_and_cannot_be_asked_to_delete_the_app() -> None:
    world = World()
    world.directory.owned_by_only = True
    record, app = await adopted(world)
    with pytest.raises(Conflict, match="waits for ownership"):
        await world.lifecycle().decommission(record.id, "admin (oid-1)", delete_app=True)
    assert (await world.store.get(record.id)).status is RegistrationStatus.PENDING_OWNERSHIP

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    assert gone.status is RegistrationStatus.DECOMMISSIONED and app.owners == [PERSON]
    writes = {"remove_password", "set_key_credentials", "remove_owner", "delete_application", "add_owner"}
    assert not writes & set(world.directory.calls)
    assert "Registrar is not an owner of the app (any more)" in (gone.history[-1].detail or "")


async def test_a_credential_whose_name_looks_like_registrars_but_was_found_at_adoption_stays() -> None:
    world = World()
    record, app = await owned_adoption(world)
    assert record.adoption is not None
    # A person named a secret as Registrar names its pending one, before Registrar owned the app.
    start = world.clock.now()
    app.passwords["lookalike"] = (
        credential_display_name(record.id, 1),
        start,
        start + timedelta(days=9),
        "x" * 40,
    )
    found = (
        *record.adoption.found_credentials,
        replace(record.adoption.found_credentials[0], key_id="lookalike"),
    )
    pending = PendingCredential(
        CredentialType.SECRET, 1, credential_display_name(record.id, 1), started_at=start
    )
    record = await save(
        world, record, adoption=replace(record.adoption, found_credentials=found), pending_credential=pending
    )

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    assert gone.status is RegistrationStatus.DECOMMISSIONED
    assert set(app.passwords) == {"pasted-key", "lookalike"}


async def test_delete_app_deletes_the_adopted_app_and_its_service_principal() -> None:
    world = World()
    record, app = await owned_adoption(world)
    record = await taken_over(world, record, app)
    world.directory.service_principals[app.app_id] = "app-sp"

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)", delete_app=True)

    assert gone.status is RegistrationStatus.DECOMMISSIONED and gone.adoption is not None
    assert gone.adoption.delete_app
    assert app.object_id in world.directory.deleted_apps and app.object_id not in world.directory.apps
    assert app.app_id not in world.directory.service_principals
    assert vault_object_name(record.id) not in world.vault.secrets
    assert staging_name(record.id) not in world.vault.secrets
    assert "deleted as asked (deleteApp=true" in (gone.history[-1].detail or "")
    assert "requested by admin (oid-1) (deleteApp=true)" in [e.detail for e in gone.history]


async def test_delete_app_is_ignored_for_an_app_registrar_made_which_decommission_deletes_anyway() -> None:
    world = World()
    accepted = await world.accept()
    active = await world.provisioner().run(accepted.registration.id)
    assert active.status is RegistrationStatus.ACTIVE and active.app_object_id is not None

    gone = await world.lifecycle().decommission(active.id, "admin (oid-1)", delete_app=True)

    assert gone.status is RegistrationStatus.DECOMMISSIONED
    assert active.app_object_id in world.directory.deleted_apps
    assert "(deleteApp=true)" not in " ".join(e.detail or "" for e in gone.history)


async def test_without_ownership_any_more_the_release_ends_and_leaves_registrars_credentials_reported() -> (
    None
):
    world = World()
    record, app = await owned_adoption(world)
    record = await taken_over(world, record, app)
    app.owners.remove(world.directory.registrar_id)  # a person removed Registrar before the release

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)", delete_app=True)

    assert gone.status is RegistrationStatus.DECOMMISSIONED and app.object_id in world.directory.apps
    assert len(app.passwords) == 3  # Registrar may not touch the app now: nothing was removed
    assert vault_object_name(record.id) not in world.vault.secrets
    details = " ".join(e.detail or "" for e in gone.history)
    assert "left on the app: Registrar is no longer an owner" in details
    assert "deleteApp=true, but Registrar was no longer an owner, so it could not delete it" in details


async def test_failure_cleanup_of_an_adopted_registration_never_deletes_the_app() -> None:
    world = World()
    record, app = await owned_adoption(world)
    record = await taken_over(world, record, app)
    issuer = CredentialIssuer(directory=world.directory, vault=world.vault, clock=world.clock)

    await issuer.remove_everything(record)

    assert app.object_id in world.directory.apps and "delete_application" not in world.directory.calls
    assert set(app.passwords) == {"pasted-key"}
    assert vault_object_name(record.id) not in world.vault.secrets

    # Without ownership any more (a person removed it), the cleanup still ends: the vault entries go.
    world = World()
    record, app = await owned_adoption(world)
    record = await taken_over(world, record, app)
    app.owners.remove(world.directory.registrar_id)
    await CredentialIssuer(directory=world.directory, vault=world.vault, clock=world.clock).remove_everything(
        record
    )
    assert len(app.passwords) == 3 and vault_object_name(record.id) not in world.vault.secrets


async def test_a_certificate_of_registrars_goes_and_the_persons_certificate_stays() -> None:
    world = World()
    record, app = await owned_adoption(world)
    now = world.clock.now()
    own = certificate_key_id(record.id, 1)
    mine = KeyCredentialSpec(
        own, credential_display_name(record.id, 1), b"der", now, now + timedelta(days=90)
    )
    theirs = KeyCredentialSpec("their-cert", "uploaded by hand", b"der2", now, now + timedelta(days=90))
    app.keys = [mine, theirs]
    assert record.adoption is not None
    found = replace(
        record.adoption.found_credentials[0], key_id="their-cert", type=CredentialType.CERTIFICATE
    )
    state = CredentialState(CredentialType.CERTIFICATE, 1, mine.display_name, own, certificate_name=record.id)
    record = await save(
        world,
        record,
        credential=state,
        adoption=replace(record.adoption, found_credentials=(*record.adoption.found_credentials, found)),
    )

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    assert app.keys == [theirs] and set(app.passwords) == {"pasted-key"}
    assert f"removed Registrar's credentials {own};" in " ".join(e.detail or "" for e in gone.history)


@pytest.mark.parametrize("delete_app", [False, True])
async def test_a_decommission_killed_after_any_call_converges(delete_app: bool) -> None:
    for crash_after in range(1, 60):
        world = World()
        record, app = await owned_adoption(world)
        record = await taken_over(world, record, app)
        faults = Faults(crash_after=crash_after)
        try:
            await world.lifecycle(faults=faults).decommission(
                record.id, "admin (oid-1)", delete_app=delete_app
            )
        except Crash:
            world.clock.advance(WORK_LEASE + timedelta(seconds=1))  # the dead process's lease lapses
            if (await world.store.get(record.id)).status is RegistrationStatus.DECOMMISSIONING:
                ended = await world.provisioner().run(record.id)  # the worker finishes it (resume sweep)
            else:
                ended = await world.lifecycle().decommission(
                    record.id, "admin (oid-1)", delete_app=delete_app
                )
            assert ended.status is RegistrationStatus.DECOMMISSIONED, crash_after
            # The history never reports a credential left behind that the dead run removed.
            assert "left on the app" not in " ".join(e.detail or "" for e in ended.history), crash_after
            assert vault_object_name(record.id) not in world.vault.secrets, crash_after
            assert staging_name(record.id) not in world.vault.secrets, crash_after
            if delete_app:
                assert app.object_id in world.directory.deleted_apps, crash_after
            else:
                assert set(app.passwords) == {"pasted-key"}, crash_after
                assert app.owners == [PERSON], crash_after
            continue
        assert not faults.crashed and crash_after > 5, "every call was crashed after once"
        return
    raise AssertionError("the decommission never ran to its end")


async def test_delete_takes_delete_app_as_a_boolean_only_and_answers_per_the_openapi_document(
    svc: FakeServices,
) -> None:
    app = await exact_app(svc.directory)
    body = {"requestId": "ADOPT-R1", "adopt": {"appId": app.app_id}}
    registration = as_json(await api.create_registration(http("POST", "registrations", body)))["id"]
    admin = principal("Registrar.Admin")

    def delete(**params: str) -> Any:
        return api.decommission_registration(
            http("DELETE", "d", route={"id": registration}, headers=admin, params=params)
        )

    for bad in ("yes", "1", "True", ""):
        refused = await delete(deleteApp=bad)
        assert refused.status_code == 400, bad
        conforms(refused, "/registrations/{id}", "DELETE")
        assert as_json(refused)["problems"] == [
            {"field": "deleteApp", "reason": "must be true or false", "suggestion": None}
        ]
    waiting = await delete(deleteApp="true")  # pending_ownership: Registrar owns nothing to delete
    assert waiting.status_code == 409
    conforms(waiting, "/registrations/{id}", "DELETE")
    assert (await svc.store.get(registration)).status is RegistrationStatus.PENDING_OWNERSHIP

    released = await delete(deleteApp="false")
    assert released.status_code == 200 and as_json(released)["status"] == "decommissioned"
    conforms(released, "/registrations/{id}", "DELETE")
    assert app.object_id in svc.directory.apps


async def test_registrars_federated_credentials_go_and_the_persons_stay() -> None:
    """A `custom` profile's federated credential (generation 1, recorded) and a rotation's second
    one written ahead but not recorded yet are Registrar's: the release deletes both by id, before
    it gives up the ownership; the person's federated credential stays."""
    from functions.core.ports import FederatedCredentialSpec

    world = World()
    record, app = await owned_adoption(world)

    def spec(name: str) -> FederatedCredentialSpec:
        return FederatedCredentialSpec(name, "https://token.actions.githubusercontent.com", f"repo:{name}", ("api://AzureADTokenExchange",))  # fmt: skip

    theirs = await world.directory.add_federated_credential(TENANT, app.object_id, spec("the-person-s"))
    first_name, second_name = credential_display_name(record.id, 1), credential_display_name(record.id, 2)
    first = await world.directory.add_federated_credential(TENANT, app.object_id, spec(first_name))
    await world.directory.add_federated_credential(TENANT, app.object_id, spec(second_name))
    now = world.clock.now()
    await save(
        world,
        record,
        app_id=app.app_id,
        app_object_id=app.object_id,
        credential=CredentialState(CredentialType.FEDERATED, 1, first_name, first, start=now),
        pending_credential=PendingCredential(CredentialType.FEDERATED, 2, second_name, now),
    )

    gone = await world.lifecycle().decommission(record.id, "admin (oid-1)")

    assert gone.status is RegistrationStatus.DECOMMISSIONED
    assert [i for i, _ in app.federated.values()] == [theirs]
    assert set(app.passwords) == {"pasted-key"} and app.owners == [PERSON]
    calls = world.directory.calls
    assert calls.count("remove_federated_credential") == 2
    assert calls.index("remove_owner") > max(
        i for i, c in enumerate(calls) if c == "remove_federated_credential"
    )
    (_, released, _) = release_events(gone)[-3:]
    assert first in (released[1] or "") and theirs not in (released[1] or "")
