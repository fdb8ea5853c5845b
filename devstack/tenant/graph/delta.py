"""GET /applications/delta and /servicePrincipals/delta: change tracking, as Graph's delta query.

Graph (delta-query-overview, application-delta, serviceprincipal-delta):
- a round pages with @odata.nextLink and ends with a page carrying @odata.deltaLink; the deltaLink
  later returns only what changed since, deleted objects as {"id", "@removed": {"reason"}}
  ("changed": in deleted items, restorable; "deleted": gone for good);
- the first round returns the objects that exist now (nothing deleted before it);
- query parameters ($select) are given on the first request only and travel inside the tokens;
  `id` is always returned;
- `$deltatoken=latest` answers no objects and a deltaLink from now ("sync from now");
- a delta token older than its lifetime (7 days for identity resources) answers 400
  syncStateNotFound, "The sync state generation is not found. The delta token is expired and data
  must be synchronized again." (Microsoft 365 developer blog, 2020-07-03).
Page size: Graph does not document one for these two functions, nor $top on them; Microsoft's
Q&A answers give 200 directory objects a page. So: 200, and $top is ignored (docs/devstack-graph.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any
from urllib.parse import quote

from devstack.tenant.graph import authz
from devstack.tenant.graph.applications import APP_PROPERTIES
from devstack.tenant.graph.changes import Change
from devstack.tenant.graph.errors import GraphError, bad_request, unsupported_query
from devstack.tenant.graph.http import JSON_CONTENT_TYPE, Call, Reply, Router
from devstack.tenant.graph.odata import parse_select
from devstack.tenant.graph.service_principals import SP_PROPERTIES

DELTA_PAGE = 200
DELTA_TOKEN_LIFETIME_S = 7 * 24 * 3600.0
KINDS = {
    "applications": ("application", APP_PROPERTIES),
    "servicePrincipals": ("servicePrincipal", SP_PROPERTIES),
}
ALLOWED_OPTIONS = {"$select", "$deltatoken", "$skiptoken", "$top"}


def sync_state_not_found() -> GraphError:
    return GraphError(
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(call: Call, token: str, kind: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(state, dict) or state.get("k") != kind:
            raise ValueError(token)
        issued, since = float(state["t"]), int(state["s"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request("Specified delta token is invalid.", code="Request_BadRequest") from None
    lifetime = float(call.sim.extra.get("deltaTokenLifetimeS", DELTA_TOKEN_LIFETIME_S))
    if state.get("e") != call.directory.epoch or time.time() - issued > lifetime or since < 0:
        raise sync_state_not_found()
    return state


def _link(call: Call, collection: str, name: str, token: str) -> str:
    return f"{call.base_url}/v1.0/{collection}/delta?{name}={quote(token, safe='')}"


def _item(call: Call, change: Change, type_name: str, select: list[str] | None) -> str | None:
    if change.removed is not None:
        removed = {"@odata.type": f"#microsoft.graph.{type_name}", "id": change.object_id}
        removed["@removed"] = {"reason": change.removed}  # type: ignore[assignment]
        return json.dumps(removed, separators=(",", ":"))
    live = call.directory.applications if type_name == "application" else call.directory.service_principals
    obj = live.get(change.object_id)
    if obj is None:  # cannot happen: a live object's last change is not a removal
        return None
    return obj.to_json(select)


def delta(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    collection = match["collection"]
    type_name, known = KINDS[collection]
    for name in call.query:
        if name.startswith("$") and name not in ALLOWED_OPTIONS:
            raise unsupported_query(f"Query option '{name}' is not supported with delta.")
    log = call.directory.changes[type_name]
    skiptoken, deltatoken = call.query.get("$skiptoken"), call.query.get("$deltatoken")
    if skiptoken is not None or (deltatoken is not None and deltatoken != "latest"):
        state = _decode(call, str(skiptoken or deltatoken), type_name)
        select = state.get("sel")
        since = int(state["s"])
        until = int(state["u"]) if skiptoken is not None else log.seq
        initial = bool(state.get("i")) and skiptoken is not None
    else:
        select = parse_select(call.query.get("$select"), known, type_name)
        if select is not None and "id" not in select:
            select = ["id", *select]
        since, until, initial = (log.seq, log.seq, False) if deltatoken == "latest" else (0, log.seq, True)
    items: list[str] = []
    last = since
    more = False
    for change in log.after(since, until):
        if len(items) == DELTA_PAGE:
            more = True
            break
        last = change.seq
        if initial and change.removed is not None:
            continue  # the first round holds what exists, not what was deleted before it
        text = _item(call, change, type_name, select)
        if text is not None:
            items.append(text)
    base = {"e": call.directory.epoch, "k": type_name, "t": time.time(), "sel": select}
    if more:
        link_name, link = (
            "@odata.nextLink",
            _link(call, collection, "$skiptoken", _encode({**base, "s": last, "u": until, "i": initial})),
        )
    else:
        link_name, link = (
            "@odata.deltaLink",
            _link(call, collection, "$deltatoken", _encode({**base, "s": until})),
        )
    context = call.context_url(collection if select is None else f"{collection}({','.join(select)})")
    body = (
        "{"
        + f'"@odata.context":{json.dumps(context)},{json.dumps(link_name)}:{json.dumps(link)},'
        + '"value":['
        + ",".join(items)
        + "]}"
    )
    return Reply(200, body, {"Content-Type": JSON_CONTENT_TYPE})


def register(router: Router) -> None:
    router.add(
        "GET", r"/(?P<collection>applications|servicePrincipals)/(?:microsoft\.graph\.)?delta(?:\(\))?", delta
    )
