"""Every Azure SDK client the adapters build skips aiohttp's per-request proxy lookup unless a
proxy is configured, and data-plane clients keep a bounded connection pool
(functions.adapters.transport): checked on the real SDK objects."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from azure.core.pipeline.transport import AioHttpTransport

from functions.adapters.identity import EntraTokenProbe, IdentityConfig, RegistrarIdentity
from functions.adapters.keyvault import KeyVaultStore
from functions.adapters.queues import StorageQueues
from functions.adapters.tables import StorageConfig, table_service
from functions.adapters.transport import (
    CONNECTIONS_PER_HOST,
    PooledTransport,
    proxy_configured,
    sdk_client_options,
)

HOME = "11111111-1111-1111-1111-111111111111"
DATA_PLANE = ("key vault secrets", "key vault certificates", "table service", "queue")


def transports_of(root: Any, depth: int = 8) -> list[AioHttpTransport]:
    """The aiohttp transports reachable from an SDK object (its pipeline's private attributes)."""
    found: list[AioHttpTransport] = []
    seen: set[int] = set()
    todo: deque[tuple[Any, int]] = deque([(root, 0)])
    while todo:
        obj, level = todo.popleft()
        if id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, AioHttpTransport):
            found.append(obj)
            continue
        children: list[Any] = []
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, list | tuple):
            children = list(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in (
            "azure",
            "functions",
            "msal",
        ):
            children = list(vars(obj).values())
        todo.extend((child, level + 1) for child in children)
    return found


def clients() -> dict[str, Any]:
    settings = {
        "REGISTRAR_HOME_TENANT_ID": HOME,
        "REGISTRAR_CREDENTIAL": "client_secret",
        "REGISTRAR_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
        "REGISTRAR_CLIENT_SECRET": "not-a-real-secret",
        "REGISTRAR_AUTHORITY_HOST": "https://login.microsoftonline.com",
    }
    identity = RegistrarIdentity(IdentityConfig.from_env(settings))
    vault = KeyVaultStore(identity, "https://kv-registrar.vault.azure.net")
    storage = StorageConfig.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    probe = EntraTokenProbe("https://login.microsoftonline.com")
    managed = {**settings, "REGISTRAR_CREDENTIAL": "managed_identity", "REGISTRAR_CLIENT_SECRET": ""}
    return {
        "registrar credential": identity.credential(),
        "managed identity": RegistrarIdentity(IdentityConfig.from_env(managed)).credential(),
        "key vault secrets": vault.secrets,
        "key vault certificates": vault.certificates,
        "table service": table_service(storage),
        "queue": StorageQueues(storage).client("webhook-deliveries"),
        "probe credential": probe_credential(probe),
    }


def probe_credential(probe: EntraTokenProbe) -> Any:
    """The credential a token probe builds (it makes one per probe and closes it at once)."""
    from azure.identity.aio import ClientSecretCredential

    return ClientSecretCredential(HOME, "33333333-3333-3333-3333-333333333333", "x", **probe._kwargs())


def without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_proxy_detection_reads_either_case() -> None:
    assert not proxy_configured({})
    assert not proxy_configured({"NO_PROXY": "localhost", "HTTPS_PROXY": ""})
    assert proxy_configured({"https_proxy": "http://proxy.contoso.com:3128"})
    assert proxy_configured({"ALL_PROXY": "http://proxy.contoso.com:3128"})
    assert sdk_client_options({}) == {"use_env_settings": False}
    assert sdk_client_options({"HTTPS_PROXY": "http://proxy:3128"}) == {}


@pytest.mark.parametrize("proxy", [None, "http://proxy.contoso.com:3128"])
def test_clients_trust_the_environment_only_when_it_has_a_proxy(
    monkeypatch: pytest.MonkeyPatch, proxy: str | None
) -> None:
    without_proxy(monkeypatch)
    if proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    for name, client in clients().items():
        transports = transports_of(client)
        assert transports, f"{name}: no aiohttp transport found"
        assert all(t._use_env_settings is bool(proxy) for t in transports), name


def test_data_plane_clients_get_a_pooled_transport_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxy(monkeypatch)
    built = clients()
    # (Key Vault clients also reach their credential's transport, which is not a data-plane one.)
    pooled = {
        name: [t for t in transports_of(built[name]) if isinstance(t, PooledTransport)] for name in DATA_PLANE
    }
    assert all(len(found) == 1 for found in pooled.values()), pooled
    assert len({id(found[0]) for found in pooled.values()}) == len(DATA_PLANE)


@pytest.mark.parametrize("trust_env", [False, True])
async def test_the_pooled_session_is_made_in_the_loop_with_the_limit(trust_env: bool) -> None:
    transport = PooledTransport(use_env_settings=trust_env)
    assert transport.session is None  # nothing made before the loop runs it
    async with transport:
        session = transport.session
        assert session is not None
        assert session.connector is not None and session.connector.limit_per_host == CONNECTIONS_PER_HOST
        assert session.trust_env is trust_env
    assert session.closed
