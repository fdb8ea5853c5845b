"""What the inventory needs from outside: Graph's pages (InventorySource) and Table storage
(InventoryStore). Both speak the inventory's own models, so they live here, not in core.ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from functions.core.inventory.models import AppSummary, CredentialRow, InventoryQuery
from functions.core.record.errors import RegistrarError

Collection = Literal["applications", "servicePrincipals"]


class DeltaExpired(RegistrarError):  # noqa: N818  (names Graph's answer, syncStateNotFound)
    """The delta token is too old (7 days for identity resources): synchronise again in full."""


@dataclass(frozen=True)
class DeltaPage:
    changed: Sequence[AppSummary]  # without match or managed_by: the scanner adds those
    removed: Sequence[str]  # object ids (@removed: deleted, or gone to deleted items)
    delta_link: str | None  # on the last page of a round


@dataclass
class InventoryState:
    """Per tenant: where the next delta round starts, and when the last scan ended."""

    tenant_id: str
    applications_link: str | None = None
    service_principals_link: str | None = None
    scanned_at: datetime | None = None
    etag: str | None = None


class InventorySource(Protocol):
    """Graph, read with Application.Read.All. Pages are streamed: no call holds a whole tenant."""

    def list_pages(self, tenant_id: str, collection: Collection) -> AsyncIterator[Sequence[AppSummary]]:
        """Every application (every service principal that holds credentials), $top=999 pages,
        with their owners expanded (owner_count set)."""
        ...

    async def latest_delta_link(self, tenant_id: str, collection: Collection) -> str:
        """A deltaLink from now ($deltatoken=latest): one request, no objects."""
        ...

    def delta_pages(self, tenant_id: str, link: str) -> AsyncIterator[DeltaPage]:
        """A delta round from `link`, page by page; raises DeltaExpired."""
        ...

    async def owner_count(self, tenant_id: str, collection: Collection, object_id: str) -> int: ...


class InventoryStore(Protocol):
    async def state(self, tenant_id: str) -> InventoryState | None: ...

    async def save_state(self, state: InventoryState) -> InventoryState:
        """Create or replace (optimistic concurrency on etag); raises ConcurrencyConflict."""
        ...

    async def put(self, apps: Sequence[AppSummary], scan_id: str) -> None:
        """Write the summaries and their credential rows, marked with the scan."""
        ...

    async def replace(self, app: AppSummary, scan_id: str) -> None:
        """Write one summary; credential rows it no longer has are removed."""
        ...

    async def remove(self, tenant_id: str, object_ids: Sequence[str]) -> None: ...

    async def sweep(self, tenant_id: str, scan_id: str) -> int:
        """Remove what a full scan did not see (apps gone meanwhile); returns how many."""
        ...

    async def set_managed_by(self, tenant_id: str, object_id: str, registration_id: str | None) -> bool:
        """Mark one stored summary, and its credential rows, managed by `registration_id` (None: not
        managed), changing nothing else: not the scan's mark either, so a full scan running
        meanwhile does not sweep them. False when the summary is gone or was rewritten since it was
        read (whoever wrote it decided `managed` from the records itself)."""
        ...

    async def by_app_id(self, tenant_id: str, app_id: str) -> list[AppSummary]: ...

    async def credentials(
        self, query: InventoryQuery, now: datetime
    ) -> tuple[list[CredentialRow], str | None]:
        """Credential rows by end date (expired first), filtered; and the continuation, if more."""
        ...
