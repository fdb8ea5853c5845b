"""The inventory's adapters against the real parts: TableInventoryStore on Azurite, GraphInventory
on the local tenant (a brownfield tenant of its own, Graph's 429 with Retry-After, an expired delta
token), and the scanner over both."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from functions.adapters.graph_inventory import GraphInventory
from functions.adapters.table_inventory import TableInventoryStore
from functions.adapters.tables import StorageConfig, ensure_tables, table_service
from functions.core.inventory.models import AppSummary, CredentialSummary, InventoryQuery, ProfileMatch
from functions.core.inventory.ports import InventoryState
from functions.core.inventory.scanner import InventoryScanner
from functions.core.record.errors import ConcurrencyConflict
from functions.profiles import load_catalogue
from functions.resources import INVENTORY_APPS_TABLE, INVENTORY_CREDENTIALS_TABLE
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters
from tests.unit.inventory_fakes import FakeRecords

T = TypeVar("T")
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
TABLES = (INVENTORY_APPS_TABLE, INVENTORY_CREDENTIALS_TABLE)


def with_store(connection: str, body: Callable[[TableInventoryStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, TABLES)
            store = TableInventoryStore(service)
            try:
                return await body(store)
            finally:
                await store.close()

    return asyncio.run(main())


def summary(
    tenant: str, name: str, ends: list[datetime], *, managed: bool = False, profile: str | None = None
) -> AppSummary:
    return AppSummary(
        tenant_id=tenant,
        object_id=str(uuid.uuid4()),
        app_id=str(uuid.uuid4()),
        holder="application",
        display_name=name,
        owner_count=1,
        managed_by=str(uuid.uuid4()) if managed else None,
        match=ProfileMatch(profile, "exact") if profile else None,
        credentials=tuple(
            CredentialSummary(
                str(uuid.uuid4()), "secret", "application", name, "abc", None, end - timedelta(days=30), end
            )
            for end in ends
        ),
    )


def test_store_lists_by_end_date_filters_pages_and_cleans_up(azurite: str) -> None:
    tenant = str(uuid.uuid4())
    expired = summary(tenant, "expired", [NOW - timedelta(days=3)])
    soon = summary(tenant, "soon", [NOW + timedelta(days=5), NOW + timedelta(days=400)], managed=True)
    later = summary(tenant, "later", [NOW + timedelta(days=90)], profile="codetwo-backup-sharepoint")

    async def body(store: TableInventoryStore) -> None:
        await store.put([later, soon, expired], "scan-1")
        rows, token = await store.credentials(InventoryQuery(tenant), NOW)
        assert [(r.app.display_name, r.credential.end) for r in rows] == [
            ("expired", NOW - timedelta(days=3)),
            ("soon", NOW + timedelta(days=5)),
            ("later", NOW + timedelta(days=90)),
            ("soon", NOW + timedelta(days=400)),
        ] and token is None
        within, _ = await store.credentials(InventoryQuery(tenant, ends_before=NOW + timedelta(days=30)), NOW)
        assert [r.app.display_name for r in within] == ["expired", "soon"]
        managed, _ = await store.credentials(InventoryQuery(tenant, managed=True), NOW)
        assert {r.app.display_name for r in managed} == {"soon"} and all(r.app.managed for r in managed)
        by_profile, _ = await store.credentials(
            InventoryQuery(tenant, profile="codetwo-backup-sharepoint"), NOW
        )
        assert [r.app.display_name for r in by_profile] == ["later"]
        first, token = await store.credentials(InventoryQuery(tenant, limit=3), NOW)
        rest, end = await store.credentials(InventoryQuery(tenant, limit=3, continuation=token), NOW)
        assert len(first) == 3 and token and len(rest) == 1 and end is None

        # A credential removed from an app goes with the app's next summary; an app removed goes whole.
        await store.replace(summary_without_last(soon), "delta")
        rows, _ = await store.credentials(InventoryQuery(tenant), NOW)
        assert [r.app.display_name for r in rows] == ["expired", "soon", "later"]
        await store.remove(tenant, [expired.object_id])
        assert await store.by_app_id(tenant, expired.app_id) == []
        # A full scan that saw only `later`: the sweep removes the rest.
        await store.put([later], "scan-2")
        assert await store.sweep(tenant, "scan-2") == 1
        rows, _ = await store.credentials(InventoryQuery(tenant), NOW)
        assert [r.app.display_name for r in rows] == ["later"]
        assert [a.object_id for a in await store.by_app_id(tenant, later.app_id)] == [later.object_id]

        saved = await store.save_state(InventoryState(tenant, "apps-link", "sps-link", NOW))
        stale = InventoryState(tenant, "x", "y", NOW, etag=saved.etag)
        await store.save_state(InventoryState(tenant, "apps-2", "sps-2", NOW, etag=saved.etag))
        with pytest.raises(ConcurrencyConflict):
            await store.save_state(stale)
        again = await store.state(tenant)
        assert again is not None and again.applications_link == "apps-2"
        with pytest.raises(ConcurrencyConflict):  # a second first scan of the tenant saving after the first
            await store.save_state(InventoryState(tenant, "late", "late", NOW))

    with_store(azurite, body)


def summary_without_last(app: AppSummary) -> AppSummary:
    from dataclasses import replace

    return replace(app, credentials=app.credentials[:-1])


def as_identity(identity: dict[str, Any]) -> SimpleNamespace:
    """Registrar's identity in a tenant made by POST /_sim/tenants, as the adapters take it."""
    return SimpleNamespace(
        authority=identity["authority"],
        tenant_id=identity["tenantId"],
        client_id=identity["clientId"],
        client_secret=identity["clientSecret"],
        graph_url=identity["graphUrl"],
        vault_url=identity["vaultUrl"],
    )


