"""Notification triggers: Key Vault events (Event Grid), webhook deliveries (queue), and the
HTTP routes to manage webhook subscriptions and see their deliveries (dead letters included)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import azure.functions as func

from functions.bootstrap import services
from functions.core.notification.events import display_url
from functions.core.record.errors import RegistrarError, ValidationFailed
from functions.core.record.models import Problem
from functions.resources import WEBHOOK_DELIVERIES_QUEUE
from functions.telemetry import log_context
from functions.triggers.http_common import error_response, json_response

if TYPE_CHECKING:
    from functions.core.notification.subscriptions import Subscriptions

# Handlers import their core modules on first use: function_app must import fast (cold start).

log = logging.getLogger(__name__)
bp = func.Blueprint()

DELIVERY_STATUSES = ("delivered", "retrying", "dead_lettered", "gone")


@bp.event_grid_trigger(arg_name="event")
async def keyvault_events(event: func.EventGridEvent) -> None:
    from functions.core.rotation.keyvault_events import UnusableEvent, parse_key_vault_event

    try:
        parsed = parse_key_vault_event(
            event_id=event.id, event_type=event.event_type, subject=event.subject, data=event.get_json()
        )
    except UnusableEvent as skipped:
        log.info("ignored Event Grid event %s: %s", event.id, skipped)
        return
    svc = await services().ready()
    with log_context(operation="keyvault-event"):
        # TransientError (e.g. the registration is mid-rotation) raises: Event Grid retries it.
        from functions.core.notification.prompt import EVENT_GRID_PROMPT_DEADLINE

        # credential.* events reach subscribers at once, within Event Grid's wait for an answer.
        async with svc.prompt_deliveries(EVENT_GRID_PROMPT_DEADLINE):
            reaction = await svc.reactions().handle(parsed)
        log.info("Key Vault %s for %s: %s", event.event_type, parsed.object_name, reaction.value)


@bp.queue_trigger(arg_name="msg", queue_name=WEBHOOK_DELIVERIES_QUEUE, connection="AzureWebJobsStorage")
async def webhook_delivery(msg: func.QueueMessage) -> None:
    from functions.core.notification.events import Delivery

    delivery = Delivery.from_message(msg.get_body().decode("utf-8"))  # unreadable: poison queue
    svc = await services().ready()
    with log_context(registration_id=delivery.registration_id, operation="webhook.deliver"):
        status = await svc.delivery_worker().deliver(delivery)
        log.info("webhook delivery %s attempt %d: %s", delivery.delivery_id, delivery.attempt, status)


def _subscriptions() -> Subscriptions:
    from functions.core.notification.subscriptions import Subscriptions

    svc = services()
    return Subscriptions(
        store=svc.store, vault=svc.vault, transport=svc.webhook_sender, clock=svc.clock, owner=svc.job_owner()
    )


@bp.route(route="registrations/{id}/webhooks", methods=["POST"])
async def add_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.intake.requests import parse_json_body
    from functions.core.notification.subscriptions import parse_webhook_body

    registration_id = req.route_params.get("id", "")
    try:
        svc = await services().ready()
        spec = parse_webhook_body(parse_json_body(req.get_body()))
        # An unknown registration is 404 before the URL's host is resolved (a 400 when it does not).
        await svc.store.get(registration_id)
        ref, secret = await _subscriptions().add(registration_id, spec)
    except RegistrarError as err:
        return error_response(err)
    # The signing secret is shown this once; afterwards it lives in Key Vault only.
    body = {"id": ref.id, "url": display_url(ref.url), "events": list(ref.events), "secret": secret.reveal()}
    return json_response(body, 201)


@bp.route(route="registrations/{id}/webhooks/{subscription}", methods=["DELETE"])
async def remove_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.notification.signing_secrets import webhook_secret_name

    subscription_id = req.route_params.get("subscription", "")
    try:
        svc = await services().ready()
        await _subscriptions().remove(req.route_params.get("id", ""), subscription_id)
    except RegistrarError as err:
        return error_response(err)
    # Its queued deliveries end as gone here at once (other instances: after the cache's ttl).
    svc.signing_secrets.forget(webhook_secret_name(subscription_id))
    return func.HttpResponse(status_code=204)


@bp.route(route="registrations/{id}/deliveries", methods=["GET"])
async def list_deliveries(req: func.HttpRequest) -> func.HttpResponse:
    registration_id = req.route_params.get("id", "")
    status = req.params.get("status") or None
    try:
        svc = await services().ready()
        await svc.store.get(registration_id)
        if status is not None and status not in DELIVERY_STATUSES:
            raise ValidationFailed(
                [Problem("status", f"unknown status {status!r}", ", ".join(DELIVERY_STATUSES))]
            )
        entries = await svc.deliveries.list(registration_id, status=status)
    except RegistrarError as err:
        return error_response(err)
    items = [
        {
            "deliveryId": e.delivery_id,
            "subscriptionId": e.subscription_id,
            "eventType": e.event_type,
            "status": e.status,
            "attempts": e.attempts,
            "lastStatus": e.last_status,
            "lastError": e.last_error,
            "updatedAt": e.updated_at.isoformat().replace("+00:00", "Z"),
        }
        for e in sorted(entries, key=lambda e: e.updated_at)
    ]
    return json_response({"registrationId": registration_id, "items": items})
