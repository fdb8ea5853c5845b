"""What the Graph adapter's first calls cost in a fresh process, and why it reads JSON, not kiota models.

Starts the local tenant, then in this (fresh) process times: building the first GraphServiceClient
(imports), the first and second request, the Microsoft Graph resource catalogue (~1,500
permissions) read as JSON the way the adapter does, and the same response deserialized into
kiota models (ServicePrincipalCollectionResponse), which makes kiota import every Entity subtype.
Prints seconds; asserts nothing.

    .venv/bin/python -m benchmarks.graph_adapter_costs
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from benchmarks.provision_latency import start_tenant
from devstack import processes

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


async def measure(tenant: dict[str, Any]) -> dict[str, float]:
    from functions.adapters.graph import GraphDirectory
    from functions.adapters.identity import IdentityConfig, RegistrarIdentity
    from functions.core.ports import ApplicationSpec
    from functions.core.record.models import SecretValue

    figures: dict[str, float] = {}
    identity = RegistrarIdentity(
        IdentityConfig(
            authority_host=tenant["authority"],
            home_tenant_id=tenant["tenantId"],
            client_id=tenant["clientId"],
            client_secret=SecretValue(tenant["clientSecret"]),
        )
    )
    graph = GraphDirectory(identity, tenant["graphUrl"])
    tenant_id = tenant["tenantId"]
    try:
        start = time.perf_counter()
        client = graph.client(tenant_id)
        figures["first client (imports)"] = time.perf_counter() - start
        for label in ("first request (token + connection)", "second request"):
            start = time.perf_counter()
            await graph.find_application(tenant_id, f"absent-{uuid.uuid4().hex}")
            figures[label] = time.perf_counter() - start
        start = time.perf_counter()
        await graph.resource_catalog(tenant_id, GRAPH_APP_ID)
        figures["Graph catalogue as JSON (adapter)"] = time.perf_counter() - start
        start = time.perf_counter()
        app = await graph.upsert_application(tenant_id, ApplicationSpec(f"bench-{uuid.uuid4().hex}", "bench"))
        figures["first upsert_application (201)"] = time.perf_counter() - start
        await graph.delete_application(tenant_id, app.object_id)

        start = time.perf_counter()
        await client.service_principals.get(graph._config(filter=f"appId eq '{GRAPH_APP_ID}'"))
        figures["Graph catalogue as kiota models (not used)"] = time.perf_counter() - start
    finally:
        await graph.close()
        await identity.close()
    return figures


def main() -> int:
    warnings.simplefilter("ignore", DeprecationWarning)  # msgraph's generated classes warn at import
    with tempfile.TemporaryDirectory() as scratch:
        proc, tenant = start_tenant(Path(scratch) / "state")
        try:
            os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = tenant["caFile"]
            figures = asyncio.run(measure(tenant))
        finally:
            processes.stop(proc)
    width = max(len(label) for label in figures)
    for label, seconds in figures.items():
        print(f"{label:<{width}}  {seconds:7.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
