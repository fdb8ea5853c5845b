"""With --state-dir, the local tenant's identities, tenants and vault survive a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import add_password, graph_client, new_app_with_principal

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def secret_credential(authority: str, tenant_id: str, client_id: str, secret: str) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant_id, client_id, secret, authority=authority, disable_instance_discovery=True
    )


def test_identities_tenants_and_vault_survive_a_restart(
    make_tenant_process: Callable[..., TenantProcess], tmp_path: Path
) -> None:
    process = make_tenant_process(state_dir=tmp_path / "state")
    before = dict(process.info)
    second = process.create_tenant()
    home = secret_credential(process.authority, process.tenant_id, process.client_id, process.client_secret)
    vault = SecretClient(process.vault_url, home, verify_challenge_resource=False)
    vault.set_secret("survives-restart", "kept-value")

    async def make_app() -> tuple[str, str]:
        async with graph_client(process) as client:
            app, _ = await new_app_with_principal(client, f"persisted-{uuid.uuid4()}")
            assert app.app_id is not None
            return app.app_id, str((await add_password(client, app)).secret_text)

    app_id, app_secret = asyncio.run(make_app())

    assert process.stop() == 0  # SIGTERM is a clean stop
    process.start()

    for key in ("tenantId", "clientId", "clientSecret", "caFile"):
        assert process[key] == before[key]
    home = secret_credential(process.authority, process.tenant_id, process.client_id, process.client_secret)
    assert home.get_token(GRAPH_SCOPE).token
    other = secret_credential(
        process.authority, second["tenantId"], second["clientId"], second["clientSecret"]
    )
    assert other.get_token(GRAPH_SCOPE).token
    vault = SecretClient(process.vault_url, home, verify_challenge_resource=False)
    assert vault.get_secret("survives-restart").value == "kept-value"
    # The app made through Graph, its service principal and its secret came back too.
    made = secret_credential(process.authority, process.tenant_id, app_id, app_secret)
    assert made.get_token(GRAPH_SCOPE).token


def test_writes_are_saved_soon_after_they_happen_even_without_a_clean_stop(
    make_tenant_process: Callable[..., TenantProcess], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    process = make_tenant_process(state_dir=state_dir)
    second = process.create_tenant()
    state_file = state_dir / "state.json"
    deadline = time.monotonic() + 15
    while not (state_file.exists() and second["tenantId"] in state_file.read_text()):
        assert time.monotonic() < deadline, "the debounced save never happened"
        time.sleep(0.2)

    process.kill()
    process.start()

    other = secret_credential(
        process.authority, second["tenantId"], second["clientId"], second["clientSecret"]
    )
    assert other.get_token(GRAPH_SCOPE).token
