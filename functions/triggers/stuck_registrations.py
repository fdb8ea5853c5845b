"""Timer: end registrations stuck in `accepted`, `provisioning` or `failing` past the deadline.

Runs on the rotation timer's schedule (REGISTRAR_ROTATION_SCHEDULE, every 15 minutes by default)
as a function of its own, so neither sweep's failure stops the other. The rules are in
core/provisioning/stuck.py; each registration it ends is announced (registration.failed, once) here, or, if
that cannot happen now, handed to the registration worker (an envelope on its queue), whose run
of a `failed` registration only settles it, with the queue's retries.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.bootstrap import services
from functions.core.record.errors import RegistrarError
from functions.resources import REGISTRATION_REQUESTS_QUEUE
from functions.telemetry import log_context
from functions.triggers.queue_messages import envelope

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%REGISTRAR_ROTATION_SCHEDULE%", run_on_startup=False)
async def stuck_registrations_sweep(timer: func.TimerRequest) -> None:
    from functions.core.provisioning.stuck import fail_stuck

    svc = await services().ready()
    with log_context(operation="stuck.sweep"):
        result = await fail_stuck(
            svc.store, svc.provisioner(), svc.clock, deadline=svc.settings.provisioning_deadline
        )
        for record in result.ended:
            svc.escalation().provisioning_ended(record)  # registration.failed, a signal
            try:
                await svc.settle(record)
            except RegistrarError as err:
                log.warning("registration %s failed; announcing it through the worker: %s", record.id, err)
                try:
                    await svc.queue.send(REGISTRATION_REQUESTS_QUEUE, envelope(record.id))
                except RegistrarError as send_err:
                    log.error(
                        "registration %s failed, registration.failed not announced: %s", record.id, send_err
                    )
        if result.ended or result.left:
            log.warning(
                "stuck registrations: %d ended as failed, %d left for the next run (%d in flight read)",
                len(result.ended),
                len(result.left),
                result.examined,
            )
