"""ports.Directory on msgraph-sdk: app registrations, service principals, consent, credentials.

One GraphServiceClient per tenant, made on first use with the registrar's credential for that
tenant (identity.py), scopes ["https://graph.microsoft.com/.default"] and request_adapter.base_url
from REGISTRAR_GRAPH_BASE_URL (the devstack's https://127.0.0.1:PORT/v1.0 locally). msgraph is
imported on first use: importing this module costs nothing.

Clients, their HTTP pools and the catalogue's in-flight fetches belong to the event loop that made
them: use one GraphDirectory per event loop (the Functions worker has one) and close() it at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from functions.adapters import graph_batch
from functions.adapters.graph_credentials import GraphCredentials
from functions.adapters.graph_errors import call, not_found_lag, replication_lag
from functions.adapters.identity import GRAPH_SCOPE, RegistrarIdentity
from functions.core.errors import NotFound, PermanentError
from functions.core.models import ResourceCatalog, ResourcePermission
from functions.core.ports import (
    ApplicationRef,
    ApplicationSpec,
    DelegatedGrant,
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
CATALOG_SELECT = ["id", "appId", "displayName", "appRoles", "oauth2PermissionScopes"]


@dataclass
class _OData:
    """Query options for any request builder (kiota reads the dataclass fields)."""

    filter: str | None = None
    select: list[str] | None = None

    def get_query_parameter(self, original_name: str) -> str:
        return f"%24{original_name}"


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


class GraphDirectory(GraphCredentials):
    """Directory port. base_url: REGISTRAR_GRAPH_BASE_URL; identity: the registrar's credentials.

    catalog_ttl: how long a resource catalogue is reused; lag_timeout: the longest wait (seconds)
    for Entra's replication after a create; retry_delay / max_retries: the SDK RetryHandler's
    base delay (seconds, added when a 429/503/504 carries no Retry-After) and retry count.
    """

    def __init__(
        self,
        identity: RegistrarIdentity,
        base_url: str,
        *,
        catalog_ttl: timedelta = timedelta(hours=1),
        lag_timeout: float = 60.0,
        retry_delay: float = 3.0,
        max_retries: int = 3,
    ) -> None:
        self._identity = identity
        self._base_url = base_url.rstrip("/")
        self._catalog_ttl = catalog_ttl.total_seconds()
        self._lag_timeout = lag_timeout
        self._retry_delay = retry_delay
        self._max_retries = max_retries
        self._clients: dict[str, Any] = {}
        self._catalogs: dict[tuple[str, str], tuple[float, asyncio.Future[ResourceCatalog]]] = {}

    # ---------------------------------------------------------------- plumbing

    def client(self, tenant_id: str) -> Any:
        """The tenant's GraphServiceClient (made on first use)."""
        key = tenant_id.lower()
        client = self._clients.get(key)
        if client is None:
            from kiota_authentication_azure.azure_identity_authentication_provider import (
                AzureIdentityAuthenticationProvider,
            )
            from kiota_http.middleware.options import RetryHandlerOption
            from msgraph import GraphRequestAdapter, GraphServiceClient
            from msgraph.graph_request_adapter import options as sdk_options
            from msgraph_core import GraphClientFactory

            retry = RetryHandlerOption(delay=self._retry_delay, max_retries=self._max_retries)
            http = GraphClientFactory.create_with_default_middleware(
                options={**sdk_options, RetryHandlerOption.get_key(): retry}
            )
            auth = AzureIdentityAuthenticationProvider(self._identity.credential(key), scopes=[GRAPH_SCOPE])
            adapter = GraphRequestAdapter(auth, client=http)
            adapter.base_url = self._base_url
            client = self._clients[key] = GraphServiceClient(request_adapter=adapter)
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.request_adapter._http_client.aclose()

    async def _call(
        self,
        operation: str,
        what: str,
        key: str,
        attempt: Callable[[], Awaitable[Any]],
        lag: Callable[[Any], bool] | None = None,
    ) -> Any:
        return await call(operation, what, key, attempt, lag=lag, lag_timeout=self._lag_timeout)

    @staticmethod
    def _config(*, filter: str | None = None, select: list[str] | None = None) -> Any:
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        config: Any = RequestConfiguration()
        if filter is not None or select is not None:
            config.query_parameters = _OData(filter=filter, select=select)
        return config

    async def _pages(self, builder: Any, first: Any) -> list[Any]:
        """Follow @odata.nextLink until the collection ends."""
        items: list[Any] = []
        page = first
        while page is not None:
            items.extend(page.value or [])
            if not page.odata_next_link:
                break
            page = await builder.with_url(page.odata_next_link).get()
        return items

    # ---------------------------------------------------------------- catalogue

    async def resource_catalog(self, tenant_id: str, resource: str) -> ResourceCatalog:
        key = (tenant_id.lower(), resource.lower())
        loop = asyncio.get_running_loop()
        cached = self._catalogs.get(key)
        if cached is not None and cached[0] > time.monotonic() and cached[1].get_loop() is loop:
            return await asyncio.shield(cached[1])
        future: asyncio.Future[ResourceCatalog] = loop.create_task(self._fetch_catalog(tenant_id, resource))
        self._catalogs[key] = (time.monotonic() + self._catalog_ttl, future)
        try:
            catalog = await asyncio.shield(future)
        except BaseException:
            if self._catalogs.get(key, (0, None))[1] is future:
                del self._catalogs[key]  # failures are not cached
            raise
        # Also reachable by appId when asked by display name (and the other way round).
        self._catalogs.setdefault((key[0], catalog.app_id.lower()), self._catalogs[key])
        return catalog

    async def _fetch_catalog(self, tenant_id: str, resource: str) -> ResourceCatalog:
        client = self.client(tenant_id)
        field = "appId" if _GUID.match(resource) else "displayName"
        config = self._config(filter=f"{field} eq '{_odata_quote(resource)}'", select=CATALOG_SELECT)
        page = await self._call(
            "GET", "servicePrincipals", resource, lambda: client.service_principals.get(config)
        )
        found = list(page.value or []) if page else []
        if not found:
            raise NotFound("resource service principal", resource)
        sp = found[0]

        def by_value(items: Sequence[Any] | None) -> dict[str, ResourcePermission]:
            return {
                item.value: ResourcePermission(
                    id=str(item.id),
                    value=item.value,
                    display_name=getattr(item, "display_name", None)
                    or getattr(item, "admin_consent_display_name", None)
                    or item.value,
                    enabled=item.is_enabled is not False,
                )
                for item in items or []
                if item.value
            }

        return ResourceCatalog(
            app_id=str(sp.app_id),
            service_principal_id=str(sp.id),
            display_name=sp.display_name or "",
            # Only roles an application can hold are application permissions (others are for users).
            app_roles=by_value(
                [r for r in sp.app_roles or [] if "Application" in (r.allowed_member_types or [])]
            ),
            scopes=by_value(sp.oauth2_permission_scopes),
        )

    # ---------------------------------------------------------------- applications

    @staticmethod
    def _application_body(spec: ApplicationSpec) -> Any:
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.public_client_application import PublicClientApplication
        from msgraph.generated.models.required_resource_access import RequiredResourceAccess
        from msgraph.generated.models.resource_access import ResourceAccess
        from msgraph.generated.models.spa_application import SpaApplication
        from msgraph.generated.models.web_application import WebApplication

        return Application(
            display_name=spec.display_name,
            sign_in_audience=spec.sign_in_audience,
            web=WebApplication(redirect_uris=list(spec.redirect_uris.web)),
            spa=SpaApplication(redirect_uris=list(spec.redirect_uris.spa)),
            public_client=PublicClientApplication(redirect_uris=list(spec.redirect_uris.public_client)),
            required_resource_access=[
                RequiredResourceAccess(
                    resource_app_id=rra.resource_app_id,
                    resource_access=[ResourceAccess(id=uuid.UUID(i), type="Role") for i in rra.app_role_ids]
                    + [ResourceAccess(id=uuid.UUID(i), type="Scope") for i in rra.scope_ids],
                )
                for rra in spec.required_resource_access
            ],
            notes=spec.notes,
            tags=list(spec.tags),
        )

    async def upsert_application(self, tenant_id: str, spec: ApplicationSpec) -> ApplicationRef:
        client = self.client(tenant_id)
        body = self._application_body(spec)
        config = self._config()
        config.headers.add("Prefer", "create-if-missing")
        builder = client.applications_with_unique_name(spec.unique_name)
        created = await self._call(
            "PATCH", "application", spec.unique_name, lambda: builder.patch(body, config)
        )
        if created is not None and created.id and created.app_id:  # 201 with the new app
            return ApplicationRef(object_id=str(created.id), app_id=str(created.app_id), created=True)
        found = await self._find(tenant_id, spec.unique_name, lag=True)  # 204: updated in place
        if found is None:
            raise NotFound("application", spec.unique_name)
        return found

    async def find_application(self, tenant_id: str, unique_name: str) -> ApplicationRef | None:
        return await self._find(tenant_id, unique_name, lag=False)

    async def _find(self, tenant_id: str, unique_name: str, *, lag: bool) -> ApplicationRef | None:
        builder = self.client(tenant_id).applications_with_unique_name(unique_name)
        config = self._config(select=["id", "appId"])
        try:
            app = await self._call(
                "GET", "application", unique_name, lambda: builder.get(config), not_found_lag if lag else None
            )
        except NotFound:
            return None
        return ApplicationRef(object_id=str(app.id), app_id=str(app.app_id), created=False)

    async def delete_application(self, tenant_id: str, app_object_id: str) -> None:
        builder = self.client(tenant_id).applications.by_application_id(app_object_id)
        with contextlib.suppress(NotFound):  # already gone is success
            await self._call("DELETE", "application", app_object_id, builder.delete)

    # ---------------------------------------------------------------- service principals and consent

    async def ensure_service_principal(self, tenant_id: str, app_id: str) -> str:
        from msgraph.generated.models.service_principal import ServicePrincipal

        client = self.client(tenant_id)
        by_app_id = client.service_principals_with_app_id(app_id)
        select = self._config(select=["id", "appId"])

        async def get_or_create() -> Any:
            try:
                return await self._call("GET", "servicePrincipal", app_id, lambda: by_app_id.get(select))
            except NotFound:
                pass
            try:
                return await self._call(
                    "POST",
                    "servicePrincipal for",
                    app_id,
                    lambda: client.service_principals.post(ServicePrincipal(app_id=app_id)),
                    replication_lag,
                )
            except PermanentError as error:
                if "409" not in str(error) and error.code != "Request_MultipleObjectsWithSameKeyValue":
                    raise
            # Created concurrently by another worker: read the winner's.
            return await self._call(
                "GET", "servicePrincipal", app_id, lambda: by_app_id.get(select), not_found_lag
            )

        sp = await get_or_create()
        return str(sp.id)

    async def app_role_assignments(self, tenant_id: str, principal_id: str) -> set[tuple[str, str]]:
        builder = (
            self.client(tenant_id)
            .service_principals.by_service_principal_id(principal_id)
            .app_role_assignments
        )

        async def fetch() -> list[Any]:
            return await self._pages(builder, await builder.get())

        items = await self._call("GET", "appRoleAssignments of", principal_id, fetch, not_found_lag)
        return {(str(a.resource_id).lower(), str(a.app_role_id).lower()) for a in items}

    async def assign_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        if assignments:
            await graph_batch.assign_app_roles(
                self.client(tenant_id), principal_id, assignments, lag_timeout=self._lag_timeout
            )

    async def delegated_grants(self, tenant_id: str, client_id: str) -> Mapping[str, DelegatedGrant]:
        builder = self.client(tenant_id).oauth2_permission_grants
        config = self._config(filter=f"clientId eq '{_odata_quote(client_id)}'")

        async def fetch() -> list[Any]:
            return await self._pages(builder, await builder.get(config))

        grants = await self._call("GET", "oauth2PermissionGrants of", client_id, fetch)
        return {
            str(g.resource_id).lower(): DelegatedGrant(
                grant_id=str(g.id),
                resource_service_principal_id=str(g.resource_id).lower(),
                scopes=frozenset((g.scope or "").split()),
            )
            for g in grants
            if (g.consent_type or "").lower() == "allprincipals"
        }

    async def grant_delegated(
        self, tenant_id: str, client_id: str, resource_id: str, scopes: frozenset[str], existing: str | None
    ) -> None:
        from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant

        grants = self.client(tenant_id).oauth2_permission_grants
        scope = " ".join(sorted(scopes))
        if existing is not None:
            item = grants.by_o_auth2_permission_grant_id(existing)
            try:
                if not scopes:  # exactly no scopes: the grant itself goes
                    await self._call("DELETE", "oauth2PermissionGrant", existing, item.delete)
                else:
                    await self._call(
                        "PATCH",
                        "oauth2PermissionGrant",
                        existing,
                        lambda: item.patch(OAuth2PermissionGrant(scope=scope)),
                    )
                return
            except NotFound:
                if not scopes:
                    return
                # Deleted meanwhile: create it anew below.
        if not scopes:
            return
        body = OAuth2PermissionGrant(
            client_id=client_id, consent_type="AllPrincipals", resource_id=resource_id, scope=scope
        )
        try:
            await self._call(
                "POST", "oauth2PermissionGrant for", client_id, lambda: grants.post(body), not_found_lag
            )
        except PermanentError as error:
            if "409" not in str(error):
                raise
            current = (await self.delegated_grants(tenant_id, client_id)).get(resource_id.lower())
            if current is None:
                raise
            await self.grant_delegated(tenant_id, client_id, resource_id, scopes, current.grant_id)
