"""Real permission catalogues (functions/profiles/resources/*.json) behind the Directory port's
resource_catalog, as a tenant seeded with them serves them; records every fetch."""

from __future__ import annotations

import asyncio

from functions.core.record.errors import NotFound
from functions.core.record.models import ResourceCatalog
from functions.profiles import load_resource_catalogs


def real_catalogs() -> dict[str, ResourceCatalog]:
    """By appId, each with a service principal id as a tenant would give it."""
    return {
        app_id: ResourceCatalog(
            app_id=c.app_id,
            service_principal_id=f"sp-{c.display_name.lower().replace(' ', '-')}",
            display_name=c.display_name,
            app_roles=c.app_roles,
            scopes=c.scopes,
        )
        for app_id, c in load_resource_catalogs().items()
    }


class CatalogDirectory:
    """Only resource_catalog: the part of the Directory port permission resolution uses.

    `gate`, when set, holds every fetch until `expected` fetches are under way at once: a
    resolver that fetched one resource after another would never get past the first.
    """

    def __init__(self, expected_concurrent: int = 0) -> None:
        self.catalogs = real_catalogs()
        self.fetches: list[tuple[str, str]] = []
        self._expected = expected_concurrent
        self._started = 0
        self._gate = asyncio.Event()

    async def resource_catalog(self, tenant_id: str, resource: str) -> ResourceCatalog:
        self.fetches.append((tenant_id, resource))
        if self._expected:
            self._started += 1
            if self._started >= self._expected:
                self._gate.set()
            await asyncio.wait_for(self._gate.wait(), timeout=5)
        wanted = resource.lower()
        for catalog in self.catalogs.values():
            if wanted in (catalog.app_id, catalog.display_name.lower()):
                return catalog
        raise NotFound("servicePrincipal", resource)
