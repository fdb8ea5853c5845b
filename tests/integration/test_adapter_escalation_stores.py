"""Escalation's storage adapters against Azurite: health marks and the watchlist share the expiry
index's table without ever showing up in an index query; tenant-wide subscriptions round-trip
(write-ahead flag included) in WebhookSubscriptions; dead letters are counted across registrations."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.deliveries import TableDeliveryLog
from functions.adapters.table_index import CredentialExpiryIndex, IndexHealthMarks, IndexWatchlist
from functions.adapters.tables import StorageConfig, ensure_tables, table_service
from functions.adapters.tenant_subscriptions import TableTenantSubscriptions
from functions.core.ports import DeliveryRecord, TenantSubscriptionRecord
from functions.core.record.errors import NotFound
from functions.core.record.schedule import JobAction, RotationJob, job_id

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def run(connection: str, body: Any) -> None:
    suffix = uuid.uuid4().hex[:12]
    tables = {"index": "Expiry" + suffix, "subs": "Subs" + suffix, "deliveries": "Deliv" + suffix}

    async def main() -> None:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, tuple(tables.values()))
            parts = {
                "index": CredentialExpiryIndex(service, tables["index"]),
                "marks": IndexHealthMarks(service, tables["index"]),
                "watch": IndexWatchlist(service, tables["index"]),
                "subs": TableTenantSubscriptions(service, tables["subs"]),
                "deliveries": TableDeliveryLog(service, tables["deliveries"]),
            }
            try:
                await body(parts)
            finally:
                for part in parts.values():
                    await part.close()

    asyncio.run(main())


def test_marks_and_watchlist_live_beside_the_index_and_never_in_its_queries(azurite: str) -> None:
    async def body(parts: dict[str, Any]) -> None:
        job = RotationJob(
            job_id("reg-a", 1, JobAction.ROTATE), "reg-a", 1, JobAction.ROTATE, NOW, requested_by="t"
        )
        await parts["index"].put(job)
        await parts["marks"].mark("rotation-sweep", NOW)
        await parts["marks"].mark("rotation-sweep", NOW + timedelta(minutes=15))  # idempotent upsert
        await parts["watch"].add("reg-b")
        await parts["watch"].add("reg-b")
        assert await parts["marks"].marks() == {"rotation-sweep": NOW + timedelta(minutes=15)}
        assert await parts["watch"].members() == ["reg-b"]
        due = await parts["index"].due(NOW + timedelta(days=3650))
        assert [j.registration_id for j in due] == ["reg-a"]  # neither a mark nor a watch entry
        await parts["watch"].discard("reg-b")
        await parts["watch"].discard("reg-b")  # idempotent
        assert await parts["watch"].members() == []

    run(azurite, body)


def test_tenant_subscriptions_round_trip_and_dead_letters_are_counted(azurite: str) -> None:
    async def body(parts: dict[str, Any]) -> None:
        store = parts["subs"]
        pending = TenantSubscriptionRecord(
            "ts-1", "https://itsm.example/in?code=x", ("rotation.failed",), NOW, None, False
        )
        await store.put(pending)
        assert (await store.get("ts-1")).active is False
        await store.put(
            TenantSubscriptionRecord("ts-1", pending.url, pending.events, NOW, "admin (oid)", True)
        )
        (listed,) = await store.list()
        assert listed == TenantSubscriptionRecord(
            "ts-1", pending.url, ("rotation.failed",), NOW, "admin (oid)", True
        )
        await store.remove("ts-1")
        await store.remove("ts-1")
        try:
            await store.get("ts-1")
        except NotFound:
            pass
        else:
            raise AssertionError("removed subscription still readable")

        log = parts["deliveries"]
        for registration, delivery, status in (
            ("reg-a", "msg_1", "dead_lettered"),
            ("reg-b", "msg_2", "dead_lettered"),
            ("reg-b", "msg_3", "delivered"),
        ):
            await log.record(
                DeliveryRecord(
                    registration, delivery, "wh-1", "credential.rotated", status, 6, 500, None, NOW
                )
            )
        assert await log.count_dead_letters() == 2  # each record() returned once durable

    run(azurite, body)
