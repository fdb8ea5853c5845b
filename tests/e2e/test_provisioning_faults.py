"""Provisioning under faults (issue 4, acceptance "Faults"): with the tenant failing about 20% of
Graph and Key Vault calls (429 with Retry-After, 503) and hiding new objects for 1.5 s (replication
delay), 20 registrations submitted at once through the host's HTTP API all end active, and none
leaves an orphaned credential behind.

A private stack (its own Azurite, tenant and host): the fault rules are added through the tenant's
admin API just before the registrations are submitted and removed before the tenant is read back
(as its bootstrap identity, over HTTPS), so the read-back itself is never faulted.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.profiles import load_catalogue
from tests.e2e.provisioning_support import (
    GRAPH_SCOPE,
    TERMINAL,
    Run,
    Submitted,
    body_for,
    expected_permissions,
    low,
    tenant_state,
    wait_for,
)
from tests.e2e.rotation_support import Host
from tests.fixtures.stack import start_stack

pytestmark = pytest.mark.slow

REPLICATION_DELAY_MS = 1500
# Graph and Key Vault paths (not the token endpoint, which is Entra's).
FAULTED_PATHS = r"^/(v1\.0/|secrets|certificates|keys|deleted)"
RULE_BUDGET = 1_000_000  # a count nobody reaches: what is left of it tells how many were injected
# First matching rule wins: 10% get 429, then 1/9 of the other 90% (10% overall) get 503.
FAULT_RULES = [
    {"status": 429, "pathRegex": FAULTED_PATHS, "probability": 0.10, "retryAfter": 1, "count": RULE_BUDGET},
    {"status": 503, "pathRegex": FAULTED_PATHS, "probability": 0.1 / 0.9, "count": RULE_BUDGET},
]
# 20 registrations: secrets and certificates, application and delegated permissions, custom sets.
MIX: list[tuple[str, str]] = [
    ("m365-usage-connector", "secret"),
    ("m365-usage-connector", "secret"),
    ("cloudiway-groups-teams-source", "secret"),
    ("cloudiway-groups-teams-target", "secret"),
    ("cloudiway-onedrive-source", "secret"),
    ("cloudiway-onedrive-target", "secret"),
    ("cloudiway-sharepoint-source", "secret"),
    ("cloudiway-sharepoint-target", "secret"),
    ("cloudiway-gal-sync", "secret"),
    ("openfn-msgraph", "secret"),
    ("openfn-msgraph", "secret"),
    ("custom", "secret"),
    ("custom", "certificate"),
    ("codetwo-backup-exchange", "certificate"),
    ("codetwo-backup-exchange", "secret"),
    ("codetwo-backup-sharepoint", "certificate"),
    ("codetwo-backup-sharepoint", "certificate"),
    ("codetwo-migration-source", "certificate"),
    ("codetwo-migration-target", "certificate"),
    ("codetwo-migration-target", "secret"),
]


@dataclass
class FaultyRun:
    run: Run
    host: Host
    injected: dict[int, int]  # status -> how many the fault rules served
    stats: dict[str, Any]  # /_sim/stats right after the registrations settled
    config: dict[str, Any]  # /_sim/config at the same moment
    apps: list[dict[str, Any]]  # every application in the tenant, with its credentials


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[FaultyRun]:
    stack = start_stack(
        tmp_path_factory.mktemp("faults-stack"),
        tenant_args=["--replication-delay-ms", str(REPLICATION_DELAY_MS)],
        ca_dir=tenant_ca_dir,
    )
    host = Host(stack.endpoints, stack.options.host_log)
    try:
        catalogue = load_catalogue()
        tag = uuid.uuid4().hex[:6]
        submitted = []
        for n, (profile_id, credential_type) in enumerate(MIX):
            profile = catalogue.get(profile_id)
            assert profile is not None, profile_id
            body = body_for(profile, f"E2E-FAULT-{tag}-{n:02d}")
            body["credential"] = {"type": credential_type}
            submitted.append(Submitted(profile, "http", body))
        rules = host.admin("POST", "faults", FAULT_RULES)["value"]
        run = Run(stack.endpoints, host.api, submitted)

        def submit(s: Submitted) -> None:
            response = run.call("POST", "/registrations", "/registrations", json=s.body)
            assert response.status_code == 202, response.text
            s.id = response.json()["id"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(submit, submitted))
        wait_for(run, submitted, until=TERMINAL)
        stats, config = host.admin("GET", "stats"), host.admin("GET", "config")
        left = {r["id"]: r["count"] for r in host.admin("GET", "faults")["value"]}
        injected = {r["status"]: RULE_BUDGET - left.get(r["id"], 0) for r in rules}
        host.admin("DELETE", "faults")  # the read-back below is not under test
        for s in submitted:
            s.view = run.call("GET", f"/registrations/{s.id}", "/registrations/{id}").json()
        yield FaultyRun(run, host, injected, stats, config, list_applications(host))
    finally:
        host.close()
        stack.stop()


def list_applications(host: Host) -> list[dict[str, Any]]:
    """Every application of the tenant with its password and key credentials (raw Graph, paged)."""
    token = host.credential().get_token(GRAPH_SCOPE).token
    url: str | None = f"{host.endpoints['graphUrl']}/applications"
    params: dict[str, str] | None = {
        "$select": "id,appId,uniqueName,displayName,passwordCredentials,keyCredentials",
        "$top": "999",
    }
    apps: list[dict[str, Any]] = []
    with httpx.Client(verify=host.endpoints["caFile"], timeout=30) as client:
        while url:
            response = client.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            page = response.json()
            apps += page["value"]
            url, params = page.get("@odata.nextLink"), None
    return apps


# ---------------------------------------------------------------- tests


def test_faults_were_really_injected(faulty: FaultyRun) -> None:
    by_status = faulty.stats["byStatus"]
    # 20 registrations make ~300 Graph and Key Vault calls, so ~30 of each kind are expected
    # (25-49 seen); 10 is far below what chance gives, and far above "faults did not apply".
    assert faulty.injected[429] >= 10 and faulty.injected[503] >= 10, (faulty.injected, by_status)
    assert int(by_status.get("429", 0)) >= faulty.injected[429]
    assert int(by_status.get("503", 0)) >= faulty.injected[503]
    assert faulty.stats["faultsInjected"] == sum(faulty.injected.values())
    assert faulty.config["replicationDelayMs"] == REPLICATION_DELAY_MS


def test_every_registration_ends_active(faulty: FaultyRun) -> None:
    not_active = {
        s.body["requestId"]: (s.profile.id, s.view["status"], s.view.get("lastError"))
        for s in faulty.run.submitted
        if s.view["status"] != "active"
    }
    assert not_active == {}


def test_one_app_per_registration_with_exactly_its_recorded_credential(faulty: FaultyRun) -> None:
    from azure.keyvault.certificates import CertificateClient

    certificates = CertificateClient(
        faulty.host.endpoints["vaultUrl"], faulty.host.credential(), verify_challenge_resource=False
    )
    for s in faulty.run.submitted:
        label = f"{s.body['requestId']} {s.profile.id}"
        assert s.id is not None, label
        named = [a for a in faulty.apps if a.get("uniqueName") == f"registrar-{s.id}"]
        assert [low(a["appId"]) for a in named] == [low(s.view["appId"])], label
        app, recorded = named[0], s.view["credential"]
        assert recorded["type"] == s.body["credential"]["type"], label
        on_app = app["passwordCredentials"] + app["keyCredentials"]
        assert [low(c["keyId"]) for c in on_app] == [low(recorded["keyId"])], label
        if recorded["type"] == "secret":
            assert len(app["passwordCredentials"]) == 1, label
            secret = faulty.host.secrets.get_secret(s.id)
            assert low(secret.properties.tags["keyId"]) == low(recorded["keyId"]), label
            assert secret.properties.id.rstrip("/") == recorded["secretUri"].rstrip("/"), label
        else:
            assert len(app["keyCredentials"]) == 1, label
            properties = certificates.get_certificate(s.id).properties
            assert properties is not None and properties.x509_thumbprint, label
            thumbprint = properties.x509_thumbprint.hex()
            assert thumbprint.lower() == recorded["thumbprint"].lower(), label
            on_app_thumbprint = base64.b64decode(app["keyCredentials"][0]["customKeyIdentifier"]).hex()
            assert on_app_thumbprint == thumbprint.lower(), label
    certificates.close()


def test_no_orphaned_registrar_credential_anywhere_in_the_tenant(faulty: FaultyRun) -> None:
    recorded = {low(s.view["credential"]["keyId"]) for s in faulty.run.submitted}
    registrar_passwords = {
        low(c["keyId"]): (a["appId"], c["displayName"])
        for a in faulty.apps
        for c in a["passwordCredentials"]
        if (c.get("displayName") or "").startswith("registrar-")
    }
    assert {k: v for k, v in registrar_passwords.items() if k not in recorded} == {}
    registrar_apps = [a for a in faulty.apps if (a.get("uniqueName") or "").startswith("registrar-")]
    assert len(registrar_apps) == len(faulty.run.submitted)
    # Nor a vault secret (a certificate's backing secret included) of no registration.
    in_vault = {p.name for p in faulty.host.secrets.list_properties_of_secrets()}
    assert in_vault == {s.id for s in faulty.run.submitted}


def test_each_app_holds_exactly_its_profiles_consent(faulty: FaultyRun) -> None:
    views = [s.view for s in faulty.run.submitted]
    state = asyncio.run(tenant_state(faulty.run.endpoints, views))
    resources = state["resources"]
    for s in faulty.run.submitted:
        roles: set[tuple[str, str]] = set()
        scopes: dict[str, set[str]] = {}
        for app_id, kind, name in expected_permissions(s):
            sp = resources[app_id]
            if kind == "application":
                role = next(r for r in sp.app_roles if r.value == name)
                roles.add((low(sp.id), low(role.id)))
            else:
                scopes.setdefault(low(sp.id), set()).add(name)
        found = state["apps"][s.id]
        label = f"{s.body['requestId']} {s.profile.id}"
        assert found["assignments"] == roles, label
        assert {r: granted for r, _, granted in found["grants"]} == scopes, label
        assert len(found["grants"]) == len(scopes), label
        assert all(kind == "AllPrincipals" for _, kind, _ in found["grants"]), label
