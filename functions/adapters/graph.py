"""ports.Directory on msgraph-sdk: app registrations, owners, service principals, consent, credentials.

One GraphServiceClient per tenant, made on first use with the registrar's credential for that
tenant (identity.py), scopes ["https://graph.microsoft.com/.default"] and request_adapter.base_url
from REGISTRAR_GRAPH_BASE_URL (the devstack's https://127.0.0.1:PORT/v1.0 locally). msgraph is
imported on first use: importing this module costs nothing.

Clients, their HTTP pools and the catalogue's in-flight fetches belong to the event loop that made
them: use one GraphDirectory per event loop (the Functions worker has one) and close() it at shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from functions.adapters.graph_consent import GraphConsent
from functions.adapters.graph_credentials import GraphCredentials
from functions.adapters.graph_errors import Lag, call, exists_lag, not_found_lag, replication_lag
from functions.adapters.graph_owners import GraphOwners
from functions.adapters.graph_pacing import GraphPacer, paced
from functions.adapters.graph_permissions import GraphPermissions
from functions.adapters.graph_policy import GraphPolicy
from functions.adapters.identity import GRAPH_SCOPE, RegistrarIdentity
from functions.core.ports import (
    ApplicationRef,
    ApplicationSpec,
    ExistingApplication,
    RequiredResourceAccess,
)
from functions.core.record.errors import NotFound, PermanentError, TransientError
from functions.core.record.models import ResourceCatalog, ResourcePermission

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


class GraphDirectory(GraphConsent, GraphCredentials, GraphOwners, GraphPermissions, GraphPolicy):
    """Directory port. base_url: REGISTRAR_GRAPH_BASE_URL; identity: the registrar's credentials.

    catalog_ttl: how long a resource catalogue is reused; lag_timeout: the longest wait (seconds)
    for Entra's replication after a create; retry_delay / max_retries: the SDK RetryHandler's
    base delay (seconds, added when a 429/503/504 carries no Retry-After) and retry count;
    pacer: the process's Graph budgets (graph_pacing.py), under every client's middleware.
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
        pacer: GraphPacer | None = None,
    ) -> None:
        self._identity = identity
        self._base_url = base_url.rstrip("/")
        self._catalog_ttl = catalog_ttl.total_seconds()
        self._lag_timeout = lag_timeout
        self._retry_delay = retry_delay
        self._max_retries = max_retries
        self.pacer = pacer or GraphPacer()
        self._clients: dict[str, Any] = {}
        self._catalogs: dict[tuple[str, str], tuple[float, asyncio.Future[ResourceCatalog]]] = {}
        self._principal_ids: dict[str, str] = {}

    # ---------------------------------------------------------------- plumbing

    @property
    def base_url(self) -> str:
        return self._base_url

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
            paced(http, self.pacer, key)  # every attempt, the RetryHandler's too, waits its turn
            adapter = GraphRequestAdapter(auth, client=http)
            adapter.base_url = self._base_url
            client = self._clients[key] = GraphServiceClient(request_adapter=adapter)
        return client

    def predicted_wait(self, tenant_id: str) -> timedelta:
        """How long a new write in this tenant would wait for the budget now (ports.Directory)."""
        return timedelta(seconds=self.pacer.predicted_wait(tenant_id))

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

    async def _send(  # noqa: PLR0917  (mirrors _call, plus the client and request)
        self,
        client: Any,
        operation: str,
        what: str,
        key: str,
        request: Any,
        lag: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Send a request builder's RequestInformation and return the body as JSON (None: no content).

        Responses are read as JSON rather than kiota models: deserializing any directoryObject makes
        kiota import every Entity subtype (~1,300 modules, seconds of cold start), json.loads does
        not. Requests still go through the request builders and the client's middleware.
        """
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        # msgraph-sdk's key builders (applications_with_unique_name, service_principals_with_app_id)
        # write their key into the client's shared path_parameters dict, and the URL is built only
        # when the request is sent, after an await (token, retry sleep). Without a private copy taken
        # here, before any await, concurrent calls send each other's keys.
        request.path_parameters = dict(request.path_parameters)
        raw = await self._call(
            operation,
            what,
            key,
            lambda: client.request_adapter.send_primitive_async(request, "bytes", {"XXX": ODataError}),
            lag,
        )
        return json.loads(raw) if raw else None

    async def _list(  # noqa: PLR0917
        self,
        client: Any,
        what: str,
        key: str,
        builder: Any,
        config: Any = None,
        lag: Callable[[Any], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following @odata.nextLink."""
        items: list[dict[str, Any]] = []
        request = builder.to_get_request_information(config)
        while True:
            page = await self._send(client, "GET", what, key, request, lag) or {}
            items.extend(page.get("value") or [])
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return items
            request = builder.with_url(next_link).to_get_request_information()

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
        """GET /servicePrincipals?$filter=appId or displayName eq ...&$select=id,appId,displayName,appRoles,..."""
        client = self.client(tenant_id)
        field = "appId" if _GUID.match(resource) else "displayName"
        config = self._config(filter=f"{field} eq '{_odata_quote(resource)}'", select=CATALOG_SELECT)
        request = client.service_principals.to_get_request_information(config)
        found = (await self._send(client, "GET", "servicePrincipals", resource, request) or {}).get("value")
        if not found:
            raise NotFound("resource service principal", resource)
        sp = found[0]

        def by_value(items: Sequence[dict[str, Any]]) -> dict[str, ResourcePermission]:
            return {
                item["value"]: ResourcePermission(
                    id=str(item["id"]),
                    value=item["value"],
                    display_name=item.get("displayName")
                    or item.get("adminConsentDisplayName")
                    or item["value"],
                    enabled=item.get("isEnabled") is not False,
                )
                for item in items
                if item.get("value") and item.get("id")
            }

        # Only roles an application can hold are application permissions (others are for users).
        roles = [r for r in sp.get("appRoles") or [] if "Application" in (r.get("allowedMemberTypes") or [])]
        return ResourceCatalog(
            app_id=str(sp["appId"]),
            service_principal_id=str(sp["id"]),
            display_name=sp.get("displayName") or "",
            app_roles=by_value(roles),
            scopes=by_value(sp.get("oauth2PermissionScopes") or []),
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
        config = self._config()
        config.headers.add("Prefer", "create-if-missing")
        builder = client.applications_with_unique_name(spec.unique_name)
        request = builder.to_patch_request_information(self._application_body(spec), config)
        try:
            created = await self._send(client, "PATCH", "application", spec.unique_name, request)
        except PermanentError as error:
            # Two workers creating the same uniqueName at once: the loser may get a 409. The app
            # exists either way; this call's desired state is applied by the caller's next run.
            if "409" not in str(error):
                raise
            created = None
        if created and created.get("id") and created.get("appId"):  # 201 with the new app
            return ApplicationRef(object_id=created["id"], app_id=created["appId"], created=True)
        found = await self._find(tenant_id, spec.unique_name, exists_lag)  # 204: updated in place
        if found is None:
            raise NotFound("application", spec.unique_name)
        return found

    async def find_application(
        self, tenant_id: str, unique_name: str, *, lag: bool = False
    ) -> ApplicationRef | None:
        # lag: a 404 is retried through the replication window, then None (the app may never have
        # been made: the caller decides what a miss means).
        return await self._find(tenant_id, unique_name, not_found_lag if lag else None)

    async def _find(self, tenant_id: str, unique_name: str, lag: Lag | None) -> ApplicationRef | None:
        client = self.client(tenant_id)
        request = client.applications_with_unique_name(unique_name).to_get_request_information(
            self._config(select=["id", "appId"])
        )
        try:
            app = await self._send(client, "GET", "application", unique_name, request, lag)
        except NotFound:
            return None
        return ApplicationRef(object_id=app["id"], app_id=app["appId"], created=False)

    async def registrar_principal_id(self, tenant_id: str) -> str:
        """The `oid` claim of Registrar's own Graph token in the tenant: its service principal's
        object id there, whatever the credential (secret, certificate, managed identity, federated),
        without a Graph request or a client id to look up. The token is the one the Graph client
        uses (azure-identity caches it), and only its claims are read here."""
        key = tenant_id.lower()
        if key not in self._principal_ids:
            try:
                token = await self._identity.credential(key).get_token(GRAPH_SCOPE)
            except (
                Exception
            ) as error:  # azure-identity's errors: the identity platform is unreachable or refuses
                raise TransientError(f"no Graph token for tenant {key}: {type(error).__name__}") from None
            payload = token.token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if not isinstance(claims.get("oid"), str):
                raise PermanentError(f"Registrar's token for tenant {key} carries no oid", code="NoObjectId")
            self._principal_ids[key] = claims["oid"].lower()
        return self._principal_ids[key]

    async def application_by_app_id(self, tenant_id: str, app_id: str) -> ExistingApplication | None:
        client = self.client(tenant_id)
        request = client.applications_with_app_id(app_id).to_get_request_information(
            self._config(select=["id", "appId", "displayName", "uniqueName", "requiredResourceAccess"])
        )
        try:
            app = await self._send(client, "GET", "application", app_id, request)
        except NotFound:
            return None
        return ExistingApplication(
            object_id=app["id"],
            app_id=app["appId"],
            display_name=app.get("displayName"),
            unique_name=app.get("uniqueName"),
            required_resource_access=tuple(
                RequiredResourceAccess(
                    resource_app_id=str(entry.get("resourceAppId")),
                    app_role_ids=tuple(
                        str(a["id"]) for a in entry.get("resourceAccess") or [] if a.get("type") == "Role"
                    ),
                    scope_ids=tuple(
                        str(a["id"]) for a in entry.get("resourceAccess") or [] if a.get("type") == "Scope"
                    ),
                )
                for entry in app.get("requiredResourceAccess") or []
            ),
        )

    async def delete_application(self, tenant_id: str, app_object_id: str) -> None:
        client = self.client(tenant_id)
        request = client.applications.by_application_id(app_object_id).to_delete_request_information()
        with contextlib.suppress(NotFound):  # already gone is success
            await self._send(client, "DELETE", "application", app_object_id, request)

    # ---------------------------------------------------------------- service principals and consent

    async def ensure_service_principal(self, tenant_id: str, app_id: str) -> str:
        """POST first (one round trip on the usual path, right after the app was created); a 409
        means it exists (a retry, or another worker won): read it. NoBackingApplicationObject (the
        new app not replicated yet) is retried within the replication window."""
        from msgraph.generated.models.service_principal import ServicePrincipal

        client = self.client(tenant_id)
        post = client.service_principals.to_post_request_information(ServicePrincipal(app_id=app_id))
        try:
            created = await self._send(client, "POST", "servicePrincipal for", app_id, post, replication_lag)
            return str(created["id"])
        except PermanentError as error:
            if "409" not in str(error) and error.code != "Request_MultipleObjectsWithSameKeyValue":
                raise
        get = client.service_principals_with_app_id(app_id).to_get_request_information(
            self._config(select=["id", "appId"])
        )
        return str((await self._send(client, "GET", "servicePrincipal", app_id, get, exists_lag))["id"])
