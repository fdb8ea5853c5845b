"""The desired state of a registration's app (ApplicationSpec), derived from its record alone."""

from __future__ import annotations

from functions.core.ports import ApplicationSpec, RedirectUris, RequiredResourceAccess
from functions.core.record.models import PermissionKind
from functions.core.record.registration import Registration, unique_name_for


def application_spec(record: Registration) -> ApplicationSpec:
    """PATCH body of the app step: the same record always gives the same spec (idempotent upsert)."""
    plan = record.plan
    return ApplicationSpec(
        unique_name=unique_name_for(record.id),
        display_name=plan.display_name,
        sign_in_audience=plan.sign_in_audience,
        redirect_uris=RedirectUris(
            web=plan.web_redirect_uris,
            spa=plan.spa_redirect_uris,
            public_client=plan.public_client_redirect_uris,
        ),
        required_resource_access=_required_resource_access(record),
        notes=_notes(record),
        tags=(
            "Registrar",
            f"registrar:registration:{record.id}",
            f"registrar:profile:{record.profile_id}",
        ),
    )


def _required_resource_access(record: Registration) -> tuple[RequiredResourceAccess, ...]:
    by_resource: dict[str, tuple[set[str], set[str]]] = {}
    for p in record.plan.permissions:
        roles, scopes = by_resource.setdefault(p.resource_app_id, (set(), set()))
        (roles if p.kind is PermissionKind.APPLICATION else scopes).add(p.id)
    return tuple(
        RequiredResourceAccess(
            resource_app_id=app_id, app_role_ids=tuple(sorted(r)), scope_ids=tuple(sorted(s))
        )
        for app_id, (r, s) in sorted(by_resource.items())
    )


def _notes(record: Registration) -> str:
    parts = [
        f"Registrar registration {record.id}",
        f"request {record.request_id}",
        f"profile {record.profile_id}",
    ]
    if record.plan.requested_by:
        parts.append(f"requested by {record.plan.requested_by}")
    if record.plan.notes:
        parts.append(record.plan.notes)
    return "; ".join(parts)[:1024]
