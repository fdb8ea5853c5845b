"""The resume sweep costs O(in flight), not O(all registrations).

    .venv/bin/python -m benchmarks.resume_sweep [--settled 0,1000,5000] [--in-flight 10,50] [--runs 5]

Against its own Azurite (free ports, in memory), with the real Tables adapters: the Registrations
table grows to each `--settled` count (active registrations, no lease: what a sweep must never
read), and for each `--in-flight` count that many registrations have crashed work in the in-flight
index (entries older than a work lease, leases lapsed). One sweep (`resume_lapsed`) per run; the
entries are written back as crashed before each run. Prints per setting: the entities the sweep
read (in-flight entries + registration point reads, counted at the ports), the messages it sent
again, and its median time. Target: entities read = 2 x in flight whatever the settled count, and
a time that follows the in-flight count, not the settled one (the ratio printed last).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack import azurite

TENANT = "11111111-2222-3333-4444-555555555555"


class Counting:
    """Counts what the sweep reads through the ports (entities returned to it)."""

    def __init__(self, index: Any, store: Any) -> None:
        self.index, self.store = index, store
        self.entities = 0
        self.sent = 0

    # InFlightIndex
    async def all(self) -> Any:
        found = await self.index.all()
        self.entities += len(found)
        return found

    async def mark_resumed(self, work: Any, at: datetime) -> bool:
        return bool(await self.index.mark_resumed(work, at))

    async def remove(self, key: str, etag: str | None = None) -> None:
        await self.index.remove(key, etag)

    async def put(self, work: Any) -> str:
        return str(await self.index.put(work))

    # RegistrationStore (the sweep only reads)
    async def get(self, registration_id: str) -> Any:
        record = await self.store.get(registration_id)
        self.entities += 1
        return record

    # MessageQueue (a sink: the sweep's sends are counted, not delivered)
    async def send(self, queue_name: str, message: str, *, visibility_timeout: Any = None) -> None:
        self.sent += 1


def registration(registration_id: str, now: datetime) -> Any:
    from functions.core.record.models import CredentialSpec, CredentialType, RegistrationStatus
    from functions.core.record.registration import ProvisioningPlan, Registration

    return Registration(
        id=registration_id,
        request_id=f"BENCH-{registration_id}",
        fingerprint="bench",
        profile_id="m365-usage-connector",
        tenant_id=TENANT,
        status=RegistrationStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        plan=ProvisioningPlan(
            display_name=registration_id,
            credential=CredentialSpec(CredentialType.SECRET, timedelta(days=180)),
        ),
    )


async def create_many(store: Any, ids: list[str], now: datetime) -> None:
    for start in range(0, len(ids), 50):
        await asyncio.gather(*(store.create(registration(i, now)) for i in ids[start : start + 50]))


async def run(args: argparse.Namespace, connection_string: str) -> list[tuple[int, int, int, int, float]]:
    from functions.adapters.table_index import TableInFlightIndex
    from functions.adapters.tables import StorageConfig, TableRegistrationStore, ensure_tables, table_service
    from functions.core.record.inflight import provisioning_work
    from functions.core.record.keeper import WORK_LEASE
    from functions.core.recovery.resume import resume_lapsed
    from functions.resources import REGISTRATION_REQUESTS_QUEUE, REGISTRATIONS_TABLE

    class Clock:
        def now(self) -> datetime:
            return datetime.now(UTC)

    service = table_service(StorageConfig(connection_string=connection_string))
    await ensure_tables(service)
    store = TableRegistrationStore(service, REGISTRATIONS_TABLE)
    index = TableInFlightIndex(service)
    now = datetime.now(UTC)
    crashed_at = now - WORK_LEASE - timedelta(seconds=1)
    max_in_flight = max(args.in_flight)
    crashed = [f"reg-crashed-{n:05d}" for n in range(max_in_flight)]
    await create_many(store, crashed, now)
    rows: list[tuple[int, int, int, int, float]] = []
    settled = 0
    await resume_lapsed(index, store, Counting(index, store), Clock())  # type: ignore[arg-type]  # warm-up: connections
    try:
        for total in sorted(args.settled):
            await create_many(store, [f"reg-settled-{n:06d}" for n in range(settled, total)], now)
            settled = total
            for in_flight in sorted(args.in_flight):
                times, reads, sent = [], 0, 0
                for _ in range(args.runs):
                    for key in [w.key for w in await index.all()]:
                        await index.remove(key)
                    for registration_id in crashed[:in_flight]:
                        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, crashed_at)
                        await index.put(replace(work, touched_at=crashed_at))
                    counting = Counting(index, store)
                    started = time.perf_counter()
                    result = await resume_lapsed(counting, counting, counting, Clock())  # type: ignore[arg-type]
                    times.append(time.perf_counter() - started)
                    assert len(result.resumed) == in_flight, result
                    reads, sent = counting.entities, counting.sent
                rows.append((total + max_in_flight, in_flight, reads, sent, statistics.median(times)))
    finally:
        await index.close()
        await store.close()
        await service.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settled", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1000, 5000])
    parser.add_argument("--in-flight", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("functions").setLevel(logging.ERROR)  # each resume logs a warning: figures only
    with azurite.start() as storage:
        rows = asyncio.run(run(args, storage.connection_string))
    print(f"{'registrations':>13} {'in flight':>9} {'entities read':>13} {'re-sent':>7} {'sweep ms':>9}")
    for total, in_flight, reads, sent, seconds in rows:
        print(f"{total:>13} {in_flight:>9} {reads:>13} {sent:>7} {seconds * 1000:>9.1f}")
    groups: dict[int, list[tuple[int, int, float]]] = {}
    for total, in_flight, reads, _, seconds in rows:
        groups.setdefault(in_flight, []).append((total, reads, seconds))
    for in_flight, points in sorted(groups.items()):
        (small, _, fast), (large, _, slow) = min(points), max(points)
        per_work = sorted({reads / in_flight for _, reads, _ in points})
        print(
            f"in flight {in_flight}: entities read per in-flight work {per_work} at every size; "
            f"sweep time with {large} registrations / with {small}: {slow / fast:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
