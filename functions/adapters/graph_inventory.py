"""The inventory's reads from Graph (InventorySource): lists at $top=999, delta rounds, owners.

Through GraphDirectory's clients and error mapping (graph.py): the SDK's RetryHandler retries 429
and 503/504 honouring Retry-After; what still fails is TransientError. Responses are read as JSON,
one page at a time, and turned into summaries before the next page is asked for.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from functions.adapters.graph import GraphDirectory
from functions.adapters.graph_errors import call
from functions.core.inventory.models import AppSummary, CredentialSummary, Holder
from functions.core.inventory.ports import Collection, DeltaExpired, DeltaPage

PAGE = 999  # Graph's largest page for these lists (application-list, serviceprincipal-list)
CREDENTIALS = ["passwordCredentials", "keyCredentials"]
SELECT: dict[Collection, list[str]] = {
    "applications": [
        "id",
        "appId",
        "displayName",
        "createdDateTime",
        "signInAudience",
        "requiredResourceAccess",
        "uniqueName",
        *CREDENTIALS,
    ],
    "servicePrincipals": ["id", "appId", "displayName", "createdDateTime", "signInAudience", *CREDENTIALS],
}
HOLDER: dict[Collection, Holder] = {"applications": "application", "servicePrincipals": "servicePrincipal"}


@dataclass
class _Query:
    """OData options for a request builder (kiota reads the fields)."""

    select: list[str] | None = None
    top: int | None = None
    expand: list[str] | None = None

    def get_query_parameter(self, original_name: str) -> str:
        return "%24" + original_name


def on_base(link: str, base_url: str) -> str:
    """`link` (a nextLink or a stored deltaLink) sent to the configured Graph endpoint: its path and
    query (the skip or delta token) are what name the page. Graph gives links on its own host, so in
    Azure this changes nothing; but a stored deltaLink outlives the endpoint it was given on (a local
    tenant restarted on another port), and the bearer token must never go anywhere else."""
    given, base = urlsplit(link), urlsplit(base_url)
    if (given.scheme, given.netloc) == (base.scheme, base.netloc):
        return link
    return urlunsplit((base.scheme, base.netloc, given.path, given.query, given.fragment))


class GraphInventory:
    def __init__(self, graph: GraphDirectory) -> None:
        self._graph = graph

    def _builder(self, tenant_id: str, collection: Collection) -> Any:
        client = self._graph.client(tenant_id)
        return client.applications if collection == "applications" else client.service_principals

    async def _get(self, tenant_id: str, what: str, request: Any) -> dict[str, Any]:
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        client = self._graph.client(tenant_id)
        request.path_parameters = dict(request.path_parameters)

        async def attempt() -> Any:
            try:
                return await client.request_adapter.send_primitive_async(
                    request, "bytes", {"XXX": ODataError}
                )
            except ODataError as error:
                if error.error is not None and error.error.code == "syncStateNotFound":
                    raise DeltaExpired(f"Graph: the delta token of {what} in {tenant_id} expired") from None
                raise

        raw = await call("GET", what, tenant_id, attempt)
        return json.loads(raw) if raw else {}

    async def list_pages(self, tenant_id: str, collection: Collection) -> AsyncIterator[Sequence[AppSummary]]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        builder = self._builder(tenant_id, collection)
        config: Any = RequestConfiguration()
        config.query_parameters = _Query(select=SELECT[collection], top=PAGE, expand=["owners($select=id)"])
        request = builder.to_get_request_information(config)
        while True:
            page = await self._get(tenant_id, collection, request)
            yield [summary(tenant_id, collection, item) for item in page.get("value") or []]
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            request = builder.with_url(on_base(next_link, self._graph.base_url)).to_get_request_information()

    async def latest_delta_link(self, tenant_id: str, collection: Collection) -> str:
        builder = self._builder(tenant_id, collection).delta
        base = self._graph.base_url
        # $select on this first request: Graph carries it in the tokens of every later link.
        select = ",".join(SELECT[collection])
        url = f"{base}/{collection}/delta?$select={select}&$deltatoken=latest"
        request = builder.with_url(url).to_get_request_information()
        page = await self._get(tenant_id, f"{collection}/delta", request)
        link = page.get("@odata.deltaLink")
        if not isinstance(link, str):
            raise DeltaExpired(f"Graph gave no deltaLink for {collection} of {tenant_id}")
        return link

    async def delta_pages(self, tenant_id: str, link: str) -> AsyncIterator[DeltaPage]:
        collection: Collection = "applications" if "/applications/" in link else "servicePrincipals"
        builder = self._builder(tenant_id, collection).delta
        while True:
            request = builder.with_url(on_base(link, self._graph.base_url)).to_get_request_information()
            page = await self._get(tenant_id, f"{collection}/delta", request)
            changed, removed = [], []
            for item in page.get("value") or []:
                if "@removed" in item:
                    removed.append(str(item["id"]))
                else:
                    changed.append(summary(tenant_id, collection, item))
            next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
            yield DeltaPage(changed, removed, delta_link)
            if not next_link:
                return
            link = next_link

    async def owner_count(self, tenant_id: str, collection: Collection, object_id: str) -> int:
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        config: Any = RequestConfiguration()
        config.query_parameters = _Query(select=["id"], top=PAGE)
        owners = (
            self._builder(tenant_id, collection).by_application_id if collection == "applications" else None
        )
        item = (
            owners(object_id)
            if owners is not None
            else self._builder(tenant_id, collection).by_service_principal_id(object_id)
        )
        request = item.owners.to_get_request_information(config)
        page = await self._get(tenant_id, f"{collection}/owners", request)
        return len(page.get("value") or [])


def summary(tenant_id: str, collection: Collection, item: dict[str, Any]) -> AppSummary:
    """An application or service principal as Graph lists it, reduced to the inventory's facts
    (Graph returns no secret value; none is read here either: secretText is never looked at)."""
    holder = HOLDER[collection]
    credentials = [
        CredentialSummary(
            key_id=str(c.get("keyId")),
            type="secret",
            holder=holder,
            display_name=c.get("displayName"),
            hint=c.get("hint"),
            thumbprint=None,
            start=_when(c.get("startDateTime")),
            end=_when(c.get("endDateTime")),
        )
        for c in item.get("passwordCredentials") or []
    ]
    credentials += [
        CredentialSummary(
            key_id=str(c.get("keyId")),
            type="certificate",
            holder=holder,
            display_name=c.get("displayName"),
            hint=None,
            thumbprint=_thumbprint(c.get("customKeyIdentifier")),
            start=_when(c.get("startDateTime")),
            end=_when(c.get("endDateTime")),
        )
        for c in item.get("keyCredentials") or []
    ]
    owners = item.get("owners")
    return AppSummary(
        tenant_id=tenant_id,
        object_id=str(item["id"]),
        app_id=str(item.get("appId") or ""),
        holder=holder,
        display_name=item.get("displayName"),
        created=_when(item.get("createdDateTime")),
        sign_in_audience=item.get("signInAudience"),
        required_resource_access=tuple(
            (str(entry.get("resourceAppId")), str(access.get("id")), str(access.get("type")))
            for entry in item.get("requiredResourceAccess") or []
            for access in entry.get("resourceAccess") or []
        ),
        owner_count=len(owners) if isinstance(owners, list) else None,
        credentials=tuple(credentials),
        unique_name=item.get("uniqueName"),
    )


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _thumbprint(value: Any) -> str | None:
    """customKeyIdentifier is the SHA-1 thumbprint, base64: shown as hex, as the portal does."""
    import base64
    import binascii

    if not value:
        return None
    try:
        return base64.b64decode(str(value)).hex().upper()
    except (binascii.Error, ValueError):
        return str(value)
