"""Timer: end registrations stuck in `accepted`, `provisioning` or `failing` past the deadline.

Runs on the rotation timer's schedule (REGISTRAR_ROTATION_SCHEDULE, every 15 minutes by default)
as a function of its own, so neither sweep's failure stops the other. The rules are in
core/provisioning/stuck.py; each registration it ends is announced (registration.failed, once) inside
its give-up's in-flight entry, or, if that cannot happen now (or the process dies first), the entry
stays and the resume sweep hands the registration to the registration worker (its envelope), whose
run of a `failed` registration only settles it.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.bootstrap import services
from functions.telemetry import log_context

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%REGISTRAR_ROTATION_SCHEDULE%", run_on_startup=False)
async def stuck_registrations_sweep(timer: func.TimerRequest) -> None:
    from functions.core.provisioning.stuck import fail_stuck

    svc = await services().ready()
    with log_context(operation="stuck.sweep"):
        result = await fail_stuck(
            svc.store,
            svc.provisioner(),
            svc.clock,
            deadline=svc.settings.provisioning_deadline,
            settle=svc.settle,
        )
        for record in result.ended:
            svc.escalation().provisioning_ended(record)  # registration.failed, a signal
        if result.ended or result.left:
            log.warning(
                "stuck registrations: %d ended as failed, %d left for the next run (%d in flight read)",
                len(result.ended),
                len(result.left),
                result.examined,
            )
