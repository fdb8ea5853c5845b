"""Bulk onboarding: a backlog in tenant A paces to A's Graph budget and leaves tenant B as fast as idle.

    .venv/bin/python -m benchmarks.bulk_onboarding [--a 300] [--b 10] [--scale 0.5] [--slots 16]

Runs against its own Azurite and local tenant (devstack, free ports, temporary state), with a
second tenant made through the tenant's admin API (POST /_sim/tenants) and reached through
REGISTRAR_TENANT_CREDENTIALS, as an MSP's customer tenant is. Registrations of PROFILE are
accepted (validated, written to Table storage) first, then run by the Provisioner over the real
adapters (the wiring of functions/bootstrap.py), `--slots` at once as the host's queue batch runs
them: a job the core defers (Deferred) leaves its slot and comes back after its retry_after, as the
re-enqueued message with that visibility delay would.

1. Idle baseline: B's `--b` registrations alone (after one to warm B's tokens and catalogues),
   Graph throttled to `--scale` x its budgets. Also gives the Graph writes one registration
   makes (the pacer counts them).
2. Backlog: A's write budget is drained first (as rotation_sweep does), so its ceiling is the
   refill rate; A's `--a` registrations start, and `--b-after` seconds later B's `--b`.
Prints A's throughput against its ceiling (target >= 95 %), the 429s Graph answered per
registration (target <= 0.2), and B's latency against its idle baseline (target <= 2x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
import uuid
from typing import Any

from benchmarks.local_azure import Admin, local_azure, log
from benchmarks.rotation_sweep import WRITES_PER_WINDOW, WRITES_WINDOW_S, drain_write_budget

PROFILE = "m365-usage-connector"


async def accept_all(svc: Any, tenant_id: str, count: int, tag: str) -> list[str]:
    """`count` accepted registrations of PROFILE in `tenant_id` (the queue worker's intake)."""
    from functions.core.intake.accept import accept, plan_from_validated
    from functions.core.intake.requests import validate_request

    gate = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        body = {
            "requestId": f"BULK-{tag}-{i}-{uuid.uuid4().hex[:6]}",
            "profile": PROFILE,
            "tenantId": tenant_id,
            "displayName": f"bulk {tag} {i}",
        }
        async with gate:
            validated = await validate_request(
                body,
                directory=svc.directory,
                home_tenant_id=svc.settings.home_tenant_id,
                catalogue=svc.catalogue,
                policy=svc.policy,
            )
            accepted = await accept(
                validated.request,
                plan_from_validated(validated),
                body,
                store=svc.store,
                vault=svc.vault,
                clock=svc.clock,
            )
        if accepted.registration.plan.approval_reasons:
            raise SystemExit(f"{PROFILE} needs approval here: {accepted.registration.plan.approval_reasons}")
        return accepted.registration.id

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class Worker:
    """The queue worker's slots: a job holds one while it runs; a deferred job waits outside."""

    def __init__(self, svc: Any, slots: int) -> None:
        self.svc = svc
        self.gate = asyncio.Semaphore(slots)
        self.deferrals: dict[str, int] = {}
        self.reruns = 0
        self.failures: list[str] = []

    async def provision(self, registration_id: str, tenant: str) -> float | None:
        """Run one registration to its end; the monotonic time it ended (None: failed)."""
        from functions.core.record.errors import Deferred, TransientError

        for attempt in range(300):
            async with self.gate:
                try:
                    record = await self.svc.provisioner().run(registration_id)
                except Deferred as deferred:
                    self.deferrals[tenant] = self.deferrals.get(tenant, 0) + 1
                    wait = deferred.retry_after.total_seconds()
                except TransientError:
                    self.reruns += 1
                    wait = 1.0 + min(attempt, 10) * 0.5
                else:
                    if record.status.value != "active":
                        self.failures.append(
                            f"{registration_id}: {record.status.value} {record.last_error}"[:300]
                        )
                        return None
                    return time.monotonic()
            await asyncio.sleep(wait)  # on the queue, invisible: the slot serves another job
        self.failures.append(f"{registration_id}: not done after 300 deliveries")
        return None


async def run_batch(worker: Worker, ids: list[str], tenant: str) -> list[float]:
    """Latencies (s) of `ids`, all enqueued now."""
    started = time.monotonic()
    ends = await asyncio.gather(*(worker.provision(i, tenant) for i in ids))
    return [end - started for end in ends if end is not None]


async def run(args: argparse.Namespace, endpoints: dict[str, Any]) -> int:
    from functions.bootstrap import Services
    from functions.settings import get_settings

    admin = Admin(endpoints)
    other = admin("POST", "/tenants", {})
    tenant_a, tenant_b = endpoints["tenantId"], other["tenantId"]
    os.environ["REGISTRAR_TENANT_CREDENTIALS"] = json.dumps(
        {tenant_b: {"clientId": other["clientId"], "clientSecret": other["clientSecret"]}}
    )
    os.environ["REGISTRAR_GRAPH_BUDGET_SCALE"] = str(args.scale)  # the pacer knows the local scale
    svc = Services(get_settings())
    try:
        return await measure(svc, admin, args, endpoints, tenant_a, tenant_b)
    finally:
        admin.close()
        await svc.close()


async def measure(  # noqa: PLR0917  (one linear script)
    svc: Any, admin: Admin, args: argparse.Namespace, endpoints: dict[str, Any], tenant_a: str, tenant_b: str
) -> int:
    await svc.ready()
    admin("PUT", "/config", {"throttlingEnabled": False})
    log(f"accepting {args.a} registrations in A and 2 x {args.b} in B ({PROFILE})...")
    ids_a = await accept_all(svc, tenant_a, args.a, "A")
    warm_b = await accept_all(svc, tenant_b, 1, "Bwarm")
    baseline_b = await accept_all(svc, tenant_b, args.b, "B0")
    busy_b = await accept_all(svc, tenant_b, args.b, "B1")

    scale = args.scale
    ceiling_writes = WRITES_PER_WINDOW * scale / WRITES_WINDOW_S
    admin("PUT", "/config", {"throttlingEnabled": True, "throttleScale": scale})
    admin("POST", "/throttling/reset")
    pacer = svc.directory.pacer
    worker = Worker(svc, args.slots)

    await run_batch(worker, warm_b, "B")  # B's tokens and catalogues: the baseline is not a cold start
    log(f"idle baseline: {args.b} registrations in B alone, Graph at {scale:g} x budget...")
    writes_before = pacer.stats.writes.get(tenant_b.lower(), 0)
    idle = await run_batch(worker, baseline_b, "B")
    writes_per_registration = (pacer.stats.writes.get(tenant_b.lower(), 0) - writes_before) / max(
        len(idle), 1
    )

    log(f"draining A's write budget ({WRITES_PER_WINDOW * scale:.0f} writes)...")
    drain_started = time.monotonic()
    drain_write_budget(endpoints, int(WRITES_PER_WINDOW * scale) + 50)
    refilled = (time.monotonic() - drain_started) * ceiling_writes
    before = admin("GET", "/stats")
    throttled_before = dict(pacer.stats.by_tenant)
    log(
        f"backlog: {args.a} registrations in A, {args.b} in B after {args.b_after:g} s, {args.slots} slots..."
    )
    started = time.monotonic()

    async def b_later() -> list[float]:
        await asyncio.sleep(args.b_after)
        return await run_batch(worker, busy_b, "B")

    a_latencies, busy = await asyncio.gather(run_batch(worker, ids_a, "A"), b_later())
    elapsed_a = max(a_latencies) if a_latencies else time.monotonic() - started
    after = admin("GET", "/stats")

    done_a = len(a_latencies)
    ceiling_a = (refilled + ceiling_writes * elapsed_a) / elapsed_a / writes_per_registration
    share = done_a / elapsed_a / ceiling_a
    graph_429 = after.get("throttled429", 0) - before.get("throttled429", 0)
    seen_a = pacer.stats.by_tenant.get(tenant_a.lower(), 0) - throttled_before.get(tenant_a.lower(), 0)
    seen_b = pacer.stats.by_tenant.get(tenant_b.lower(), 0) - throttled_before.get(tenant_b.lower(), 0)
    per_registration = graph_429 / max(done_a + len(busy), 1)
    idle_median, busy_median = statistics.median(idle), statistics.median(busy) if busy else float("inf")
    ratio = max(busy) / max(idle) if busy and idle else float("inf")
    print()
    print(
        f"tenant A: {done_a} of {args.a} registrations in {elapsed_a:.1f} s = {done_a / elapsed_a:.2f}/s;"
        f" ceiling {ceiling_a:.2f}/s ({WRITES_PER_WINDOW * scale:.0f} writes per {WRITES_WINDOW_S:.0f} s,"
        f" drained first; {writes_per_registration:.1f} writes per registration) -> {share:.0%} (target >= 95 %)"
    )
    print(
        f"Graph 429s: {graph_429} = {per_registration:.2f} per registration (target <= 0.2);"
        f" seen by the pacer: A {seen_a}, B {seen_b}; deferrals {worker.deferrals}; transient re-runs {worker.reruns}"
    )
    print(
        f"tenant B: {len(busy)} of {args.b} during A's backlog: median {busy_median:.2f} s, slowest {max(busy, default=0):.2f} s;"
        f" idle baseline median {idle_median:.2f} s, slowest {max(idle, default=0):.2f} s"
        f" -> {ratio:.2f}x (slowest against slowest; target <= 2x)"
    )
    print(f"failed: {len(worker.failures)} (target: 0)")
    for failure in worker.failures[:10]:
        print(f"  {failure}")
    ok = share >= 0.95 and per_registration <= 0.2 and ratio <= 2 and not worker.failures
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=int, default=300, help="registrations in tenant A (the backlog)")
    parser.add_argument("--b", type=int, default=10, help="registrations in tenant B")
    parser.add_argument("--b-after", type=float, default=10.0, help="seconds into A's backlog B's arrive")
    parser.add_argument("--scale", type=float, default=0.5, help="Graph throttling budgets x this")
    parser.add_argument("--slots", type=int, default=16, help="jobs at once (host.json batchSize)")
    args = parser.parse_args()
    # The pacer's and the workflow's warnings (a 429, a deferral) are the figures here, not lines.
    logging.getLogger("functions").setLevel(logging.ERROR)
    with local_azure("bulk-onboarding-", ["--propagation-delay", "0"]) as stack:
        return asyncio.run(run(args, stack.endpoints))


if __name__ == "__main__":
    sys.exit(main())
