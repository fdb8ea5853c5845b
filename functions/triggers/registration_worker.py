"""Queue worker (the handler behind queue_registrations.py) for `registration-requests`: HTTP intake and ticketing systems converge here.

Message schema: queue_messages.py. A request that fails validation becomes a `failed`
registration listing its problems (the message completes); an unreadable message raises, so the
host retries it and then moves it to `registration-requests-poison`. So does a request that reuses
a requestId with a different body (Conflict): the registration id belongs to the first request, so
no record can carry the refusal, and the poison queue is where the ticketing system's operators
see it (docs/api.md). TransientError raises too: the host redelivers the message and the
workflow resumes from its last saved step; but on the host's last delivery (maxDequeueCount,
queue_retries.py) the registration ends as `failed` ("gave up after N attempts: ...") with what
was made removed, instead of being stranded behind a message in the poison queue.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import azure.functions as func

from functions.bootstrap import Services, services
from functions.core.adoption.accepting import accept_adoption
from functions.core.adoption.asking import is_adoption
from functions.core.intake.accept import accept, plan_from_validated, record_invalid
from functions.core.intake.requests import validate_request
from functions.core.record.errors import Conflict, Deferred, NotFound, TransientError, ValidationFailed
from functions.core.record.keeper import LeaseHeld
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration
from functions.telemetry import log_context
from functions.triggers.adoption import check_ownership, validate_adoption_with
from functions.triggers.queue_messages import Envelope, envelope, read_message
from functions.triggers.queue_retries import is_last_delivery

if TYPE_CHECKING:
    from functions.core.provisioning.workflow import Provisioner

log = logging.getLogger(__name__)


async def registration_worker(msg: func.QueueMessage) -> None:
    message = read_message(msg.get_body().decode("utf-8", errors="replace"))
    svc = await services().ready()
    if isinstance(message, Envelope):
        registration_id = message.registration_id
    elif is_adoption(message):
        await _adopt(msg, svc, message)
        return
    else:
        try:
            validated = await validate_request(
                message,
                directory=svc.directory,
                home_tenant_id=svc.settings.home_tenant_id,
                catalogue=svc.catalogue,
                policy=svc.policy,
            )
        except ValidationFailed as err:
            await _refused(svc, message, err, "request")
            return
        request = validated.request
        try:
            accepted = await accept(
                request,
                plan_from_validated(validated),
                message,
                store=svc.store,
                vault=svc.vault,
                clock=svc.clock,
            )
        except Conflict as err:
            # Never dropped in silence: raising sends it to the poison queue after maxDequeueCount.
            log.error(
                "queued request refused (delivery %s; poison queue after the host's retries): %s",
                msg.dequeue_count,
                err,
            )
            raise
        registration_id = accepted.registration.id
    with log_context(registration_id=registration_id, operation="provision"):
        async with svc.prompt_deliveries():  # registration.active/failed reach subscribers at once
            await _provision(msg, svc, registration_id)


async def _refused(svc: Services, message: dict[str, Any], err: ValidationFailed, what: str) -> None:
    tenant = message.get("tenantId")
    record = await record_invalid(
        message,
        err.problems,
        tenant_id=tenant if isinstance(tenant, str) and tenant else svc.settings.home_tenant_id,
        store=svc.store,
        clock=svc.clock,
    )
    log.warning("queued %s refused as %s: %s", what, record.id, err)
    svc.escalation().provisioning_ended(record)


async def _adopt(msg: func.QueueMessage, svc: Services, message: dict[str, Any]) -> None:
    """A ticketing system's adoption request: refused ones become `failed` registrations listing
    their problems, as other requests do; accepted ones wait in pending_ownership (core/adoption)."""
    try:
        adoption = await validate_adoption_with(svc, message)
    except ValidationFailed as err:
        await _refused(svc, message, err, "adoption")
        return
    try:
        accepted = await accept_adoption(adoption, message, store=svc.store, vault=svc.vault, clock=svc.clock)
    except Conflict as err:  # as for any request: to the poison queue after the host's retries
        log.error("queued adoption refused (delivery %s): %s", msg.dequeue_count, err)
        raise
    record = await check_ownership(svc, accepted.registration)
    log.info("adoption %s is %s", record.id, record.status.value)


async def _run(svc: Services, provisioner: Provisioner, registration_id: str) -> Registration:
    """An adoption that reached `adopting` is the takeover's (core/adoption/takeover.py); the rest,
    a `failing` or `decommissioning` adoption included, the Provisioner's."""
    current = await svc.store.get(registration_id)
    if current.adoption is not None and current.status is RegistrationStatus.ADOPTING:
        return await svc.takeover().run(registration_id, then=svc.settle)
    return await provisioner.run(registration_id, then=svc.settle)


async def _provision(msg: func.QueueMessage, svc: Services, registration_id: str) -> None:
    provisioner = svc.provisioner()
    try:
        # Settled (first rotation scheduled, registration.active/failed announced) inside the run's
        # in-flight entry: a crash between the run and its settling is resumed too.
        record = await _run(svc, provisioner, registration_id)
    except NotFound:
        log.warning("queued registration %s does not exist; message dropped", registration_id)
        return
    except Deferred as err:
        # The tenant's Graph budget is spoken for: the registration waits on the queue, not in this
        # slot. Enqueued before this message completes: a crash in between leaves two, which converge.
        await svc.queue.send(
            svc.requests_queue, envelope(registration_id), visibility_timeout=err.retry_after
        )
        log.info("registration %s deferred: %s", registration_id, err)
        return
    except LeaseHeld:
        # Another worker is on it (a duplicate message: a repeat POST or approve re-sends one).
        # Its own message carries its retries; giving up here would fail a healthy run. A lease
        # that is truly dead is the stuck-registration sweep's to end.
        raise
    except TransientError as err:
        if not is_last_delivery(msg.dequeue_count, svc.settings.values):
            raise
        # Raising now would leave it `provisioning` behind a poisoned message: end it, cleaned up.
        # (If even that cannot happen now, this raises; the stuck-registration sweep ends it.)
        reason = f"gave up after {msg.dequeue_count} attempts: {err}"
        record = await provisioner.give_up(registration_id, reason, then=svc.settle)
    log.info("registration %s is %s (delivery %s)", record.id, record.status.value, msg.dequeue_count)
    svc.escalation().provisioning_ended(record)
