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
from functions.adapters.tables import odata_literal, table_call
from functions.core.ports import DeliveryRecord
from functions.resources import WEBHOOK_DELIVERIES_TABLE


class TableDeliveryLog:
    def __init__(self, service: Any, table_name: str = WEBHOOK_DELIVERIES_TABLE) -> None:
        self._table = service.get_table_client(table_name)
        self._writes = PartitionBatcher(self._table, "record delivery")

    async def close(self) -> None:
        await self._writes.close()
        await self._table.close()

    async def record(self, entry: DeliveryRecord) -> None:
        entity = {
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
        await self._writes.upsert(entity)

    async def list(self, registration_id: str, *, status: str | None = None) -> list[DeliveryRecord]:
        query = f"PartitionKey eq {odata_literal(registration_id)}"
        if status:
            query += f" and Status eq {odata_literal(status)}"

        async def read() -> list[DeliveryRecord]:
            return [
                DeliveryRecord(
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
                async for e in self._table.query_entities(query)
            ]

        return list(await table_call("list deliveries", registration_id, read))
