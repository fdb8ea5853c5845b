"""Permission resolution against the real Graph / Exchange Online / SharePoint Online catalogues."""

from __future__ import annotations

import asyncio

import pytest

from functions.core.catalogue.permissions import (
    AZURE_AD_GRAPH_APP_ID,
    canonical_resource,
    catalog_from_json,
    resolve,
    resolve_detailed,
    resolve_permissions,
    resolve_permissions_detailed,
    suggest_names,
)
from functions.core.record.errors import ValidationFailed
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    SHAREPOINT_ONLINE_APP_ID,
    PermissionKind,
    PermissionRef,
)
from functions.profiles import resource_catalog_json
from tests.unit.resource_catalogs import CatalogDirectory, real_catalogs

APP = PermissionKind.APPLICATION
DELEGATED = PermissionKind.DELEGATED
TENANT = "4d3c2b1a-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def catalogs() -> list:
    return list(real_catalogs().values())


def test_catalog_from_json_keeps_every_permission_and_its_state() -> None:
    data = resource_catalog_json("microsoft-graph.json")
    catalog = catalog_from_json(data, "sp-1")
    assert catalog.app_id == GRAPH_APP_ID
    assert catalog.service_principal_id == "sp-1"
    assert len(catalog.app_roles) == len({r["value"] for r in data["appRoles"]})
    assert len(catalog.scopes) == len({s["value"] for s in data["oauth2PermissionScopes"]})
    assert catalog.app_roles["Group.Read.All"].id == "5b567255-7703-4780-807c-7be8301ae99b"
    assert catalog.app_roles["AgentCard.Read.All"].enabled is False


def test_catalog_from_json_leaves_out_roles_only_users_can_hold() -> None:
    data = {
        "appId": "11111111-2222-4333-8444-555555555555",
        "displayName": "Contoso API",
        "appRoles": [
            {"id": "r1", "value": "Things.Read.All", "allowedMemberTypes": ["Application"]},
            {"id": "r2", "value": "Things.Admin", "allowedMemberTypes": ["User"]},
            {"id": "r3", "value": "Things.Both", "allowedMemberTypes": ["User", "Application"]},
        ],
        "oauth2PermissionScopes": [
            {"id": "s1", "value": "Things.Read", "adminConsentDisplayName": "Read things"}
        ],
    }
    catalog = catalog_from_json(data)
    assert set(catalog.app_roles) == {"Things.Read.All", "Things.Both"}
    assert catalog.scopes["Things.Read"].display_name == "Read things"


@pytest.mark.parametrize(
    ("typo", "kind", "resource", "expected"),
    [
        ("Groups.Read.All", APP, GRAPH_APP_ID, "Group.Read.All"),
        ("Group.ReadWrite.Alls", APP, GRAPH_APP_ID, "Group.ReadWrite.All"),
        ("Directory. Read.All", APP, GRAPH_APP_ID, "Directory.Read.All"),
        ("Sites.ReadAll", APP, GRAPH_APP_ID, "Sites.Read.All"),
        ("Sites.Read.all", APP, SHAREPOINT_ONLINE_APP_ID, "Sites.Read.All"),
        ("Sites.FullControl.all", APP, SHAREPOINT_ONLINE_APP_ID, "Sites.FullControl.All"),
        ("Groups.ReadWrite.All", DELEGATED, GRAPH_APP_ID, "Group.ReadWrite.All"),
    ],
)
def test_every_seed_typo_fails_with_the_real_name_as_first_suggestion(
    catalogs: list, typo: str, kind: PermissionKind, resource: str, expected: str
) -> None:
    with pytest.raises(ValidationFailed) as failure:
        resolve([PermissionRef(resource, kind, typo)], catalogs)
    [problem] = failure.value.problems
    assert problem.field == "permissions[0]"
    assert typo in problem.reason
    assert problem.suggestion is not None
    assert problem.suggestion.startswith(f"did you mean {expected}")


def test_suggestions_normalise_case_spaces_and_dots() -> None:
    names = ["Directory.Read.All", "Directory.ReadWrite.All", "Device.Read.All"]
    assert suggest_names("directory read all", names) == ["Directory.Read.All"]
    assert suggest_names("DIRECTORY.READWRITE.ALL", names) == ["Directory.ReadWrite.All"]
    assert suggest_names("Quux.Frobnicate", names) == []


def test_a_name_of_the_other_kind_says_which_kind_it_is(catalogs: list) -> None:
    outcome = resolve_detailed(
        [
            PermissionRef("Microsoft Graph", DELEGATED, "Device.ReadWrite.All"),
            PermissionRef("Microsoft Graph", APP, "offline_access"),
        ],
        catalogs,
    )
    first, second = outcome.problems
    assert "is an application permission of Microsoft Graph, not a delegated scope" in first.reason
    assert first.suggestion == "type: application"
    assert "is a delegated scope of Microsoft Graph, not an application permission" in second.reason
    assert second.suggestion == "type: delegated"


def test_disabled_permissions_are_refused(catalogs: list) -> None:
    outcome = resolve_detailed([PermissionRef(GRAPH_APP_ID, APP, "AgentCard.Read.All")], catalogs)
    assert outcome.permissions == ()
    [problem] = outcome.problems
    assert "disabled" in problem.reason


