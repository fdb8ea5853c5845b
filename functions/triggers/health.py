"""GET /api/health (function key): the health snapshot for probes and dashboards.

Credentials at risk, the rotation backlog, days to the nearest expiry, poison-queue lengths, dead
letters, and when the rotation sweep and the inventory last ran. Taken on each call, at
O(at risk + due) entity reads (core/escalation/snapshot.py); the gauges report it too.
"""

from __future__ import annotations

import azure.functions as func

from functions.bootstrap import services
from functions.core.record.errors import RegistrarError
from functions.triggers.http_common import error_response, json_response

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = await services().ready()
        snapshot = await svc.escalation().health()
    except RegistrarError as err:
        return error_response(err)
    return json_response(snapshot.to_json())
