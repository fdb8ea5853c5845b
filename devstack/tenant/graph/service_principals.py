"""/servicePrincipals: create from an application, read, list, update, delete, owners."""

from __future__ import annotations

import re
from typing import Any

from devstack.tenant.graph import authz
from devstack.tenant.graph.applications import owners_reply, page, strip_odata_annotations
from devstack.tenant.graph.errors import (
    GraphError,
    bad_request,
    conflict,
    forbidden,
    not_found,
    unknown_property,
)
from devstack.tenant.graph.http import Call, Reply, Router, require_guid
from devstack.tenant.graph.model import ServicePrincipal
from devstack.tenant.graph.odata import (
    parse_filter,
    parse_select,
    parse_top,
    reject_unknown_options,
    wants_count,
)
from devstack.tenant.graph.seeds import service_principal_props

SP_REF = r"/servicePrincipals(?:/(?P<id>[^/()]+)|\(appId='(?P<appid>[^']*)'\))"
SP_PROPERTIES = set(
    service_principal_props(
        "", "", "", owner_tenant="", names=[], app_roles=[], scopes=[], sign_in_audience=""
    )
)
WRITABLE = {
    "accountEnabled": bool,
    "appRoleAssignmentRequired": bool,
    "description": str,
    "notes": str,
    "tags": list,
    "notificationEmailAddresses": list,
    "preferredSingleSignOnMode": str,
    "homepage": str,
    "loginUrl": str,
    "logoutUrl": str,
    "replyUrls": list,
    "alternativeNames": list,
}
FILTER_FIELDS = {
    "id": "str",
    "appId": "str",
    "displayName": "str",
    "servicePrincipalType": "str",
    "appOwnerOrganizationId": "str",
    "accountEnabled": "bool",
    "servicePrincipalNames": "coll",
    "tags": "coll",
}


def no_backing_application(app_id: str) -> GraphError:
    message = f"The appId '{app_id}' of the service principal does not reference a valid application object."
    return GraphError(
        400,
        "Request_BadRequest",
        message,
        details=[{"code": "NoBackingApplicationObject", "message": message, "target": "appId"}],
    )


def find_sp(call: Call, match: re.Match[str]) -> ServicePrincipal:
    if match["id"] is not None:
        sp = call.directory.service_principals.get(require_guid(match["id"]))
        label = match["id"]
    else:
        sp = call.directory.service_principal_by_app_id(require_guid(match["appid"]))
        label = match["appid"]
    if sp is None or not call.visible(sp):
        raise not_found(label)
    return sp


def _writable(body: dict[str, Any], *, allow_app_id: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or (allow_app_id and name == "appId"):
            continue
        if name not in SP_PROPERTIES:
            raise unknown_property(name, "servicePrincipal")
        kind = WRITABLE.get(name)
        if kind is None:
            raise bad_request(f"Property '{name}' is read-only and cannot be set.")
        if value is not None and not isinstance(value, kind):
            raise bad_request(
                f"Invalid value specified for property '{name}' of resource 'ServicePrincipal'."
            )
        props[name] = strip_odata_annotations(value)
    return props


def post_service_principal(call: Call, match: re.Match[str]) -> Reply:
    body = call.json()
    app_id = body.get("appId")
    if not isinstance(app_id, str) or not app_id:
        raise bad_request("Property 'appId' is required.")
    require_guid(app_id)
    props = _writable(body, allow_app_id=True)
    authz.require_create(call.principal)
    app = call.directory.application_by_app_id(app_id)
    home_tenant = None
    if app is None:
        # A multi-tenant app of another tenant: provisioning it here (what admin consent does)
        # needs Application.ReadWrite.All, as its owners are in its home tenant, not here.
        found = call.directory.foreign_application(app_id, call.directory.tenant_id)
        if found is None:
            raise no_backing_application(app_id)
        if authz.APP_READWRITE_ALL not in call.principal.roles:
            raise forbidden()
        app, home_tenant = found
    elif not call.visible(app):
        raise no_backing_application(app_id)
    elif authz.APP_READWRITE_ALL not in call.principal.roles:
        authz.require_app_write(call.principal, app)
    if call.directory.service_principal_by_app_id(app_id) is not None:
        raise conflict(
            "Another object with the same value for property servicePrincipalNames already exists."
        )
    sp = call.directory.create_service_principal(
        app, owner_ids=[call.principal.service_principal_id], owner_tenant=home_tenant
    )
    if props:
        sp.props.update(props)
        sp.changed()
    return Reply.entity(201, call.context_url("servicePrincipals/$entity"), sp.to_json())


def list_service_principals(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    reject_unknown_options(call.query, expand_owners=True)
    select = parse_select(call.query.get("$select"), SP_PROPERTIES, "servicePrincipal")
    top = parse_top(call.query.get("$top"))
    count = wants_count(call.query, call.headers)
    flt = parse_filter(call.query.get("$filter"), FILTER_FIELDS, "servicePrincipal")
    candidates: Any = call.directory.service_principals.values()
    if flt is not None and flt.index is not None and flt.index[0] in ("appId", "id"):
        name, value = flt.index
        hit = (
            call.directory.service_principal_by_app_id(value)
            if name == "appId"
            else call.directory.service_principals.get(value.lower())
        )
        candidates = [hit] if hit is not None else []
    return page(
        call,
        "servicePrincipals",
        candidates,
        select,
        top=top,
        count=count,
        predicate=flt.predicate if flt else None,
    )


def get_service_principal(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    sp = find_sp(call, match)
    select = parse_select(call.query.get("$select"), SP_PROPERTIES, "servicePrincipal")
    context = (
        "servicePrincipals/$entity" if select is None else f"servicePrincipals({','.join(select)})/$entity"
    )
    return Reply.entity(200, call.context_url(context), sp.to_json(select))


def _backing_app(call: Call, sp: ServicePrincipal) -> Any:
    return call.directory.application_by_app_id(sp.app_id)


def patch_service_principal(call: Call, match: re.Match[str]) -> Reply:
    props = _writable(call.json(), allow_app_id=False)
    sp = find_sp(call, match)
    authz.require_sp_write(call.principal, sp, _backing_app(call, sp))
    sp.props.update(props)
    sp.changed()
    return Reply.empty(204)


def delete_service_principal(call: Call, match: re.Match[str]) -> Reply:
    sp = find_sp(call, match)
    authz.require_sp_write(call.principal, sp, _backing_app(call, sp))
    call.directory.delete_service_principal(sp)
    return Reply.empty(204)


def list_sp_owners(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    return owners_reply(call, find_sp(call, match).owners)


def register(router: Router) -> None:
    router.add("GET", "/servicePrincipals", list_service_principals)
    router.add("POST", "/servicePrincipals", post_service_principal)
    router.add("GET", SP_REF, get_service_principal)
    router.add("PATCH", SP_REF, patch_service_principal)
    router.add("DELETE", SP_REF, delete_service_principal)
    router.add("GET", SP_REF + "/owners", list_sp_owners)
