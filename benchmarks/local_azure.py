"""The local Azure the in-process benchmarks run against: Azurite and the devstack tenant, no host.

`local_azure(prefix, tenant_args)` starts both on free ports with temporary state, points this
process's settings (the sample's values and the stack's endpoints) and its trust at them, and stops
them at the end of the block. `Admin` is the tenant's /_sim API; `log` prints a timed line.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.stack import REPO_ROOT, Stack, StackOptions, stack_settings
from devstack.tenant import ca

_TENANT_KEYS = ("tenantId", "authority", "graphUrl", "vaultUrl", "clientId", "clientSecret", "caFile")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_local_azure(state_dir: Path, tenant_args: list[str]) -> Stack:
    """Azurite + the local tenant (no host); this process trusts the tenant's CA before any
    aiohttp import (aiohttp reads SSL_CERT_FILE once, at import)."""
    material_dir = state_dir / "tenant"
    ca.load_or_create(material_dir)
    os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = str(material_dir / "ca.pem")
    stack = Stack(
        StackOptions(
            port=0,
            state_dir=state_dir,
            settings_file=state_dir / "local.settings.json",
            run_host=False,
            tenant_args=tenant_args,
        )
    )
    endpoints = stack.start()
    sample = json.loads((REPO_ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    tenant = {key: endpoints[key] for key in _TENANT_KEYS}
    os.environ.update(sample | stack_settings(endpoints["storageConnectionString"], tenant))
    return stack


@contextmanager
def local_azure(prefix: str, tenant_args: list[str]) -> Iterator[Stack]:
    """A local Azure on temporary state for the length of the block."""
    with tempfile.TemporaryDirectory(prefix=prefix) as state:
        stack = start_local_azure(Path(state), tenant_args)
        try:
            yield stack
        finally:
            stack.stop()


class Admin:
    """The tenant's /_sim API (close() when done)."""

    def __init__(self, endpoints: dict[str, Any], timeout_s: float = 30) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=endpoints["adminUrl"],
            verify=ssl.create_default_context(cafile=endpoints["caFile"]),
            timeout=timeout_s,
        )

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        response = self._client.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def close(self) -> None:
        self._client.close()
