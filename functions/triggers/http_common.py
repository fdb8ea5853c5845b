"""HTTP plumbing shared by the HTTP triggers: JSON and problem+json responses, the public views of
records and profiles, and the one mapping from core errors to status codes."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from functions.core.catalogue.permissions import resource_label
from functions.core.catalogue.profiles import Profile
from functions.core.notification.events import display_url
from functions.core.record.durations import format_duration
from functions.core.record.errors import (
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    NotFound,
    PermanentError,
    TransientError,
    ValidationFailed,
)
from functions.core.record.models import Problem, RegistrationStatus
from functions.core.record.registration import CredentialState, Drift, DriftedPermission, Registration
from functions.profiles.views import mapping_document

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://registrar.example/problems/"
TITLES = {
    400: "Invalid request",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Request cannot be processed",
    500: "Internal error",
    503: "Service temporarily unavailable",
}


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        headers=dict(headers or {}),
    )


def problem(
    status: int, detail: str, problems: Sequence[Problem] = (), *, kind: str | None = None
) -> func.HttpResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + (kind or str(status)),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "problems": [{"field": p.field, "reason": p.reason, "suggestion": p.suggestion} for p in problems],
    }
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=PROBLEM_JSON)


def error_response(err: Exception) -> func.HttpResponse:  # noqa: PLR0911  (one branch per error kind)
    """The status a core error means for a caller; messages are built from ids, never secrets."""
    if isinstance(err, ValidationFailed):
        detail = f"the request has {len(err.problems)} problem(s)"
        return problem(err.status, detail, err.problems, kind="validation")
    if isinstance(err, NotFound):
        return problem(404, str(err), kind="not-found")
    if isinstance(err, Forbidden):
        return problem(403, str(err), kind="forbidden")
    if isinstance(err, Conflict | ConcurrencyConflict):
        return problem(409, str(err), kind="conflict")
    if isinstance(err, TransientError):
        retry = int(err.retry_after.total_seconds()) if err.retry_after else 5
        response = problem(503, "a dependency is busy; retry later", kind="transient")
        response.headers["Retry-After"] = str(max(1, retry))
        return response
    if isinstance(err, PermanentError):
        return problem(422, str(err), kind="permanent")
    log.exception("unexpected error while handling a request")
    return problem(500, "unexpected error; see the logs for the invocation id", kind="internal")


def base_url(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


def status_url(req: func.HttpRequest, registration_id: str) -> str:
    return f"{base_url(req)}/api/registrations/{registration_id}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def credential_view(c: CredentialState | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "type": c.type.value,
        "keyId": c.key_id,
        "generation": c.generation,
        "displayName": c.display_name,
        "startsOn": _iso(c.start),
        "expiresOn": _iso(c.expires_on),
        "secretUri": c.secret_uri,
        "certificateUri": c.certificate_uri,
        "thumbprint": c.thumbprint,
        "issuer": c.issuer,
        "subject": c.subject,
        "verifiedOn": _iso(c.verified_at),
        "confirmedOn": _iso(c.confirmed_at),
    }


ENDED = (RegistrationStatus.FAILED, RegistrationStatus.DECOMMISSIONED)


def owners_view(r: Registration) -> list[dict[str, str]]:
    """The requested owners: `added` once Graph has them, `manual` when Registrar may not add them
    (see manualSteps), `none` once the app is gone (failed, decommissioned), else `pending`.
    Registrar's own service principal, also an owner, is not listed."""

    def status(owner: str) -> str:
        if r.status in ENDED:
            return "none"
        if owner in r.owners_added:
            return "added"
        return "manual" if r.owners_refused else "pending"

    return [{"id": owner, "status": status(owner)} for owner in r.plan.owners]


