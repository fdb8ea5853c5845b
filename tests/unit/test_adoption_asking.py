"""Asking to adopt (issue 15 §2): `"adopt": {"appId": ...}` checked against the tenant before anything
is made, every problem listed, with 400 / 409 / 422 as the gravest problem deserves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from functions.core.adoption.asking import ValidatedAdoption, is_adoption, validate_adoption
from functions.core.catalogue.policy import Policy
from functions.core.inventory.scanner import profile_sets
from functions.core.ports import ApplicationSpec, RequiredResourceAccess
from functions.core.record.errors import ValidationFailed
from functions.core.record.models import PermissionKind, Problem
from functions.profiles import load_catalogue
from tests.unit.fakes import FakeDirectory, FakeRegistrationStore
from tests.unit.provisioning_world import TENANT, World

HOME = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ELSEWHERE = "0b0b0b0b-1111-4222-8333-444444444444"  # a tenant Registrar has no identity in
POLICY = Policy(allowed_tenants=frozenset({HOME, TENANT}))
READS = {
    "application_by_app_id",
    "resource_catalog",
    "registrar_principal_id",
    "application_owner_ids",
}  # everything else on the Directory is a write


def required_for(directory: FakeDirectory, profile: str) -> tuple[RequiredResourceAccess, ...]:
    """A profile's unconditional permissions as the requiredResourceAccess of a hand-made app."""
    sets = asyncio.run(profile_sets(directory, load_catalogue(), HOME))
    by_resource: dict[str, tuple[list[str], list[str]]] = {}
    for resource, kind, permission_id in sets.profiles[profile]:
        roles, scopes = by_resource.setdefault(resource, ([], []))
        (roles if kind == PermissionKind.APPLICATION else scopes).append(permission_id)
    return tuple(RequiredResourceAccess(r, tuple(a), tuple(s)) for r, (a, s) in sorted(by_resource.items()))


def adopt(
    directory: FakeDirectory, body: dict[str, Any], store: FakeRegistrationStore | None = None
) -> ValidatedAdoption:
    return asyncio.run(
        validate_adoption(
            body,
            directory=directory,
            store=store or FakeRegistrationStore(),
            home_tenant_id=HOME,
            catalogue=load_catalogue(),
            policy=POLICY,
        )
    )


def refused(
    directory: FakeDirectory, body: dict[str, Any], store: FakeRegistrationStore | None = None
) -> tuple[int, dict[str, Problem]]:
    with pytest.raises(ValidationFailed) as failure:
        adopt(directory, body, store)
    return failure.value.status, {p.field: p for p in failure.value.problems}


def writes(directory: FakeDirectory) -> list[str]:
    return [call for call in directory.calls if call not in READS]


def test_an_exact_match_stands_in_for_the_profile() -> None:
    directory = FakeDirectory(HOME)
    app = directory.add_hand_made_app("CodeTwo", required_for(directory, "codetwo-backup-sharepoint"))
    adoption = adopt(directory, {"requestId": "ADOPT-1", "adopt": {"appId": app.app_id.upper()}})
    request = adoption.validated.request
    assert adoption.profile_inferred and request.profile_id == "codetwo-backup-sharepoint"
    assert adoption.app.object_id == app.object_id and adoption.app.unique_name is None
    assert request.adopt == {"appId": app.app_id, "retireExisting": "after-overlap", "reconcile": "report"}
    assert writes(directory) == []
    # The same requestId adopting with other options is another request (a 409 at acceptance).
    other = adopt(directory, {"requestId": "ADOPT-1", "adopt": {"appId": app.app_id},
                              "options": {"retireExisting": "never"}})  # fmt: skip
    assert other.validated.request.registration_id == request.registration_id
    assert other.validated.request.fingerprint() != request.fingerprint()
    again = adopt(directory, {"adopt": {"appId": app.app_id}, "requestId": "ADOPT-1"})
    assert again.validated.request.fingerprint() == request.fingerprint()


def test_a_named_profile_takes_its_own_options_beside_the_adoptions() -> None:
    directory = FakeDirectory(HOME)
    app = directory.add_hand_made_app("hand-made", ())  # no permissions at all: drift, not a refusal
    body = {"requestId": "ADOPT-2", "profile": "codetwo-migration-target", "adopt": {"appId": app.app_id},
            "options": {"createMailboxes": True, "retireExisting": "now", "reconcile": "add-missing"}}  # fmt: skip
    adoption = adopt(directory, body)
    assert not adoption.profile_inferred
    assert adoption.options.retire_existing == "now" and adoption.options.reconcile == "add-missing"
    assert adoption.validated.request.options == {"createMailboxes": True}
    assert adoption.validated.requires_approval  # Directory.ReadWrite.All: tier-0, as provisioning
    assert is_adoption(body) and not is_adoption({"requestId": "x"})


def test_every_malformed_field_is_listed_at_once_as_400() -> None:
    directory = FakeDirectory(HOME)
    status, problems = refused(directory, {
        "requestId": "ADOPT-3", "profile": "codetwo-backup-sharepoint",
        "adopt": {"appId": "not-a-guid", "objectId": "x"},
        "options": {"retireExisting": "afterOverlap", "reconcile": 3, "colour": "red"},
    })  # fmt: skip
    assert status == 400
    assert problems["adopt.appId"].reason == "expected an application (client) id (GUID)"
    assert problems["adopt.objectId"].reason == "unknown field"
    assert "after-overlap" in (problems["options.retireExisting"].suggestion or "")
    assert problems["options.reconcile"].reason == "a number is not allowed"
    assert problems["options.colour"].reason == "unknown field"  # intake's check of the profile's options
    assert directory.calls == []  # nothing looked up for a body that cannot be right
    status, problems = refused(directory, {"requestId": "ADOPT-3", "adopt": "0000"})
    assert status == 400 and "expected an object" in problems["adopt"].reason


