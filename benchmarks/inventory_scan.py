"""The inventory at scale: Graph requests, CPU and peak memory of a first scan and a rescan.

    .venv/bin/python -m benchmarks.inventory_scan [--applications 10000] [--service-principals 2000]

Starts its own Azurite and local tenant (devstack, free ports, temporary state), the tenant filled
by `--brownfield` with hand-made connector apps (secrets and certificates; every service principal
with a password of its own: `--brownfield-sp-passwords 1`), then scans it with InventoryScanner over the real adapters
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
import resource
import sys
import time
from typing import Any

from benchmarks.local_azure import Admin, local_azure, log


def graph_requests(admin: Admin) -> dict[str, int]:
    """The Graph requests the tenant served so far, by route."""
    stats = admin("GET", "/stats")
    return {route: n for route, n in stats["byRoute"].items() if "/v1.0" in route}


def difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


async def run(args: argparse.Namespace, endpoints: dict[str, Any]) -> int:
    from functions.bootstrap import services

    admin = Admin(endpoints, timeout_s=60)
    try:
        return await measure(await services().ready(), admin, args, endpoints)
    finally:
        admin.close()
        await services().close()  # every adapter's sessions: no "Unclosed client session" at exit


async def measure(svc: Any, admin: Admin, args: argparse.Namespace, endpoints: dict[str, Any]) -> int:
    scanner = svc.inventory_scanner()
    tenant_id = endpoints["tenantId"]
    await scanner.profile_sets(tenant_id)  # the catalogues, apart from the scan
    failures = []
    figures: dict[str, Any] = {}
    for name in ("first scan", "rescan (unchanged)"):
        before = graph_requests(admin)
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = await scanner.scan(tenant_id)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        served = difference(before, graph_requests(admin))
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
    for failure in failures:
        log(f"MISSED: {failure}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inventory_scan", description=__doc__)
    parser.add_argument("--applications", type=int, default=10_000)
    parser.add_argument("--service-principals", type=int, default=2_000)
    args = parser.parse_args()
    log(f"starting Azurite and a tenant with {args.applications} hand-made apps ...")
    tenant_args = [
        "--brownfield",
        str(args.applications),
        "--brownfield-service-principals",
        str(args.service_principals),
        "--brownfield-sp-passwords",
        "1",  # "2,000 service principals with credentials" (issue 15): each holds a password
        "--no-throttling",  # the figures are requests, CPU and memory, not Graph's pacing
    ]
    with local_azure("inventory-scan-", tenant_args) as stack:
        log("scanning")
        return asyncio.run(run(args, stack.endpoints))


if __name__ == "__main__":
    sys.exit(main())
