"""The connector catalogue: every profile loads, says what its seed says, and resolves to real ids."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from functions.core.catalogue.permissions import resolve
from functions.core.catalogue.policy import Policy
from functions.core.catalogue.profile_schema import profile_from_dict
from functions.core.catalogue.profiles import ProfileCatalogue, ProfileError
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    SHAREPOINT_ONLINE_APP_ID,
    CredentialType,
    PermissionKind,
)
from functions.profiles import load_catalogue, load_catalogue_from
from functions.profiles.docs import DOC_PATH, render_markdown
from functions.profiles.views import profile_document
from tests.unit.resource_catalogs import real_catalogs

REPO = Path(__file__).resolve().parents[2]
G, EXO, SPO = "graph", "exchange", "sharepoint"
APP_IDS = {G: GRAPH_APP_ID, EXO: EXCHANGE_ONLINE_APP_ID, SPO: SHAREPOINT_ONLINE_APP_ID}
REQUIRED_IDS = {
    "cloudiway-groups-teams-source", "cloudiway-groups-teams-target", "cloudiway-onedrive-source",
    "cloudiway-onedrive-target", "cloudiway-sharepoint-source", "cloudiway-sharepoint-target",
    "cloudiway-gal-sync", "m365-usage-connector", "codetwo-backup-exchange", "codetwo-backup-sharepoint",
    "codetwo-migration-source", "codetwo-migration-target", "openfn-msgraph", "cloudelements-office365", "custom",
}  # fmt: skip


def app(resource: str, *names: str) -> set[tuple[str, str, str]]:
    return {(APP_IDS[resource], "application", n) for n in names}


def delegated(resource: str, *names: str) -> set[tuple[str, str, str]]:
    return {(APP_IDS[resource], "delegated", n) for n in names}


SP_READ = app(SPO, "Sites.Read.All")
SP_WRITE = app(SPO, "Sites.FullControl.All", "Sites.Manage.All", "Sites.ReadWrite.All")
FULL_ACCESS = app(EXO, "full_access_as_app")
# What each seed says, permission by permission (with the seeds' typos corrected).
EXPECTED: dict[str, set[tuple[str, str, str]]] = {
    "cloudiway-groups-teams-source": app(
        G, "Group.Read.All", "User.Read.All", "Directory.Read.All", "Sites.Read.All"
    )
    | SP_READ,
    "cloudiway-groups-teams-target": app(
        G,
        "Group.ReadWrite.All",
        "User.Read.All",
        "Directory.Read.All",
        "Sites.ReadWrite.All",
        "Sites.Manage.All",
        "Sites.FullControl.All",
    )
    | SP_WRITE,
    "cloudiway-onedrive-source": app(G, "Files.Read.All", "Sites.Read.All") | SP_READ,
    "cloudiway-onedrive-target": app(G, "Files.ReadWrite.All", "Sites.ReadWrite.All") | SP_WRITE,
    "cloudiway-sharepoint-source": app(G, "Group.Read.All", "User.Read.All", "Sites.Read.All") | SP_READ,
    "cloudiway-sharepoint-target": app(G, "Group.ReadWrite.All", "User.Read.All", "Sites.ReadWrite.All")
    | SP_WRITE,
    "cloudiway-gal-sync": app(G, "User.Read.All", "Group.Read.All", "Directory.Read.All"),
    "m365-usage-connector": delegated(G, "offline_access")
    | app(G, "Directory.Read.All", "Organization.Read.All", "User.Read.All", "Reports.Read.All"),
    "codetwo-backup-exchange": FULL_ACCESS
    | app(G, "Directory.Read.All", "Group.Read.All", "MailboxSettings.ReadWrite", "User.Read.All"),
    "codetwo-backup-sharepoint": FULL_ACCESS
    | app(G, "Directory.Read.All", "Group.Read.All", "User.Read.All")
    | app(SPO, "Sites.FullControl.All", "User.Read.All"),
    "codetwo-migration-source": FULL_ACCESS
    | app(G, "Directory.Read.All", "MailboxSettings.ReadWrite", "User.Read.All"),
    "codetwo-migration-target": FULL_ACCESS
    | app(G, "Directory.Read.All", "MailboxSettings.ReadWrite", "User.Read.All"),
    "openfn-msgraph": delegated(G, "openid", "offline_access", "User.Read"),
    "cloudelements-office365": app(
        G,
        "Application.ReadWrite.All",
        "Device.ReadWrite.All",
        "Directory.ReadWrite.All",
        "Domain.ReadWrite.All",
        "Member.Read.Hidden",
    )
    | delegated(
        G, "Directory.ReadWrite.All", "Group.ReadWrite.All", "User.ReadBasic.All", "Calendars.ReadWrite"
    ),
    "custom": set(),
}
CREATE_MAILBOXES = app(G, "Device.ReadWrite.All", "Directory.ReadWrite.All", "User.ReadWrite.All")


def triples(refs: Any) -> set[tuple[str, str, str]]:
    return {(r.resource, r.kind.value, r.name) for r in refs}


@pytest.fixture(scope="module")
def catalogue() -> ProfileCatalogue:
    return load_catalogue()


def test_every_required_profile_loads(catalogue: ProfileCatalogue) -> None:
    assert set(catalogue.ids()) == REQUIRED_IDS
    for profile in catalogue:
        assert profile.source == f"connectors/{profile.id}.toml"
        assert profile.sign_in_audience == "AzureADMyOrg"
        assert profile.seed is not None or profile.custom
        if profile.seed:
            assert profile.seed_words, profile.id


@pytest.mark.parametrize("profile_id", sorted(EXPECTED))
def test_exact_permission_sets_per_profile(catalogue: ProfileCatalogue, profile_id: str) -> None:
    profile = catalogue.get(profile_id)
    assert profile is not None
    assert triples(profile.permission_refs({})) == EXPECTED[profile_id]


def test_codetwo_migration_target_create_mailboxes_adds_the_starred_permissions(
    catalogue: ProfileCatalogue,
) -> None:
    profile = catalogue.get("codetwo-migration-target")
    assert profile is not None
    without = triples(profile.permission_refs({"createMailboxes": False}))
    with_ = triples(profile.permission_refs({"createMailboxes": True}))
    assert without == EXPECTED["codetwo-migration-target"]
    assert with_ - without == CREATE_MAILBOXES
    assert with_ >= without


def test_every_codetwo_profile_has_full_access_as_app(catalogue: ProfileCatalogue) -> None:
    codetwo = [p for p in catalogue if p.id.startswith("codetwo-")]
    assert len(codetwo) == 4
    for profile in codetwo:
        assert triples(profile.permission_refs({})) >= FULL_ACCESS, profile.id


def test_credential_rules_follow_the_seeds(catalogue: ProfileCatalogue) -> None:
    sharepoint = catalogue.get("codetwo-backup-sharepoint")
    assert sharepoint is not None
    assert sharepoint.credential_types == (CredentialType.CERTIFICATE,)
    assert sharepoint.credentials[0].key_size == 2048
    for pid in ("codetwo-backup-exchange", "codetwo-migration-source", "codetwo-migration-target"):
        profile = catalogue.get(pid)
        assert profile is not None
        assert set(profile.credential_types) == {CredentialType.CERTIFICATE, CredentialType.SECRET}
    for pid in ("m365-usage-connector", "openfn-msgraph", "cloudelements-office365", "cloudiway-gal-sync"):
        profile = catalogue.get(pid)
        assert profile is not None
        assert profile.credential_types == (CredentialType.SECRET,)


def test_redirect_uris_by_platform(catalogue: ProfileCatalogue) -> None:
    policy = Policy()
    m365, openfn, cloudiway = (
        catalogue.get(i) for i in ("m365-usage-connector", "openfn-msgraph", "cloudiway-gal-sync")
    )
    assert m365 is not None and openfn is not None and cloudiway is not None
    assert m365.redirect_uris.web == ("http://localhost",)
    assert openfn.redirect_uris.web == ("https://app.openfn.org/authenticate/callback",)
    # seed 000's "https://notused" placeholder is deliberately not registered.
    assert cloudiway.redirect_uris.web == () and "notused" in (cloudiway.redirect_uri_decision or "")
    for profile in catalogue:
        uris = profile.redirect_uris
        for uri in (*uris.web, *uris.spa, *uris.public_client):
            assert policy.redirect_uri_problem(uri) is None, (profile.id, uri)


def test_seed_spellings_are_recorded_next_to_the_correct_names(catalogue: ProfileCatalogue) -> None:
    spelled = {
        (p.id, perm.name, perm.seed_spelling)
        for p in catalogue
        for perm in p.permissions
        if perm.seed_spelling
    }
    assert ("cloudiway-groups-teams-target", "Group.ReadWrite.All", "Group.ReadWrite.Alls") in spelled
    assert ("cloudiway-groups-teams-source", "Directory.Read.All", "Directory. Read.All") in spelled
    assert ("cloudiway-groups-teams-source", "Sites.Read.All", "Sites.ReadAll") in spelled
    assert ("cloudiway-onedrive-source", "Sites.Read.All", "Sites.Read.all") in spelled
    openfn = catalogue.get("openfn-msgraph")
    assert openfn is not None
    scopes = openfn.option("scopes")
    assert scopes is not None
    assert scopes.seed_spelling == {
        "Group.Read.All": "Groups.Read.All",
        "Group.ReadWrite.All": "Groups.ReadWrite.All",
    }


def test_every_profile_resolves_to_existing_ids_in_the_real_catalogues(catalogue: ProfileCatalogue) -> None:
    catalogs = list(real_catalogs().values())
    for profile in catalogue:
        variants: list[dict[str, Any]] = [{}]
        for option in profile.options:
            if option.type == "boolean":
                variants.append({option.name: True})
            if option.grants is not None:
                variants.append({option.name: list(option.allowed)})
        for options in variants:
            refs = profile.permission_refs(options)
            resolved = resolve(refs, catalogs)
            assert len(resolved) == len(refs), (profile.id, options)


def test_openfn_scopes_cover_the_seed_list_and_sign_in_audience_option(catalogue: ProfileCatalogue) -> None:
    openfn = catalogue.get("openfn-msgraph")
    assert openfn is not None
    scopes = openfn.option("scopes")
    assert scopes is not None and scopes.grants == (GRAPH_APP_ID, PermissionKind.DELEGATED)
    assert len(scopes.allowed) == 24
    assert {"Group.Read.All", "Mail.Send", "offline_access", "openid"} <= set(scopes.allowed)
    chosen = triples(openfn.permission_refs({"scopes": ["Mail.Read", "Mail.Read"]}))
    assert chosen == delegated(G, "Mail.Read")
    assert openfn.sign_in_audience_for({"signInAudience": "AzureADMultipleOrgs"}) == "AzureADMultipleOrgs"
    assert openfn.sign_in_audience_for({}) == "AzureADMyOrg"


def test_cloudelements_maps_azure_ad_graph_and_says_the_list_is_truncated(
    catalogue: ProfileCatalogue,
) -> None:
    profile = catalogue.get("cloudelements-office365")
    assert profile is not None
    assert len(profile.mappings) == 8
    assert all(m.to_resource == GRAPH_APP_ID and m.to_name == m.from_name for m in profile.mappings)
    mapped = {(GRAPH_APP_ID, m.to_kind.value, m.to_name) for m in profile.mappings}
    assert mapped == EXPECTED["cloudelements-office365"] - delegated(G, "Calendars.ReadWrite")
    assert any("truncated" in note for note in profile.notes)
    assert "confirm-graph-permissions" in {s.id for s in profile.manual_steps}


def test_manual_steps_follow_credential_type(catalogue: ProfileCatalogue) -> None:
    target = catalogue.get("codetwo-migration-target")
    m365 = catalogue.get("m365-usage-connector")
    assert target is not None and m365 is not None
    with_cert = {s.id for s in target.manual_steps_for({}, CredentialType.CERTIFICATE)}
    with_secret = {s.id for s in target.manual_steps_for({}, CredentialType.SECRET)}
    assert with_cert == {"exchange-mailbox-scope", "import-certificate"}
    assert with_secret == {"exchange-mailbox-scope", "enter-in-codetwo"}
    settings = next(s for s in m365.manual_steps if s.id == "connector-settings")
    assert "Tenant ID = Directory (tenant) ID" in settings.detail


def test_profile_documents_are_json(catalogue: ProfileCatalogue) -> None:
    for profile in catalogue:
        doc = json.loads(json.dumps(profile_document(profile)))
        assert doc["id"] == profile.id
        assert {o["name"] for o in doc["options"]} >= {"redirectUris"}


def test_profile_document_reports_mappings_and_seed_corrections(catalogue: ProfileCatalogue) -> None:
    cloudelements = profile_document(catalogue.get("cloudelements-office365"))  # type: ignore[arg-type]
    assert len(cloudelements["mappings"]) == 8
    assert cloudelements["mappings"][0]["from"]["resource"] == "Azure Active Directory Graph"
    assert cloudelements["mappings"][0]["to"]["resourceName"] == "Microsoft Graph"
    groups = profile_document(catalogue.get("cloudiway-groups-teams-target"))  # type: ignore[arg-type]
    spelled = {p["name"]: p["seedSpelling"] for p in groups["permissions"] if p["seedSpelling"]}
    assert spelled["Group.ReadWrite.All"] == "Group.ReadWrite.Alls"
    assert groups["redirectUris"] == {"web": [], "spa": [], "publicClient": []}
    sharepoint = profile_document(catalogue.get("codetwo-backup-sharepoint"))  # type: ignore[arg-type]
    assert sharepoint["credentials"] == [
        {"type": "certificate", "defaultLifetime": "P365D", "maxLifetime": None, "keySize": 2048,
         "note": sharepoint["credentials"][0]["note"]}
    ]  # fmt: skip


def test_checked_in_docs_equal_the_generated_ones(catalogue: ProfileCatalogue) -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render_markdown(catalogue), (
        "docs/profiles.md is stale: run python -m functions.profiles.docs"
    )


def minimal() -> dict[str, Any]:
    return {
        "id": "demo",
        "connector": "Demo",
        "title": "Demo",
        "description": "Demo",
        "seed": "999.txt",
        "seed_words": ["words"],
        "credentials": [{"type": "secret", "default_lifetime": "P90D"}],
        "permissions": [{"resource": "Microsoft Graph", "type": "application", "name": "User.Read.All"}],
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["permissions"][0].update(type="app"), "permissions[0].type"),
        (lambda d: d["permissions"][0].update(when="nope"), "permissions[0].when"),
        (lambda d: d["credentials"][0].update(default_lifetime="90 days"), "credentials[0].default_lifetime"),
        (lambda d: d["credentials"][0].update(type="password"), "credentials[0].type"),
        (lambda d: d.update(sign_in_audience="AzureADandPersonalMicrosoftAccount"), "sign_in_audience"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.pop("seed_words"), "seed_words"),
        (lambda d: d.update(credentials=[]), "credentials"),
        (lambda d: d.update(id="Not An Id"), "id"),
    ],
)
def test_bad_profile_fails_naming_file_and_field(change: Any, field: str) -> None:
    data = minimal()
    change(data)
    with pytest.raises(ProfileError) as failure:
        profile_from_dict(data, source="connectors/demo.toml")
    assert failure.value.field == field
    assert str(failure.value).startswith(f"connectors/demo.toml: {field}: ")


def test_loader_fails_loudly_on_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "demo.toml").write_text('id = "demo"\nconnector = [unclosed\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"connectors/demo.toml"):
        load_catalogue_from(tmp_path)
    (tmp_path / "demo.toml").write_text('id = "demo"\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"^connectors/demo.toml: seed: required"):
        load_catalogue_from(tmp_path)
    (tmp_path / "demo.toml").unlink()
    (tmp_path / "demo.json").write_text(json.dumps({**minimal(), "id": "other"}), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"^connectors/demo.json: id: 'other' does not match"):
        load_catalogue_from(tmp_path)
    (tmp_path / "demo.json").write_text(json.dumps(minimal()), encoding="utf-8")
    assert load_catalogue_from(tmp_path).ids() == ("demo",)


MY_CORE_MODULES = (
    "catalogue/profiles",
    "catalogue/profile_schema",
    "catalogue/permissions",
    "intake/requests",
    "intake/parser",
    "catalogue/policy",
    "record/durations",
)
FORBIDDEN_IMPORTS = (
    "azure",
    "msgraph",
    "aiohttp",
    "requests",
    "httpx",
    "os",
    "pathlib",
    "importlib",
    "io",
    "socket",
)


@pytest.mark.parametrize("module", MY_CORE_MODULES)
def test_core_modules_import_no_sdk_and_do_no_io(module: str) -> None:
    tree = ast.parse((REPO / "functions" / "core" / f"{module}.py").read_text(encoding="utf-8"))
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        )
    }  # fmt: skip
    assert not imported & set(FORBIDDEN_IMPORTS), imported
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "open" not in calls
