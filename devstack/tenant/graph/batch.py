"""POST /v1.0/$batch: up to 20 items, each routed, authorised and throttled on its own.

Items run in order, after the items they depend on; an item whose dependency failed gets 424.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from multidict import CIMultiDict

from devstack.tenant.graph.errors import GraphError, bad_request
from devstack.tenant.graph.http import MISSING, Call, Reply, Router, error_reply, run

MAX_ITEMS = 20
ALLOWED_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}
# (tenant_id, app_id, method, path, query) -> (throttled?, headers): the server's Graph throttle.
ItemThrottle = Callable[[str, str, str, str, dict[str, str]], tuple[bool, dict[str, str]]]


def _items(call: Call) -> list[dict[str, Any]]:
    requests = call.json().get("requests")
    if not isinstance(requests, list) or not requests:
        raise bad_request("Invalid batch payload: 'requests' must be a non-empty array.", code="BadRequest")
    if len(requests) > MAX_ITEMS:
        raise bad_request(
            f"The number of requests in the batch ({len(requests)}) exceeds the limit of {MAX_ITEMS}.",
            code="BadRequest",
        )
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict):
            raise bad_request("Invalid batch payload: each request must be an object.", code="BadRequest")
        item_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(item_id, str) or not item_id:
            raise bad_request("Invalid batch payload: each request needs an 'id'.", code="BadRequest")
        if item_id in seen:
            raise bad_request(
                f"Batch request ids must be unique: '{item_id}' is duplicated.", code="BadRequest"
            )
        seen.add(item_id)
        if not isinstance(method, str) or method.upper() not in ALLOWED_METHODS:
            raise bad_request(f"Invalid method in batch request '{item_id}'.", code="BadRequest")
        if not isinstance(item.get("headers") or {}, dict):
            raise bad_request(f"Invalid headers in batch request '{item_id}'.", code="BadRequest")
        if not isinstance(url, str) or not url or url.lower().startswith(("http:", "https:")):
            raise bad_request(
                f"Invalid url in batch request '{item_id}': a relative url is expected.", code="BadRequest"
            )
    for item in requests:
        depends = item.get("dependsOn") or []
        if not isinstance(depends, list) or any(
            not isinstance(d, str) or d not in seen or d == item["id"] for d in depends
        ):
            raise bad_request(f"Invalid dependsOn in batch request '{item['id']}'.", code="BadRequest")
    return requests


def _order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Request order, each item after its dependencies; a cycle is a 400."""
    done: set[str] = set()
    ordered: list[dict[str, Any]] = []
    pending = list(items)
    while pending:
        ready = [i for i in pending if all(d in done for d in i.get("dependsOn") or [])]
        if not ready:
            raise bad_request("Invalid dependsOn in batch: the dependencies form a cycle.", code="BadRequest")
        for item in ready:
            ordered.append(item)
            done.add(item["id"])
            pending.remove(item)
    return ordered


def _item_call(call: Call, item: dict[str, Any]) -> Call:
    parts = urlsplit("/" + item["url"].lstrip("/"))
    path = unquote(parts.path)
    if path.startswith("/v1.0/"):
        path = path[len("/v1.0") :]
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in (item.get("headers") or {}).items():
        headers[str(name)] = str(value)
    body = item.get("body")
    raw = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    return replace(
        call,
        method=item["method"].upper(),
        path=path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        raw_body=raw,
        request_id=str(uuid.uuid4()),
        _json=MISSING,  # the item's own body, parsed on demand
    )


def _response_text(item_id: str, reply: Reply) -> str:
    head = json.dumps(
        {"id": item_id, "status": reply.status, "headers": reply.headers}, separators=(",", ":")
    )
    if reply.body is None:
        return head
    body = reply.body if reply.body.lstrip().startswith(("{", "[")) else json.dumps(reply.body)
    return head[:-1] + ',"body":' + body + "}"


def handle_batch(call: Call, router: Router, client_request_id: str, throttle: ItemThrottle | None) -> Reply:
    try:
        items = _items(call)
        ordered = _order(items)
    except GraphError as error:
        return error_reply(error, call.request_id, client_request_id)
    statuses: dict[str, int] = {}
    texts: dict[str, str] = {}
    for item in ordered:
        item_id = item["id"]
        failed = [d for d in item.get("dependsOn") or [] if statuses.get(d, 0) >= 400]
        sub = _item_call(call, item)
        if failed:
            failure = GraphError(
                424, "FailedDependency", f"Dependency failed: request '{failed[0]}' did not succeed."
            )
            reply = error_reply(failure, sub.request_id, client_request_id)
        elif sub.path.rstrip("/") == "/$batch":
            reply = error_reply(
                bad_request("A batch cannot contain a batch.", code="BadRequest"),
                sub.request_id,
                client_request_id,
            )
        else:
            reply = _run_throttled(router, sub, client_request_id, throttle)
        statuses[item_id] = reply.status
        texts[item_id] = _response_text(item_id, reply)
    body = '{"responses":[' + ",".join(texts[i["id"]] for i in items) + "]}"
    return Reply.json(200, body)


def _run_throttled(router: Router, sub: Call, client_request_id: str, throttle: ItemThrottle | None) -> Reply:
    extra: dict[str, str] = {}
    if throttle is not None:
        throttled, extra = throttle(
            sub.principal.tenant_id, sub.principal.app_id, sub.method, "/v1.0" + sub.path, dict(sub.query)
        )
        if throttled:
            error = GraphError(
                429,
                "Request_ThrottledTemporarily",
                "Too many requests. Please retry after the time in Retry-After.",
                headers=extra,
            )
            return error_reply(error, sub.request_id, client_request_id)
    reply = run(router, sub, client_request_id)
    reply.headers.update(extra)
    return reply
