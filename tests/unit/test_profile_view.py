"""GET /api/profiles/{id} reports how Registrar corrected its seed: typos fixed, Azure AD Graph mapped."""

from __future__ import annotations

from functions.profiles import load_catalogue
from functions.triggers.http_common import profile_view


def test_retired_azure_ad_graph_permissions_are_reported_with_their_microsoft_graph_mapping() -> None:
    view = profile_view(load_catalogue().get("cloudelements-office365"))

    mapped = {(m["from"]["name"], m["from"]["type"], m["to"]["resourceName"]) for m in view["mappings"]}
    assert ("Directory.ReadWrite.All", "application", "Microsoft Graph") in mapped
    assert ("Directory.ReadWrite.All", "delegated", "Microsoft Graph") in mapped
    assert all("Azure" in m["from"]["resource"] for m in view["mappings"])


def test_seed_typos_are_reported_next_to_the_corrected_names() -> None:
    view = profile_view(load_catalogue().get("cloudiway-groups-teams-target"))

    corrections = {c["seedSpelling"]: c["name"] for c in view["seedCorrections"]}
    assert corrections["Group.ReadWrite.Alls"] == "Group.ReadWrite.All"
    assert corrections["Directory. Read.All"] == "Directory.Read.All"
    assert view["seedWords"]


def test_the_summary_view_stays_small() -> None:
    summary = profile_view(load_catalogue().get("cloudiway-gal-sync"), detailed=False)
    assert "mappings" not in summary and "permissions" not in summary
