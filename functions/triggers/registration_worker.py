"""Queue worker (the handler behind queue_registrations.py) for `registration-requests`: HTTP intake and ticketing systems converge here.

Message schema: queue_messages.py. A request that fails validation becomes a `failed`
registration listing its problems (the message completes); an unreadable message raises, so the
host retries it and then moves it to `registration-requests-poison`. So does a request that reuses
a requestId with a different body (Conflict): the registration id belongs to the first request, so
no record can carry the refusal, and the poison queue is where the ticketing system's operators
see it (docs/api.md). TransientError raises too: the host redelivers the message and the
workflow resumes from its last saved step.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.bootstrap import services
from functions.core.errors import Conflict, NotFound, ValidationFailed
from functions.core.intake import accept, plan_from_validated, record_invalid
from functions.core.outcomes import settle_provisioned
from functions.core.requests import validate_request
from functions.telemetry import log_context
from functions.triggers.queue_messages import Envelope, read_message

log = logging.getLogger(__name__)


async def registration_worker(msg: func.QueueMessage) -> None:
    message = read_message(msg.get_body().decode("utf-8", errors="replace"))
    svc = await services().ready()
    if isinstance(message, Envelope):
        registration_id = message.registration_id
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
            tenant = message.get("tenantId")
            record = await record_invalid(
                message,
                err.problems,
                tenant_id=tenant if isinstance(tenant, str) and tenant else svc.settings.home_tenant_id,
                store=svc.store,
                clock=svc.clock,
            )
            log.warning("queued request refused as %s: %s", record.id, err)
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
        try:
            record = await svc.provisioner().run(registration_id)
        except NotFound:
            log.warning("queued registration %s does not exist; message dropped", registration_id)
            return
        log.info("registration %s is %s (delivery %s)", record.id, record.status.value, msg.dequeue_count)
        await settle_provisioned(
            record,
            store=svc.store,
            index=svc.index,
            queue=svc.queue,
            clock=svc.clock,
            owner=svc.job_owner(),
            settings=svc.rotation_settings,
        )
