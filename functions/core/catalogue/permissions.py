"""Permission resolution: names as people write them -> (resource appId, id) as Graph publishes them.

Ids come from the resource service principal's appRoles / oauth2PermissionScopes in the tenant
(Directory.resource_catalog), never from a table in code. Unknown names fail with the closest real
names as suggestions, because the vendors' own guides misspell them ("Groups.Read.All",
"Sites.ReadAll"). Azure AD Graph (retired) is mapped to Microsoft Graph, with a note.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from functions.core.record.errors import NotFound, ValidationFailed
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    SHAREPOINT_ONLINE_APP_ID,
    PermissionKind,
    PermissionRef,
    Problem,
    ResolvedPermission,
    ResourceCatalog,
    ResourcePermission,
)

if TYPE_CHECKING:
    from functions.core.ports import Directory

AZURE_AD_GRAPH_APP_ID = "00000002-0000-0000-c000-000000000000"

# Display names (lower-case) of the resources connectors ask for, so that "Microsoft Graph" and its
# appId are one resource (fetched once) and profiles store appIds.
WELL_KNOWN_RESOURCES: Mapping[str, str] = {
    "microsoft graph": GRAPH_APP_ID,
    "office 365 exchange online": EXCHANGE_ONLINE_APP_ID,
    "exchange online": EXCHANGE_ONLINE_APP_ID,
    "office 365 sharepoint online": SHAREPOINT_ONLINE_APP_ID,
    "sharepoint online": SHAREPOINT_ONLINE_APP_ID,
    "windows azure active directory": AZURE_AD_GRAPH_APP_ID,
    "azure active directory graph": AZURE_AD_GRAPH_APP_ID,
}
RESOURCE_NAMES: Mapping[str, str] = {
    GRAPH_APP_ID: "Microsoft Graph",
    EXCHANGE_ONLINE_APP_ID: "Office 365 Exchange Online",
    SHAREPOINT_ONLINE_APP_ID: "Office 365 SharePoint Online",
    AZURE_AD_GRAPH_APP_ID: "Azure Active Directory Graph",
}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def canonical_resource(resource: str) -> str:
    """appIds lower-cased; well-known display names -> their appId; other names as given (trimmed)."""
    text = resource.strip()
    if _GUID.match(text):
        return text.lower()
    return WELL_KNOWN_RESOURCES.get(text.lower(), text)


def resource_label(resource: str) -> str:
    """A readable name for messages: 'Microsoft Graph' for its appId, else the text itself."""
    return RESOURCE_NAMES.get(canonical_resource(resource), resource)


def catalog_from_json(data: Mapping[str, Any], service_principal_id: str = "") -> ResourceCatalog:
    """A ResourceCatalog from a service principal's JSON (appId, displayName, appRoles,
    oauth2PermissionScopes), e.g. functions/profiles/resources/*.json or a Graph response."""

    def entries(items: Iterable[Mapping[str, Any]], display_key: str) -> dict[str, ResourcePermission]:
        return {
            item["value"]: ResourcePermission(
                id=item["id"],
                value=item["value"],
                display_name=item.get(display_key) or item.get("displayName") or item["value"],
                enabled=bool(item.get("isEnabled", True)),
            )
            for item in items
            if item.get("value")
        }

    # Only roles an application can hold are application permissions (others are assigned to users).
    app_roles = [
        r for r in data.get("appRoles", ()) if "Application" in r.get("allowedMemberTypes", ["Application"])
    ]
    return ResourceCatalog(
        app_id=str(data["appId"]).lower(),
        service_principal_id=service_principal_id or str(data.get("id", "")),
        display_name=str(data.get("displayName", "")),
        app_roles=entries(app_roles, "displayName"),
        scopes=entries(data.get("oauth2PermissionScopes", ()), "adminConsentDisplayName"),
    )


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a set of references: what resolved, notes, and what did not."""

    permissions: tuple[ResolvedPermission, ...]
    notes: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    # resource appId -> that resource's service principal id in the tenant (for consent calls)
    service_principals: Mapping[str, str] = field(default_factory=dict)


def map_retired_resource(ref: PermissionRef) -> tuple[PermissionRef, str | None]:
    """Azure AD Graph references become the same name on Microsoft Graph, with a note saying so."""
    if canonical_resource(ref.resource) != AZURE_AD_GRAPH_APP_ID:
        return ref, None
    note = (
        f"Azure AD Graph {ref.kind.value} permission {ref.name} mapped to Microsoft Graph {ref.name}: "
        "Azure AD Graph (graph.windows.net) is retired."
    )
    return PermissionRef(GRAPH_APP_ID, ref.kind, ref.name), note


def _normalise(name: str) -> str:
    return re.sub(r"[\s._-]+", "", name).lower()


def suggest_names(name: str, candidates: Iterable[str], *, limit: int = 3) -> list[str]:
    """Closest real names to a misspelt one: exact after ignoring case, spaces and dots first, then
    difflib on the normalised forms ("Groups.Read.All" -> "Group.Read.All")."""
    by_norm: dict[str, list[str]] = {}
    for candidate in candidates:
        by_norm.setdefault(_normalise(candidate), []).append(candidate)
    target = _normalise(name)
    if target in by_norm:
        return sorted(by_norm[target])[:limit]
    close = difflib.get_close_matches(target, list(by_norm), n=limit, cutoff=0.75)
    return [real for norm in close for real in sorted(by_norm[norm])][:limit]


def _problem_for_unknown(ref: PermissionRef, catalog: ResourceCatalog, path: str) -> Problem:
    label = catalog.display_name or resource_label(ref.resource)
    other_kind = (
        PermissionKind.DELEGATED if ref.kind is PermissionKind.APPLICATION else PermissionKind.APPLICATION
    )
    noun = {PermissionKind.APPLICATION: "application permission", PermissionKind.DELEGATED: "delegated scope"}
    article = {PermissionKind.APPLICATION: "an", PermissionKind.DELEGATED: "a"}
    if ref.name in catalog.permissions(other_kind):
        return Problem(
            path,
            f"{ref.name} is {article[other_kind]} {noun[other_kind]} of {label}, "
            f"not {article[ref.kind]} {noun[ref.kind]}",
            f"type: {other_kind.value}",
        )
    unknown = f"{ref.name}: no such {noun[ref.kind]} on {label}"
    names = suggest_names(ref.name, catalog.permissions(ref.kind))
    if names:
        return Problem(path, unknown, f"did you mean {' or '.join(names)}?")
    names = suggest_names(ref.name, catalog.permissions(other_kind))
    if names:
        return Problem(path, unknown, f"did you mean {' or '.join(names)} ({noun[other_kind]})?")
    return Problem(path, unknown)


def _resolve(
    refs: Sequence[PermissionRef], lookup: Mapping[str, ResourceCatalog], fields: Sequence[str] | None
) -> Resolution:
    resolved: dict[tuple[str, str], ResolvedPermission] = {}
    principals: dict[str, str] = {}
    notes: list[str] = []
    problems: list[Problem] = []
    for index, original in enumerate(refs):
        path = fields[index] if fields is not None else f"permissions[{index}]"
        ref, note = map_retired_resource(original)
        if note:
            notes.append(note)
        key = canonical_resource(ref.resource)
        catalog = lookup.get(key) or lookup.get(key.lower())
        if catalog is None:
            problems.append(
                Problem(
                    path,
                    f"resource {ref.resource!r} has no service principal in the tenant",
                    "name the resource by appId or its exact display name",
                )
            )
            continue
        entry = catalog.permissions(ref.kind).get(ref.name)
        if entry is None:
            problems.append(_problem_for_unknown(ref, catalog, path))
            continue
        if not entry.enabled:
            problems.append(Problem(path, f"{ref.name} is disabled on {catalog.display_name}"))
            continue
        resolved.setdefault(
            (catalog.app_id, entry.id), ResolvedPermission(catalog.app_id, ref.kind, entry.id, entry.value)
        )
        principals[catalog.app_id] = catalog.service_principal_id
    return Resolution(
        tuple(sorted(resolved.values())), tuple(dict.fromkeys(notes)), tuple(problems), principals
    )


def _lookup(catalogs: Iterable[ResourceCatalog]) -> dict[str, ResourceCatalog]:
    table: dict[str, ResourceCatalog] = {}
    for catalog in catalogs:
        table[catalog.app_id.lower()] = catalog
        if catalog.display_name:
            table.setdefault(catalog.display_name.lower(), catalog)
            table.setdefault(catalog.display_name, catalog)
    return table


def resolve_detailed(
    refs: Sequence[PermissionRef], catalogs: Iterable[ResourceCatalog], *, fields: Sequence[str] | None = None
) -> Resolution:
    """Resolve without raising: resolved permissions (deduplicated, keyed by (appId, id)), notes
    (e.g. Azure AD Graph mappings) and one Problem per reference that failed. `fields` names the
    request field of each reference (default "permissions[i]")."""
    return _resolve(refs, _lookup(catalogs), fields)


def resolve(
    refs: Sequence[PermissionRef], catalogs: Iterable[ResourceCatalog], *, fields: Sequence[str] | None = None
) -> list[ResolvedPermission]:
    """Resolve every reference against the given catalogues; raise ValidationFailed listing all failures."""
    outcome = resolve_detailed(refs, catalogs, fields=fields)
    if outcome.problems:
        raise ValidationFailed(outcome.problems)
    return list(outcome.permissions)


async def resolve_permissions_detailed(
    directory: Directory,
    tenant_id: str,
    refs: Sequence[PermissionRef],
    *,
    fields: Sequence[str] | None = None,
) -> Resolution:
    """Fetch each distinct resource's catalogue once (concurrently) through the Directory port, then
    resolve. A resource the tenant lacks is a Problem; other adapter errors propagate."""
    keys = list(dict.fromkeys(canonical_resource(map_retired_resource(ref)[0].resource) for ref in refs))

    async def fetch(key: str) -> ResourceCatalog | None:
        try:
            return await directory.resource_catalog(tenant_id, key)
        except NotFound:
            return None

    fetched = await asyncio.gather(*(fetch(key) for key in keys))
    lookup = _lookup(c for c in fetched if c is not None)
    for key, catalog in zip(keys, fetched, strict=True):
        if catalog is not None:
            lookup[key] = catalog
            lookup[key.lower()] = catalog
    return _resolve(refs, lookup, fields)


async def resolve_permissions(
    directory: Directory,
    tenant_id: str,
    refs: Sequence[PermissionRef],
    *,
    fields: Sequence[str] | None = None,
) -> list[ResolvedPermission]:
    """Like resolve(), with the catalogues fetched from the tenant; raises ValidationFailed."""
    outcome = await resolve_permissions_detailed(directory, tenant_id, refs, fields=fields)
    if outcome.problems:
        raise ValidationFailed(outcome.problems)
    return list(outcome.permissions)
