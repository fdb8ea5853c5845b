"""In-memory InventorySource and InventoryStore for unit tests of functions/core/inventory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from functions.core.inventory.models import AppSummary, CredentialRow, InventoryQuery
from functions.core.inventory.ports import Collection, DeltaExpired, DeltaPage, InventoryState
from functions.core.record.errors import NotFound
from functions.core.record.models import RegistrationStatus


class FakeSource:
    """A tenant's applications and service principals, with a change log per collection."""

    def __init__(self, page_size: int = 2) -> None:
        self.objects: dict[Collection, dict[str, AppSummary]] = {"applications": {}, "servicePrincipals": {}}
        self.log: dict[Collection, list[tuple[str, bool]]] = {"applications": [], "servicePrincipals": []}
        self.owners: dict[str, int] = {}
        self.page_size = page_size
        self.requests = 0
        self.expired = False

    def put(self, collection: Collection, app: AppSummary, owners: int = 1) -> None:
        self.objects[collection][app.object_id] = app
        self.owners[app.object_id] = owners
        self.log[collection].append((app.object_id, False))

    def delete(self, collection: Collection, object_id: str) -> None:
        self.objects[collection].pop(object_id)
        self.log[collection].append((object_id, True))

    async def list_pages(self, tenant_id: str, collection: Collection) -> AsyncIterator[Sequence[AppSummary]]:
        items = list(self.objects[collection].values())
        for i in range(0, max(len(items), 1), self.page_size):
            self.requests += 1
            yield [replace(a, owner_count=self.owners[a.object_id]) for a in items[i : i + self.page_size]]

    async def latest_delta_link(self, tenant_id: str, collection: Collection) -> str:
        self.requests += 1
        return f"{collection}:{len(self.log[collection])}"

    async def delta_pages(self, tenant_id: str, link: str) -> AsyncIterator[DeltaPage]:
        if self.expired:
            raise DeltaExpired("expired")
        collection, _, start = link.partition(":")
        entries = self.log[collection][int(start) :]  # type: ignore[index]
        self.requests += 1
        changed, removed = [], []
        for object_id, gone in entries:
            if gone:
                removed.append(object_id)
            elif object_id in self.objects[collection]:  # type: ignore[index]
                changed.append(self.objects[collection][object_id])  # type: ignore[index]
        yield DeltaPage(changed, removed, f"{collection}:{len(self.log[collection])}")  # type: ignore[index]

    async def owner_count(self, tenant_id: str, collection: Collection, object_id: str) -> int:
        self.requests += 1
        return self.owners[object_id]


class FakeInventoryStore:
    def __init__(self) -> None:
        self.apps: dict[tuple[str, str], tuple[AppSummary, str]] = {}
        self.states: dict[str, InventoryState] = {}

    async def state(self, tenant_id: str) -> InventoryState | None:
        return self.states.get(tenant_id)

    async def save_state(self, state: InventoryState) -> InventoryState:
        self.states[state.tenant_id] = state
        return state

    async def put(self, apps: Sequence[AppSummary], scan_id: str) -> None:
        for app in apps:
            self.apps[(app.tenant_id, app.object_id)] = (app, scan_id)

    async def replace(self, app: AppSummary, scan_id: str) -> None:
        await self.put([app], scan_id)

    async def remove(self, tenant_id: str, object_ids: Sequence[str]) -> None:
        for object_id in object_ids:
            self.apps.pop((tenant_id, object_id), None)

    async def sweep(self, tenant_id: str, scan_id: str) -> int:
        stale = [k for k, (_, scan) in self.apps.items() if k[0] == tenant_id and scan != scan_id]
        for key in stale:
            del self.apps[key]
        return len(stale)

    async def set_managed_by(self, tenant_id: str, object_id: str, registration_id: str | None) -> bool:
        stored = self.apps.get((tenant_id, object_id))
        if stored is None:
            return False
        app, scan_id = stored
        self.apps[(tenant_id, object_id)] = (
            replace(app, managed_by=registration_id),
            scan_id,
        )  # the mark kept
        return True

    async def by_app_id(self, tenant_id: str, app_id: str) -> list[AppSummary]:
        return [
            a for (t, _), (a, _) in self.apps.items() if t == tenant_id and a.app_id.lower() == app_id.lower()
        ]

    async def credentials(
        self, query: InventoryQuery, now: datetime
    ) -> tuple[list[CredentialRow], str | None]:
        rows = [
            CredentialRow(c, a)
            for (t, _), (a, _) in self.apps.items()
            if t == query.tenant_id
            for c in a.credentials
        ]
        return rows, None

    def summaries(self, tenant_id: str) -> dict[str, AppSummary]:
        return {k[1]: a for k, (a, _) in self.apps.items() if k[0] == tenant_id}


class FakeRecords:
    """RegistrationStore.get as the inventory uses it: which registration ids exist, in which tenant."""

    def __init__(self) -> None:
        self.tenants: dict[str, str] = {}
        self.adopted: dict[str, tuple[str, str, str]] = {}  # registration id -> (tenant, appId, status)

    async def get(self, registration_id: str) -> Any:
        if registration_id not in self.tenants:
            raise NotFound("registration", registration_id)
        return SimpleNamespace(id=registration_id, tenant_id=self.tenants[registration_id])

    async def list(
        self, *, tenant_id: str | None = None, limit: int = 50, continuation: str | None = None
    ) -> Any:
        """One record per page, so a scan must follow the continuation."""
        items = [
            SimpleNamespace(
                id=rid, adoption=SimpleNamespace(app_id=app_id), status=RegistrationStatus(status)
            )
            for rid, (tenant, app_id, status) in sorted(self.adopted.items())
            if tenant_id is None or tenant == tenant_id
        ]
        start = int(continuation or 0)
        more = start + 1 < len(items)
        return SimpleNamespace(items=items[start : start + 1], continuation=str(start + 1) if more else None)
