"""The aiohttp side of Graph: authenticate, build a Call, dispatch (or run a $batch), answer."""

from __future__ import annotations

import logging
import uuid
from functools import cache

from aiohttp import web

from devstack.tenant.context import AUTHENTICATE, BASE_URL, GRAPH_RESOURCE, REGISTRY, SIM, Unauthorized
from devstack.tenant.graph import (
    app_policy,
    applications,
    consent,
    credentials,
    deleted_items,
    delta,
    service_principals,
)
from devstack.tenant.graph.batch import ItemThrottle, handle_batch
from devstack.tenant.graph.errors import GraphError
from devstack.tenant.graph.http import Call, Reply, Router, error_reply, run

log = logging.getLogger("devstack.tenant.graph")


@cache
def router() -> Router:
    built = Router()
    # Order matters where patterns overlap: the more specific routes first.
    delta.register(built)  # before /applications/{id}, which "delta" would otherwise match
    applications.register(built)
    credentials.register(built)
    service_principals.register(built)
    consent.register(built)
    app_policy.register(built)
    deleted_items.register(built)
    return built


def _throttle_for(app: web.Application) -> ItemThrottle | None:
    """Per-$batch-item throttling through the server's Throttler, when the server has one."""
    try:
        from devstack.tenant.throttling import THROTTLER
    except ImportError:
        return None
    throttler = app.get(THROTTLER)
    sim = app[SIM]
    if throttler is None:
        return None

    def charge(
        tenant_id: str, app_id: str, method: str, path: str, query: dict[str, str]
    ) -> tuple[bool, dict[str, str]]:
        if not sim.throttling_enabled:
            return False, {}
        verdict = throttler.charge(tenant_id, app_id, method, path, query)
        return verdict.throttled, verdict.headers()

    return charge


def _to_response(reply: Reply) -> web.Response:
    return web.Response(
        status=reply.status,
        body=reply.body.encode() if reply.body is not None else None,
        headers=reply.headers,
    )


async def handle(request: web.Request) -> web.Response:
    client_request_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    try:
        return await _handle(request, client_request_id)
    except Exception:  # a bug must still answer Graph's shape, never a bare 500 or a hang
        log.exception("graph request failed: %s %s", request.method, request.path)
        failure = GraphError(500, "generalException", "An unexpected error occurred.")
        return _to_response(error_reply(failure, str(uuid.uuid4()), client_request_id))


async def _handle(request: web.Request, client_request_id: str) -> web.Response:
    try:
        principal = await request.app[AUTHENTICATE](request, GRAPH_RESOURCE)
    except Unauthorized as error:
        from devstack.tenant.auth import graph_unauthorized

        return graph_unauthorized(error, request)
    directory = request.app[REGISTRY].get(principal.tenant_id)
    call = Call(
        method=request.method,
        path=request.path[len("/v1.0") :] or "/",
        query=request.query,
        headers=request.headers,
        raw_body=await request.read() if request.can_read_body else b"",
        principal=principal,
        directory=directory,
        sim=request.app[SIM],
        base_url=request.app[BASE_URL],
    )
    if directory is None:
        unknown = GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure: unknown tenant."
        )
        reply = error_reply(unknown, call.request_id, client_request_id)
    elif call.path.rstrip("/") == "/$batch" and call.method == "POST":
        reply = handle_batch(call, router(), client_request_id, _throttle_for(request.app))
        reply.headers.update({"request-id": call.request_id, "client-request-id": client_request_id})
    else:
        reply = run(router(), call, client_request_id)
    return _to_response(reply)


def routes() -> list[web.RouteDef]:
    # One catch-all: the router above answers unknown segments with Graph's 400. (The server's
    # per-route stats count Graph calls under "METHOD /v1.0/{tail}"; tests rely on that key.)
    return [web.route("*", "/v1.0", handle), web.route("*", "/v1.0/{tail:.*}", handle)]
