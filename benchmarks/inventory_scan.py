"""The inventory at scale: Graph requests, CPU and peak memory of a first scan and a rescan.

    .venv/bin/python -m benchmarks.inventory_scan [--applications 10000] [--service-principals 2000]

Starts its own Azurite and local tenant (devstack, free ports, temporary state), the tenant filled
by `--brownfield` with hand-made connector apps (secrets and certificates; 10 % of the service
principals with passwords of their own), then scans it with InventoryScanner over the real adapters
(the wiring of functions/bootstrap.py) in this process:

1. the first scan: a delta baseline per collection ($deltatoken=latest), then the lists at
   $top=999 with owners expanded, page by page into Table storage, then the sweep;
2. a rescan of the unchanged tenant: one deltaLink per collection.

Prints, per scan, the Graph requests the tenant served (by route), the scan's CPU time in this
process, and this process's peak resident memory (ru_maxrss). Targets (issue 15): the lists take
at most ceil(apps/999) + ceil(service principals/999) requests (11 + 3 for the defaults), peak
memory under 150 MB, a rescan at most 2 requests. The resource catalogues the profile match needs
(one request per resource, cached an hour) are counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devstack.stack import REPO_ROOT, Stack, StackOptions, stack_settings
from devstack.tenant import ca


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_local_azure(state_dir: Path, applications: int, service_principals: int) -> Stack:
    material_dir = state_dir / "tenant"
    ca.load_or_create(material_dir)
    os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = str(material_dir / "ca.pem")
    stack = Stack(
        StackOptions(
            port=0,
            state_dir=state_dir,
            settings_file=state_dir / "local.settings.json",
            run_host=False,
            tenant_args=[
                "--brownfield",
                str(applications),
                "--brownfield-service-principals",
                str(service_principals),
                "--no-throttling",  # the figures are requests, CPU and memory, not Graph's pacing
            ],
        )
    )
    endpoints = stack.start()
    sample = json.loads((REPO_ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    tenant = {
        k: endpoints[k]
        for k in ("tenantId", "authority", "graphUrl", "vaultUrl", "clientId", "clientSecret", "caFile")
    }
    os.environ.update(sample | stack_settings(endpoints["storageConnectionString"], tenant))
    return stack


class Admin:
    def __init__(self, endpoints: dict[str, Any]) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=endpoints["adminUrl"],
            verify=ssl.create_default_context(cafile=endpoints["caFile"]),
            timeout=60,
        )

    def graph_requests(self) -> dict[str, int]:
        stats = self._client.get("/stats").json()
        return {route: n for route, n in stats["byRoute"].items() if "/v1.0" in route}


def difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


async def measure(args: argparse.Namespace, endpoints: dict[str, Any]) -> int:
    from functions.bootstrap import services

    admin = Admin(endpoints)
    svc = await services().ready()
    scanner = svc.inventory_scanner()
    tenant_id = endpoints["tenantId"]
    await scanner.profile_sets(tenant_id)  # the catalogues, apart from the scan
    failures = []
    figures: dict[str, Any] = {}
    for name in ("first scan", "rescan (unchanged)"):
        before = admin.graph_requests()
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = await scanner.scan(tenant_id)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        served = difference(before, admin.graph_requests())
        total = sum(served.values())
        figures[name] = {"requests": total, "cpuMs": round(cpu * 1000), "wallS": round(wall, 1)}
        log(
            f"{name}: {outcome.mode}, {outcome.applications} application(s), {outcome.service_principals} "
            f"service principal(s) with credentials; {total} Graph request(s) {served}; "
            f"CPU {cpu * 1000:.0f} ms, wall {wall:.1f} s; peak RSS so far {peak_mb():.0f} MB"
        )
    apps_total = args.applications + 2  # plus Registrar's and the administrator's
    sps_total = args.service_principals + 2 + 5  # plus theirs and Microsoft's five
    list_target = math.ceil(apps_total / 999) + math.ceil(sps_total / 999)
    first, again = figures["first scan"]["requests"], figures["rescan (unchanged)"]["requests"]
    print(
        json.dumps(
            {
                "applications": apps_total,
                "servicePrincipals": sps_total,
                "firstScanRequests": first,
                "firstScanListTarget": list_target,
                "firstScanBaselineRequests": 2,
                "rescanRequests": again,
                "peakMemoryMB": round(peak_mb()),
                **{k.split()[0] + "CpuMs": v["cpuMs"] for k, v in figures.items()},
            }
        ),
        flush=True,
    )
    if first > list_target + 2:
        failures.append(f"first scan: {first} requests > {list_target} lists + 2 baselines")
    if again > 2:
        failures.append(f"rescan: {again} requests > 2")
    if peak_mb() >= 150:
        failures.append(f"peak memory {peak_mb():.0f} MB >= 150 MB")
    await services().close()
    for failure in failures:
        log(f"MISSED: {failure}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inventory_scan", description=__doc__)
    parser.add_argument("--applications", type=int, default=10_000)
    parser.add_argument("--service-principals", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inventory-scan-") as tmp:
        log(f"starting Azurite and a tenant with {args.applications} hand-made apps ...")
        stack = start_local_azure(Path(tmp), args.applications, args.service_principals)
        try:
            log("scanning")
            return asyncio.run(measure(args, stack.endpoints))
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
