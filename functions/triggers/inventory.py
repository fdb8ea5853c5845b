"""Inventory triggers: the daily timer and POST /inventory/scan enqueue one scan per tenant; the
queue worker scans; GET /inventory lists credentials by end date; GET one app's summary.

docs/inventory.md says what is read and kept. Nothing here returns or logs a secret value: the
inventory holds none (Graph returns none).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import azure.functions as func

from functions.bootstrap import services
from functions.core.catalogue.policy import CLIENT_PRINCIPAL_HEADER, ROLE_ADMIN, authorize
from functions.core.inventory.models import InventoryQuery
from functions.core.record.durations import parse_duration
from functions.core.record.errors import NotFound, RegistrarError, ValidationFailed
from functions.core.record.models import Problem
from functions.resources import INVENTORY_SCANS_QUEUE
from functions.signals import Signal
from functions.telemetry import log_context
from functions.triggers.http_common import error_response, json_response

log = logging.getLogger(__name__)
bp = func.Blueprint()

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_EXPIRING_WITHIN = timedelta(days=3650)  # as GET /credentials dueWithin
MAX_LIMIT = 1000
LIMIT = re.compile(r"1000|[1-9][0-9]{0,2}")  # as the OpenAPI document's pattern


async def _enqueue_scans(tenants: list[str]) -> None:
    svc = await services().ready()
    for tenant_id in tenants:
        await svc.queue.send(INVENTORY_SCANS_QUEUE, json.dumps({"tenantId": tenant_id}))


@bp.timer_trigger(arg_name="timer", schedule="%REGISTRAR_INVENTORY_SCHEDULE%", run_on_startup=False)
async def inventory_timer(timer: func.TimerRequest) -> None:
    svc = await services().ready()
    with log_context(operation="inventory.timer"):
        await _enqueue_scans(svc.tenants)
        log.info("inventory: %d tenant scan(s) enqueued", len(svc.tenants))


@bp.queue_trigger(arg_name="msg", queue_name=INVENTORY_SCANS_QUEUE, connection="AzureWebJobsStorage")
async def inventory_worker(msg: func.QueueMessage) -> None:
    # An unreadable message raises: the host retries it, then moves it to inventory-scans-poison.
    tenant_id = str(json.loads(msg.get_body().decode("utf-8"))["tenantId"])
    svc = await services().ready()
    with log_context(operation="inventory.scan"):
        outcome = await svc.inventory_scanner().scan(tenant_id)  # TransientError: the host redelivers
        await svc.escalation().inventory_scanned()
        log.info(
            "inventory of %s: %s scan, %d application(s), %d service principal(s), %d Graph request(s)",
            tenant_id,
            outcome.mode,
            outcome.applications,
            outcome.service_principals,
            outcome.requests,
            # The structured event of functions/signals.py (outcome: "full" or "delta").
            extra={
                "signal": Signal.INVENTORY_SCAN_COMPLETED.value,
                "tenant_id": tenant_id,
                "outcome": outcome.mode,
            },
        )


@bp.route(route="inventory/scan", methods=["POST"])
async def inventory_scan(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = await services().ready()
        authorize(
            req.headers.get(CLIENT_PRINCIPAL_HEADER),
            ROLE_ADMIN,
            principal_trusted=svc.settings.client_principal_trusted,
        )
        tenants = svc.tenants
        await _enqueue_scans(tenants)
    except RegistrarError as err:
        return error_response(err)
    return json_response({"status": "accepted", "tenants": tenants}, status=202)


def _query(req: func.HttpRequest, tenants: list[str], now_plus: timedelta | None = None) -> InventoryQuery:
    """Every problem of the query string at once (ValidationFailed)."""
    problems: list[Problem] = []
    tenant_id = req.params.get("tenantId", "")
    if not GUID.fullmatch(tenant_id):
        problems.append(Problem("tenantId", "required: a tenant id (GUID)", None))
    elif tenant_id.lower() not in tenants:
        problems.append(Problem("tenantId", "not a tenant Registrar serves", ", ".join(tenants)))
    window: timedelta | None = None
    raw = req.params.get("expiringWithin")
    if raw is not None:
        try:
            window = parse_duration(raw)
            if window > MAX_EXPIRING_WITHIN:
                raise ValueError("at most P3650D")
        except ValueError as exc:
            problems.append(Problem("expiringWithin", str(exc), "an ISO 8601 duration such as P30D"))
    managed = req.params.get("managed")
    if managed is not None and managed not in ("true", "false"):
        problems.append(Problem("managed", "must be true or false", None))
    profile = req.params.get("profile")
    catalogue = services().catalogue
    if profile is not None and profile not in catalogue:
        problems.append(
            Problem("profile", f"unknown profile '{profile}'", ", ".join(catalogue.suggest(profile)) or None)
        )
    limit = 100
    raw_limit = req.params.get("limit")
    if raw_limit is not None:
        if not LIMIT.fullmatch(raw_limit):
            problems.append(Problem("limit", f"an integer from 1 to {MAX_LIMIT}", None))
        else:
            limit = int(raw_limit)
    if problems:
        raise ValidationFailed(problems)
    now = services().clock.now()
    return InventoryQuery(
        tenant_id=tenant_id.lower(),
        ends_before=now + window if window is not None else None,
        managed=None if managed is None else managed == "true",
        profile=profile,
        limit=limit,
        continuation=req.params.get("continuation"),
    )


@bp.route(route="inventory", methods=["GET"])
async def inventory_list(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = await services().ready()
        query = _query(req, svc.tenants)
        rows, continuation = await svc.inventory_store.credentials(query, svc.clock.now())
        state = await svc.inventory_store.state(query.tenant_id)
    except RegistrarError as err:
        return error_response(err)
    body = {
        "tenantId": query.tenant_id,
        "scannedAt": state.scanned_at.isoformat().replace("+00:00", "Z")
        if state and state.scanned_at
        else None,
        "items": [row.to_json() for row in rows],
        "continuation": continuation,
    }
    return json_response(body)


@bp.route(route="inventory/{tenantId}/applications/{appId}", methods=["GET"])
async def inventory_application(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id, app_id = req.route_params.get("tenantId", ""), req.route_params.get("appId", "")
    problems = [
        Problem(name, "must be a GUID", None)
        for name, value in (("tenantId", tenant_id), ("appId", app_id))
        if not GUID.fullmatch(value)
    ]
    try:
        if problems:
            raise ValidationFailed(problems)
        svc = await services().ready()
        found = await svc.inventory_store.by_app_id(tenant_id, app_id)
        application = next((a for a in found if a.holder == "application"), None)
        principal = next((a for a in found if a.holder == "servicePrincipal"), None)
        if application is None and principal is None:
            raise NotFound("inventoried application", app_id)
    except RegistrarError as err:
        return error_response(err)
    body = (application or principal).to_json()  # type: ignore[union-attr]
    if application is not None and principal is not None:
        body["credentials"] += [c.to_json() for c in principal.credentials]
        body["servicePrincipalId"] = principal.object_id
    return json_response(body)
