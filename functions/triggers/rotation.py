"""Rotation triggers: the timer sweep, the rotation-jobs worker, and the HTTP routes for people.

The timer only finds what is due (expiry index, O(due)) and enqueues one job per credential;
the queue worker rotates or retires. TransientError propagates so the host redelivers the job;
a PermanentError is already recorded on the registration by the rotator, so the message completes.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import azure.functions as func

from functions.bootstrap import services
from functions.core.catalogue.policy import CLIENT_PRINCIPAL_HEADER, ROLE_ADMIN, authorize
from functions.core.record.durations import parse_duration
from functions.core.record.errors import Conflict, Deferred, PermanentError, RegistrarError, ValidationFailed
from functions.core.record.models import Problem, RegistrationStatus
from functions.resources import ROTATION_JOBS_QUEUE
from functions.telemetry import log_context
from functions.triggers.http_common import error_response, json_response
from functions.triggers.queue_retries import poison_watch

log = logging.getLogger(__name__)
bp = func.Blueprint()

MAX_DUE_WITHIN = timedelta(days=3650)


@bp.timer_trigger(arg_name="timer", schedule="%REGISTRAR_ROTATION_SCHEDULE%", run_on_startup=False)
async def rotation_sweep(timer: func.TimerRequest) -> None:
    from functions.core.rotation.rotator import sweep

    svc = await services().ready()
    with log_context(operation="rotation.sweep"):
        result = await sweep(svc.index, svc.queue, svc.clock)
        log.info(
            "rotation sweep: %d due job(s) enqueued%s",
            result.enqueued,
            " (past due)" if timer.past_due else "",
        )
        # After the sweep: mark it, snapshot, and announce credentials at risk (escalation).
        async with svc.prompt_deliveries():
            await svc.escalation().watch()


@bp.queue_trigger(arg_name="msg", queue_name=ROTATION_JOBS_QUEUE, connection="AzureWebJobsStorage")
async def rotation_worker(msg: func.QueueMessage) -> None:
    from functions.core.record.schedule import RotationJob
    from functions.core.rotation.rotator import Outcome, enqueue

    svc = await services().ready()
    async with poison_watch(msg, ROTATION_JOBS_QUEUE, svc):
        # An unreadable message raises: the host retries it, then moves it to rotation-jobs-poison.
        job = RotationJob.from_message(json.loads(msg.get_body().decode("utf-8")))
        async with svc.prompt_deliveries():  # credential.rotated/retired, rotation.failed: at once
            try:
                outcome = await svc.rotator().run(job)
            except Deferred as err:
                # The tenant's Graph budget is spoken for: the job waits on the queue, not in this
                # slot. Enqueued before this message completes: a crash in between leaves two,
                # which converge.
                await enqueue(svc.queue, job, delay=err.retry_after)
                svc.escalation().rotation_ran(job, "deferred")
                log.info("rotation job %s deferred: %s", job.job_id, err)
                return
            except PermanentError as err:
                log.error(
                    "rotation job %s refused for good (recorded on the registration): %s", job.job_id, err
                )
                await svc.escalation().rotation_failed(job)
                return
            if outcome is Outcome.KEPT:  # a retirement kept back (unconfirmed, or the last valid one)
                await svc.escalation().retirement_kept(job)
            else:
                svc.escalation().rotation_ran(job, outcome.value)
        log.info("rotation job %s: %s", job.job_id, outcome.value)


@bp.route(route="registrations/{id}/rotate", methods=["POST"])
async def rotate_registration(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.rotation.rotator import enqueue, rotate_now_job

    registration_id = req.route_params.get("id", "")
    try:
        svc = await services().ready()
        caller = authorize(
            req.headers.get(CLIENT_PRINCIPAL_HEADER),
            ROLE_ADMIN,
            principal_trusted=svc.settings.client_principal_trusted,
        )
        record = await svc.store.get(registration_id)
        if record.status not in (RegistrationStatus.ACTIVE, RegistrationStatus.ROTATING):
            raise Conflict(f"registration {registration_id} is {record.status.value}, not active")
        job = rotate_now_job(record, svc.clock.now(), caller.actor)
        if job is None:
            raise Conflict(f"registration {registration_id} has no credential that rotates (federated)")
        # Indexed (due now, moved from its scheduled bucket) before it is enqueued: if the message
        # dies, the next sweep runs it again; the job removes its own entry when done.
        await svc.index.put(job)
        await enqueue(svc.queue, job)
    except RegistrarError as err:
        return error_response(err)
    log.info("rotation of %s requested by an admin", registration_id)
    return json_response({"registrationId": registration_id, "jobId": job.job_id, "status": "enqueued"}, 202)


@bp.route(route="credentials", methods=["GET"])
async def credentials_due(req: func.HttpRequest) -> func.HttpResponse:
    raw = req.params.get("dueWithin", "P30D")
    try:
        window = parse_duration(raw)
        if window > MAX_DUE_WITHIN:
            raise ValueError("at most P3650D")
    except ValueError as exc:
        return error_response(
            ValidationFailed([Problem("dueWithin", str(exc), "an ISO 8601 duration such as P30D")])
        )
    try:
        svc = await services().ready()
        jobs = await svc.index.due(svc.clock.now() + window)
    except RegistrarError as err:
        return error_response(err)
    items = [
        {
            "registrationId": job.registration_id,
            "generation": job.generation,
            "action": job.action.value,
            "dueAt": job.due_at.isoformat().replace("+00:00", "Z"),
            "keyId": job.key_id,
        }
        for job in sorted(jobs, key=lambda j: j.due_at)
    ]
    return json_response({"dueWithin": raw, "items": items})