def test_same_name_on_three_resources_is_three_permissions(catalogs: list) -> None:
    resolved = resolve(
        [
            PermissionRef("Microsoft Graph", APP, "User.Read.All"),
            PermissionRef("Office 365 Exchange Online", APP, "User.Read.All"),
            PermissionRef(SHAREPOINT_ONLINE_APP_ID, APP, "User.Read.All"),
        ],
        catalogs,
    )
    by_resource = {p.resource_app_id: p.id for p in resolved}
    assert by_resource[GRAPH_APP_ID] == "df021288-bdef-4463-88db-98f22de89214"
    assert by_resource[EXCHANGE_ONLINE_APP_ID] == "bf24470f-10c1-436d-8d53-7b997eb473be"
    # SharePoint Online publishes the same id as Graph: only (appId, id) tells them apart.
    assert by_resource[SHAREPOINT_ONLINE_APP_ID] == by_resource[GRAPH_APP_ID]
    assert len({(p.resource_app_id, p.id) for p in resolved}) == 3


def test_resource_by_app_id_or_display_name_is_one_permission(catalogs: list) -> None:
    resolved = resolve(
        [
            PermissionRef(GRAPH_APP_ID.upper(), APP, "Group.Read.All"),
            PermissionRef("microsoft graph", APP, "Group.Read.All"),
            PermissionRef("Office 365 Exchange Online", APP, "full_access_as_app"),
        ],
        catalogs,
    )
    assert [(p.resource_app_id, p.id) for p in resolved] == sorted(
        [
            (GRAPH_APP_ID, "5b567255-7703-4780-807c-7be8301ae99b"),
            (EXCHANGE_ONLINE_APP_ID, "dc890d15-9560-4a4c-9b7f-a736ec74ec40"),
        ]
    )


@pytest.mark.parametrize(
    "resource", [AZURE_AD_GRAPH_APP_ID, "Windows Azure Active Directory", "Azure Active Directory Graph"]
)
def test_azure_ad_graph_maps_to_microsoft_graph_with_a_note(catalogs: list, resource: str) -> None:
    outcome = resolve_detailed([PermissionRef(resource, APP, "Directory.ReadWrite.All")], catalogs)
    assert outcome.problems == ()
    [permission] = outcome.permissions
    assert permission.resource_app_id == GRAPH_APP_ID
    assert permission.id == "19dbc75e-c2e2-444c-a770-ec69d8559fc7"
    [note] = outcome.notes
    assert "mapped to Microsoft Graph" in note
    assert "retired" in note


def test_unknown_resource_and_every_failure_are_reported_together(catalogs: list) -> None:
    with pytest.raises(ValidationFailed) as failure:
        resolve(
            [
                PermissionRef("Contoso API", APP, "Things.Read"),
                PermissionRef(GRAPH_APP_ID, APP, "Groups.Read.All"),
                PermissionRef(GRAPH_APP_ID, APP, "User.Read.All"),
            ],
            catalogs,
            fields=["a", "b", "c"],
        )
    problems = failure.value.problems
    assert [p.field for p in problems] == ["a", "b"]
    assert "no service principal" in problems[0].reason


def test_canonical_resource_names() -> None:
    assert canonical_resource(" Office 365 SharePoint Online ") == SHAREPOINT_ONLINE_APP_ID
    assert canonical_resource("00000003-0000-0000-C000-000000000000") == GRAPH_APP_ID
    assert canonical_resource("Contoso API") == "Contoso API"


def test_async_resolution_fetches_each_resource_once_and_concurrently() -> None:
    # Three distinct resources, some named twice (appId and display name): the directory only
    # lets fetches proceed once three are under way at the same time.
    directory = CatalogDirectory(expected_concurrent=3)
    refs = [
        PermissionRef("Microsoft Graph", APP, "User.Read.All"),
        PermissionRef(GRAPH_APP_ID, DELEGATED, "offline_access"),
        PermissionRef("Office 365 Exchange Online", APP, "full_access_as_app"),
        PermissionRef(SHAREPOINT_ONLINE_APP_ID, APP, "Sites.FullControl.All"),
        PermissionRef("Office 365 SharePoint Online", APP, "Sites.Read.All"),
    ]
    outcome = asyncio.run(resolve_permissions_detailed(directory, TENANT, refs))
    assert outcome.problems == ()
    assert len(outcome.permissions) == 5
    assert sorted(r for _, r in directory.fetches) == sorted(
        [GRAPH_APP_ID, EXCHANGE_ONLINE_APP_ID, SHAREPOINT_ONLINE_APP_ID]
    )
    assert {t for t, _ in directory.fetches} == {TENANT}
    assert outcome.service_principals[EXCHANGE_ONLINE_APP_ID] == "sp-office-365-exchange-online"


def test_async_resolution_reports_a_resource_the_tenant_lacks() -> None:
    directory = CatalogDirectory()
    with pytest.raises(ValidationFailed) as failure:
        asyncio.run(
            resolve_permissions(
                directory,
                TENANT,
                [
                    PermissionRef("Contoso API", APP, "Things.Read"),
                    PermissionRef(GRAPH_APP_ID, APP, "Sites.ReadAll"),
                ],
            )
        )
    reasons = [p.reason for p in failure.value.problems]
    assert "no service principal" in reasons[0]
    assert failure.value.problems[1].suggestion == "did you mean Sites.Read.All?"
