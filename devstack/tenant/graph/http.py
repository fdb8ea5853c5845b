"""The Graph dispatcher: one aiohttp route for /v1.0, an internal router shared with $batch.

Handlers are plain functions ``(call, match) -> Reply``: cheap to call per $batch item, and
independent of aiohttp. Every failure becomes Graph's error body; nothing escapes as a bare 500.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from devstack.tenant.context import Principal, SimulationConfig
from devstack.tenant.graph.directory import Directory, HasCreatedAt
from devstack.tenant.graph.errors import GraphError, bad_request, invalid_id, unknown_segment

log = logging.getLogger("devstack.tenant.graph")

JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MISSING: Any = object()


@dataclass
class Call:
    """One Graph request (a real HTTP request or one $batch item), authenticated."""

    method: str
    path: str  # below /v1.0, decoded, e.g. "/applications/{id}/addPassword"
    query: Mapping[str, str]
    headers: Mapping[str, str]
    raw_body: bytes
    principal: Principal
    directory: Directory
    sim: SimulationConfig
    base_url: str  # https://127.0.0.1:PORT
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _json: Any = field(default=MISSING, repr=False)

    @property
    def delay_ms(self) -> int:
        return int(self.sim.replication_delay_ms or 0)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or Graph's 400 for an empty, malformed or non-object body."""
        if self._json is MISSING:
            if not self.raw_body.strip():
                raise bad_request("Empty Payload. JSON content expected.", code="BadRequest")
            try:
                self._json = json.loads(self.raw_body)
            except (ValueError, UnicodeDecodeError):
                raise bad_request(
                    "Unable to read JSON request payload. Please ensure Content-Type header is set "
                    "and payload is of valid JSON format.",
                    code="BadRequest",
                ) from None
        if not isinstance(self._json, dict):
            raise bad_request("Invalid request payload: a JSON object is expected.", code="BadRequest")
        return self._json

    def context_url(self, fragment: str) -> str:
        return f"{self.base_url}/v1.0/$metadata#{fragment}"

    def visible(self, obj: HasCreatedAt) -> bool:
        return Directory.visible(obj, self.delay_ms)


@dataclass
class Reply:
    status: int
    body: str | None = None  # JSON text
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, text, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})

    @classmethod
    def data(cls, status: int, value: dict[str, Any], context: str | None = None) -> Reply:
        body = {"@odata.context": context, **value} if context else value
        return cls.json(status, json.dumps(body, separators=(",", ":")))

    @classmethod
    def entity(cls, status: int, context: str, entity_json: str) -> Reply:
        head = json.dumps({"@odata.context": context})[:-1]
        return cls.json(status, head + "," + entity_json[1:] if entity_json != "{}" else head + "}")

    @classmethod
    def empty(cls, status: int = 204) -> Reply:
        return cls(status)


def error_reply(error: GraphError, request_id: str, client_request_id: str) -> Reply:
    body = json.dumps(error.body(request_id, client_request_id), separators=(",", ":"))
    return Reply.json(error.status, body, dict(error.headers))


def list_reply(
    call: Call,
    context: str,
    items: list[str],
    *,
    next_offset: int | None = None,
    count: int | None = None,
) -> Reply:
    """A collection page: items are JSON texts; nextLink repeats the query with a skiptoken."""
    from devstack.tenant.graph.odata import encode_skiptoken

    parts = [f'"@odata.context":{json.dumps(call.context_url(context))}']
    if count is not None:
        parts.append(f'"@odata.count":{count}')
    if next_offset is not None:
        params = {k: v for k, v in call.query.items() if k != "$skiptoken"}
        params["$skiptoken"] = encode_skiptoken(next_offset)
        query = urlencode(params, safe="$,()':/", quote_via=quote)
        link = f"{call.base_url}/v1.0{call.path}?{query}"
        parts.append(f'"@odata.nextLink":{json.dumps(link)}')
    parts.append('"value":[' + ",".join(items) + "]")
    return Reply.json(200, "{" + ",".join(parts) + "}")


def require_guid(value: str) -> str:
    if not GUID.match(value):
        raise invalid_id(value)
    return value.lower()


Handler = Callable[[Call, re.Match[str]], Reply]


class Router:
    """Regex routes over the path below /v1.0; unknown segments answer Graph's 400."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        compiled = re.compile(f"^{pattern}/?$")
        for existing, handlers in self._routes:
            if existing.pattern == compiled.pattern:
                handlers[method] = handler
                return
        self._routes.append((compiled, {method: handler}))

    def resolve(self, method: str, path: str) -> tuple[Handler, re.Match[str]]:
        for pattern, handlers in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                raise GraphError(
                    405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
                )
            return handler, match
        segment = next((s for s in path.split("/") if s), "")
        known = {"applications", "servicePrincipals", "oauth2PermissionGrants", "$batch"}
        if segment.split("(")[0] in known:
            segment = path.rstrip("/").rsplit("/", 1)[-1]
        raise unknown_segment(segment or "v1.0")

    def dispatch(self, call: Call) -> Reply:
        handler, match = self.resolve(call.method, call.path)
        return handler(call, match)


def run(router: Router, call: Call, client_request_id: str) -> Reply:
    """Dispatch and turn any failure into a Graph error reply (a 500 for bugs, logged)."""
    try:
        reply = router.dispatch(call)
    except GraphError as error:
        reply = error_reply(error, call.request_id, client_request_id)
    except Exception:
        log.exception("graph handler failed: %s %s", call.method, call.path)
        reply = error_reply(
            GraphError(500, "generalException", "An unexpected error occurred."),
            call.request_id,
            client_request_id,
        )
    reply.headers["request-id"] = call.request_id
    reply.headers["client-request-id"] = client_request_id
    return reply
