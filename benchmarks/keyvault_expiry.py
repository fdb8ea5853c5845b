"""Cost of the local Key Vault's expiry scanner: a scan pops only what is due (two heaps).

Prints the time of one idle scan with N pending expiry times (independent of N), and the time per
due entry when a batch comes due. Run:

    .venv/bin/python -m benchmarks.keyvault_expiry [--pending 200000] [--due 10000]
"""

from __future__ import annotations

import argparse
import time

from devstack.tenant.context import SimulationConfig
from devstack.tenant.keyvault.expiry import ExpiryScheduler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=200_000)
    parser.add_argument("--due", type=int, default=10_000)
    args = parser.parse_args()

    sim = SimulationConfig(near_expiry_window_s=3600.0)
    fired = 0

    def fire(kind: str, object_type: str, name: str, version: str, exp: int) -> None:
        nonlocal fired
        fired += 1

    scheduler = ExpiryScheduler(sim, fire)
    now = time.time()
    far = int(now) + 365 * 24 * 3600
    started = time.perf_counter()
    for i in range(args.pending):
        scheduler.watch("Secret", f"s{i}", f"{i:032x}", far + i)
    watch_s = time.perf_counter() - started

    idle_runs = 1000
    started = time.perf_counter()
    for _ in range(idle_runs):
        scheduler.scan(now)
    idle_s = (time.perf_counter() - started) / idle_runs

    for i in range(args.due):
        scheduler.watch("Secret", f"d{i}", f"{i:032x}", int(now) + 10)
    started = time.perf_counter()
    scheduler.scan(now + 20)  # every due entry: one NearExpiry and one Expired pop each
    due_s = time.perf_counter() - started

    print(f"watch: {watch_s / args.pending * 1e6:.2f} us per version ({args.pending} pending)")
    print(f"idle scan with {args.pending} pending: {idle_s * 1e6:.2f} us")
    print(
        f"due scan: {args.due} versions, {fired} callbacks, {due_s * 1e3:.1f} ms ({due_s / fired * 1e6:.2f} us each)"
    )


if __name__ == "__main__":
    main()
