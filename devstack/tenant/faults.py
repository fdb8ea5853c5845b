"""The middleware over every route: latency, injected faults, Graph throttling, error shapes, stats.

Order per request: count it -> latency (asyncio.sleep) -> first matching fault rule -> throttle
(Graph paths, per app+tenant from the bearer token) -> handler -> shape 404/405/500 for its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devstack.tenant.context import AUTHENTICATE, GRAPH_RESOURCE, MARK_DIRTY, SIM, Unauthorized
from devstack.tenant.errors import ADMIN, ENTRA, GRAPH, api_of, error_for, json_response
from devstack.tenant.throttling import THROTTLER

log = logging.getLogger("devstack.tenant")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ids = itertools.count(1)


@dataclass
class FaultRule:
    """Answer `status` instead of the handler for requests matching method + pathRegex.

    count: how many times (None = until removed); probability: chance per matching request.
    after_commit ("afterCommit"): the handler runs first and its change stands; only its answer is
    replaced, as when a gateway times out after the service committed a write (a 504 that did happen).
    """

    status: int
    method: str = "*"
    path_regex: str = ".*"
    count: int | None = None
    probability: float = 1.0
    retry_after: int | None = None
    body: Any = None
    after_commit: bool = False
    id: int = field(default_factory=lambda: next(_ids))

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path_regex)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        if not isinstance(data, dict) or not isinstance(data.get("status"), int):
            raise ValueError("a fault rule needs an integer 'status'")
        count = data.get("count")
        return cls(
            status=data["status"],
            method=str(data.get("method", "*")).upper(),
            path_regex=str(data.get("pathRegex", ".*")),
            count=int(count) if count is not None else None,
            probability=float(data.get("probability", 1.0)),
            retry_after=int(data["retryAfter"]) if data.get("retryAfter") is not None else None,
            body=data.get("body"),
            after_commit=bool(data.get("afterCommit", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "method": self.method,
            "pathRegex": self.path_regex,
            "count": self.count,
            "probability": self.probability,
            "retryAfter": self.retry_after,
            "body": self.body,
            "afterCommit": self.after_commit,
        }

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and self._pattern.search(path) is not None


class FaultRules:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.injected = 0

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            if rule.probability < 1.0 and random.random() >= rule.probability:
                continue
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
            self.injected += 1
            return rule
        return None


class Stats:
    def __init__(self, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self._extra = extra  # more counters from other parts (e.g. the vault's event deliveries)
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.requests = 0
        self.throttled = 0
        self.started = time.time()

    def to_json(self, faults: FaultRules) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "byRoute": dict(self.by_route),
            "byStatus": {str(k): v for k, v in self.by_status.items()},
            "throttled429": self.throttled,
            "faultsInjected": faults.injected,
            "processTimeS": time.process_time(),
            "uptimeS": time.time() - self.started,
            **(self._extra() if self._extra is not None else {}),
        }


FAULTS: web.AppKey[FaultRules] = web.AppKey("faults", FaultRules)
STATS: web.AppKey[Stats] = web.AppKey("stats", Stats)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _injected(rule: FaultRule, api: str, request: web.Request) -> web.Response:
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
    if rule.body is not None:
        return json_response(rule.body, rule.status, headers)
    response = error_for(api, rule.status, request, f"Injected fault {rule.id} (devstack).")
    response.headers.update(headers)
    return response


def _throttle(request: web.Request, path: str) -> tuple[web.Response | None, dict[str, str]]:
    try:
        principal = request.app[AUTHENTICATE].principal_from_header(
            request.headers.get("Authorization"), GRAPH_RESOURCE
        )
    except Unauthorized:
        return None, {}  # the handler answers 401
    verdict = request.app[THROTTLER].charge(
        principal.tenant_id, principal.app_id, request.method, path, request.query
    )
    if verdict.throttled:
        response = error_for(
            GRAPH,
            429,
            request,
            "Too many requests. Please retry after the time in Retry-After.",
            "Request_ThrottledTemporarily",
        )
        response.headers.update(verdict.headers())
        return response, {}
    return None, verdict.headers()


@web.middleware
async def simulation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    stats = app[STATS]
    stats.requests += 1
    path = request.path
    api = api_of(path)
    resource = request.match_info.route.resource
    stats.by_route[f"{request.method} {resource.canonical if resource is not None else '(unmatched)'}"] += 1
    if api == ADMIN:
        return await handler(request)
    response = await _simulate(request, handler, api, path)
    stats.by_status[response.status] += 1
    if response.status == 429:
        stats.throttled += 1
    if response.status < 400 and request.method not in _READ_METHODS:
        app[MARK_DIRTY]()
    return response


async def _simulate(request: web.Request, handler: Handler, api: str, path: str) -> web.StreamResponse:
    app = request.app
    sim = app[SIM]
    delay_ms = sim.latency_ms + (random.uniform(0, sim.latency_jitter_ms) if sim.latency_jitter_ms else 0.0)
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)
    faults = app[FAULTS]
    if faults.rules:
        rule = faults.take(request.method, path)
        if rule is not None:
            if rule.after_commit:  # the write happens; the caller never hears of it
                with contextlib.suppress(web.HTTPException):
                    await handler(request)
                app[MARK_DIRTY]()
            return _injected(rule, api, request)
    extra_headers: dict[str, str] = {}
    # $batch is charged per item by graph/ (through THROTTLER), never as an envelope.
    if api == GRAPH and sim.throttling_enabled and path != "/v1.0/$batch":
        throttled, extra_headers = _throttle(request, path)
        if throttled is not None:
            return throttled
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = (
            f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'."
            if error.status == 404
            else error.reason
        )
        response = error_for(
            api if api != ENTRA or error.status != 404 else GRAPH, error.status, request, message
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, path)
        response = error_for(api, 500, request, "An internal error occurred in the devstack tenant.")
    if extra_headers and not response.prepared:
        response.headers.update(extra_headers)
    return response
