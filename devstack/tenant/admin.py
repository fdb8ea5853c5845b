"""The simulation admin API under /_sim (JSON, loopback only, no auth): see docs/devstack.md."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from aiohttp import web

from devstack.tenant.context import BASE_URL, MARK_DIRTY, REGISTRY, SIM, SimulationConfig
from devstack.tenant.errors import json_response
from devstack.tenant.faults import FAULTS, STATS, FaultRule
from devstack.tenant.managed_identity import MSI_PATH
from devstack.tenant.throttling import THROTTLER

# Builds the startup-line JSON for a tenant id (set by server.py).
IDENTITY: web.AppKey[Any] = web.AppKey("identity", object)
# The SimulationConfig values given at start; POST /_sim/reset returns to them.
INITIAL_SIM: web.AppKey[SimulationConfig] = web.AppKey("initial_sim", SimulationConfig)

_TENANT_SIZES = ("small", "medium", "large")
_CONFIG_FIELDS = {
    "latencyMs": "latency_ms",
    "latencyJitterMs": "latency_jitter_ms",
    "propagationDelayS": "propagation_delay_s",
    "replicationDelayMs": "replication_delay_ms",
    "nearExpiryWindowS": "near_expiry_window_s",
    "eventSubscriberUrl": "event_subscriber_url",
    "purgeProtection": "purge_protection",
    "purgeDelayS": "purge_delay_s",
    "throttlingEnabled": "throttling_enabled",
    "throttleScale": "throttle_scale",
    "tenantSize": "tenant_size",
    "extra": "extra",
}


def config_to_json(sim: SimulationConfig) -> dict[str, Any]:
    return {name: getattr(sim, attribute) for name, attribute in _CONFIG_FIELDS.items()}


def _bad(message: str) -> web.Response:
    return json_response({"error": {"code": "BadRequest", "message": message}}, 400)


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    try:
        return json.loads(await request.read())
    except ValueError as error:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "BadRequest", "message": str(error)}})
        ) from None


async def get_config(request: web.Request) -> web.Response:
    return json_response(config_to_json(request.app[SIM]))


def _invalid(key: str, attribute: str, value: Any, current: Any) -> str | None:
    """Why `value` cannot be the new value of setting `key` (None when it can)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(current, bool):
        ok, expected = isinstance(value, bool), "a boolean"
    elif isinstance(current, float):
        ok, expected = is_number and value >= 0, "a number >= 0"
    elif isinstance(current, int):
        ok, expected = is_number and isinstance(value, int) and value >= 0, "an integer >= 0"
    elif attribute == "tenant_size":
        ok, expected = value in _TENANT_SIZES, f"one of {', '.join(_TENANT_SIZES)}"
    elif attribute == "event_subscriber_url":
        ok, expected = value is None or isinstance(value, str), "a URL or null"
    else:  # extra
        ok, expected = isinstance(value, dict), "an object"
    return None if ok else f"'{key}' must be {expected}"


