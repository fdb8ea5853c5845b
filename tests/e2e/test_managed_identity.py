"""The production sign-in path through the local host: the function app's managed identity.

The stack gives the host IDENTITY_ENDPOINT and IDENTITY_HEADER, as App Service and Functions do,
and settings without any client id, secret or storage key, as Bicep writes them in Azure:
REGISTRAR_CREDENTIAL=managed_identity (system assigned) and an identity-based AzureWebJobsStorage
(service URIs, credential managedidentity) on Azurite over HTTPS with OAuth. The host's queue
triggers and the registrar reach Storage, Graph and Key Vault with tokens from the tenant's
identity endpoint, through azure-identity's ManagedIdentityCredential, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.rotation_support import GRAPH_SCOPE, Host, running_host, tag, wait_until


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Host]:
    with running_host(
        tmp_path_factory.mktemp("managed-identity-stack"),
        tenant_ca_dir,
        {},
        ["--propagation-delay", "1"],
        managed_identity=True,
    ) as client:
        yield client


def graph_get(host: Host, path: str) -> dict[str, Any]:
    """GET on the tenant's Graph as the bootstrap identity (the identity behind the managed one)."""
    token = host.credential().get_token(GRAPH_SCOPE).token
    with httpx.Client(verify=host._tls(), timeout=30) as client:
        response = client.get(
            f"{host.endpoints['graphUrl']}/{path}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_settings_hold_no_credential_and_the_host_registers_and_rotates(host: Host) -> None:
    settings_text = Path(host.endpoints["settingsFile"]).read_text(encoding="utf-8")
    values = json.loads(settings_text)["Values"]
    assert values["REGISTRAR_CREDENTIAL"] == "managed_identity"
    assert values["REGISTRAR_CLIENT_ID"] == values["REGISTRAR_CLIENT_SECRET"] == ""
    assert host.endpoints["clientSecret"] not in settings_text
    assert values["AzureWebJobsStorage"] == "" and "AccountKey" not in settings_text
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert values["AzureWebJobsStorage__queueServiceUri"].startswith("https://127.0.0.1:")
    # Azurite takes no anonymous request: what works below worked with the identity's tokens.
    anonymous = httpx.get(f"{values['AzureWebJobsStorage__queueServiceUri']}?comp=list", verify=host._tls())
    assert anonymous.status_code in (401, 403), anonymous.text

    registration_id, _ = host.register(f"mi-{tag()}", lifetime="P1D")
    view = host.wait_status(registration_id, "active", timeout_s=120)
    # Graph makes the caller (Application.ReadWrite.OwnedBy) the owner of what it creates: the
    # function app's identity, whose service principal is the tenant's bootstrap one.
    identity = graph_get(host, f"servicePrincipals(appId='{host.endpoints['clientId']}')")
    owners = graph_get(host, f"applications/{view['objectId']}/owners")["value"]
    assert [o["id"] for o in owners] == [identity["id"]]
    secret_name = view["credential"]["secretUri"].split("/secrets/", 1)[1].split("/", 1)[0]
    assert host.secrets.get_secret(secret_name).value

    assert host.rotate(registration_id).status_code == 202

    def rotated() -> dict[str, Any] | None:
        current = host.registration(registration_id)
        return current if current["credential"]["generation"] == 2 and current["status"] == "active" else None

    assert wait_until("generation 2", rotated, timeout_s=120)["appId"] == view["appId"]
