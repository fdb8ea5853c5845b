"""With --state-dir, the Graph directory survives a restart: apps, credentials, SPs, consent."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import (
    GRAPH_SCOPE,
    RawGraph,
    credential,
    graph_role_ids,
    self_signed,
    unique,
)


def snapshot(raw: RawGraph, app_id: str, sp_id: str) -> dict[str, Any]:
    status, _, app = raw.call(
        "GET",
        f"/applications(appId='{app_id}')?$select=id,displayName,uniqueName,tags,keyCredentials,passwordCredentials",
    )
    assert status == 200, app
    fics = raw.call("GET", f"/applications/{app['id']}/federatedIdentityCredentials")[2]["value"]
    owners = raw.call("GET", f"/applications/{app['id']}/owners")[2]["value"]
    assignments = raw.call("GET", f"/servicePrincipals/{sp_id}/appRoleAssignments")[2]["value"]
    grants = raw.call("GET", f"/oauth2PermissionGrants?$filter=clientId%20eq%20'{sp_id}'")[2]["value"]
    app.pop("@odata.context")
    return {
        "app": app,
        "fics": [f["name"] for f in fics],
        "owners": [o["id"] for o in owners],
        "assignments": [a["id"] for a in assignments],
        "grants": [(g["id"], g["scope"]) for g in grants],
    }


def test_directory_survives_a_restart(make_tenant_process: Any, tmp_path: Path) -> None:
    process: TenantProcess = make_tenant_process(state_dir=tmp_path / "state")
    raw = RawGraph(process)
    status, _, app = raw.call(
        "PATCH",
        f"/applications(uniqueName='{unique('persist')}')",
        {"displayName": "persisted", "signInAudience": "AzureADMyOrg", "tags": ["kept"]},
        headers={"Prefer": "create-if-missing"},
    )
    assert status == 201, app
    _, der = self_signed("persisted")
    key = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode()}
    assert raw.call("PATCH", f"/applications/{app['id']}", {"keyCredentials": [key]})[0] == 204
    status, _, password = raw.call(
        "POST", f"/applications/{app['id']}/addPassword", {"passwordCredential": {}}
    )
    assert status == 200
    fic = {
        "name": "deploy",
        "issuer": "https://issuer.test",
        "subject": "s",
        "audiences": ["api://AzureADTokenExchange"],
    }
    assert raw.call("POST", f"/applications/{app['id']}/federatedIdentityCredentials", fic)[0] == 201
    status, _, sp = raw.call("POST", "/servicePrincipals", {"appId": app["appId"]})
    assert status == 201
    roles = graph_role_ids(raw)
    assignment = {
        "principalId": sp["id"],
        "resourceId": roles["__sp__"],
        "appRoleId": roles["Application.Read.All"],
    }
    assert raw.call("POST", f"/servicePrincipals/{roles['__sp__']}/appRoleAssignedTo", assignment)[0] == 201
    grant = {
        "clientId": sp["id"],
        "consentType": "AllPrincipals",
        "resourceId": roles["__sp__"],
        "scope": "User.Read",
    }
    assert raw.call("POST", "/oauth2PermissionGrants", grant)[0] == 201
    before = snapshot(raw, app["appId"], sp["id"])

    process.restart()

    after = snapshot(RawGraph(process), app["appId"], sp["id"])
    assert after == before
    assert before["app"]["keyCredentials"][0]["key"] == key["key"]
    assert len(before["assignments"]) == 1 and len(before["grants"]) == 1 and before["fics"] == ["deploy"]
    # The secret's digest survived too: the secret still gets a token.
    assert credential(process, app["appId"], password["secretText"]).get_token(GRAPH_SCOPE).token
