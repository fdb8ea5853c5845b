"""Request parsing and validation: defaults, every problem reported at once, resolution through the
Directory port against the real catalogues, approval reasons."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from functions.core.catalogue.policy import Policy
from functions.core.intake.requests import (
    MAX_BODY_BYTES,
    ValidatedRequest,
    parse_json_body,
    parse_registration_request,
    validate_request,
)
from functions.core.record.errors import ValidationFailed
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    WEBHOOK_EVENTS,
    CredentialType,
    PermissionKind,
    Problem,
)
from functions.profiles import load_catalogue
from functions.profiles.views import validated_document
from tests.unit.resource_catalogs import CatalogDirectory

HOME = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "0b0b0b0b-1111-4222-8333-444444444444"
POLICY = Policy(allowed_tenants=frozenset({HOME, OTHER}))


def parse(body: Any, policy: Policy = POLICY) -> Any:
    return parse_registration_request(body, home_tenant_id=HOME, catalogue=load_catalogue(), policy=policy)


def validate(body: Any, policy: Policy = POLICY) -> ValidatedRequest:
    return asyncio.run(
        validate_request(
            body, directory=CatalogDirectory(), home_tenant_id=HOME, catalogue=load_catalogue(), policy=policy
        )
    )


def problems_of(call: Any, *args: Any) -> tuple[int, dict[str, Problem]]:
    with pytest.raises(ValidationFailed) as failure:
        call(*args)
    return failure.value.status, {p.field: p for p in failure.value.problems}


def test_minimal_request_takes_the_defaults() -> None:
    request = parse({"requestId": "INC0012345", "profile": "codetwo-backup-sharepoint"})
    assert request.tenant_id == HOME
    assert request.display_name == "CodeTwo Backup for SharePoint Online (INC0012345)"
    assert request.credential.type is CredentialType.CERTIFICATE
    assert request.credential.lifetime is None
    assert request.options == {} and request.webhooks == () and request.owners == ()
    again = parse({"profile": "codetwo-backup-sharepoint", "requestId": "INC0012345"})
    assert again.fingerprint() == request.fingerprint()
    assert again.registration_id == request.registration_id


def test_full_request_is_parsed_and_normalised() -> None:
    request = parse(
        {
            "requestId": "JIRA-42",
            "profile": "openfn-msgraph",
            "displayName": "  OpenFn for HR  ",
            "tenantId": OTHER.upper(),
            "options": {
                "scopes": ["Mail.Read", "offline_access", "Mail.Read"],
                "signInAudience": "AzureADMultipleOrgs",
                "redirectUris": {"web": ["https://openfn.example.org/authenticate/callback"]},
            },
            "credential": {"type": "secret", "lifetime": "P90D"},
            "owners": ["AAAAAAAA-0000-4000-8000-000000000001"],
            "requestedBy": "jira@example.com",
            "webhooks": [{"url": "https://hooks.example.com/r", "events": ["credential.rotated"]}],
            "notes": "HR integration",
        }
    )
    assert request.tenant_id == OTHER
    assert request.display_name == "OpenFn for HR"
    assert request.options["scopes"] == ["Mail.Read", "offline_access"]
    assert request.credential.lifetime == timedelta(days=90)
    assert request.owners == ("aaaaaaaa-0000-4000-8000-000000000001",)
    assert request.webhooks[0].events == ("credential.rotated",)
    assert request.notes == "HR integration"


def test_every_problem_is_reported_together() -> None:
    body = {
        "requestId": "INC 1/2",
        "profile": "codetwo-migration-target",
        "displayName": "x" * 121,
        "tenantId": "not-a-guid",
        "options": {
            "createMailboxes": "yes",
            "colour": "blue",
            "redirectUris": {"web": ["http://example.com/cb"]},
        },
        "credential": {
            "type": "secret",
            "lifetime": "90 days",
            "issuer": "https://token.actions.githubusercontent.com",
        },
        "owners": ["bob"],
        "requestedBy": 7,
        "webhooks": [
            {"url": "http://hooks.example.com/x", "events": ["credential.rotatd"]},
            {"url": "https://hooks.example.com/y", "secret": "s"},
        ],
        "permissions": [{"resource": "Microsoft Graph", "type": "application", "name": "User.Read.All"}],
        "extra": True,
    }
    status, problems = problems_of(parse, body)
    assert status == 400
    assert set(problems) == {
        "requestId",
        "displayName",
        "tenantId",
        "options.createMailboxes",
        "options.colour",
        "options.redirectUris.web[0]",
        "credential.lifetime",
        "credential.issuer",
        "owners[0]",
        "requestedBy",
        "webhooks[0].url",
        "webhooks[0].events[0]",
        "webhooks[1].secret",
        "permissions",
        "extra",
    }
    assert problems["credential.lifetime"].reason.startswith("expected an ISO 8601 duration like P90D")
    assert problems["options.createMailboxes"].reason == "expected a boolean (true or false), got a string"
    assert problems["requestedBy"].reason == "expected a string, got a number"
    assert str(problems["webhooks[0].events[0]"].suggestion).startswith("did you mean credential.rotated")
    assert problems["options.colour"].suggestion == "allowed: createMailboxes, redirectUris"
    assert str(problems["extra"].suggestion).startswith("allowed: requestId, profile, displayName")
    assert problems["extra"].suggestion is not None and "requestId" in problems["extra"].suggestion
    assert "https" in problems["options.redirectUris.web[0]"].reason


def test_missing_required_fields_and_wrong_body_types() -> None:
    _, problems = problems_of(parse, {})
    assert set(problems) == {"requestId", "profile"}
    assert problems["requestId"].reason == "required"
    for body in ([], "text", 3, None):
        _, problems = problems_of(parse, body)
        assert list(problems) == [""]
        assert problems[""].reason.startswith("the body must be a JSON object")


def test_misspelt_fields_get_the_closest_name_and_the_allowed_list() -> None:
    _, problems = problems_of(parse, {"requestID": "A1", "profile": "cloudiway-gal-sync"})
    assert set(problems) == {"requestID", "requestId"}
    assert str(problems["requestID"].suggestion).startswith(
        "did you mean requestId? allowed: requestId, profile"
    )


def test_hostile_bodies_get_bounded_answers() -> None:
    body = {f"k{i}": i for i in range(500)} | {"x" * 5000: 1}
    status, problems = problems_of(parse, body)
    assert status == 400 and len(problems) == 50
    assert problems[""].reason == "454 more problems not shown"
    assert all(len(field) <= 64 for field in problems)


def test_no_home_tenant_configured_needs_a_tenant_id() -> None:
    body = {"requestId": "A1", "profile": "cloudiway-gal-sync"}
    with pytest.raises(ValidationFailed) as failure:
        parse_registration_request(body, home_tenant_id="", catalogue=load_catalogue(), policy=Policy())
    assert [(p.field, p.reason) for p in failure.value.problems] == [
        ("tenantId", "required: Registrar has no home tenant configured")
    ]
    request = parse_registration_request(
        {**body, "tenantId": OTHER}, home_tenant_id="", catalogue=load_catalogue(), policy=Policy()
    )
    assert request.tenant_id == OTHER


def test_unknown_profile_suggests_the_closest_ids() -> None:
    _, problems = problems_of(parse, {"requestId": "A1", "profile": "codetwo-migraton-target"})
    assert problems["profile"].suggestion is not None
    assert problems["profile"].suggestion.startswith("did you mean codetwo-migration-target")


def test_raw_bodies_size_and_json() -> None:
    assert parse_json_body(b'{"a": 1}') == {"a": 1}
    for raw, status, reason in [
        (b"{" + b" " * MAX_BODY_BYTES + b"}", 413, "body larger than 65536 bytes"),
        (b"requestId=1", 400, "body is not JSON"),
        (b"\xff\xfe{}", 400, "body is not UTF-8"),
    ]:
        with pytest.raises(ValidationFailed) as failure:
            parse_json_body(raw)
        assert failure.value.status == status
        assert failure.value.problems[0].reason.startswith(reason)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, "body nests deeper than 32 levels"),  # RecursionError in the decoder
        (b'{"a":' * 40 + b"1" + b"}" * 40, "body nests deeper than 32 levels"),  # decodes, still refused
        (b'{"requestId": "A1", "n": ' + b"9" * 4301 + b"}", "body holds a number too large to read"),
        ('{"n": -' + "1" * 5000 + "}", "body holds a number too large to read"),
    ],
    ids=["recursion", "depth", "int-4301-digits", "negative-int"],
)
def test_bodies_the_decoder_chokes_on_are_400_not_a_crash(raw: bytes | str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_json_body(raw)
    assert failure.value.status == 400
    assert [p.reason for p in failure.value.problems] == [reason]


def test_a_key_given_twice_is_refused_naming_it_wherever_it_is() -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_json_body(b'{"requestId": "A1", "requestId": "B2", "profile": "custom"}')
    (problem,) = failure.value.problems
    assert failure.value.status == 400 and problem.field == "requestId" and "more than once" in problem.reason
    text = (
        '{"requestId": "A1", "profile": "p", "profile": "q", "credential": {"type": "secret", "type": "x"},'
        ' "webhooks": [{"url": "https://a.example.com"}, {"url": "https://b", "url": "https://c"}],'
        ' "options": {"o": {"k": 1, "k": 2, "k": 3}, "o": {}}}'
    )
    with pytest.raises(ValidationFailed) as failure:
        parse_json_body(text)
    assert [p.field for p in failure.value.problems] == [
        "profile",
        "credential.type",
        "webhooks[1].url",
        "options.o",
    ]  # fmt: skip  (options.o.k's object was dropped by the second "o": it is not in the body)
    # The same key in different objects is fine.
    assert parse_json_body('{"a": {"id": 1}, "b": {"id": 2}}') == {"a": {"id": 1}, "b": {"id": 2}}


def test_a_tenant_without_registrar_identity_is_422() -> None:
    stranger = "99999999-9999-4999-8999-999999999999"
    status, problems = problems_of(
        parse, {"requestId": "A1", "profile": "cloudiway-gal-sync", "tenantId": stranger}
    )
    assert status == 422
    assert list(problems) == ["tenantId"]
    status, problems = problems_of(
        parse, {"requestId": "A 1", "profile": "cloudiway-gal-sync", "tenantId": stranger}
    )
    assert status == 400 and set(problems) == {"requestId", "tenantId"}


def test_credential_rules() -> None:
    base = {"requestId": "A1", "profile": "codetwo-backup-sharepoint"}
    _, problems = problems_of(parse, {**base, "credential": {"type": "secret"}})
    assert problems["credential.type"].suggestion == "allowed: certificate"
    _, problems = problems_of(parse, {**base, "credential": {"lifetime": "P3Y"}})
    assert problems["credential.lifetime"].reason == "longer than the maximum P730D (policy)"
    assert parse({**base, "credential": {"lifetime": 86400}}).credential.lifetime == timedelta(days=1)
    assert parse({**base, "credential": {"lifetime": "PT5M"}}).credential.lifetime == timedelta(minutes=5)
    _, problems = problems_of(parse, {**base, "credential": {"lifetime": 0}})
    assert problems["credential.lifetime"].reason == "shorter than the minimum PT1M"
    _, problems = problems_of(parse, {**base, "credential": {"lifetime": True}})
    assert problems["credential.lifetime"].reason.endswith("got a boolean")
    _, problems = problems_of(parse, {**base, "credential": "certificate"})
    assert problems["credential"].reason == "expected an object, got a string"


def test_an_unknown_credential_type_does_not_hide_the_other_credential_problems() -> None:
    base = {"requestId": "A1", "profile": "codetwo-migration-source"}
    _, problems = problems_of(parse, {**base, "credential": {"type": "pasword", "lifetime": "P5000D"}})
    assert set(problems) == {"credential.type", "credential.lifetime"}
    assert problems["credential.lifetime"].reason == "longer than the maximum P730D (policy)"
    _, problems = problems_of(
        parse,
        {**base, "credential": {"type": "federatd", "lifetime": "soon", "issuer": "http://i", "subject": 7}},
    )
    assert set(problems) == {
        "credential.type",
        "credential.lifetime",
        "credential.issuer",
        "credential.subject",
    }
    assert problems["credential.issuer"].reason == "the issuer must be an https URL"
    _, problems = problems_of(parse, {**base, "credential": {"type": 5, "lifetime": 0}})
    assert set(problems) == {"credential.type", "credential.lifetime"}
    assert problems["credential.lifetime"].reason == "shorter than the minimum PT1M"


def test_federated_credentials_need_an_https_issuer_and_a_subject() -> None:
    base = {"requestId": "A1", "profile": "custom", "permissions": [{"resource": "Microsoft Graph", "type": "application", "name": "User.Read.All"}]}  # fmt: skip
    _, problems = problems_of(parse, {**base, "credential": {"type": "federated", "issuer": "http://issuer"}})
    assert set(problems) == {"credential.issuer", "credential.subject"}
    request = parse(
        {
            **base,
            "credential": {
                "type": "federated",
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": "repo:contoso/app:environment:prod",
            },
        }
    )
    assert request.credential.type is CredentialType.FEDERATED
    assert request.credential.audiences == ("api://AzureADTokenExchange",)


def test_webhooks_http_only_in_local_development() -> None:
    body = {
        "requestId": "A1",
        "profile": "cloudiway-gal-sync",
        "webhooks": [{"url": "http://127.0.0.1:8123/hook"}],
    }
    _, problems = problems_of(parse, body)
    assert "https" in problems["webhooks[0].url"].reason
    local = Policy(allowed_tenants=POLICY.allowed_tenants, allow_insecure_webhooks=True)
    request = parse(body, local)
    assert request.webhooks[0].url == "http://127.0.0.1:8123/hook"
    assert request.webhooks[0].events == WEBHOOK_EVENTS


def test_openfn_scopes_are_checked_against_the_seed_list() -> None:
    body = {
        "requestId": "A1",
        "profile": "openfn-msgraph",
        "options": {"scopes": ["Groups.Read.All", "Sites.Read.All"]},
    }
    _, problems = problems_of(parse, body)
    assert str(problems["options.scopes[0]"].suggestion).startswith("did you mean Group.Read.All")
    assert problems["options.scopes[1]"].reason == "'Sites.Read.All' is not among the allowed values"
    _, problems = problems_of(parse, {**body, "options": {"scopes": []}})
    assert problems["options.scopes"].reason == "choose at least 1"
    _, problems = problems_of(
        parse, {**body, "options": {"signInAudience": "AzureADandPersonalMicrosoftAccount"}}
    )
    assert "options.signInAudience" in problems


def test_permissions_belong_to_the_custom_profile_only() -> None:
    _, problems = problems_of(parse, {"requestId": "A1", "profile": "custom"})
    assert problems["permissions"].reason.startswith("profile 'custom' needs")
    _, problems = problems_of(
        parse,
        {
            "requestId": "A1",
            "profile": "custom",
            "permissions": [{"resource": "Microsoft Graph", "type": "role", "name": "X"}],
        },
    )
    assert problems["permissions[0].type"].suggestion == "application or delegated"


def test_validated_codetwo_target_with_and_without_mailboxes() -> None:
    plain = validate({"requestId": "A1", "profile": "codetwo-migration-target"})
    assert not plain.requires_approval
    assert {(p.resource_app_id, p.name) for p in plain.permissions} == {
        (EXCHANGE_ONLINE_APP_ID, "full_access_as_app"),
        (GRAPH_APP_ID, "Directory.Read.All"),
        (GRAPH_APP_ID, "MailboxSettings.ReadWrite"),
        (GRAPH_APP_ID, "User.Read.All"),
    }
    assert plain.credential_lifetime == timedelta(days=365)  # certificate is the default type
    assert {s.id for s in plain.manual_steps} == {"exchange-mailbox-scope", "import-certificate"}
    assert plain.service_principals[EXCHANGE_ONLINE_APP_ID] == "sp-office-365-exchange-online"
    full = validate(
        {
            "requestId": "A2",
            "profile": "codetwo-migration-target",
            "options": {"createMailboxes": True},
            "credential": {"type": "secret"},
        }
    )
    assert len(full.permissions) == 7
    assert full.requires_approval_reasons == (
        "Directory.ReadWrite.All (application) on Microsoft Graph is a tier-0 permission",
    )
    assert {s.id for s in full.manual_steps} == {"exchange-mailbox-scope", "enter-in-codetwo"}


def test_validated_cloudelements_reports_mappings_and_needs_approval() -> None:
    validated = validate({"requestId": "CE-1", "profile": "cloudelements-office365"})
    assert len(validated.permissions) == 9
    assert len(validated.requires_approval_reasons) == 4  # 3 application + delegated Directory.ReadWrite.All
    doc = json.loads(json.dumps(validated_document(validated)))
    assert len(doc["mappings"]) == 8 and doc["requiresApproval"] is True
    assert any("truncated" in n for n in doc["notes"])


def test_validated_m365_mixes_delegated_and_application() -> None:
    validated = validate({"requestId": "M-1", "profile": "m365-usage-connector"})
    kinds = {(p.kind, p.name) for p in validated.permissions}
    assert (PermissionKind.DELEGATED, "offline_access") in kinds
    assert (PermissionKind.APPLICATION, "Reports.Read.All") in kinds
    assert validated.redirect_uris.web == ("http://localhost",)
    assert validated.sign_in_audience == "AzureADMyOrg"


def test_custom_typos_are_reported_with_the_other_problems() -> None:
    body = {
        "requestId": "C-1",
        "profile": "custom",
        "owners": ["nope"],
        "permissions": [
            {"resource": "Microsoft Graph", "type": "application", "name": "Groups.Read.All"},
            {
                "resource": "Windows Azure Active Directory",
                "type": "application",
                "name": "Directory. Read.All",
            },
            {
                "resource": "00000003-0000-0ff1-ce00-000000000000",
                "type": "application",
                "name": "Sites.ReadAll",
            },
        ],
    }
    _, problems = problems_of(validate, body)
    assert set(problems) == {"owners[0]", "permissions[0].name", "permissions[1].name", "permissions[2].name"}
    assert problems["permissions[0].name"].suggestion is not None
    assert problems["permissions[0].name"].suggestion.startswith("did you mean Group.Read.All")
    assert problems["permissions[1].name"].suggestion == "did you mean Directory.Read.All?"
    assert problems["permissions[2].name"].suggestion == "did you mean Sites.Read.All?"


def test_custom_azure_ad_graph_request_is_mapped_with_a_note() -> None:
    validated = validate(
        {
            "requestId": "C-2",
            "profile": "custom",
            "permissions": [
                {"resource": "Azure Active Directory Graph", "type": "delegated", "name": "User.Read"}
            ],
        }
    )
    [permission] = validated.permissions
    assert permission.resource_app_id == GRAPH_APP_ID and permission.kind is PermissionKind.DELEGATED
    assert "mapped to Microsoft Graph" in validated.notes[0]


def test_custom_tier0_needs_approval() -> None:
    validated = validate(
        {
            "requestId": "C-3",
            "profile": "custom",
            "permissions": [
                {"resource": GRAPH_APP_ID, "type": "application", "name": "AppRoleAssignment.ReadWrite.All"}
            ],
        }
    )
    assert validated.requires_approval_reasons == (
        "AppRoleAssignment.ReadWrite.All (application) on Microsoft Graph is a tier-0 permission",
    )
