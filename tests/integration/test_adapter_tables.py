"""functions/adapters/tables.py and table_index.py against Azurite (the `azurite` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from functions.adapters.table_index import CredentialExpiryIndex, TableLeases
from functions.adapters.tables import StorageConfig, TableRegistrationStore, ensure_tables, table_service
from functions.core.record.errors import ConcurrencyConflict, NotFound, PermanentError, ValidationFailed
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Adoption, ProvisioningPlan, Registration, StepEvent
from functions.core.record.schedule import JobAction, RotationJob, job_id

T = TypeVar("T")
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def run_with(connection: str, tables: tuple[str, ...], body: Callable[[Any], Awaitable[T]]) -> T:
    """Run body(service) in a fresh loop with the given (unique) tables created first."""

    async def main() -> T:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, tables)
            return await body(service)

    return asyncio.run(main())


def unique_table(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:12]


def registration(
    reg_id: str, *, tenant: str = "tenant-a", profile: str = "openfn-msgraph", **changes: Any
) -> Registration:
    record = Registration(
        id=reg_id,
        request_id=f"INC-{reg_id}",
        fingerprint="f" * 64,
        profile_id=profile,
        tenant_id=tenant,
        status=RegistrationStatus.ACCEPTED,
        created_at=NOW,
        updated_at=NOW,
        plan=ProvisioningPlan(display_name=f"Connector {reg_id}"),
    )
    return replace(record, **changes)


def test_create_if_absent_returns_the_existing_record_and_replace_checks_the_etag(azurite: str) -> None:
    table = unique_table("Reg")

    async def body(service: Any) -> None:
        store = TableRegistrationStore(service, table)
        first, created = await store.create(registration("reg-1"))
        assert created and first.etag
        again, created_again = await store.create(registration("reg-1", profile="other-profile"))
        assert not created_again
        assert again.profile_id == "openfn-msgraph"  # never overwritten
        assert again.etag == first.etag

        moved = await store.replace(replace(first, status=RegistrationStatus.PROVISIONING))
        assert moved.etag != first.etag
        assert (await store.get("reg-1")).status is RegistrationStatus.PROVISIONING

        with pytest.raises(ConcurrencyConflict):  # written from a stale read
            await store.replace(replace(first, status=RegistrationStatus.FAILED))
        with pytest.raises(NotFound):
            await store.get("reg-missing")
        with pytest.raises(NotFound):
            await store.replace(replace(registration("reg-missing"), etag=first.etag))
        await store.close()

    run_with(azurite, (table,), body)


def test_concurrent_writers_from_one_read_exactly_one_wins(azurite: str) -> None:
    table = unique_table("Reg")

    async def body(service: Any) -> list[Any]:
        store = TableRegistrationStore(service, table)
        base, _ = await store.create(registration("reg-race"))
        attempts = [store.replace(replace(base, app_id=f"app-{i}")) for i in range(5)]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        await store.close()
        return results

    results = run_with(azurite, (table,), body)
    assert sum(isinstance(r, Registration) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 4


def test_large_documents_round_trip_across_property_chunks(azurite: str) -> None:
    table = unique_table("Reg")
    history = tuple(StepEvent("consent", "done", NOW, detail="x" * 1500) for _ in range(60))
    big = registration("reg-big", history=history)

    async def body(service: Any) -> Registration:
        store = TableRegistrationStore(service, table)
        await store.create(big)
        entity = await store._table.get_entity(*_keys(store, "reg-big"))
        assert entity["DocParts"] > 2  # over one 64 KiB property: split
        loaded = await store.get("reg-big")
        await store.close()
        return loaded

    loaded = run_with(azurite, (table,), body)
    assert loaded.history == history
    assert replace(loaded, etag=None) == big


def _keys(store: TableRegistrationStore, reg_id: str) -> tuple[str, str]:
    from functions.adapters.tables import shard_of

    return shard_of(reg_id), reg_id


def test_list_filters_and_pages_with_an_opaque_continuation(azurite: str) -> None:
    table = unique_table("Reg")

    async def body(service: Any) -> None:
        store = TableRegistrationStore(service, table)
        for i in range(7):
            status = RegistrationStatus.ACTIVE if i % 2 == 0 else RegistrationStatus.FAILED
            await store.create(
                registration(f"reg-{i}", tenant="Tenant-B" if i < 5 else "tenant-c", status=status)
            )
        seen: list[str] = []
        continuation = None
        pages = 0
        while True:
            page = await store.list(tenant_id="tenant-b", limit=2, continuation=continuation)
            assert len(page.items) <= 2
            seen += [r.id for r in page.items]
            pages += 1
            continuation = page.continuation
            if continuation is None:
                break
        assert sorted(seen) == [f"reg-{i}" for i in range(5)]
        assert pages >= 3
        active_b = await store.list(tenant_id="TENANT-B", status=RegistrationStatus.ACTIVE, limit=50)
        assert sorted(r.id for r in active_b.items) == ["reg-0", "reg-2", "reg-4"]
        assert all(r.etag for r in active_b.items)
        by_profile = await store.list(profile_id="nobody", limit=50)
        assert by_profile.items == [] and by_profile.continuation is None
        await store.close()

    run_with(azurite, (table,), body)


def test_list_by_app_finds_the_app_a_record_made_or_adopted(azurite: str) -> None:
    """Adoption asks whether an app is already under management: list(app_id=...), case-insensitive."""
    table = unique_table("Reg")
    made, adopted = "0a0a0a0a-1111-4222-8333-444444444444", "0B0B0B0B-1111-4222-8333-444444444444"

    async def body(service: Any) -> None:
        store = TableRegistrationStore(service, table)
        await store.create(registration("reg-made", app_id=made))
        adoption = Adoption(app_id=adopted.lower(), app_object_id="obj", display_name="by hand")
        await store.create(registration("reg-adopted", adoption=adoption))
        await store.create(registration("reg-other"))
        found = await store.list(tenant_id="tenant-a", app_id=made.upper(), limit=50)
        assert [r.id for r in found.items] == ["reg-made"]
        found = await store.list(tenant_id="tenant-a", app_id=adopted, limit=50)
        assert [r.id for r in found.items] == ["reg-adopted"] and found.items[0].adoption == adoption
        assert (await store.list(app_id="0c0c0c0c-1111-4222-8333-444444444444", limit=50)).items == []
        await store.close()

    run_with(azurite, (table,), body)


def rotation_job(reg_id: str, due_at: datetime, generation: int = 1) -> RotationJob:
    return RotationJob(
        job_id=job_id(reg_id, generation, JobAction.ROTATE),
        registration_id=reg_id,
        generation=generation,
        action=JobAction.ROTATE,
        due_at=due_at,
        requested_by="timer",
    )


def test_expiry_index_reads_only_due_buckets(azurite: str) -> None:
    table = unique_table("Expiry")
    due = [rotation_job(f"reg-due-{i}", NOW - timedelta(hours=i, minutes=5)) for i in range(4)]
    later_this_hour = rotation_job("reg-later", NOW + timedelta(minutes=30))
    future = [rotation_job(f"reg-future-{i}", NOW + timedelta(days=i + 1)) for i in range(40)]

    async def body(service: Any) -> None:
        index = CredentialExpiryIndex(service, table)
        await index.put_many([*due, later_this_hour, *future])
        await index.put(due[0])  # idempotent re-index
        found = await index.due(NOW)
        assert sorted(j.job_id for j in found) == sorted(j.job_id for j in due)
        assert found[0] == next(j for j in due if j.job_id == found[0].job_id)  # the message round-trips
        assert len(await index.due(NOW, limit=2)) == 2

        # What the service had to read: the due buckets' partitions and nothing of the future ones.
        from functions.core.record.schedule import index_partition

        scanned = [
            e
            async for e in index._table.query_entities(
                "PartitionKey ge @low and PartitionKey le @high",
                parameters={"low": "due-", "high": index_partition(NOW)},
            )
        ]
        assert len(scanned) == len(due) + 1  # + the job due later in the current hour

        await index.remove(due[0])
        await index.remove(due[0])  # already gone: fine
        assert len(await index.due(NOW)) == 3
        assert {j.job_id for j in await index.due(NOW + timedelta(days=2, hours=1))} >= {
            future[0].job_id,
            future[1].job_id,
            later_this_hour.job_id,
        }
        await index.close()

    run_with(azurite, (table,), body)


def test_leases_have_one_owner_until_they_expire_or_are_released(azurite: str) -> None:
    table = unique_table("Lease")

    async def body(service: Any) -> None:
        leases = TableLeases(service, table)
        name = "rotation-sweep"
        a = await leases.acquire(name, "worker-a", timedelta(seconds=30), now=NOW)
        assert a is not None
        assert await leases.acquire(name, "worker-b", timedelta(seconds=30), now=NOW) is None
        renewed = await leases.renew(a, timedelta(seconds=60), now=NOW)
        assert renewed.etag != a.etag
        with pytest.raises(ConcurrencyConflict):
            await leases.renew(a, timedelta(seconds=60), now=NOW)  # a stale handle lost it

        racers = await asyncio.gather(
            *(
                leases.acquire(name, f"late-{i}", timedelta(seconds=30), now=NOW + timedelta(minutes=5))
                for i in range(4)
            )
        )
        winners = [lease for lease in racers if lease is not None]
        assert len(winners) == 1  # the expired lease is taken over exactly once

        await leases.release(renewed)  # no longer ours: a no-op
        assert (
            await leases.acquire(name, "worker-a", timedelta(seconds=30), now=NOW + timedelta(minutes=5))
            is None
        )
        await leases.release(winners[0])
        assert await leases.acquire(name, "worker-a", timedelta(seconds=30), now=NOW + timedelta(minutes=5))
        await leases.close()

    run_with(azurite, (table,), body)


def test_storage_settings_connection_string_or_identity_based_endpoints(azurite: str) -> None:
    assert StorageConfig.from_env({"AzureWebJobsStorage": azurite}).connection_string == azurite
    local = StorageConfig.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert (
        local.connection_string is not None
        and "TableEndpoint=http://127.0.0.1:10002/" in local.connection_string
    )
    by_account = StorageConfig.from_env({"AzureWebJobsStorage__accountName": "registrarstore"})
    assert by_account.connection_string is None
    assert by_account.table_endpoint == "https://registrarstore.table.core.windows.net"
    assert by_account.queue_endpoint == "https://registrarstore.queue.core.windows.net"
    explicit = StorageConfig.from_env(
        {
            "AzureWebJobsStorage__tableServiceUri": "https://t.example",
            "AzureWebJobsStorage__queueServiceUri": "https://q.example",
        }
    )
    assert (explicit.table_endpoint, explicit.queue_endpoint) == ("https://t.example", "https://q.example")
    with pytest.raises(PermanentError):  # identity-based endpoints need a credential
        table_service(by_account)


def test_a_continuation_that_is_not_from_a_page_is_a_validation_error(azurite: str) -> None:
    """GET /registrations?continuation=garbage answers 400 (problem+json), never 422 or page one."""
    table = unique_table("Reg")

    async def body(service: Any) -> list[str]:
        store = TableRegistrationStore(service, table)
        fields = []
        for token in ("garbage", "e30=", "W10=", "eyJhIjoxfQ=="):  # not base64 JSON; {}; []; {"a": 1}
            with pytest.raises(ValidationFailed) as caught:
                await store.list(continuation=token)
            assert caught.value.status == 400
            fields.extend(p.field for p in caught.value.problems)
        return fields

    assert run_with(azurite, (table,), body) == ["continuation"] * 4
