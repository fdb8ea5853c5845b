"""functions/adapters/deliveries.py and table_batches.py (group commit) against Azurite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from functions.adapters.deliveries import TableDeliveryLog
from functions.adapters.table_batches import PartitionBatcher
from functions.adapters.tables import StorageConfig, ensure_tables, table_service
from functions.core.ports import DeliveryRecord
from functions.core.record.errors import NotFound

T = TypeVar("T")
NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


def run_with(connection: str, table: str, body: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, (table,))
            return await body(service)

    return asyncio.run(main())


def outcome(
    registration_id: str, n: int, status: str = "delivered", error: str | None = None
) -> DeliveryRecord:
    return DeliveryRecord(
        registration_id=registration_id,
        delivery_id=f"msg_{registration_id}_{n:03d}",
        subscription_id=f"wh-{n}",
        event_type="credential.rotated",
        status=status,
        attempts=1,
        last_status=200 if status == "delivered" else 503,
        last_error=error,
        updated_at=NOW + timedelta(seconds=n),
    )


def test_a_fan_out_of_outcomes_is_stored_whole_in_a_few_transactions(azurite: str) -> None:
    table = "Deliv" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> tuple[list[DeliveryRecord], list[DeliveryRecord], int]:
        log = TableDeliveryLog(service, table)
        await asyncio.gather(
            *(log.record(outcome("reg-a", n)) for n in range(150)),
            *(log.record(outcome("reg-b", n, "retrying", "HTTP 503")) for n in range(30)),
        )
        stored = await log.list("reg-a"), await log.list("reg-b", status="retrying")
        return *stored, log._writes.transactions

    reg_a, reg_b, requests = run_with(azurite, table, body)
    assert sorted(r.delivery_id for r in reg_a) == [f"msg_reg-a_{n:03d}" for n in range(150)]
    assert {(r.status, r.last_status, r.attempts) for r in reg_a} == {("delivered", 200, 1)}
    assert [r.last_error for r in reg_b] == ["HTTP 503"] * 30
    # 150 rows of one partition need at least 2 transactions (100 operations each), 30 of another 1.
    assert 3 <= requests <= 6, requests


def test_a_lone_write_is_a_plain_upsert_and_later_writes_update_the_row(azurite: str) -> None:
    table = "Deliv" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> tuple[list[DeliveryRecord], int]:
        log = TableDeliveryLog(service, table)
        await log.record(outcome("reg-c", 1, "retrying", "connection refused"))
        await log.record(outcome("reg-c", 1, "delivered"))
        return await log.list("reg-c"), log._writes.transactions

    rows, requests = run_with(azurite, table, body)
    assert [(r.status, r.last_error, r.last_status) for r in rows] == [("delivered", None, 200)]
    assert requests == 2


def test_two_writes_of_one_row_in_one_batch_merge_and_both_writers_return(azurite: str) -> None:
    table = "Batch" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> dict[str, Any]:
        batcher = PartitionBatcher(service.get_table_client(table), "test write")
        await asyncio.gather(
            batcher.upsert({"PartitionKey": "p", "RowKey": "r", "A": 1, "B": "first"}),
            batcher.upsert({"PartitionKey": "p", "RowKey": "r", "B": "second", "C": True}),
            batcher.upsert({"PartitionKey": "p", "RowKey": "other", "A": 2}),
        )
        entity = await service.get_table_client(table).get_entity("p", "r")
        return dict(entity)

    entity = run_with(azurite, table, body)
    assert (entity["A"], entity["B"], entity["C"]) == (1, "second", True)


def test_one_refused_entity_fails_only_its_own_writer(azurite: str) -> None:
    table = "Batch" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> tuple[list[Any], list[str]]:
        client = service.get_table_client(table)
        batcher = PartitionBatcher(client, "test write")
        too_big = "x" * 70_000  # a string property holds at most 64 KiB (32 K characters)
        results = await asyncio.gather(
            *(batcher.upsert({"PartitionKey": "p", "RowKey": f"ok-{n}", "V": n}) for n in range(5)),
            batcher.upsert({"PartitionKey": "p", "RowKey": "bad", "V": too_big}),
            return_exceptions=True,
        )
        stored = sorted([e["RowKey"] async for e in client.query_entities("PartitionKey eq 'p'")])
        return results, stored

    results, stored = run_with(azurite, table, body)
    assert results[:5] == [None] * 5
    assert isinstance(results[5], Exception)
    assert stored == [f"ok-{n}" for n in range(5)]


def test_a_missing_table_fails_every_writer_with_the_core_error(azurite: str) -> None:
    async def body(service: Any) -> list[Any]:
        batcher = PartitionBatcher(service.get_table_client("Nosuch" + uuid.uuid4().hex[:8]), "test write")
        return await asyncio.gather(
            *(batcher.upsert({"PartitionKey": "p", "RowKey": f"r{n}"}) for n in range(3)),
            batcher.upsert({"PartitionKey": "q", "RowKey": "alone"}),
            return_exceptions=True,
        )

    results = run_with(azurite, "Unused" + uuid.uuid4().hex[:8], body)
    assert all(isinstance(r, NotFound) for r in results), results


@pytest.mark.parametrize("writers", [1, 7])
def test_close_waits_for_writes_in_flight(azurite: str, writers: int) -> None:
    table = "Batch" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> int:
        client = service.get_table_client(table)
        batcher = PartitionBatcher(client, "test write")
        tasks = [
            asyncio.ensure_future(batcher.upsert({"PartitionKey": "p", "RowKey": f"r{n}"}))
            for n in range(writers)
        ]
        await asyncio.sleep(0)
        await batcher.close()
        assert all(t.done() for t in tasks)
        return len([e async for e in client.query_entities("PartitionKey eq 'p'")])

    assert run_with(azurite, table, body) == writers


def test_a_failed_attempt_never_records_over_a_settled_delivery(azurite: str) -> None:
    table = "Deliv" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> tuple[Any, ...]:
        log = TableDeliveryLog(service, table)
        first = await log.record_unless_settled(outcome("reg-d", 1, "retrying", "HTTP 503"))  # creates
        second = await log.record_unless_settled(outcome("reg-d", 1, "retrying", "timed out"))  # replaces
        after_retries = await log.get("reg-d", "msg_reg-d_001")
        await log.record(outcome("reg-d", 1, "delivered"))
        refused = await log.record_unless_settled(outcome("reg-d", 1, "dead_lettered", "HTTP 500"))
        return first, second, after_retries, refused, await log.get("reg-d", "msg_reg-d_001")

    first, second, after_retries, refused, final = run_with(azurite, table, body)
    assert (first, second) == (None, None)
    assert (after_retries.status, after_retries.last_error) == ("retrying", "timed out")
    assert refused is not None and refused.status == "delivered"
    assert (final.status, final.last_error) == ("delivered", None)


def test_delivered_wins_however_a_duplicate_chain_races_it(azurite: str) -> None:
    """Group-committed "delivered" and a conditional "retrying" for the same rows, all at once."""
    table = "Deliv" + uuid.uuid4().hex[:10]

    async def body(service: Any) -> list[DeliveryRecord]:
        log = TableDeliveryLog(service, table)
        await asyncio.gather(
            *(log.record(outcome("reg-e", n)) for n in range(40)),
            *(log.record_unless_settled(outcome("reg-e", n, "retrying", "HTTP 503")) for n in range(40)),
        )
        return await log.list("reg-e")

    rows = run_with(azurite, table, body)
    assert len(rows) == 40 and {r.status for r in rows} == {"delivered"}