def test_an_app_the_tenant_does_not_have_is_422() -> None:
    directory = FakeDirectory(HOME)
    missing = "11111111-2222-4333-8444-555555555555"
    status, problems = refused(directory, {"requestId": "A-4", "profile": "codetwo-backup-sharepoint",
                                           "adopt": {"appId": missing}})  # fmt: skip
    assert status == 422 and missing in problems["adopt.appId"].reason
    status, problems = refused(directory, {"requestId": "A-4", "adopt": {"appId": missing}})
    assert status == 422 and set(problems) == {"adopt.appId", "profile"}
    status, problems = refused(directory, {"requestId": "A-4", "tenantId": ELSEWHERE,
                                           "profile": "codetwo-backup-sharepoint", "adopt": {"appId": missing}})  # fmt: skip
    assert status == 422 and set(problems) == {"tenantId"}
    # Without a profile either: both problems depend on state (the fuzz test's positive data).
    status, problems = refused(
        directory, {"requestId": "A-4", "tenantId": ELSEWHERE, "adopt": {"appId": missing}}
    )
    assert status == 422 and set(problems) == {"tenantId", "profile"}
    assert writes(directory) == []


def test_an_app_registrar_made_is_409_naming_its_registration() -> None:
    world = World()
    accepted = asyncio.run(world.accept())
    made = asyncio.run(world.provisioner().run(accepted.registration.id))
    assert made.app_id is not None
    status, problems = refused(world.directory, {"requestId": "A-5", "profile": "codetwo-backup-sharepoint", "tenantId": TENANT,
                                                 "adopt": {"appId": made.app_id}}, world.store)  # fmt: skip
    assert status == 409
    assert f"already manages this app as registration {made.id} (active)" in problems["adopt.appId"].reason
    # Its record gone (or another tenant's): still Registrar's app, still 409.
    status, problems = refused(world.directory, {"requestId": "A-5", "profile": "codetwo-backup-sharepoint", "tenantId": TENANT,
                                                 "adopt": {"appId": made.app_id}}, FakeRegistrationStore())  # fmt: skip
    assert status == 409 and "its registration is gone" in problems["adopt.appId"].reason


def test_no_profile_and_no_exact_match_is_422_naming_the_closest() -> None:
    directory = FakeDirectory(HOME)
    wanted = required_for(directory, "codetwo-backup-sharepoint")
    graph = next(r for r in wanted if r.app_role_ids and len(r.app_role_ids) > 1)
    fewer = tuple(r if r is not graph else RequiredResourceAccess(r.resource_app_id, r.app_role_ids[1:])
                  for r in wanted)  # fmt: skip
    app = directory.add_hand_made_app("almost CodeTwo", fewer)
    status, problems = refused(directory, {"requestId": "A-6", "adopt": {"appId": app.app_id},
                                           "options": {"reconcile": "exact"}})  # fmt: skip
    assert status == 422 and set(problems) == {"profile"}
    assert "match no profile exactly" in problems["profile"].reason
    suggestion = problems["profile"].suggestion or ""
    assert suggestion.startswith(
        "name the profile to adopt it as; closest: codetwo-backup-sharepoint (missing "
    )
    assert writes(directory) == []


def test_profiles_with_the_same_permissions_are_not_guessed_between() -> None:
    directory = FakeDirectory(HOME)
    sets = asyncio.run(profile_sets(directory, load_catalogue(), HOME))
    twins = sorted(
        p for p in sets.profiles if sum(sets.profiles[q] == sets.profiles[p] for q in sets.profiles) > 1
    )
    if not twins:
        pytest.fail("the catalogue has no two profiles with the same permissions: pick another case")
    app = directory.add_hand_made_app("twin", required_for(directory, twins[0]))
    status, problems = refused(directory, {"requestId": "A-7", "adopt": {"appId": app.app_id}})
    assert status == 422 and twins[0] in problems["profile"].reason


def test_a_registrar_app_spec_keeps_its_unique_name_in_the_fake() -> None:
    """The fake answers like Graph: an app made by PATCH uniqueName shows it; a hand-made one has none."""
    directory = FakeDirectory(HOME)
    ref = asyncio.run(directory.upsert_application(HOME, ApplicationSpec("registrar-reg-x", "x")))
    found = asyncio.run(directory.application_by_app_id(HOME, ref.app_id))
    assert found is not None and found.unique_name == "registrar-reg-x"
    assert asyncio.run(directory.application_by_app_id(HOME, "11111111-2222-4333-8444-555555555555")) is None


def test_without_a_profile_only_the_adoptions_options_are_taken() -> None:
    """As the OpenAPI document's adoption variant without a profile says: no credential, no
    permissions, no profile options (they would be checked against a profile nobody chose)."""
    directory = FakeDirectory(HOME)
    app = directory.add_hand_made_app("CodeTwo", required_for(directory, "codetwo-backup-sharepoint"))
    status, problems = refused(directory, {"requestId": "A-8", "adopt": {"appId": app.app_id},
                                           "credential": {"type": "certificate"}, "permissions": [],
                                           "options": {"reconcile": "exact", "createMailboxes": True}})  # fmt: skip
    assert status == 400 and set(problems) == {"credential", "permissions", "options.createMailboxes"}
    status, problems = refused(directory, {"requestId": "A-8", "adopt": {"appId": app.app_id}, "options": []})
    assert status == 400 and problems["options"].reason == "expected an object, got an array"
