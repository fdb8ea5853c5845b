"""The inventory told at once whether a registration manages an adopted app (docs/inventory.md).

A scan decides `managed` from the records (scanner.py: the registration whose uniqueName the app
carries, or the registration that adopted it and has not released it). Between two scans (daily by
default) an app a registration just adopted would still show `managed: false`, and one it just
released (decommissioned, or failed) `managed: true`: the adoption marks the app's stored summary
itself, with the answer the next scan would give (`reflect`, called by the ownership check and, for
every run's outcome, by the wiring's settle). The scan stays the authority: an app not in the
inventory yet is left to it, and a summary rewritten meanwhile is its writer's.

A scan reads the records once, at its start: a summary it writes after an adoption (or release)
marked it would undo that mark. So the scan reads the records again once every summary is written
and applies what changed meanwhile (`remark`). The record is always saved before its mark, so
either the second read sees the change, or the mark comes after the scan's last write.
"""

from __future__ import annotations

from collections.abc import Mapping

from functions.core.inventory.ports import InventoryStore
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration

# A registration that no longer holds its adopted app (it may be adopted again).
RELEASED = frozenset({RegistrationStatus.DECOMMISSIONED, RegistrationStatus.FAILED})


async def reflect(store: InventoryStore, record: Registration) -> int:
    """The adopted app's summary as the next scan would leave it: managed by `record` while it
    holds the app, not managed once it released it. Returns how many summaries changed."""
    adoption = record.adoption
    if adoption is None:
        return 0
    if record.status in RELEASED:
        return await _set(store, record.tenant_id, adoption.app_id, None, only_from=record.id)
    return await mark_adopted(store, record)


async def mark_adopted(store: InventoryStore, record: Registration) -> int:
    """Mark the application summary of the app `record` adopted as managed by it, unless it has
    released the app (as the scan decides). Not the service principal's: the scan marks only the
    application of an adopted app. Returns how many summaries changed; one already so marked is
    not written again."""
    adoption = record.adoption
    if adoption is None or record.status in RELEASED:
        return 0
    return await _set(store, record.tenant_id, adoption.app_id, record.id)


async def remark(
    store: InventoryStore, tenant_id: str, read_before: Mapping[str, str], read_after: Mapping[str, str]
) -> int:
    """Apply the adoptions and releases made while a scan ran: `read_before` and `read_after` are
    the tenant's adopted apps (appId, lower case -> registration id) read at its start and after its
    last write. Only what changed in between is written."""
    changed = 0
    for app_id, registration_id in read_after.items():
        if read_before.get(app_id) != registration_id:
            changed += await _set(store, tenant_id, app_id, registration_id)
    for app_id, registration_id in read_before.items():
        if app_id not in read_after:
            changed += await _set(store, tenant_id, app_id, None, only_from=registration_id)
    return changed


async def _set(
    store: InventoryStore,
    tenant_id: str,
    app_id: str,
    registration_id: str | None,
    *,
    only_from: str | None = None,
) -> int:
    """Mark the app's application summary managed by `registration_id` (None: not managed); with
    `only_from`, only a summary that registration holds (an unmark never clears another's mark)."""
    marked = 0
    for app in await store.by_app_id(tenant_id, app_id):
        if app.holder != "application" or app.managed_by == registration_id:
            continue
        if only_from is not None and app.managed_by != only_from:
            continue
        if await store.set_managed_by(tenant_id, app.object_id, registration_id):
            marked += 1
    return marked
