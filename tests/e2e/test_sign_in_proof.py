"""Proof of use, end to end through the local host: with REGISTRAR_SIGN_IN_PROOF on and
AuditLog.Read.All granted to Registrar's identity, an after-confirm registration's old credential
retires once the connector acquires a token with the new one, without any confirm call.

A private stack (sweep every 2 s, overlap 5 s). The grant is made by the tenant's administrator
before Registrar asks Graph for anything, so its first Graph token already carries the role.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from azure.identity import ClientSecretCredential

from tests.e2e.after_confirm_support import rotate_unconfirmed
from tests.e2e.rotation_support import (
    GRAPH_SCOPE,
    Host,
    Receiver,
    leaks,
    private_host,
    start_private_stack,
    wait_until,
)

pytestmark = pytest.mark.slow

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
SETTINGS = {
    "REGISTRAR_ROTATION_SCHEDULE": "*/2 * * * * *",
    "REGISTRAR_ROTATION_OVERLAP": "PT5S",
    "REGISTRAR_SIGN_IN_PROOF": "true",
}


def grant_audit_log_read(endpoints: dict[str, Any]) -> None:
    """As the tenant's administrator: Graph's AuditLog.Read.All for Registrar's service principal."""
    admin = ClientSecretCredential(
        endpoints["tenantId"],
        endpoints["adminClientId"],
        endpoints["adminClientSecret"],
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    token = admin.get_token(GRAPH_SCOPE).token
    graph = endpoints["graphUrl"]
    with httpx.Client(
        verify=ssl.create_default_context(cafile=endpoints["caFile"]),
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:

        def principal_of(app_id: str) -> dict[str, Any]:
            found = client.get(f"{graph}/servicePrincipals", params={"$filter": f"appId eq '{app_id}'"})
            assert found.status_code == 200, found.text
            (sp,) = found.json()["value"]
            return sp  # type: ignore[no-any-return]

        graph_sp = principal_of(GRAPH_APP_ID)
        registrar_sp = principal_of(endpoints["clientId"])
        (role,) = [r["id"] for r in graph_sp["appRoles"] if r["value"] == "AuditLog.Read.All"]
        granted = client.post(
            f"{graph}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
            json={"principalId": registrar_sp["id"], "resourceId": graph_sp["id"], "appRoleId": role},
        )
        assert granted.status_code == 201, granted.text


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Host]:
    stack = start_private_stack(tmp_path_factory.mktemp("sign-in-proof-stack"), tenant_ca_dir, SETTINGS)
    grant_audit_log_read(stack.endpoints)
    client = private_host(stack)
    try:
        yield client
    finally:
        client.close()
        stack.stop()


def test_a_token_acquired_with_the_new_credential_retires_the_old_one_without_a_confirm_call(
    host: Host, receiver: Receiver
) -> None:
    # Registrar's own verification signing in with the new secret is no proof: the overlap ends,
    # the old credential stays and is announced at risk (unconfirmed).
    rotation = rotate_unconfirmed(host, receiver, "proof", "e2e proof of use")
    registration_id, first, rotated = rotation.registration_id, rotation.first, rotation.rotated
    path, old_key, new_key = rotation.webhook_path, rotation.old_key, rotation.new_key

    # The connector reads its new secret from Key Vault and acquires a token with it.
    secret_uri = urlparse(rotated["credential"]["secretUri"]).path.strip("/").split("/")
    name, version = secret_uri[1], (secret_uri[2] if len(secret_uri) > 2 else None)
    value = host.secrets.get_secret(name, version).value
    assert value
    host.seen.add(value)
    connector = ClientSecretCredential(
        host.endpoints["tenantId"],
        first["appId"],
        value,
        authority=host.endpoints["authority"],
        disable_instance_discovery=True,
    )
    assert connector.get_token(GRAPH_SCOPE).token

    wait_until(
        "the old credential's retirement, proven by the sign-in",
        lambda: old_key not in {p["keyId"] for p in host.passwords(first["appId"])},
        timeout_s=60,
    )
    retired = wait_until(
        "credential.retired",
        lambda: [e for e in receiver.events(path) if e["type"] == "credential.retired"],
        20,
    )
    assert retired[0]["data"]["keyId"] == old_key
    view = host.registration(registration_id)
    assert view["credential"]["keyId"] == new_key and view["credential"]["confirmedOn"]
    assert new_key in {p["keyId"] for p in host.passwords(first["appId"])}


def test_no_secret_value_in_the_log_or_storage(host: Host) -> None:
    """After the proof of use: the connector's current secret, the webhook signing
    secrets and every value in the vault appear in no log line, Table entity or queue message."""
    values = host.all_secret_values() | host.seen
    assert len(values) >= 2, "the leak check needs the secrets it looks for"
    places = host.leak_places()
    assert places.get("host log")
    assert leaks(values, places) == []
