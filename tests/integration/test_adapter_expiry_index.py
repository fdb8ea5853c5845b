"""functions/adapters/table_index.py against Azurite: a job whose due time moves keeps one entry,
and removing it works whichever due time the caller's copy of the job names."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.table_index import CredentialExpiryIndex
from functions.adapters.tables import StorageConfig, ensure_tables, table_service
from functions.core.record.schedule import JobAction, RotationJob, index_partition, job_id

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def run(connection: str, body: Any) -> None:
    table = "Expiry" + uuid.uuid4().hex[:12]

    async def main() -> None:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, (table,))
            index = CredentialExpiryIndex(service, table)
            try:
                await body(index)
            finally:
                await index.close()

    asyncio.run(main())


def scheduled(reg_id: str, due_at: datetime) -> RotationJob:
    return RotationJob(
        job_id=job_id(reg_id, 1, JobAction.ROTATE),
        registration_id=reg_id,
        generation=1,
        action=JobAction.ROTATE,
        due_at=due_at,
        requested_by="schedule",
    )


async def rows(index: CredentialExpiryIndex, job: RotationJob) -> list[str]:
    """Every entity with the job's RowKey (a test-only scan), by PartitionKey."""
    found = [
        e["PartitionKey"]
        async for e in index._table.query_entities("RowKey eq @id", parameters={"id": job.job_id})
    ]
    return sorted(p for p in found if p.startswith("due-"))


def test_rotate_now_moves_the_scheduled_entry_and_removing_the_job_leaves_no_phantom(azurite: str) -> None:
    async def body(index: CredentialExpiryIndex) -> None:
        later = scheduled("reg-a", NOW + timedelta(days=60))
        other = scheduled("reg-b", NOW + timedelta(days=60))
        await index.put(later)
        await index.put_many([other])
        now = replace(later, due_at=NOW, requested_by="admin@contoso.com")  # POST .../rotate

        await index.put(now)
        assert await rows(index, later) == [index_partition(NOW)]
        assert [j.requested_by for j in await index.due(NOW)] == ["admin@contoso.com"]

        await index.remove(now)  # the job, done, removes its entry
        assert await rows(index, later) == []
        horizon = NOW + timedelta(days=3650)
        assert [j.job_id for j in await index.due(horizon)] == [other.job_id]  # GET /credentials

        await index.put(now)  # the copy a caller holds may name the old due time: still found
        await index.remove(later)
        await index.remove(later)  # idempotent
        assert await rows(index, later) == []

        await index.remove(other)  # written in bulk: found by its pointer as well
        assert await index.due(horizon) == []

    run(azurite, body)


def test_a_job_put_again_with_a_later_due_time_is_not_swept_before_it(azurite: str) -> None:
    async def body(index: CredentialExpiryIndex) -> None:
        failed = scheduled("reg-c", NOW - timedelta(hours=3))
        await index.put(failed)
        await index.put(failed)  # idempotent in place
        assert [j.job_id for j in await index.due(NOW)] == [failed.job_id]

        await index.put(replace(failed, due_at=NOW + timedelta(hours=1)))  # a retry after a backoff
        assert await index.due(NOW) == []
        assert [j.due_at for j in await index.due(NOW + timedelta(hours=1))] == [NOW + timedelta(hours=1)]
        assert await rows(index, failed) == [index_partition(NOW + timedelta(hours=1))]

    run(azurite, body)


def test_entries_written_before_pointers_existed_are_still_removed(azurite: str) -> None:
    async def body(index: CredentialExpiryIndex) -> None:
        legacy = scheduled("reg-d", NOW + timedelta(days=1))
        await index._table.upsert_entity(index._entity(legacy))  # as the adapter wrote them before

        await index.remove(legacy)
        assert await rows(index, legacy) == []

    run(azurite, body)
