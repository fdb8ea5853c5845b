"""HTTP options shared by every Azure SDK client the adapters build (Storage, Key Vault, identity).

azure-core's aiohttp transport opens its session with trust_env=True by default. aiohttp then
looks up the proxy variables and reads ~/.netrc on every request, in the default thread pool,
and hands the answer back to the event loop: about half the client-side CPU of a Storage or
Key Vault call (queue send 3.5 -> 1.7 ms, Key Vault get 2.4 -> 1.4 ms; see
benchmarks/sdk_call_costs.py). In a fan-out of webhook deliveries that is most of the work.

The environment is trusted only when it configures a proxy, so a deployment behind an egress
proxy (HTTPS_PROXY, with NO_PROXY for the exceptions) still sends through it, as azure-core
documents; everywhere else the lookup is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")


def proxy_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when any proxy variable is set (either case, as urllib and aiohttp read them)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) or env.get(name.lower()) for name in PROXY_VARIABLES)


def sdk_client_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for an azure-core based client or credential (they reach its transport)."""
    return {} if proxy_configured(environ) else {"use_env_settings": False}