def graph_scanner(graph: Any, store: TableInventoryStore) -> InventoryScanner:
    """The scanner over the Graph adapter and the Table store (no registrations of Registrar's)."""
    return InventoryScanner(
        GraphInventory(graph), store, graph, FakeRecords(), load_catalogue(), SimpleNamespace(now=lambda: NOW)
    )


def test_scan_of_a_brownfield_tenant_honours_429_and_recovers_from_an_expired_token(
    azurite: str, tenant_admin: TenantProcess
) -> None:
    identity = tenant_admin.admin("POST", "tenants", {})
    tenant_admin.admin("POST", "brownfield", {"tenantId": identity["tenantId"], "count": 30})
    other = as_identity(identity)
    # The first list page is throttled once, with Retry-After: the SDK waits and asks again.
    injected = tenant_admin.stats()["faultsInjected"]
    tenant_admin.add_fault(429, r"/v1\.0/applications$", "GET", count=1, retryAfter=1)

    async def body(store: TableInventoryStore) -> Any:
        async with adapters(other) as parts:
            scanner = graph_scanner(parts.graph, store)
            first = await scanner.scan(other.tenant_id)
            rows, _ = await store.credentials(InventoryQuery(other.tenant_id, limit=1000), NOW)
            unchanged = await scanner.scan(other.tenant_id)
            tenant_admin.configure(extra={"deltaTokenLifetimeS": 0})
            expired = await scanner.scan(other.tenant_id)
            return first, rows, unchanged, expired

    first, rows, unchanged, expired = with_store(azurite, body)
    assert first.mode == "full" and first.applications == 32  # 30 hand-made, Registrar's, the admin's
    assert tenant_admin.stats()["faultsInjected"] == injected + 1  # the 429 was answered, and outlived
    assert len({r.app.object_id for r in rows}) >= 30
    assert unchanged.mode == "delta" and unchanged.requests == 2
    assert expired.mode == "full"


