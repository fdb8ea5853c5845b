"""The demo's inventory table reads as a person expects (devstack/demo_adoption.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from devstack.demo_adoption import credential_label, expires_in, inventory_rows, match_label

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def test_expires_in_says_how_long_in_the_unit_that_matters() -> None:
    assert expires_in("2026-01-23T04:00:00Z", NOW) == "expired 318 d ago"
    assert expires_in("2026-12-07T01:00:00Z", NOW) == "expired today"
    assert expires_in("2026-12-07T09:30:00Z", NOW) == "in 5 h"
    assert expires_in("2026-12-07T04:10:00Z", NOW) == "in 1 h"  # never "in 0 h"
    assert expires_in("2027-01-16T04:00:00Z", NOW) == "in 40 d"
    assert expires_in("2029-12-07T04:00:00Z", NOW) == "in 3 y"
    assert expires_in("2299-12-31T00:00:00Z", NOW) == "never (2299)"  # the portal's "Never"
    assert expires_in(None, NOW) == ""


def test_match_credential_and_managed_columns() -> None:
    assert match_label(
        {"profile": "codetwo-backup-exchange", "kind": "exact", "missing": [], "extra": []}
    ) == ("codetwo-backup-exchange (exact)")
    assert match_label({"profile": "cloudelements-office365", "kind": "superset", "extra": ["a", "b"]}) == (
        "cloudelements-office365 (superset +2)"
    )
    assert match_label({"profile": "m365-usage-connector", "kind": "subset", "missing": ["a"]}) == (
        "m365-usage-connector (subset -1)"
    )
    assert match_label(None) == "none"
    assert credential_label({"type": "secret", "hint": "Ab1", "on": "application"}) == "secret Ab1…"
    assert credential_label(
        {"type": "certificate", "thumbprint": "F61EA48212AB", "on": "servicePrincipal"}
    ) == ("certificate F61EA482 (on its SP)")
    item = {
        "appDisplayName": "CodeTwo Backup for Exchange Online (1)",
        "appId": "00734f2c-baf9-4031-9209-92fa1a14f37d",
        "type": "secret",
        "hint": "bGq",
        "on": "application",
        "endDateTime": "2028-05-10T04:00:00Z",
        "profileMatch": {"profile": "codetwo-backup-exchange", "kind": "exact"},
        "managed": True,
        "registrationId": "reg-0123456789abcdef01234567",
    }
    assert inventory_rows([item, {**item, "managed": False, "registrationId": None}], NOW) == [
        [
            "CodeTwo Backup for Exchange Online (1)",
            "codetwo-backup-exchange (exact)",
            "secret bGq…",
            "in 520 d",
            "yes (reg-0123456789abcdef01234567)",
        ],
        [
            "CodeTwo Backup for Exchange Online (1)",
            "codetwo-backup-exchange (exact)",
            "secret bGq…",
            "in 520 d",
            "no",
        ],
    ]
