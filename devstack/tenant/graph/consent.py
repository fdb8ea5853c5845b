"""Consent: appRoleAssignedTo / appRoleAssignments (application permissions) and
oauth2PermissionGrants (delegated permissions)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from devstack.tenant.graph import authz
from devstack.tenant.graph.directory import Directory
from devstack.tenant.graph.errors import bad_request, conflict, not_found, unknown_property
from devstack.tenant.graph.http import Call, Reply, Router, list_reply, require_guid
from devstack.tenant.graph.model import AppRoleAssignment, PermissionGrant, ServicePrincipal, guid_bytes_id
from devstack.tenant.graph.odata import decode_skiptoken, parse_filter, parse_top
from devstack.tenant.graph.service_principals import SP_REF, find_sp

ASSIGNMENT_FIELDS = {"principalId": "str", "resourceId": "str", "appRoleId": "str", "principalType": "str"}
GRANT_FIELDS = {"clientId": "str", "resourceId": "str", "consentType": "str", "principalId": "str"}
ASSIGNMENT_BODY = {
    "principalId",
    "resourceId",
    "appRoleId",
    "principalType",
    "principalDisplayName",
    "resourceDisplayName",
}
GRANT_BODY = {"clientId", "consentType", "principalId", "resourceId", "scope", "startTime", "expiryTime"}


def _check_body(body: Mapping[str, Any], allowed: set[str], type_name: str) -> None:
    for name in body:
        if not name.startswith("@odata.") and name not in allowed:
            raise unknown_property(name, type_name)


def _guid_field(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"Property '{name}' is required.")
    return require_guid(value)


def page_dicts(
    call: Call, context: str, rows: Iterable[dict[str, Any]], fields: Mapping[str, str], type_name: str
) -> Reply:
    flt = parse_filter(call.query.get("$filter"), fields, type_name)
    top = parse_top(call.query.get("$top"))
    offset = decode_skiptoken(call.query.get("$skiptoken"))
    matched = [row for row in rows if flt is None or flt.predicate(row)]
    items = [json.dumps(row, separators=(",", ":")) for row in matched[offset : offset + top]]
    more = offset + top < len(matched)
    return list_reply(call, context, items, next_offset=offset + top if more else None)


# ---- application permissions ----------------------------------------------------------------------
def _assign(
    call: Call, principal: ServicePrincipal, resource: ServicePrincipal, app_role_id: str
) -> AppRoleAssignment:
    role = resource.app_role(app_role_id)
    if (
        role is None
        or "Application" not in (role.get("allowedMemberTypes") or [])
        or not role.get("isEnabled", True)
    ):
        raise bad_request(f"Permission being assigned was not found on application '{resource.app_id}'.")
    if call.directory.consent.find_assignment(principal.id, resource.id, app_role_id) is not None:
        # Graph answers a duplicate assignment 400 (found by the Azure CLI against this tenant), not 409.
        raise bad_request("Permission being assigned already exists on the object", code="Request_BadRequest")
    return call.directory.assign_app_role(principal, resource, app_role_id)


def _visible_sp(call: Call, object_id: str) -> ServicePrincipal:
    sp = call.directory.service_principals.get(object_id)
    if sp is None or not call.visible(sp):
        raise not_found(object_id)
    return sp


def _post_assignment(call: Call, match: re.Match[str], *, path_is_resource: bool) -> Reply:
    body = call.json()
    _check_body(body, ASSIGNMENT_BODY, "appRoleAssignment")
    principal_id = _guid_field(body, "principalId")
    resource_id = _guid_field(body, "resourceId")
    app_role_id = _guid_field(body, "appRoleId")
    authz.require_assignment_write(call.principal)
    path_sp = find_sp(call, match)
    if path_sp.id != (resource_id if path_is_resource else principal_id):
        side = "resourceId" if path_is_resource else "principalId"
        raise bad_request(f"Property '{side}' must be the id of the service principal in the URL.")
    principal = _visible_sp(call, principal_id)
    resource = _visible_sp(call, resource_id)
    assignment = _assign(call, principal, resource, app_role_id)
    segment = "appRoleAssignedTo" if path_is_resource else "appRoleAssignments"
    context = call.context_url(f"servicePrincipals('{path_sp.id}')/{segment}/$entity")
    return Reply.data(201, assignment.to_graph(), context)


def post_assigned_to(call: Call, match: re.Match[str]) -> Reply:
    return _post_assignment(call, match, path_is_resource=True)


def post_assignments(call: Call, match: re.Match[str]) -> Reply:
    return _post_assignment(call, match, path_is_resource=False)


def _assignments_of(call: Call, sp: ServicePrincipal, *, as_resource: bool) -> list[AppRoleAssignment]:
    store = call.directory.consent
    found = store.assignments_of_resource(sp.id) if as_resource else store.assignments_of_principal(sp.id)
    return [a for a in found if _listed(call, a)]


def list_assigned_to(call: Call, match: re.Match[str]) -> Reply:
    authz.require_consent_read(call.principal)
    sp = find_sp(call, match)
    rows = (a.to_graph() for a in _assignments_of(call, sp, as_resource=True))
    return page_dicts(
        call, f"servicePrincipals('{sp.id}')/appRoleAssignedTo", rows, ASSIGNMENT_FIELDS, "appRoleAssignment"
    )


def list_assignments(call: Call, match: re.Match[str]) -> Reply:
    authz.require_consent_read(call.principal)
    sp = find_sp(call, match)
    rows = (a.to_graph() for a in _assignments_of(call, sp, as_resource=False))
    return page_dicts(
        call, f"servicePrincipals('{sp.id}')/appRoleAssignments", rows, ASSIGNMENT_FIELDS, "appRoleAssignment"
    )


def _find_assignment(
    call: Call, match: re.Match[str], *, as_resource: bool
) -> tuple[ServicePrincipal, AppRoleAssignment]:
    sp = find_sp(call, match)
    assignment = call.directory.consent.assignments.get(match["assignment"])
    if assignment is None or (assignment.resource_id if as_resource else assignment.principal_id) != sp.id:
        raise not_found(match["assignment"])
    return sp, assignment


def get_assignment(call: Call, match: re.Match[str]) -> Reply:
    authz.require_consent_read(call.principal)
    as_resource = "appRoleAssignedTo" in call.path
    sp, assignment = _find_assignment(call, match, as_resource=as_resource)
    segment = "appRoleAssignedTo" if as_resource else "appRoleAssignments"
    return Reply.data(
        200, assignment.to_graph(), call.context_url(f"servicePrincipals('{sp.id}')/{segment}/$entity")
    )


def delete_assignment(call: Call, match: re.Match[str]) -> Reply:
    authz.require_assignment_delete(call.principal)
    _, assignment = _find_assignment(call, match, as_resource="appRoleAssignedTo" in call.path)
    call.directory.consent.remove_assignment(assignment)
    return Reply.empty(204)


# ---- delegated permissions --------------------------------------------------------------------------
def _validate_scope(resource: ServicePrincipal, scope: Any) -> str:
    if not isinstance(scope, str):
        raise bad_request("Property 'scope' must be a space-separated string.")
    known = {
        s.get("value") for s in resource.props.get("oauth2PermissionScopes") or [] if s.get("isEnabled", True)
    }
    for value in scope.split():
        if value not in known:
            raise bad_request(
                f"Invalid value specified for property 'scope': '{value}' is not a scope of '{resource.app_id}'."
            )
    return " ".join(scope.split())


def post_grant(call: Call, match: re.Match[str]) -> Reply:
    body = call.json()
    _check_body(body, GRANT_BODY, "oAuth2PermissionGrant")
    client_id = _guid_field(body, "clientId")
    resource_id = _guid_field(body, "resourceId")
    consent_type = body.get("consentType")
    if consent_type not in ("AllPrincipals", "Principal"):
        raise bad_request("Property 'consentType' must be 'AllPrincipals' or 'Principal'.")
    principal_id = body.get("principalId")
    if consent_type == "AllPrincipals" and principal_id is not None:
        raise bad_request("Property 'principalId' must be null when consentType is 'AllPrincipals'.")
    if consent_type == "Principal":
        principal_id = _guid_field(body, "principalId")
    authz.require_grant_write(call.principal)
    client = _visible_sp(call, client_id)
    resource = _visible_sp(call, resource_id)
    scope = _validate_scope(resource, body.get("scope", ""))
    ids = [client.id, resource.id] + ([principal_id] if principal_id else [])
    grant_id = guid_bytes_id(*ids)
    if grant_id in call.directory.consent.grants:
        raise conflict("Permission entry already exists.")
    grant = PermissionGrant(grant_id, client.id, consent_type, principal_id, resource.id, scope, time.time())
    call.directory.consent.add_grant(grant)
    return Reply.data(201, grant.to_graph(), call.context_url("oauth2PermissionGrants/$entity"))


def _listed(call: Call, item: AppRoleAssignment | PermissionGrant) -> bool:
    """Assignment and grant lists can lag their writes (REFERENCE: 30-60 s). Off unless the
    simulation sets extra["consentListLagMs"], so the lag is a choice of the test that wants it."""
    lag_ms = int(call.sim.extra.get("consentListLagMs", 0) or 0)
    return Directory.visible(item, lag_ms)


def _visible_grants(call: Call, client_id: str | None = None) -> Iterable[PermissionGrant]:
    store = call.directory.consent
    grants = store.grants.values() if client_id is None else store.grants_of_client(client_id)
    return (g for g in grants if _listed(call, g))


def list_grants(call: Call, match: re.Match[str]) -> Reply:
    authz.require_consent_read(call.principal)
    flt = parse_filter(call.query.get("$filter"), GRANT_FIELDS, "oAuth2PermissionGrant")
    client_id = flt.index[1].lower() if flt is not None and flt.index and flt.index[0] == "clientId" else None
    rows = (g.to_graph() for g in _visible_grants(call, client_id))
    return page_dicts(call, "oauth2PermissionGrants", rows, GRANT_FIELDS, "oAuth2PermissionGrant")


def list_sp_grants(call: Call, match: re.Match[str]) -> Reply:
    authz.require_consent_read(call.principal)
    sp = find_sp(call, match)
    rows = (g.to_graph() for g in _visible_grants(call, sp.id))
    return page_dicts(
        call,
        f"servicePrincipals('{sp.id}')/oauth2PermissionGrants",
        rows,
        GRANT_FIELDS,
        "oAuth2PermissionGrant",
    )


def _find_grant(call: Call, match: re.Match[str]) -> PermissionGrant:
    grant = call.directory.consent.grants.get(match["grant"])
    if grant is None:
        raise not_found(match["grant"])
    return grant


def get_grant(call: Call, match: re.Match[str]) -> Reply:
    authz.require_consent_read(call.principal)
    return Reply.data(
        200, _find_grant(call, match).to_graph(), call.context_url("oauth2PermissionGrants/$entity")
    )


def patch_grant(call: Call, match: re.Match[str]) -> Reply:
    body = call.json()
    _check_body(body, {"scope", "startTime", "expiryTime"}, "oAuth2PermissionGrant")
    authz.require_grant_write(call.principal)
    grant = _find_grant(call, match)
    if "scope" in body:
        resource = call.directory.service_principals.get(grant.resource_id)
        if resource is None:
            raise not_found(grant.resource_id)
        grant.scope = _validate_scope(resource, body["scope"])
    return Reply.empty(204)


def delete_grant(call: Call, match: re.Match[str]) -> Reply:
    authz.require_grant_write(call.principal)
    grant = _find_grant(call, match)
    call.directory.consent.remove_grant(grant)
    return Reply.empty(204)


def register(router: Router) -> None:
    router.add("GET", SP_REF + "/appRoleAssignedTo", list_assigned_to)
    router.add("POST", SP_REF + "/appRoleAssignedTo", post_assigned_to)
    router.add("GET", SP_REF + "/appRoleAssignments", list_assignments)
    router.add("POST", SP_REF + "/appRoleAssignments", post_assignments)
    for segment in ("appRoleAssignedTo", "appRoleAssignments"):
        one = SP_REF + f"/{segment}/(?P<assignment>[^/]+)"
        router.add("GET", one, get_assignment)
        router.add("DELETE", one, delete_assignment)
    router.add("GET", SP_REF + "/oauth2PermissionGrants", list_sp_grants)
    router.add("GET", "/oauth2PermissionGrants", list_grants)
    router.add("POST", "/oauth2PermissionGrants", post_grant)
    one_grant = "/oauth2PermissionGrants/(?P<grant>[^/]+)"
    router.add("GET", one_grant, get_grant)
    router.add("PATCH", one_grant, patch_grant)
    router.add("DELETE", one_grant, delete_grant)