def registration_view(r: Registration, url: str | None = None) -> dict[str, Any]:
    def perms(items: Sequence[Any]) -> list[dict[str, str]]:
        return [
            {
                "resourceAppId": p.resource_app_id,
                "resource": resource_label(p.resource_app_id),
                "type": p.kind.value,
                "id": p.id,
                "name": p.name,
            }
            for p in items
        ]

    error = r.last_error
    return {
        "id": r.id,
        "requestId": r.request_id,
        "profile": r.profile_id,
        "tenantId": r.tenant_id,
        "displayName": r.plan.display_name,
        "status": r.status.value,
        "createdOn": _iso(r.created_at),
        "updatedOn": _iso(r.updated_at),
        "appId": r.app_id or (r.adoption.app_id if r.adoption else None),
        "objectId": r.app_object_id or (r.adoption.app_object_id if r.adoption else None),
        "servicePrincipalId": r.service_principal_id,
        "permissions": perms(r.granted_permissions),
        "requestedPermissions": perms(r.plan.permissions),
        "credential": credential_view(r.credential),
        "retirement": r.retirement,
        "owners": owners_view(r),
        "manualSteps": list(r.manual_steps),
        "notes": r.plan.notes,
        "approval": {
            "reasons": list(r.approval.reasons),
            "approvedBy": r.approval.approved_by,
            "approvedOn": _iso(r.approval.approved_at),
        }
        if r.approval
        else None,
        "webhooks": [{"id": w.id, "url": display_url(w.url), "events": list(w.events)} for w in r.webhooks],
        "history": [
            {"step": e.step, "outcome": e.outcome, "at": _iso(e.at), "detail": e.detail} for e in r.history
        ],
        "lastError": {
            "step": error.step,
            "kind": error.kind,
            "message": error.message,
            "code": error.code,
            "at": _iso(error.at),
            "problems": [
                {"field": p.field, "reason": p.reason, "suggestion": p.suggestion} for p in error.problems
            ],
        }
        if error
        else None,
        "adoption": {
            "appId": r.adoption.app_id,
            "objectId": r.adoption.app_object_id,
            "displayName": r.adoption.display_name,
            "retireExisting": r.adoption.retire_existing,
            "reconcile": r.adoption.reconcile,
            "profileInferred": r.adoption.profile_inferred,
            "registrarPrincipalId": r.adoption.registrar_principal_id,
            "ownedOn": _iso(r.adoption.owned_at),
            "ownerAddedByRegistrar": r.adoption.owner_added_by_registrar,
            "credentialsFound": [
                {
                    "keyId": c.key_id,
                    "type": c.type.value,
                    "displayName": c.display_name,
                    "endDateTime": _iso(c.end),
                }
                for c in r.adoption.found_credentials
            ],
            "drift": drift_view(r.adoption.drift),
        }
        if r.adoption
        else None,
        "statusUrl": url,
    }


def drift_view(drift: Drift | None) -> dict[str, Any] | None:
    """An adopted app's permissions against its profile (core/adoption/permissions.py)."""
    if drift is None:
        return None

    def permission(p: DriftedPermission) -> dict[str, Any]:
        return {
            "resourceAppId": p.resource_app_id,
            "resource": p.resource,
            "value": p.value,
            "kind": p.kind.value,
            "id": p.id,
            "declared": p.declared,
            "granted": p.granted,
        }

    return {
        "readOn": _iso(drift.read_at),
        "missing": [permission(p) for p in drift.missing],
        "extra": [permission(p) for p in drift.extra],
        "reconciledOn": _iso(drift.reconciled_at),
    }


def profile_view(p: Profile, *, detailed: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": p.id,
        "connector": p.connector,
        "title": p.title,
        "description": p.description,
        "seed": p.seed,
        "custom": p.custom,
        "credentialTypes": [t.value for t in p.credential_types],
        "defaultCredentialType": p.default_credential_type.value,
    }
    if not detailed:
        return view
    view.update(
        {
            "signInAudience": p.sign_in_audience,
            "redirectUris": {
                "web": list(p.redirect_uris.web),
                "spa": list(p.redirect_uris.spa),
                "publicClient": list(p.redirect_uris.public_client),
            },
            "permissions": [
                {
                    "resource": resource_label(perm.ref().resource),
                    "type": perm.ref().kind.value,
                    "name": perm.ref().name,
                    "when": perm.when,
                }
                for perm in p.permissions
            ],
            "options": [
                {
                    "name": o.name,
                    "type": o.type,
                    "description": o.description,
                    "default": o.default,
                    "allowed": list(o.allowed),
                }
                for o in p.options
            ],
            "credentials": [
                {
                    "type": rule.type.value,
                    "defaultLifetime": _duration(rule.default_lifetime),
                    "maxLifetime": _duration(rule.max_lifetime),
                }
                for rule in p.credentials
            ],
            "manualSteps": [{"id": s.id, "title": s.title, "detail": s.detail} for s in p.manual_steps],
            "notes": list(p.notes),
            # What the seed said, and how Registrar corrected it: typos fixed, retired Azure AD
            # Graph permissions mapped to Microsoft Graph.
            "seedWords": list(p.seed_words),
            "seedCorrections": [
                {
                    "resource": resource_label(perm.resource),
                    "name": perm.name,
                    "seedSpelling": perm.seed_spelling,
                }
                for perm in p.permissions
                if perm.seed_spelling and perm.seed_spelling != perm.name
            ],
            "mappings": [mapping_document(m) for m in p.mappings],
        }
    )
    return view


def _duration(value: timedelta | None) -> str | None:
    return format_duration(value) if value is not None else None
