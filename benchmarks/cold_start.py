"""Cold start: how long a fresh process takes to import function_app, and how much more its first
registration costs than a warm one.

Starts Azurite and the local tenant, then runs fresh child processes with the app's settings in
their environment (as the Functions host gives them). Each child times `import function_app`,
then provisions one registration through the app's own handlers (POST /api/registrations, then
the queue worker on the message it enqueued), then a second one, warm. Prints figures (median
over the children); asserts nothing. Target: import under 0.5 s, SDKs loaded on first use.

    .venv/bin/python -m benchmarks.cold_start [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.provision_latency import REPO_ROOT, start_tenant
from devstack import azurite, processes

HEAVY_MODULES = ("msgraph", "azure.identity", "azure.keyvault.secrets", "azure.data.tables", "aiohttp")


def child() -> None:
    started = time.perf_counter()
    import function_app  # noqa: F401  (the measured import)

    imported = time.perf_counter() - started
    loaded_at_import = [m for m in HEAVY_MODULES if m in sys.modules]

    import asyncio

    import azure.functions as func
    from azure.functions.queue import QueueMessage

    from functions.triggers import http_registrations, queue_registrations

    async def provision(request_id: str) -> float:
        begin = time.perf_counter()
        body = {"requestId": request_id, "profile": "m365-usage-connector", "displayName": "cold start"}
        response = await http_registrations.create_registration(
            func.HttpRequest(
                method="POST",
                url="http://127.0.0.1/api/registrations",
                headers={"content-type": "application/json"},
                body=json.dumps(body).encode(),
            )
        )
        assert response.status_code == 202, response.get_body()
        message = json.dumps({"registrationId": json.loads(response.get_body())["id"]})
        await queue_registrations.registration_worker(QueueMessage(id="1", body=message.encode()))
        return time.perf_counter() - begin

    async def both() -> tuple[float, float]:
        tag = os.urandom(4).hex()
        return await provision(f"COLD-{tag}-1"), await provision(f"COLD-{tag}-2")

    first, warm = asyncio.run(both())
    print(json.dumps({"import": imported, "first": first, "warm": warm, "loadedAtImport": loaded_at_import}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="registrar-cold-") as tmp:
        state = Path(tmp) / "tenant"
        state.mkdir()
        storage = azurite.start()
        tenant_proc, tenant = start_tenant(state)
        try:
            env = {
                **os.environ,
                "AzureWebJobsStorage": storage.connection_string,
                "REGISTRAR_ENVIRONMENT": "local",
                "REGISTRAR_HOME_TENANT_ID": tenant["tenantId"],
                "REGISTRAR_AUTHORITY_HOST": tenant["authority"],
                "REGISTRAR_GRAPH_BASE_URL": tenant["graphUrl"],
                "REGISTRAR_KEY_VAULT_URL": tenant["vaultUrl"],
                "REGISTRAR_CREDENTIAL": "client_secret",
                "REGISTRAR_CLIENT_ID": tenant["clientId"],
                "REGISTRAR_CLIENT_SECRET": tenant["clientSecret"],
                "SSL_CERT_FILE": tenant["caFile"],
                "REQUESTS_CA_BUNDLE": tenant["caFile"],
                "PYTHONPATH": str(REPO_ROOT),
            }
            results: list[dict[str, Any]] = []
            for _ in range(args.runs):
                out = subprocess.run(
                    [sys.executable, "-c", "from benchmarks.cold_start import child; child()"],
                    cwd=REPO_ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                if out.returncode != 0:
                    raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            processes.stop(tenant_proc)
            storage.stop()

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(f"cold start over {len(results)} fresh processes (median)")
    print(f"  import function_app      : {median('import') * 1000:.0f} ms   (target < 500 ms)")
    print(f"  heavy SDKs at import     : {results[0]['loadedAtImport'] or 'none'}")
    print(f"  first registration       : {median('first') * 1000:.0f} ms (HTTP intake + worker, cold)")
    print(f"  second registration      : {median('warm') * 1000:.0f} ms (warm)")
    print(f"  first request extra cost : {(median('first') - median('warm')) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
