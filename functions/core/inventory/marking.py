"""The inventory told at once that a registration now manages an app (docs/inventory.md).

A scan decides `managed` from the records (scanner.py: the registration whose uniqueName the app
carries, or the registration that adopted it and has not released it). Between two scans (daily by
default) an app a registration just adopted would still show `managed: false`: the adoption marks
the app's stored summary itself, with the answer the next scan would give. The scan stays the
authority: an app not in the inventory yet is left to it, and a summary rewritten meanwhile is its
writer's.
"""

from __future__ import annotations

from functions.core.inventory.ports import InventoryStore
from functions.core.inventory.scanner import RELEASED
from functions.core.record.registration import Registration


async def mark_adopted(store: InventoryStore, record: Registration) -> int:
    """Mark the application summary of the app `record` adopted as managed by it, unless it has
    released the app (as the scan decides). Not the service principal's: the scan marks only the
    application of an adopted app. Returns how many summaries changed; one already so marked is
    not written again."""
    adoption = record.adoption
    if adoption is None or record.status in RELEASED:
        return 0
    marked = 0
    for app in await store.by_app_id(record.tenant_id, adoption.app_id):
        if app.holder != "application" or app.managed_by == record.id:
            continue
        if await store.set_managed_by(record.tenant_id, app.object_id, record.id):
            marked += 1
    return marked
