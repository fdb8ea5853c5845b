"""Adoption triggers: whether Registrar owns an adopted app yet, checked on the rotation timer's
schedule for every registration in `pending_ownership`, and on POST /registrations/{id}/recheck.

The rules are in core/adoption/ownership.py; docs/adoption.md says what an operator does.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from functions.bootstrap import Services, services
from functions.core.adoption.asking import ValidatedAdoption, validate_adoption
from functions.core.record.errors import RegistrarError
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration
from functions.telemetry import log_context
from functions.triggers.http_common import error_response, json_response, registration_view, status_url

log = logging.getLogger(__name__)
bp = func.Blueprint()
PAGE = 100


async def validate_adoption_with(svc: Services, body: dict[str, Any]) -> ValidatedAdoption:
    """validate_adoption with the process's ports (HTTP intake and the queue worker)."""
    return await validate_adoption(
        body,
        directory=svc.directory,
        store=svc.store,
        home_tenant_id=svc.settings.home_tenant_id,
        catalogue=svc.catalogue,
        policy=svc.policy,
    )


async def check_ownership(svc: Services, record: Registration) -> Registration:
    """Right after an adoption is accepted: most adoptions of a prepared app need no wait. Any
    failure leaves it pending_ownership for the timer (the request itself succeeded)."""
    if record.status is not RegistrationStatus.PENDING_OWNERSHIP:
        return record
    try:
        return await svc.ownership_check().check(record.id)
    except RegistrarError as err:
        log.warning("adoption %s: ownership not checked now (the timer will): %s", record.id, err)
        return record


@bp.route(route="registrations/{id}/recheck", methods=["POST"])
async def recheck_registration(req: func.HttpRequest) -> func.HttpResponse:
    registration_id = req.route_params.get("id", "")
    try:
        svc = await services().ready()
        with log_context(registration_id=registration_id, operation="adoption.recheck"):
            record = await svc.ownership_check().check(registration_id)
    except RegistrarError as err:
        return error_response(err)
    return json_response(registration_view(record, status_url(req, record.id)))


@bp.timer_trigger(arg_name="timer", schedule="%REGISTRAR_ROTATION_SCHEDULE%", run_on_startup=False)
async def ownership_timer(timer: func.TimerRequest) -> None:
    svc = await services().ready()
    checked = owned = 0
    with log_context(operation="adoption.ownership"):
        continuation: str | None = None
        while True:
            page = await svc.store.list(
                status=RegistrationStatus.PENDING_OWNERSHIP, limit=PAGE, continuation=continuation
            )
            for record in page.items:
                checked += 1
                try:
                    after = await svc.ownership_check().check(record.id)
                except RegistrarError as err:  # one app's trouble must not stop the others'
                    log.warning("adoption %s: ownership check failed: %s", record.id, err)
                    continue
                owned += after.status is not RegistrationStatus.PENDING_OWNERSHIP
            continuation = page.continuation
            if continuation is None:
                break
    if checked:
        log.info("ownership: %d adoption(s) checked, %d moved on", checked, owned)
