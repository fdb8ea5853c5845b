"""Timer: re-send the message of work in flight whose worker died (its lease lapsed).

Every 15 s by default (REGISTRAR_RESUME_SCHEDULE, six-field NCRONTAB with seconds, as the Functions
host reads it). The rules, and why the sweep costs O(in flight), are in core/recovery/resume.py.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.bootstrap import services
from functions.telemetry import log_context

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%REGISTRAR_RESUME_SCHEDULE%", run_on_startup=False)
async def resume_work_sweep(timer: func.TimerRequest) -> None:
    from functions.core.recovery.resume import resume_lapsed

    svc = await services().ready()
    with log_context(operation="resume.sweep"):
        result = await resume_lapsed(svc.in_flight, svc.store, svc.queue, svc.clock)
        if result.resumed or result.dropped:
            log.warning(
                "resume sweep: %d resumed, %d dropped (%d in flight, %d registrations read)",
                len(result.resumed),
                len(result.dropped),
                result.in_flight,
                result.records_read,
            )
