"""A tenant's inventory scan: the first as lists, later ones as delta rounds.

Graph pages lists at up to 999 objects ($top) but delta rounds at about 200 (docs/devstack-graph.md),
so the first scan (and any scan after the delta token expired) reads:
1. a delta baseline per collection with $deltatoken=latest (taken first: a change made while the
   lists are read is then in the next delta round, never lost; writing it twice is harmless);
2. /applications and /servicePrincipals at $top=999 with owners expanded, page by page, each
   page's summaries written before the next is read (never a whole tenant in memory);
3. a sweep of the summaries this scan did not see.
A later scan follows each deltaLink: an unchanged tenant costs one request per collection.
Graph's 429s are retried by the adapter honouring Retry-After; what still fails is TransientError,
and the next scan starts over from the stored links (every write is an idempotent upsert).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace

from functions.core.catalogue.permissions import resolve_permissions_detailed
from functions.core.catalogue.profiles import ProfileCatalogue
from functions.core.inventory.marking import RELEASED, remark
from functions.core.inventory.matching import ProfileSets, app_keys
from functions.core.inventory.models import AppSummary, ScanOutcome
from functions.core.inventory.ports import (
    Collection,
    DeltaExpired,
    InventorySource,
    InventoryState,
    InventoryStore,
)
from functions.core.ports import Clock, Directory, RegistrationStore
from functions.core.record.errors import NotFound
from functions.core.record.models import ResourceCatalog

log = logging.getLogger(__name__)
MANAGED_PREFIX = "registrar-"  # functions.core.record.registration.unique_name_for
COLLECTIONS: tuple[Collection, ...] = ("applications", "servicePrincipals")


class InventoryScanner:
    def __init__(  # noqa: PLR0917  (the scan's collaborators)
        self,
        source: InventorySource,
        store: InventoryStore,
        directory: Directory,
        registrations: RegistrationStore,
        catalogue: ProfileCatalogue,
        clock: Clock,
    ) -> None:
        self._source = source
        self._store = store
        self._directory = directory
        self._registrations = registrations
        self._catalogue = catalogue
        self._clock = clock
        self._requests = 0
        self._adopted: dict[str, str] = {}

    async def scan(self, tenant_id: str) -> ScanOutcome:
        self._requests = 0
        self._adopted = await self._adopted_apps(tenant_id)
        sets = await self.profile_sets(tenant_id)
        state = await self._store.state(tenant_id)
        outcome: ScanOutcome | None = None
        if state is not None and state.applications_link and state.service_principals_link:
            try:
                outcome = await self._delta(tenant_id, state, sets)
            except DeltaExpired:
                log.info("inventory of %s: delta token expired, scanning in full", tenant_id)
        if outcome is None:
            outcome = await self._full(tenant_id, state, sets)
        # An adoption or release marked meanwhile may have been overwritten by this scan's older
        # reading of the records (marking.py): read them again and apply what changed.
        remarked = await remark(self._store, tenant_id, self._adopted, await self._adopted_apps(tenant_id))
        if remarked:
            log.info(
                "inventory of %s: %d adoptions or releases made during the scan applied", tenant_id, remarked
            )
        return outcome

    # ---------------------------------------------------------------- the two kinds of scan

    async def _full(self, tenant_id: str, state: InventoryState | None, sets: ProfileSets) -> ScanOutcome:
        scan_id = uuid.uuid4().hex
        links = {}
        for collection in COLLECTIONS:
            links[collection] = await self._source.latest_delta_link(tenant_id, collection)
            self._requests += 1
        counts = {}
        for collection in COLLECTIONS:
            written = 0
            # A page is written while the next one is read: at most two pages in memory.
            writing: asyncio.Task[None] | None = None
            try:
                async for page in self._source.list_pages(tenant_id, collection):
                    self._requests += 1
                    summaries = [await self._enrich(app, sets) for app in page if _kept(app)]
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(self._store.put(summaries, scan_id))
                    written += len(summaries)
                if writing is not None:
                    await writing
            finally:
                if writing is not None and not writing.done():
                    writing.cancel()
            counts[collection] = written
        removed = await self._store.sweep(tenant_id, scan_id)
        await self._save(tenant_id, state, links)
        log.info(
            "inventory of %s: full scan, %d summaries, %d removed", tenant_id, sum(counts.values()), removed
        )
        return ScanOutcome(
            tenant_id, "full", counts["applications"], counts["servicePrincipals"], self._requests
        )

    async def _delta(self, tenant_id: str, state: InventoryState, sets: ProfileSets) -> ScanOutcome:
        start = {"applications": state.applications_link, "servicePrincipals": state.service_principals_link}
        links: dict[Collection, str] = {}
        counts = {}
        for collection in COLLECTIONS:
            link = start[collection]
            if link is None:  # scan() comes here only with both links
                raise DeltaExpired(f"no deltaLink for {collection} of {tenant_id}")
            changed = 0
            async for page in self._source.delta_pages(tenant_id, link):
                self._requests += 1
                for app in page.changed:
                    if not _kept(app):  # a service principal whose credentials are gone
                        await self._store.remove(tenant_id, [app.object_id])
                        continue
                    counted = await self._source.owner_count(tenant_id, collection, app.object_id)
                    self._requests += 1
                    await self._store.replace(
                        await self._enrich(replace(app, owner_count=counted), sets), "delta"
                    )
                if page.removed:
                    await self._store.remove(tenant_id, list(page.removed))
                changed += len(page.changed) + len(page.removed)
                if page.delta_link:
                    links[collection] = page.delta_link
            counts[collection] = changed
        await self._save(tenant_id, state, links)
        return ScanOutcome(
            tenant_id, "delta", counts["applications"], counts["servicePrincipals"], self._requests
        )

    async def _save(self, tenant_id: str, state: InventoryState | None, links: dict[Collection, str]) -> None:
        fresh = InventoryState(
            tenant_id,
            links.get("applications") or (state.applications_link if state else None),
            links.get("servicePrincipals") or (state.service_principals_link if state else None),
            self._clock.now(),
            state.etag if state else None,
        )
        await self._store.save_state(fresh)

    # ---------------------------------------------------------------- what a summary adds

    async def _enrich(self, app: AppSummary, sets: ProfileSets) -> AppSummary:
        match = sets.best(app_keys(app.required_resource_access)) if app.holder == "application" else None
        return replace(app, match=match, managed_by=await self._managed_by(app))

    async def _adopted_apps(self, tenant_id: str) -> dict[str, str]:
        """appId -> registration id of the apps the tenant's registrations adopted and hold: an
        adopted app keeps its own uniqueName, so only the records know. One paged read of the
        tenant's registrations per scan (Registrar's own volume), not one per app."""
        adopted: dict[str, str] = {}
        continuation: str | None = None
        while True:
            page = await self._registrations.list(tenant_id=tenant_id, limit=1000, continuation=continuation)
            for record in page.items:
                if record.adoption is not None and record.status not in RELEASED:
                    adopted[record.adoption.app_id.lower()] = record.id
            continuation = page.continuation
            if continuation is None:
                return adopted

    async def _managed_by(self, app: AppSummary) -> str | None:
        """The registration whose uniqueName the app carries, when Registrar holds that record; or
        the registration that adopted it."""
        if app.holder == "application" and app.app_id.lower() in self._adopted:
            return self._adopted[app.app_id.lower()]
        name = app.unique_name or ""
        if not name.lower().startswith(MANAGED_PREFIX):
            return None
        registration_id = name[len(MANAGED_PREFIX) :]
        try:
            record = await self._registrations.get(registration_id)
        except NotFound:
            return None
        return record.id if record.tenant_id.lower() == app.tenant_id.lower() else None

    async def profile_sets(self, tenant_id: str) -> ProfileSets:
        return await profile_sets(self._directory, self._catalogue, tenant_id)


async def profile_sets(directory: Directory, catalogue: ProfileCatalogue, tenant_id: str) -> ProfileSets:
    """Each profile's unconditional permissions, resolved through the tenant's catalogues (the scan
    matches every app against these; adoption matches the one app it is asked to take)."""
    profiles = [p for p in catalogue if not p.custom]
    resolutions = await asyncio.gather(
        *(
            resolve_permissions_detailed(
                directory, tenant_id, [perm.ref() for perm in p.permissions if perm.when is None]
            )
            for p in profiles
        )
    )
    resources = {perm.resource_app_id for r in resolutions for perm in r.permissions}
    catalogs: list[ResourceCatalog] = []
    for resource in sorted(resources):
        try:
            catalogs.append(await directory.resource_catalog(tenant_id, resource))
        except NotFound:
            continue
    resolved = {p.id: list(r.permissions) for p, r in zip(profiles, resolutions, strict=True)}
    return ProfileSets.build(resolved, catalogs)


def _kept(app: AppSummary) -> bool:
    """Every application; a service principal only when it holds credentials of its own."""
    return app.holder == "application" or bool(app.credentials)
