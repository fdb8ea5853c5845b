"""Webhook delivery outcomes in Table storage (resources.WEBHOOK_DELIVERIES_TABLE).

PartitionKey = registration id (the API lists one registration's deliveries), RowKey = the
delivery id (= webhook-id). The URL is not stored (it may carry a token), nor any body.
Outcomes are written through group commit (table_batches): a fan-out's outcomes share the
registration's partition and arrive together, so they leave as a few transactions, not one
request each.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from functions.adapters.table_batches import PartitionBatcher
from functions.adapters.tables import odata_literal, table_call, table_error
from functions.core.notification.events import SETTLED_STATUSES
from functions.core.ports import DeliveryRecord
from functions.core.record.errors import ConcurrencyConflict
from functions.resources import WEBHOOK_DELIVERIES_TABLE


class TableDeliveryLog:
    def __init__(self, service: Any, table_name: str = WEBHOOK_DELIVERIES_TABLE) -> None:
        self._table = service.get_table_client(table_name)
        self._writes = PartitionBatcher(self._table, "record delivery")

    async def close(self) -> None:
        await self._writes.close()
        await self._table.close()

    async def record(self, entry: DeliveryRecord) -> None:
        await self._writes.upsert(_entity(entry))

    async def get(self, registration_id: str, delivery_id: str) -> DeliveryRecord | None:
        entity = await self._read(registration_id, delivery_id)
        return _record(entity) if entity is not None else None

    async def record_unless_settled(self, entry: DeliveryRecord) -> DeliveryRecord | None:
        """Read, then create or replace on that ETag: a settled row wins, a lost race re-reads."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        for _ in range(_CONDITIONAL_ATTEMPTS):
            current = await self._read(entry.registration_id, entry.delivery_id)
            if current is not None and current["Status"] in SETTLED_STATUSES:
                return _record(current)

            async def write(current: Any = current) -> None:
                if current is None:
                    await self._table.create_entity(_entity(entry))
                else:
                    await self._table.update_entity(
                        _entity(entry),
                        mode=UpdateMode.REPLACE,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )

            try:
                await write()
                return None
            except (ResourceExistsError, ResourceModifiedError):
                continue  # written meanwhile (by group commit, or the other chain): decide again
            except Exception as error:
                failure = table_error(error, "record delivery", entry.delivery_id)
                if isinstance(failure, ConcurrencyConflict):
                    continue
                raise failure or error from None
        raise ConcurrencyConflict(f"record delivery {entry.delivery_id}: kept changing under the write")

    async def _read(self, registration_id: str, delivery_id: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        async def read() -> Any:
            try:
                return await self._table.get_entity(registration_id, delivery_id)
            except ResourceNotFoundError:
                return None

        return await table_call("read delivery", delivery_id, read)

    async def list(self, registration_id: str, *, status: str | None = None) -> list[DeliveryRecord]:
        query = f"PartitionKey eq {odata_literal(registration_id)}"
        if status:
            query += f" and Status eq {odata_literal(status)}"

        async def read() -> list[DeliveryRecord]:
            return [_record(e) async for e in self._table.query_entities(query)]

        return list(await table_call("list deliveries", registration_id, read))

    async def count_dead_letters(self) -> int:
        """DeadLetters port: one query across registrations that returns only the dead letters
        (and only their keys), so the client reads O(dead letters) entities."""

        async def read() -> int:
            query = self._table.query_entities(
                f"Status eq {odata_literal('dead_lettered')}", select=["PartitionKey", "RowKey"]
            )
            return sum([1 async for _ in query])

        return int(await table_call("count dead letters", "*", read))


_CONDITIONAL_ATTEMPTS = 5


def _entity(entry: DeliveryRecord) -> dict[str, Any]:
    return {
        "PartitionKey": entry.registration_id,
        "RowKey": entry.delivery_id,
        "SubscriptionId": entry.subscription_id,
        "EventType": entry.event_type,
        "Status": entry.status,
        "Attempts": entry.attempts,
        "LastStatus": entry.last_status if entry.last_status is not None else -1,
        "LastError": (entry.last_error or "")[:1024],
        "UpdatedAt": entry.updated_at.astimezone(UTC),
    }


def _record(e: Any) -> DeliveryRecord:
    return DeliveryRecord(
        registration_id=e["PartitionKey"],
        delivery_id=e["RowKey"],
        subscription_id=e["SubscriptionId"],
        event_type=e["EventType"],
        status=e["Status"],
        attempts=int(e["Attempts"]),
        last_status=None if e["LastStatus"] < 0 else int(e["LastStatus"]),
        last_error=e["LastError"] or None,
        updated_at=e["UpdatedAt"],
    )