def test_a_stored_delta_link_is_followed_on_the_configured_graph_endpoint(
    azurite: str, tenant_admin: TenantProcess
) -> None:
    """A deltaLink kept in Table storage names the endpoint Graph gave it on. One given by a local
    tenant since restarted on another port (or any host but the configured one) is followed on the
    configured Graph endpoint: the round reads the delta (2 requests), and the bearer token goes
    nowhere else."""
    from dataclasses import replace
    from urllib.parse import urlsplit, urlunsplit

    identity = tenant_admin.admin("POST", "tenants", {})
    other = as_identity(identity)

    def elsewhere(link: str | None) -> str:
        assert link is not None
        parts = urlsplit(link)
        return urlunsplit((parts.scheme, "127.0.0.1:9", parts.path, parts.query, parts.fragment))

    async def body(store: TableInventoryStore) -> Any:
        async with adapters(other) as parts:
            scanner = graph_scanner(parts.graph, store)
            await scanner.scan(other.tenant_id)
            state = await store.state(other.tenant_id)
            assert state is not None
            await store.save_state(
                replace(
                    state,
                    applications_link=elsewhere(state.applications_link),
                    service_principals_link=elsewhere(state.service_principals_link),
                )
            )
            return await scanner.scan(other.tenant_id)

    moved = with_store(azurite, body)
    assert moved.mode == "delta" and moved.requests == 2


def test_set_managed_by_marks_a_summary_and_its_credential_rows_and_keeps_the_scan_mark(azurite: str) -> None:
    """What an adoption does between two scans: the app and its credential rows say managed, and a
    full scan running meanwhile (scan-1) would not sweep them; a summary rewritten after it was read
    is left to its writer."""
    tenant = str(uuid.uuid4())
    adopted = summary(tenant, "hand-made", [NOW + timedelta(days=5), NOW + timedelta(days=400)])
    other = summary(tenant, "another", [NOW + timedelta(days=90)])

    async def body(store: TableInventoryStore) -> None:
        await store.put([adopted, other], "scan-1")
        assert await store.set_managed_by(tenant, adopted.object_id, "reg-adopted") is True
        (stored,) = await store.by_app_id(tenant, adopted.app_id)
        assert stored == summary_managed_by(adopted, "reg-adopted")  # nothing else changed
        managed, _ = await store.credentials(InventoryQuery(tenant, managed=True), NOW)
        assert [(r.app.display_name, r.app.managed_by) for r in managed] == [("hand-made", "reg-adopted")] * 2
        unmanaged, _ = await store.credentials(InventoryQuery(tenant, managed=False), NOW)
        assert [r.app.display_name for r in unmanaged] == ["another"]
        assert await store.sweep(tenant, "scan-1") == 0  # the scan's mark kept on every row
        rows, _ = await store.credentials(InventoryQuery(tenant), NOW)
        assert len(rows) == 3
        assert (
            await store.set_managed_by(tenant, str(uuid.uuid4()), "reg-adopted") is False
        )  # not inventoried

        # A delta round rewrites the other app between the read and the write: its answer stands.
        class WrittenInBetween:
            def __init__(self, table: Any) -> None:
                self.table = table

            async def get_entity(self, *args: Any, **kwargs: Any) -> Any:
                entity = await self.table.get_entity(*args, **kwargs)
                await store.put([other], "delta")
                return entity

            def __getattr__(self, name: str) -> Any:
                return getattr(self.table, name)

        apps = store._apps
        store._apps = WrittenInBetween(apps)
        try:
            assert await store.set_managed_by(tenant, other.object_id, "reg-other") is False
        finally:
            store._apps = apps
        assert [a.managed_by for a in await store.by_app_id(tenant, other.app_id)] == [None]

    with_store(azurite, body)


def summary_managed_by(app: AppSummary, registration_id: str) -> AppSummary:
    from dataclasses import replace

    return replace(app, managed_by=registration_id)
