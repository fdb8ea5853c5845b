"""Tenant-wide webhook subscriptions (app role Registrar.Admin): every registration's events.

POST   /api/subscriptions              {"url", "events"} as a registration's webhooks; 201 with the
                                       signing secret (shown this once)
GET    /api/subscriptions              every tenant-wide subscription
GET    /api/subscriptions/{id}
DELETE /api/subscriptions/{id}         204; its signing secret is deleted, queued deliveries end `gone`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from functions.bootstrap import Services, services
from functions.core.catalogue.policy import CLIENT_PRINCIPAL_HEADER, ROLE_ADMIN, CallerPrincipal, authorize
from functions.core.record.errors import RegistrarError
from functions.triggers.http_common import error_response, json_response

if TYPE_CHECKING:
    from functions.core.escalation.tenant_subscriptions import TenantSubscriptions

bp = func.Blueprint()


async def _admin(req: func.HttpRequest) -> tuple[Services, CallerPrincipal]:
    svc = await services().ready()
    caller = authorize(
        req.headers.get(CLIENT_PRINCIPAL_HEADER),
        ROLE_ADMIN,
        principal_trusted=svc.settings.client_principal_trusted,
    )
    return svc, caller


def _subscriptions(svc: Services) -> TenantSubscriptions:
    from functions.core.escalation.tenant_subscriptions import TenantSubscriptions

    return TenantSubscriptions(
        store=svc.tenant_subscription_store, vault=svc.vault, transport=svc.webhook_sender, clock=svc.clock
    )


@bp.route(route="subscriptions", methods=["POST"])
async def add_subscription(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.escalation.tenant_subscriptions import subscription_view
    from functions.core.intake.requests import parse_json_body
    from functions.core.notification.subscriptions import parse_webhook_body

    try:
        svc, caller = await _admin(req)
        spec = parse_webhook_body(parse_json_body(req.get_body()))
        record, secret = await _subscriptions(svc).add(spec, caller.actor)
    except RegistrarError as err:
        return error_response(err)
    svc.tenant_subscribers.forget()  # this instance announces to it at once
    return json_response({**subscription_view(record), "secret": secret.reveal()}, 201)


@bp.route(route="subscriptions", methods=["GET"])
async def list_subscriptions(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.escalation.tenant_subscriptions import subscription_view

    try:
        svc, _ = await _admin(req)
        records = await _subscriptions(svc).list()
    except RegistrarError as err:
        return error_response(err)
    return json_response({"items": [subscription_view(r) for r in records]})


@bp.route(route="subscriptions/{id}", methods=["GET"])
async def get_subscription(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.escalation.tenant_subscriptions import subscription_view

    try:
        svc, _ = await _admin(req)
        record = await _subscriptions(svc).get(req.route_params.get("id", ""))
    except RegistrarError as err:
        return error_response(err)
    return json_response(subscription_view(record))


@bp.route(route="subscriptions/{id}", methods=["DELETE"])
async def remove_subscription(req: func.HttpRequest) -> func.HttpResponse:
    from functions.core.notification.signing_secrets import webhook_secret_name

    subscription_id = req.route_params.get("id", "")
    try:
        svc, _ = await _admin(req)
        await _subscriptions(svc).remove(subscription_id)
    except RegistrarError as err:
        return error_response(err)
    svc.tenant_subscribers.forget()
    svc.signing_secrets.forget(webhook_secret_name(subscription_id))
    return func.HttpResponse(status_code=204)
