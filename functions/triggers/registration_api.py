"""HTTP API handlers: registrations, profiles, approval, decommission, and the OpenAPI document.

http_registrations.py declares the routes and imports this module on the first request, so the
app imports fast (cold start).

Each handler parses the request, calls one core function through bootstrap.services(), and maps
typed errors to a status (http_common.error_response). A new registration's POST makes no Graph
call beyond validation's permission lookup (cached per tenant): the worker does the work. An
adoption's POST reads Graph: validating it reads the app (GET /applications(appId='...')) and the
resources' permission catalogues (to check the profile, or to infer it from the app's
requiredResourceAccess); accepting it checks the ownership at once (core/adoption/ownership.py):
Registrar's token for its own object id, the app's owners and, once Registrar is an owner, the
app's credentials; with adoptionTakesOwnership (REGISTRAR_ADOPTION_TAKES_OWNERSHIP) it also adds
Registrar as an owner (POST owners/$ref). The takeover itself is the worker's.

Queue messages this module writes on `registration-requests` (see queue_registrations.py):
{"registrationId": "reg-..."}. Ticketing systems write the request JSON itself instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import azure.functions as func

from functions.bootstrap import Services, services
from functions.core.adoption.accepting import accept_adoption
from functions.core.adoption.asking import is_adoption
from functions.core.catalogue.policy import (
    CLIENT_PRINCIPAL_HEADER,
    ROLE_ADMIN,
    ROLE_APPROVER,
    CallerPrincipal,
    authorize,
)
from functions.core.intake.accept import Accepted, accept, plan_from_validated
from functions.core.intake.requests import parse_json_body, validate_request
from functions.core.notification.events import display_url
from functions.core.record.errors import RegistrarError, ValidationFailed
from functions.core.record.models import Problem, RegistrationStatus
from functions.telemetry import log_context
from functions.triggers.adoption import check_ownership, validate_adoption_with
from functions.triggers.http_common import (
    error_response,
    json_response,
    problem,
    profile_view,
    registration_view,
    status_url,
)
from functions.triggers.queue_messages import envelope

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"
MAX_PAGE = 100


def _caller(req: func.HttpRequest, role: str, *, principal_trusted: bool) -> CallerPrincipal:
    """The caller of a role-protected route: Forbidden unless App Service Authentication vouches for
    X-MS-CLIENT-PRINCIPAL (or in local development) and the principal holds the role and an oid."""
    return authorize(req.headers.get(CLIENT_PRINCIPAL_HEADER), role, principal_trusted=principal_trusted)


def _is_json(req: func.HttpRequest) -> bool:
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    return content_type in ("", "application/json") or content_type.endswith("+json")


async def create_registration(req: func.HttpRequest) -> func.HttpResponse:
    if not _is_json(req):
        given = (req.headers.get("content-type") or "").split(";", maxsplit=1)[0].strip()
        wrong = Problem("content-type", f"{given[:100]} is not accepted", "send application/json")
        return problem(415, "send the request as application/json", [wrong], kind="media-type")
    try:
        svc = await services().ready()
        body = parse_json_body(req.get_body())
        if is_adoption(body):  # an existing app to take over (core/adoption): nothing for the worker yet
            return _accepted_response(req, await _accept_adoption(svc, body))
        validated = await validate_request(
            body,
            directory=svc.directory,
            home_tenant_id=svc.settings.home_tenant_id,
            catalogue=svc.catalogue,
            policy=svc.policy,
        )
        request = validated.request
        with log_context(
            registration_id=request.registration_id, tenant_id=request.tenant_id, operation="intake"
        ):
            accepted = await accept(
                request,
                plan_from_validated(validated),
                body,
                store=svc.store,
                vault=svc.vault,
                clock=svc.clock,
            )
            record = accepted.registration
            # Still `accepted`: the worker has not picked it up, perhaps because the send that
            # followed the record failed (a 503 the caller retries). Send again: the worker is
            # idempotent, and a message too many costs one look at the record.
            if accepted.created or record.status is RegistrationStatus.ACCEPTED:
                await svc.queue.send(svc.requests_queue, envelope(record.id))
    except RegistrarError as err:
        return error_response(err)
    return _accepted_response(req, accepted)


async def _accept_adoption(svc: Services, body: dict[str, Any]) -> Accepted:
    adoption = await validate_adoption_with(svc, body)
    request = adoption.validated.request
    with log_context(registration_id=request.registration_id, tenant_id=request.tenant_id, operation="adopt"):
        accepted = await accept_adoption(adoption, body, store=svc.store, vault=svc.vault, clock=svc.clock)
        return replace(accepted, registration=await check_ownership(svc, accepted.registration))


def _accepted_response(req: func.HttpRequest, accepted: Accepted) -> func.HttpResponse:
    record = accepted.registration
    url = status_url(req, record.id)
    body_out = {
        "id": record.id,
        "status": record.status.value,
        "statusUrl": url,
        "webhooks": [
            {
                "id": w.id,
                "url": display_url(w.url),
                "events": list(w.events),
                # shown once, to the caller whose request created the subscription
                "secret": accepted.webhook_secrets[w.id].reveal()
                if w.id in accepted.webhook_secrets
                else None,
            }
            for w in record.webhooks
        ],
    }
    return json_response(body_out, 202 if accepted.created else 200, headers={"Location": url})


async def get_registration(req: func.HttpRequest) -> func.HttpResponse:
    registration_id = req.route_params.get("id", "")
    try:
        record = await (await services().ready()).store.get(registration_id)
    except RegistrarError as err:
        return error_response(err)
    return json_response(registration_view(record, status_url(req, record.id)))


async def list_registrations(req: func.HttpRequest) -> func.HttpResponse:
    problems: list[Problem] = []
    status_text = req.params.get("status")
    status = None
    if status_text:
        try:
            status = RegistrationStatus(status_text)
        except ValueError:
            allowed = ", ".join(s.value for s in RegistrationStatus)
            problems.append(Problem("status", f"unknown status {status_text!r}", f"one of {allowed}"))
    limit = 50
    if req.params.get("limit"):
        try:
            limit = int(req.params["limit"])
            if not 1 <= limit <= MAX_PAGE:
                raise ValueError
        except ValueError:
            problems.append(Problem("limit", f"must be an integer from 1 to {MAX_PAGE}"))
    if problems:
        return error_response(ValidationFailed(problems))
    try:
        page = await (await services().ready()).store.list(
            tenant_id=req.params.get("tenantId") or None,
            profile_id=req.params.get("profile") or None,
            status=status,
            limit=limit,
            continuation=req.params.get("continuation") or None,
        )
    except RegistrarError as err:
        return error_response(err)
    return json_response(
        {
            "items": [registration_view(r, status_url(req, r.id)) for r in page.items],
            "continuation": page.continuation,
        }
    )


async def approve_registration(req: func.HttpRequest) -> func.HttpResponse:
    registration_id = req.route_params.get("id", "")
    try:
        svc = await services().ready()
        caller = _caller(req, ROLE_APPROVER, principal_trusted=svc.settings.client_principal_trusted)
        record, enqueue = await svc.lifecycle().approve(registration_id, caller.actor)
        if enqueue:
            await svc.queue.send(svc.requests_queue, envelope(record.id))
    except RegistrarError as err:
        return error_response(err)
    return json_response(registration_view(record, status_url(req, record.id)))


async def decommission_registration(req: func.HttpRequest) -> func.HttpResponse:
    registration_id = req.route_params.get("id", "")
    try:
        svc = await services().ready()
        caller = _caller(req, ROLE_ADMIN, principal_trusted=svc.settings.client_principal_trusted)
        delete_app = req.params.get("deleteApp", "false")
        if delete_app not in ("true", "false"):
            raise ValidationFailed([Problem("deleteApp", "must be true or false", None)])
        before = await svc.store.get(registration_id)
        try:
            record = await svc.lifecycle().decommission(
                registration_id, caller.actor, delete_app=delete_app == "true"
            )
        finally:  # even part-way: what was deleted from Key Vault must not be signed with here
            for subscription in before.webhooks:  # their queued deliveries end as gone at once
                if subscription.secret_name:
                    svc.signing_secrets.forget(subscription.secret_name)
        await svc.tell_inventory(record)  # a released app shows unmanaged now, not from the next scan
    except RegistrarError as err:
        return error_response(err)
    return json_response(registration_view(record, status_url(req, record.id)))


async def list_profiles(req: func.HttpRequest) -> func.HttpResponse:
    catalogue = services().catalogue
    return json_response({"items": [profile_view(p, detailed=False) for p in catalogue]})


async def get_profile(req: func.HttpRequest) -> func.HttpResponse:
    profile_id = req.route_params.get("id", "")
    catalogue = services().catalogue
    profile = catalogue.get(profile_id)
    if profile is None:
        suggestions = catalogue.suggest(profile_id)
        hint = f"did you mean {', '.join(suggestions)}?" if suggestions else None
        return problem(404, f"profile {profile_id!r} not found", [Problem("id", "unknown profile", hint)])
    return json_response(profile_view(profile))


async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    document = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    document["servers"] = [{"url": f"{status_url(req, '').rsplit('/registrations/', 1)[0]}"}]
    return json_response(document)
