"""/directory/deletedItems: deleted applications and service principals, for 30 days.

Graph (directory-deleteditems-list, -get, -restore, -delete): a deleted application or service
principal stays in deleted items for 30 days, where it can be restored or deleted for good; after
that Entra deletes it for good. Restoring an application does not restore its service principal.
"""

from __future__ import annotations

import re

from devstack.tenant.graph import authz
from devstack.tenant.graph.errors import not_found
from devstack.tenant.graph.http import Call, Reply, Router, list_reply, require_guid
from devstack.tenant.graph.model import Application, GraphObject, ServicePrincipal
from devstack.tenant.graph.odata import decode_skiptoken, parse_top

DELETED_RETENTION_S = 30 * 24 * 3600.0
# The cast segment: Graph's docs write microsoft.graph.application; msgraph-sdk sends graph.application.
TYPES = {"application": Application, "servicePrincipal": ServicePrincipal}
ITEM = r"/directory/deletedItems/(?P<id>[0-9a-fA-F-]{36})"


def _retention(call: Call) -> float:
    # extra.deletedItemsRetentionS shortens the 30 days, for tests of the purge.
    return float(call.sim.extra.get("deletedItemsRetentionS", DELETED_RETENTION_S))


def purge_expired(call: Call) -> None:
    """What has been in deleted items longer than the retention is gone for good (its uniqueName free)."""
    call.directory.purge_expired(_retention(call))


def _find(call: Call, match: re.Match[str]) -> GraphObject:
    purge_expired(call)
    obj = call.directory.deleted.get(require_guid(match["id"]))
    if obj is None:
        raise not_found(match["id"])
    return obj


def _require_write(call: Call, obj: GraphObject) -> None:
    """Restoring or purging: what changing the object needs (Application.ReadWrite.OwnedBy on an
    application it owns, as Graph lists for these operations; Application.ReadWrite.All on any)."""
    if isinstance(obj, Application):
        authz.require_app_write(call.principal, obj)
    else:
        assert isinstance(obj, ServicePrincipal)
        authz.require_sp_write(call.principal, obj, None)


def list_deleted(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    purge_expired(call)
    kind = TYPES[match["type"]]
    top = parse_top(call.query.get("$top"))
    offset = decode_skiptoken(call.query.get("$skiptoken"))
    matched = [o for o in call.directory.deleted.values() if isinstance(o, kind)]
    items = [o.to_json(typed=True) for o in matched[offset : offset + top]]
    more = offset + top < len(matched)
    return list_reply(
        call,
        f"{match['type']}s",
        items,
        next_offset=offset + top if more else None,
    )


def get_deleted(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    obj = _find(call, match)
    return Reply.entity(200, call.context_url("directoryObjects/$entity"), obj.to_json(typed=True))


def restore(call: Call, match: re.Match[str]) -> Reply:
    obj = _find(call, match)
    _require_write(call, obj)
    call.directory.restore(obj)
    return Reply.entity(200, call.context_url("directoryObjects/$entity"), obj.to_json(typed=True))


def purge(call: Call, match: re.Match[str]) -> Reply:
    obj = _find(call, match)
    _require_write(call, obj)
    call.directory.purge(obj)
    return Reply.empty(204)


def register(router: Router) -> None:
    types = "|".join(TYPES)
    router.add("GET", rf"/directory/deletedItems/(?:microsoft\.)?graph\.(?P<type>{types})", list_deleted)
    router.add("GET", ITEM, get_deleted)
    router.add("DELETE", ITEM, purge)
    router.add("POST", ITEM + "/restore", restore)
