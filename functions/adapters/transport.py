"""HTTP transport for the Azure SDK clients the adapters build (Storage, Key Vault, identity).

Two defaults of azure-core's aiohttp transport cost a burst of calls dearly:
- It opens its session with trust_env=True, so aiohttp looks up the proxy variables and reads
  ~/.netrc on every request, in the default thread pool: about half the client CPU of a Storage
  or Key Vault call (client CPU per call: queue send 3.7 -> 2.4 ms, table upsert 3.4 -> 1.3 ms,
  Key Vault get 3.1 -> 1.6 ms). The environment is
  trusted only when it configures a proxy, so a deployment behind an egress proxy (HTTPS_PROXY,
  NO_PROXY for the exceptions) still sends through it, as azure-core documents.
- Its pool allows 100 connections, so a fan-out of 100 deliveries opens 100 TLS connections to
  Key Vault at once: 100 handshakes (100 concurrent reads: 300 ms of client CPU and 150 ms of
  the server's; with 16 connections, 135 ms and 60 ms), and on Azure as many SNAT ports, which the Functions
  guidance on managing connections asks to spare. Data-plane clients keep at most
  CONNECTIONS_PER_HOST, reused; a call beyond that waits for a free one (a few milliseconds).
The figures come from benchmarks/sdk_call_costs.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")
# Above the host's queue concurrency for one function (host.json batchSize 16 + newBatchThreshold 8
# would want 24, but each delivery holds a Key Vault connection for ~2 ms of its ~60 ms).
CONNECTIONS_PER_HOST = 16


def proxy_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when any proxy variable is set (either case, as urllib and aiohttp read them)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) or env.get(name.lower()) for name in PROXY_VARIABLES)


def sdk_client_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for an azure-core credential (they reach its default transport)."""
    return {} if proxy_configured(environ) else {"use_env_settings": False}


def data_plane_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for a data-plane client: its own pooled transport (one per client)."""
    return {"transport": PooledTransport(use_env_settings=proxy_configured(environ))}


class PooledTransport(AioHttpTransport):
    """azure-core's aiohttp transport with a bounded connection pool per host.

    The session is made on first use, inside the event loop (aiohttp requires a running loop),
    and closed with the client like the default one.
    """

    def __init__(self, *, use_env_settings: bool, connections_per_host: int = CONNECTIONS_PER_HOST) -> None:
        super().__init__(use_env_settings=use_env_settings)
        self._trust_env = use_env_settings
        self._connections_per_host = connections_per_host

    async def open(self) -> None:
        if getattr(self, "session", None) is None:
            import aiohttp

            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=self._connections_per_host),
                trust_env=self._trust_env,
                cookie_jar=aiohttp.DummyCookieJar(),  # as azure-core's own session
                auto_decompress=False,
            )
        await super().open()
