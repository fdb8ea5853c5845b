"""POST /api/registrations/{id}/credentials/{keyId}/confirm (function key): the connector uses
this credential now. 200 with the confirmation (the same on a repeat); 409 for an earlier
credential of the registration, 404 for an unknown one (problem+json)."""

from __future__ import annotations

import azure.functions as func

from functions.bootstrap import services
from functions.core.record.errors import RegistrarError
from functions.triggers.http_common import error_response, json_response

bp = func.Blueprint()


@bp.route(route="registrations/{id}/credentials/{keyId}/confirm", methods=["POST"])
async def confirm_credential(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.escalation.confirmation import Confirmations

    registration_id = req.route_params.get("id", "")
    key_id = req.route_params.get("keyId", "")
    try:
        svc = await services().ready()
        confirmed = await Confirmations(
            store=svc.store, index=svc.index, clock=svc.clock, owner=svc.job_owner()
        ).confirm(registration_id, key_id)
    except RegistrarError as err:
        return error_response(err)
    return json_response(
        {
            "registrationId": registration_id,
            "keyId": key_id,
            "confirmedOn": confirmed.confirmed_at.isoformat().replace("+00:00", "Z"),
            "retirement": confirmed.record.retirement,
            "retiringNow": list(confirmed.retiring_now),
        }
    )
