"""Policy decisions: tier-0 approval, lifetimes and end dates, URLs, tenants, callers' app roles."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.core.catalogue.permissions import resolve
from functions.core.catalogue.policy import (
    DEFAULT_TIER0_PERMISSIONS,
    ROLE_ADMIN,
    ROLE_APPROVER,
    Policy,
    authorize,
    credential_end,
    parse_client_principal,
    policy_from_settings,
    require_role,
)
from functions.core.catalogue.profiles import Profile
from functions.core.record.durations import format_duration, parse_duration
from functions.core.record.errors import Forbidden
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    CredentialType,
    PermissionKind,
    PermissionRef,
)
from functions.profiles import load_catalogue
from tests.unit.resource_catalogs import real_catalogs

APP = PermissionKind.APPLICATION
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def profile(pid: str) -> Profile:
    found = load_catalogue().get(pid)
    assert found is not None
    return found


def resolved(*refs: tuple[str, PermissionKind, str]) -> list:
    return resolve([PermissionRef(*r) for r in refs], list(real_catalogs().values()))


def test_tier0_permissions_need_approval_and_others_do_not() -> None:
    policy = Policy()
    permissions = resolved(
        (GRAPH_APP_ID, APP, "Directory.ReadWrite.All"),
        (GRAPH_APP_ID, APP, "Policy.ReadWrite.ConditionalAccess"),  # by the Policy.ReadWrite.* pattern
        (GRAPH_APP_ID, APP, "RoleManagement.ReadWrite.Directory"),
        (GRAPH_APP_ID, APP, "User.Read.All"),
        (EXCHANGE_ONLINE_APP_ID, APP, "Organization.ReadWrite.All"),  # same name, not Microsoft Graph
        (GRAPH_APP_ID, PermissionKind.DELEGATED, "Directory.ReadWrite.All"),
    )
    reasons = policy.requires_approval(permissions)
    assert reasons == [
        "Directory.ReadWrite.All (application) on Microsoft Graph is a tier-0 permission",
        "Directory.ReadWrite.All (delegated) on Microsoft Graph is a tier-0 permission",
        "Policy.ReadWrite.ConditionalAccess (application) on Microsoft Graph is a tier-0 permission",
        "RoleManagement.ReadWrite.Directory (application) on Microsoft Graph is a tier-0 permission",
    ]
    assert policy.requires_approval(resolved((GRAPH_APP_ID, APP, "User.Read.All"))) == []


def test_tier0_matching_is_case_insensitive_and_configurable() -> None:
    policy = Policy(tier0_permissions=("mail.*",))
    assert policy.is_tier0("Mail.Send")
    assert not policy.is_tier0("Directory.ReadWrite.All")
    assert Policy().is_tier0("application.readwrite.all")
    assert Policy().is_tier0("PrivilegedAccess.ReadWrite.AzureADGroup")


def test_every_default_tier0_pattern_names_real_graph_permissions() -> None:
    graph = real_catalogs()[GRAPH_APP_ID]
    names = [*graph.app_roles, *graph.scopes]
    for pattern in DEFAULT_TIER0_PERMISSIONS:
        policy = Policy(tier0_permissions=(pattern,))
        assert any(policy.is_tier0(name) for name in names), pattern


def test_custom_sets_need_approval_only_when_the_policy_says_so() -> None:
    harmless = resolved((GRAPH_APP_ID, APP, "User.Read.All"))
    assert Policy().requires_approval(harmless, custom=True) == []
    assert Policy(custom_requires_approval=True).requires_approval(harmless, custom=True) == [
        "custom permission sets need approval (policy)"
    ]


def test_seed_profiles_that_need_approval_under_the_default_policy() -> None:
    policy = Policy()
    catalogs = list(real_catalogs().values())
    needing = set()
    for p in load_catalogue():
        if policy.requires_approval(resolve(p.permission_refs({}), catalogs)):
            needing.add(p.id)
    assert needing == {"cloudelements-office365"}
    target = profile("codetwo-migration-target")
    with_mailboxes = resolve(target.permission_refs({"createMailboxes": True}), catalogs)
    assert policy.requires_approval(with_mailboxes) == [
        "Directory.ReadWrite.All (application) on Microsoft Graph is a tier-0 permission"
    ]


def test_policy_from_settings_reads_the_sample_settings() -> None:
    sample = Path(__file__).resolve().parents[2] / "local.settings.sample.json"
    values = json.loads(sample.read_text(encoding="utf-8"))["Values"]
    policy = policy_from_settings(values, allowed_tenants=["AAAAAAAA-0000-4000-8000-000000000001"])
    assert policy.tier0_permissions == DEFAULT_TIER0_PERMISSIONS
    assert policy.default_credential_lifetime == timedelta(days=180)
    assert policy.max_credential_lifetime == timedelta(days=730)
    assert policy.allow_insecure_webhooks is True
    assert policy.tenant_allowed("aaaaaaaa-0000-4000-8000-000000000001")
    assert not policy.tenant_allowed("bbbbbbbb-0000-4000-8000-000000000001")
    custom = policy_from_settings({"REGISTRAR_TIER0_PERMISSIONS": " Mail.Send , Files.* "})
    assert custom.tier0_permissions == ("Mail.Send", "Files.*")
    assert custom.allowed_tenants is None and custom.allow_insecure_webhooks is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"REGISTRAR_MAX_CREDENTIAL_LIFETIME": "two years"}, "REGISTRAR_MAX_CREDENTIAL_LIFETIME"),
        (
            {"REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME": "P800D", "REGISTRAR_MAX_CREDENTIAL_LIFETIME": "P730D"},
            "longer than REGISTRAR_MAX_CREDENTIAL_LIFETIME",
        ),
    ],
)
def test_bad_settings_fail_naming_the_setting(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy_from_settings(values)


def test_credential_end_respects_every_maximum() -> None:
    policy = Policy(max_credential_lifetime=timedelta(days=365))
    secret_profile = profile("m365-usage-connector")
    cert_profile = profile("codetwo-backup-sharepoint")
    assert credential_end(START, None, secret_profile, policy) == START + timedelta(days=180)
    assert credential_end(START, None, cert_profile, policy) == START + timedelta(days=365)
    assert credential_end(START, timedelta(days=30), secret_profile, policy) == START + timedelta(days=30)
    assert credential_end(START, timedelta(days=900), secret_profile, policy) == START + timedelta(days=365)
    # The tenant's app management policy allows 90 days at most: Entra would refuse longer.
    assert credential_end(START, None, secret_profile, policy, timedelta(days=90)) == START + timedelta(
        days=90
    )
    assert credential_end(
        START, None, secret_profile, policy, tenant_max_lifetime=timedelta(0)
    ) == START + timedelta(days=180)


def test_lifetime_problem_names_the_maximum() -> None:
    policy = Policy(max_credential_lifetime=timedelta(days=365))
    target = profile("codetwo-migration-target")
    assert policy.lifetime_problem(timedelta(days=366), target, CredentialType.SECRET) == (
        "longer than the maximum P365D (policy)"
    )
    assert policy.lifetime_problem(timedelta(days=365), target, CredentialType.SECRET) is None
    assert policy.lifetime_problem(timedelta(minutes=5), target, CredentialType.SECRET) is None
    assert policy.lifetime_problem(timedelta(seconds=30), target, CredentialType.SECRET) == (
        "shorter than the minimum PT1M"
    )


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("https://app.example.com/callback", True),
        ("http://localhost", True),
        ("http://localhost:8400/auth/callback?x=1", True),
        ("http://example.com/callback", False),
        ("http://127.0.0.1:8080/", False),
        ("https://*.example.com/cb", False),
        ("https://app.example.com/cb#frag", False),
        ("https://user:pw@example.com/cb", False),
        ("ftp://example.com", False),
        ("https://example.com:99999/", False),
        ("notaurl", False),
    ],
)
def test_redirect_uris_must_be_https_or_localhost(uri: str, accepted: bool) -> None:
    assert (Policy().redirect_uri_problem(uri) is None) is accepted


def test_webhook_urls_are_https_unless_local_development() -> None:
    strict, local = Policy(), Policy(allow_insecure_webhooks=True)
    assert strict.webhook_url_problem("https://hooks.example.com/registrar") is None
    assert strict.webhook_url_problem("http://127.0.0.1:9000/hook") == (
        "webhook URLs must be https (http only in explicit local development)"
    )
    assert local.webhook_url_problem("http://127.0.0.1:9000/hook") is None
    assert (
        local.webhook_url_problem("https://u:p@hooks.example.com/")
        == "webhook URLs cannot carry user information"
    )
    assert local.webhook_url_problem("gopher://hooks.example.com/") == "webhook URLs must be https"


def principal_header(claims: list[dict[str, str]], role_typ: str = "roles", **extra: Any) -> str:
    body = {"auth_typ": "aad", "name_typ": "name", "role_typ": role_typ, "claims": claims, **extra}
    return base64.b64encode(json.dumps(body).encode()).decode()


def test_client_principal_roles_from_role_typ_and_roles_claims() -> None:
    header = principal_header(
        [
            {"typ": "name", "val": "Ticket Bot"},
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-1"},
            {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "val": ROLE_APPROVER},
            {"typ": "roles", "val": ROLE_ADMIN},
            {"typ": "groups", "val": "Registrar.NotARole"},
        ],
        role_typ="http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    )
    caller = parse_client_principal(header)
    assert caller is not None
    assert caller.name == "Ticket Bot" and caller.object_id == "oid-1" and caller.auth_type == "aad"
    assert caller.roles == frozenset({ROLE_APPROVER, ROLE_ADMIN})
    assert require_role(caller, ROLE_APPROVER) is caller


def test_missing_role_or_principal_is_forbidden() -> None:
    reader = parse_client_principal(principal_header([{"typ": "roles", "val": "Registrar.Reader"}]))
    assert reader is not None
    with pytest.raises(Forbidden, match=ROLE_ADMIN):
        require_role(reader, ROLE_ADMIN)
    with pytest.raises(Forbidden, match="no authenticated principal"):
        require_role(None, ROLE_APPROVER)


def test_a_role_counts_only_for_a_principal_with_an_object_id_and_only_when_trusted() -> None:
    roles_only = principal_header([{"typ": "name", "val": "Ticket Bot"}, {"typ": "roles", "val": ROLE_ADMIN}])
    caller = parse_client_principal(roles_only)
    assert caller is not None and caller.object_id is None
    with pytest.raises(Forbidden, match="object id"):
        require_role(caller, ROLE_ADMIN)
    with pytest.raises(Forbidden, match="object id"):
        _ = caller.actor
    blank_oid = principal_header([{"typ": "roles", "val": ROLE_ADMIN}, {"typ": "oid", "val": "  "}])
    with pytest.raises(Forbidden, match="object id"):
        require_role(parse_client_principal(blank_oid), ROLE_ADMIN)

    full = principal_header([{"typ": "roles", "val": ROLE_ADMIN}, {"typ": "oid", "val": "oid-7"}])
    with pytest.raises(Forbidden, match="App Service Authentication"):
        authorize(full, ROLE_ADMIN, principal_trusted=False)  # the header proves nothing then
    assert authorize(full, ROLE_ADMIN, principal_trusted=True).actor == "oid-7"
    named = principal_header(
        [{"typ": "name", "val": "Alice"}, {"typ": "roles", "val": ROLE_ADMIN}, {"typ": "oid", "val": "oid-7"}]
    )
    assert authorize(named, ROLE_ADMIN, principal_trusted=True).actor == "Alice (oid-7)"
    with pytest.raises(Forbidden, match=ROLE_APPROVER):
        authorize(named, ROLE_APPROVER, principal_trusted=True)


@pytest.mark.parametrize(
    "header", [None, "", "   ", "not base64!!", base64.b64encode(b"[1,2]").decode(), "e30"]
)
def test_malformed_or_absent_principal_headers(header: str | None) -> None:
    caller = parse_client_principal(header)
    if header == "e30":  # "{}": a principal with no claims, hence no roles
        assert caller is not None and caller.roles == frozenset()
    else:
        assert caller is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P90D", timedelta(days=90)),
        ("PT5M", timedelta(minutes=5)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P2W", timedelta(days=14)),
        ("P1Y", timedelta(days=365)),
        ("p30d", timedelta(days=30)),
    ],
)
def test_iso_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "90D", "P1.5D", "P-1D", "PT1D", "P100000D"])
def test_bad_iso_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_format_back() -> None:
    for text in ("P180D", "PT5M", "P1DT2H", "PT1H30M15S"):
        assert format_duration(parse_duration(text)) == text
