"""TenantSubscriptionStore over Table storage: the WebhookSubscriptions table, partition "tenant",
one entity per subscription (its id, full URL, events, when and by whom). Never its secret."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC
from typing import Any

from functions.adapters.tables import table_call
from functions.core.ports import TenantSubscriptionRecord
from functions.core.record.errors import NotFound
from functions.resources import WEBHOOK_SUBSCRIPTIONS_TABLE

TENANT_PARTITION = "tenant"


class TableTenantSubscriptions:
    def __init__(self, service: Any, table_name: str = WEBHOOK_SUBSCRIPTIONS_TABLE) -> None:
        self._table = service.get_table_client(table_name)

    async def close(self) -> None:
        await self._table.close()

    async def put(self, subscription: TenantSubscriptionRecord) -> None:
        entity = {
            "PartitionKey": TENANT_PARTITION,
            "RowKey": subscription.id,
            "Url": subscription.url,
            "Events": json.dumps(list(subscription.events)),
            "CreatedAt": subscription.created_at.astimezone(UTC),
            "CreatedBy": subscription.created_by or "",
            "Active": subscription.active,
        }
        await table_call("put subscription", subscription.id, lambda: self._table.upsert_entity(entity))

    async def get(self, subscription_id: str) -> TenantSubscriptionRecord:
        try:
            entity = await table_call(
                "get subscription",
                subscription_id,
                lambda: self._table.get_entity(TENANT_PARTITION, subscription_id),
            )
        except NotFound:
            raise NotFound("subscription", subscription_id) from None
        return _record(entity)

    async def list(self) -> list[TenantSubscriptionRecord]:
        async def read() -> list[TenantSubscriptionRecord]:
            query = self._table.query_entities("PartitionKey eq @p", parameters={"p": TENANT_PARTITION})
            return [_record(e) async for e in query]

        return list(await table_call("list subscriptions", TENANT_PARTITION, read))

    async def remove(self, subscription_id: str) -> None:
        with contextlib.suppress(NotFound):
            await table_call(
                "remove subscription",
                subscription_id,
                lambda: self._table.delete_entity(TENANT_PARTITION, subscription_id),
            )


def _record(entity: Any) -> TenantSubscriptionRecord:
    return TenantSubscriptionRecord(
        id=entity["RowKey"],
        url=entity["Url"],
        events=tuple(json.loads(entity["Events"])),
        created_at=entity["CreatedAt"],
        created_by=entity.get("CreatedBy") or None,
        active=bool(entity.get("Active", True)),
    )
