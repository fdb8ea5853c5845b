"""Group commit for Table storage: upserts to one partition that arrive together leave as one
entity group transaction.

A fan-out of one event to many subscribers ends in as many delivery outcomes, all in the
registration's partition and all within milliseconds. Written one by one they cost a Storage
transaction each and crowd a single partition (Table storage serves about 2,000 entities per
second per partition); batched, a hundred outcomes are one request. Each caller still waits for
its own write to be durable, so nothing is acknowledged (and no queue message deleted) before
its record is stored: the batching changes how many requests carry the writes, not when a
caller may rely on them.

How a batch forms: the first write to an idle partition starts a drain task, which yields to
the event loop once so that writers ready in the same turn join; while a transaction is in
flight, new writes gather for the next one. A lone writer pays one loop turn and a plain upsert.
Rules of the service honoured here: at most 100 operations per transaction, one partition, each
row once (a second write to a queued row merges into it, as two merge-upserts would); if the
service refuses a transaction because of one entity, the batch is retried row by row so that
each caller gets its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from functions.adapters.tables import TRANSACTION_LIMIT, table_call, table_error

Entity = dict[str, Any]


class _Row:
    __slots__ = ("entity", "waiters")

    def __init__(self, entity: Entity, waiter: asyncio.Future[None]) -> None:
        self.entity = entity
        self.waiters = [waiter]


class PartitionBatcher:
    """Merge-upserts through group commit. table: an aio TableClient; operation names errors."""

    def __init__(self, table: Any, operation: str) -> None:
        self._table = table
        self._operation = operation
        self._pending: dict[str, dict[str, _Row]] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}
        self.transactions = 0  # requests sent (transactions and single upserts), for benchmarks

    async def upsert(self, entity: Entity) -> None:
        """Store `entity` (merge into any existing row); returns once it is durable."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        partition, row_key = str(entity["PartitionKey"]), str(entity["RowKey"])
        rows = self._pending.setdefault(partition, {})
        queued = rows.get(row_key)
        if queued is None:
            rows[row_key] = _Row(dict(entity), waiter)
        else:
            queued.entity.update(entity)
            queued.waiters.append(waiter)
        if partition not in self._draining:
            self._draining[partition] = loop.create_task(self._drain(partition))
        await waiter

    async def _drain(self, partition: str) -> None:
        try:
            while self._pending.get(partition):
                await asyncio.sleep(0)  # writers ready in this loop turn join the batch
                rows = list(self._pending.pop(partition).values())
                for start in range(0, len(rows), TRANSACTION_LIMIT):
                    await self._commit(rows[start : start + TRANSACTION_LIMIT])
        finally:
            del self._draining[partition]

    async def _commit(self, rows: list[_Row]) -> None:
        if len(rows) == 1:
            await self._settle(rows, lambda: self._table.upsert_entity(rows[0].entity))
            return
        from azure.data.tables import TableTransactionError

        operations = [("upsert", row.entity) for row in rows]
        self.transactions += 1
        try:
            await self._table.submit_transaction(operations)
        except TableTransactionError:
            # One entity spoiled the batch (the service names it in the error): give every row
            # its own request, so each writer learns its own fate and the others still land.
            await asyncio.gather(*(self._commit([row]) for row in rows))
            return
        except Exception as error:
            self._fail(rows, error)
            return
        self._succeed(rows)

    async def _settle(self, rows: list[_Row], attempt: Callable[[], Awaitable[Any]]) -> None:
        self.transactions += 1
        key = str(rows[0].entity["RowKey"])
        try:
            await table_call(self._operation, key, attempt)
        except Exception as error:
            self._fail(rows, error, mapped=True)
            return
        self._succeed(rows)

    def _succeed(self, rows: list[_Row]) -> None:
        for row in rows:
            for waiter in row.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _fail(self, rows: list[_Row], error: BaseException, *, mapped: bool = False) -> None:
        if not mapped:  # as table_call maps it; the SDK's own error when it maps to none
            error = table_error(error, self._operation, str(rows[0].entity["PartitionKey"])) or error
        for row in rows:
            for waiter in row.waiters:
                if not waiter.done():
                    waiter.set_exception(error)

    async def close(self) -> None:
        """Wait for writes in flight (a drain task holds the last batch of its partition)."""
        tasks = list(self._draining.values())
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)
