"""Admin routes of the vault under /_sim/vault (no auth, like the rest of /_sim).

- GET    /_sim/vault/roleAssignments            -> {"value": [assignment, ...]}
- POST   /_sim/vault/roleAssignments            {"principalId", "role", "scope"?} -> 201 assignment
- PUT    /_sim/vault/roleAssignments/{id}       same body -> 201 assignment
- DELETE /_sim/vault/roleAssignments/{id}       -> 204 (404 when unknown)
- GET    /_sim/vault/events                     -> subscriber URL, window, scan interval, counters
- PATCH  /_sim/vault/events  {"subscriberUrl"?, "nearExpiryWindowSeconds"?, "scanIntervalSeconds"?}

principalId is the caller's service principal object id (token oid) or its appId; role is a
built-in role id or name ("Key Vault Secrets User", ...); scope "/" (default), "/secrets/NAME"
or "/certificates/NAME". The events routes change the shared SimulationConfig, the same fields
the core /_sim API changes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .expiry import SCAN_INTERVAL_KEY
from .rbac import RoleError

if TYPE_CHECKING:
    from .vault import KeyVault


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"code": "BadRequest", "message": message}}, status=400)


async def _body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def routes(vault: KeyVault) -> list[web.RouteDef]:
    async def list_assignments(_: web.Request) -> web.Response:
        return web.json_response({"value": [a.to_json() for a in vault.roles.all()]})

    async def create_assignment(request: web.Request) -> web.Response:
        body = await _body(request)
        if body is None:
            return _bad_request("The body must be a JSON object.")
        try:
            assignment = vault.roles.assign(
                str(body.get("principalId") or ""),
                str(body.get("role") or body.get("roleDefinitionId") or ""),
                str(body.get("scope") or "/"),
                request.match_info.get("assignment_id"),
            )
        except RoleError as exc:
            return _bad_request(str(exc))
        vault.mark_dirty()
        return web.json_response(assignment.to_json(), status=201)

    async def delete_assignment(request: web.Request) -> web.Response:
        if not vault.roles.remove(request.match_info["assignment_id"]):
            return web.json_response(
                {"error": {"code": "RoleAssignmentNotFound", "message": "Not found"}}, status=404
            )
        vault.mark_dirty()
        return web.Response(status=204)

    def events_view() -> dict[str, Any]:
        return {
            "subscriberUrl": vault.sim.event_subscriber_url,
            "nearExpiryWindowSeconds": vault.sim.near_expiry_window_s,
            "scanIntervalSeconds": vault.sim.extra.get(SCAN_INTERVAL_KEY),
            "stats": vault.stats()["events"],
        }

    async def get_events(_: web.Request) -> web.Response:
        return web.json_response(events_view())

    async def patch_events(request: web.Request) -> web.Response:
        body = await _body(request)
        if body is None:
            return _bad_request("The body must be a JSON object.")
        if "subscriberUrl" in body:
            url = body["subscriberUrl"]
            if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
                return _bad_request("subscriberUrl must be an http(s) URL or null.")
            vault.sim.event_subscriber_url = url
        for key, setter in (
            ("nearExpiryWindowSeconds", lambda v: setattr(vault.sim, "near_expiry_window_s", v)),
            ("scanIntervalSeconds", lambda v: vault.sim.extra.__setitem__(SCAN_INTERVAL_KEY, v)),
        ):
            if key in body:
                value = body[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    return _bad_request(f"{key} must be a non-negative number.")
                setter(float(value))
        vault.expiry.poke()
        return web.json_response(events_view())

    return [
        web.get("/_sim/vault/roleAssignments", list_assignments),
        web.post("/_sim/vault/roleAssignments", create_assignment),
        web.put("/_sim/vault/roleAssignments/{assignment_id}", create_assignment),
        web.delete("/_sim/vault/roleAssignments/{assignment_id}", delete_assignment),
        web.get("/_sim/vault/events", get_events),
        web.patch("/_sim/vault/events", patch_events),
    ]