async def put_config(request: web.Request) -> web.Response:
    """Change the given settings; all or nothing (400 names the first bad one)."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        return _bad("expected a JSON object")
    sim = request.app[SIM]
    by_attribute = {attribute: attribute for attribute in _CONFIG_FIELDS.values()}
    changes: dict[str, Any] = {}
    for key, value in body.items():
        attribute = _CONFIG_FIELDS.get(key) or by_attribute.get(key)
        if attribute is None:
            return _bad(f"unknown setting '{key}'")
        current = getattr(sim, attribute)
        problem = _invalid(key, attribute, value, current)
        if problem is not None:
            return _bad(problem)
        changes[attribute] = float(value) if isinstance(current, float) else value
    for attribute, value in changes.items():
        setattr(sim, attribute, value)
    return json_response(config_to_json(sim))


async def list_faults(request: web.Request) -> web.Response:
    return json_response({"value": [rule.to_json() for rule in request.app[FAULTS].rules]})


async def add_faults(request: web.Request) -> web.Response:
    body = await _json_body(request)
    items = body if isinstance(body, list) else [body]
    try:
        rules = [FaultRule.from_json(item) for item in items]
    except (ValueError, TypeError, KeyError, re.error) as error:
        return _bad(str(error))
    request.app[FAULTS].rules.extend(rules)
    return json_response({"value": [rule.to_json() for rule in rules]}, 201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].rules.clear()
    return web.Response(status=204)


async def delete_fault(request: web.Request) -> web.Response:
    faults = request.app[FAULTS]
    before = len(faults.rules)
    faults.rules[:] = [rule for rule in faults.rules if str(rule.id) != request.match_info["rule_id"]]
    return web.Response(status=204 if len(faults.rules) < before else 404)


async def reset(request: web.Request) -> web.Response:
    """Back to the start: no faults, full throttling budgets, the configuration given at start."""
    request.app[FAULTS].rules.clear()
    request.app[THROTTLER].reset()
    sim, initial = request.app[SIM], request.app[INITIAL_SIM]
    for item in dataclasses.fields(SimulationConfig):
        setattr(sim, item.name, getattr(initial, item.name))
    sim.extra = dict(initial.extra)
    return web.Response(status=204)


async def reset_throttling(request: web.Request) -> web.Response:
    request.app[THROTTLER].reset()
    return web.Response(status=204)


async def create_tenant(request: web.Request) -> web.Response:
    body = await _json_body(request) or {}
    if not isinstance(body, dict):
        return _bad("expected a JSON object")
    tenant_id = body.get("tenantId")
    try:
        created, _ = request.app[REGISTRY].create(str(tenant_id) if tenant_id else None)
    except ValueError as error:
        return json_response({"error": {"code": "Conflict", "message": str(error)}}, 409)
    request.app[MARK_DIRTY]()
    return json_response(request.app[IDENTITY](created), 201)


async def list_tenants(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    identity_endpoint = request.app[BASE_URL] + MSI_PATH
    return json_response(
        {
            "homeTenantId": registry.home_tenant_id,
            "value": [
                {
                    "tenantId": tid,
                    "clientId": e.client_id,
                    "identityEndpoint": identity_endpoint,
                    "identityHeader": e.identity_header,
                }
                for tid, e in registry.entries.items()
            ],
        }
    )


def _directory(request: web.Request) -> Any:
    directory = request.app[REGISTRY].get(request.match_info["tenant_id"])
    if directory is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": {"code": "NotFound", "message": "no such tenant"}}),
            content_type="application/json",
        )
    return directory


async def get_app_policy(request: web.Request) -> web.Response:
    """The tenant's default app management policy, as Graph's GET /policies/defaultAppManagementPolicy."""
    return json_response(_directory(request).app_management_policy)


async def set_app_policy(request: web.Request) -> web.Response:
    """Change it as Graph's PATCH does (same body and validation), without a Policy.* app role."""
    from devstack.tenant.graph.app_policy import updated_policy
    from devstack.tenant.graph.errors import GraphError

    directory = _directory(request)
    try:
        directory.app_management_policy = updated_policy(
            directory.app_management_policy, await _json_body(request)
        )
    except GraphError as error:
        return _bad(error.message)
    request.app[MARK_DIRTY]()
    return json_response(directory.app_management_policy)


def _brownfield_refusal(count: Any, sps: Any, seed: Any, connectors: Any) -> str | None:
    for name, value in (("count", count), ("servicePrincipals", sps), ("seed", seed)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"'{name}' must be an integer >= 0"
    if count is None:
        return "'count' is required"
    if not isinstance(connectors, list) or not all(isinstance(c, str) for c in connectors):
        return "'connectors' must be a list of connector profile ids"
    return None


async def brownfield(request: web.Request) -> web.Response:
    """Fill a tenant (the home tenant unless `tenantId`) with `count` hand-made connector apps
    (devstack/tenant/brownfield.py); `servicePrincipals`: how many of them get one (all by default);
    `connectors`: the profile ids to cycle through (every profile by default)."""
    from devstack.tenant.brownfield import timed_fill

    body = await _json_body(request)
    if not isinstance(body, dict):
        return _bad("expected a JSON object")
    registry = request.app[REGISTRY]
    tenant_id = str(body.get("tenantId") or registry.home_tenant_id)
    entry = registry.entries.get(tenant_id)
    if entry is None:
        return json_response({"error": {"code": "NotFound", "message": "no such tenant"}}, 404)
    count, sps, seed = body.get("count"), body.get("servicePrincipals"), body.get("seed", 15)
    connectors = body.get("connectors") or []
    refused = _brownfield_refusal(count, sps, seed, connectors)
    if refused or count is None:
        return _bad(refused or "'count' is required")
    try:
        summary = timed_fill(
            entry.directory,
            entry.admin_client_id,
            count,
            service_principals=sps,
            seed=seed,
            connectors=tuple(connectors),
        )
    except ValueError as error:
        return _bad(str(error))
    request.app[MARK_DIRTY]()
    return json_response({"tenantId": tenant_id, **summary}, 201)


async def stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATS].to_json(request.app[FAULTS]))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/_sim/config", get_config),
        web.put("/_sim/config", put_config),
        web.patch("/_sim/config", put_config),
        web.get("/_sim/faults", list_faults),
        web.post("/_sim/faults", add_faults),
        web.delete("/_sim/faults", clear_faults),
        web.delete("/_sim/faults/{rule_id}", delete_fault),
        web.post("/_sim/reset", reset),
        web.post("/_sim/throttling/reset", reset_throttling),
        web.get("/_sim/tenants", list_tenants),
        web.post("/_sim/tenants", create_tenant),
        web.get("/_sim/tenants/{tenant_id}/appManagementPolicy", get_app_policy),
        web.put("/_sim/tenants/{tenant_id}/appManagementPolicy", set_app_policy),
        web.patch("/_sim/tenants/{tenant_id}/appManagementPolicy", set_app_policy),
        web.get("/_sim/stats", stats),
        web.post("/_sim/brownfield", brownfield),
    ]
