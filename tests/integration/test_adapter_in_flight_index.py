"""The in-flight index (functions/adapters/table_index.py) against Azurite: all() reads exactly what is
in flight, a put keeps the resume count, a resume is marked once against its ETag, and a removal
by ETag leaves an entry written again since."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.table_index import TableInFlightIndex
from functions.adapters.tables import StorageConfig, ensure_tables, table_service
from functions.core.record.inflight import provisioning_work

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def run(connection: str, body: Any) -> None:
    table = "InFlight" + uuid.uuid4().hex[:12]

    async def main() -> None:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, (table,))
            index = TableInFlightIndex(service, table)
            try:
                await body(index)
            finally:
                await index.close()

    asyncio.run(main())


def test_entries_round_trip_and_a_resume_is_marked_once(azurite: str) -> None:
    async def body(index: TableInFlightIndex) -> None:
        works = [provisioning_work(f"reg-{n}", "registration-requests", NOW) for n in range(20)]
        for work in works:
            await index.put(work)
        found = {w.key: w for w in await index.all()}
        assert sorted(found) == sorted(w.key for w in works)
        first = found[works[0].key]
        assert (first.registration_id, first.queue, first.message) == (
            works[0].registration_id,
            works[0].queue,
            works[0].message,
        )
        assert first.touched_at == NOW and first.resumes == 0 and first.etag

        later = NOW + timedelta(seconds=31)
        assert await index.mark_resumed(first, later) is True
        assert await index.mark_resumed(first, later) is False  # the same ETag again: another sweep lost
        (again,) = [w for w in await index.all() if w.key == first.key]
        assert (again.touched_at, again.resumes) == (later, 1)

        await index.put(replace(works[0], touched_at=later))  # the resumed run starts: the count stays
        (restarted,) = [w for w in await index.all() if w.key == first.key]
        assert restarted.resumes == 1

    run(azurite, body)


def test_removing_by_etag_leaves_an_entry_written_again(azurite: str) -> None:
    async def body(index: TableInFlightIndex) -> None:
        work = provisioning_work("reg-x", "registration-requests", NOW)
        mine = await index.put(work)
        theirs = await index.put(work)  # a duplicate took the work over
        await index.remove(work.key, mine)
        assert [w.key for w in await index.all()] == [work.key]
        await index.remove(work.key, theirs)
        assert await index.all() == []
        await index.remove(work.key)  # idempotent

    run(azurite, body)
