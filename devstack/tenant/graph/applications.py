"""/applications: create, read, list, update, upsert by uniqueName, delete, owners."""

from __future__ import annotations

import re
from typing import Any

from devstack.tenant.graph import authz
from devstack.tenant.graph.deleted_items import purge_expired
from devstack.tenant.graph.errors import GraphError, bad_request, conflict, not_found, unknown_property
from devstack.tenant.graph.http import Call, Reply, Router, list_reply, require_guid
from devstack.tenant.graph.model import Application, KeyCredential, ServicePrincipal
from devstack.tenant.graph.odata import (
    MAX_EXPANDED,
    decode_skiptoken,
    parse_filter,
    parse_select,
    parse_top,
    reject_unknown_options,
    wants_count,
    wants_owners,
)
from devstack.tenant.graph.shapes import application_defaults

APP_REF = r"/applications(?:/(?P<id>[^/()]+)|\((?P<key>appId|uniqueName)='(?P<value>[^']*)'\))"
READ_ONLY = {
    "id",
    "deletedDateTime",
    "appId",
    "createdDateTime",
    "publisherDomain",
    "disabledByMicrosoftStatus",
    "applicationTemplateId",
    "verifiedPublisher",
    "certification",
    "passwordCredentials",
}
APP_PROPERTIES = set(application_defaults())
SIGN_IN_AUDIENCES = {
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
}
MIRRORED = frozenset({"displayName", "identifierUris", "appRoles", "api"})
FILTER_FIELDS = {
    "id": "str",
    "appId": "str",
    "displayName": "str",
    "uniqueName": "str",
    "signInAudience": "str",
    "publisherDomain": "str",
    "serviceManagementReference": "str",
    "tags": "coll",
    "identifierUris": "coll",
}


def strip_odata_annotations(value: Any) -> Any:
    """Kiota models may carry "@odata.type"; Graph accepts and does not store them."""
    if isinstance(value, dict):
        return {k: strip_odata_annotations(v) for k, v in value.items() if not k.startswith("@odata.")}
    if isinstance(value, list):
        return [strip_odata_annotations(v) for v in value]
    return value


def _string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"Invalid value specified for property '{name}' of resource 'Application'.")
    return list(value)


STRING_PROPERTIES = ("displayName", "uniqueName", "description", "notes", "serviceManagementReference")


def _invalid(name: str) -> GraphError:
    return bad_request(f"Invalid value specified for property '{name}' of resource 'Application'.")


def _app_value(name: str, raw: Any, defaults: dict[str, Any]) -> Any:
    """One writable property, checked and normalised as Graph stores it."""
    value = strip_odata_annotations(raw)
    if name in STRING_PROPERTIES and value is not None and not isinstance(value, str):
        raise _invalid(name)
    if name == "signInAudience" and (not isinstance(value, str) or value not in SIGN_IN_AUDIENCES):
        raise _invalid(name)
    if name in ("tags", "identifierUris"):
        return _string_list(name, value)
    if name == "requiredResourceAccess":
        _check_required_resource_access(value)
    default = defaults.get(name)
    if isinstance(default, dict) and isinstance(value, dict):
        return {**default, **value}
    if default is not None and value is not None and type(default) is not type(value):
        raise _invalid(name)
    return value


def validate_app_body(body: dict[str, Any], *, creating: bool) -> tuple[dict[str, Any], list[Any] | None]:
    """Graph-writable properties of an application; keyCredentials are returned apart (they replace)."""
    props: dict[str, Any] = {}
    keys: list[Any] | None = None
    defaults = application_defaults()
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name not in APP_PROPERTIES:
            raise unknown_property(name, "application")
        if name in READ_ONLY:
            raise bad_request(f"Property '{name}' is read-only and cannot be set.")
        if name == "keyCredentials":
            if not isinstance(value, list):
                raise _invalid(name)
            keys = value
        else:
            props[name] = _app_value(name, value, defaults)
    if creating and not props.get("displayName"):
        raise bad_request("Property 'displayName' is required and must not be empty.")
    if "displayName" in props and not props["displayName"]:
        raise bad_request("Property 'displayName' must not be empty.")
    return props, keys


def _check_required_resource_access(value: Any) -> None:
    message = "Invalid value specified for property 'requiredResourceAccess' of resource 'Application'."
    if not isinstance(value, list):
        raise bad_request(message)
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("resourceAppId"), str):
            raise bad_request(message)
        for access in entry.get("resourceAccess") or []:
            if not isinstance(access, dict) or access.get("type") not in ("Role", "Scope"):
                raise bad_request(message)
            require_guid(str(access.get("id")))


def find_app(call: Call, match: re.Match[str]) -> Application:
    directory = call.directory
    if match["id"] is not None:
        app = directory.applications.get(require_guid(match["id"]))
        label = match["id"]
    elif match["key"] == "appId":
        app = directory.application_by_app_id(require_guid(match["value"]))
        label = match["value"]
    else:
        app = directory.application_by_unique_name(match["value"])
        label = match["value"]
    if app is None or not call.visible(app):
        raise not_found(label)
    return app


def app_select(call: Call) -> list[str] | None:
    return parse_select(call.query.get("$select"), APP_PROPERTIES, "application")


def app_json(app: Application, select: list[str] | None, *, with_keys: bool = False) -> str:
    overrides = None
    if with_keys and select and "keyCredentials" in select:  # key bytes only on an explicit $select
        import json

        keys = [k.to_graph(include_key=True) for k in app.key_credentials]
        overrides = {"keyCredentials": json.dumps(keys, separators=(",", ":"))}
    return app.to_json(select, overrides=overrides)


def apply_update(call: Call, app: Application, props: dict[str, Any], keys: list[Any] | None) -> None:
    from devstack.tenant.graph.app_policy import enforce_lifetime
    from devstack.tenant.graph.credentials import parse_key_credentials

    unique = props.get("uniqueName")
    current = app.props.get("uniqueName")
    if unique is not None and current is not None and unique.lower() != str(current).lower():
        raise bad_request("Property 'uniqueName' is immutable once set.")
    if unique is not None and current is None:
        purge_expired(call)
        if call.directory.unique_name_taken(unique):
            raise conflict("Another object with the same value for property uniqueName already exists.")
        call.directory.apps_by_unique_name[unique.lower()] = app
    new_keys: list[KeyCredential] | None = parse_key_credentials(keys, app) if keys is not None else None
    kept = {(k.key_id, k.der) for k in app.key_credentials}
    for key in new_keys or []:
        if (key.key_id, key.der) not in kept:  # the policy judges new certificates, not kept ones
            enforce_lifetime(call.directory.app_management_policy, app, "key", key.start, key.end)
    app.props.update(props)
    if new_keys is not None:
        app.key_credentials = new_keys
    app.credentials_changed()
    if MIRRORED.intersection(props):
        _mirror_on_service_principal(call, app)


def _mirror_on_service_principal(call: Call, app: Application) -> None:
    """Entra mirrors an app's name, identifier URIs, app roles and scopes on its service principal."""
    sp = call.directory.service_principal_by_app_id(app.app_id)
    if sp is None:
        return
    sp.props["displayName"] = sp.props["appDisplayName"] = app.display_name
    sp.props["appRoles"] = list(app.props.get("appRoles") or [])
    sp.props["oauth2PermissionScopes"] = list(
        (app.props.get("api") or {}).get("oauth2PermissionScopes") or []
    )
    call.directory.set_service_principal_names(sp, [app.app_id, *(app.props.get("identifierUris") or [])])
    sp.changed()


def create_app(call: Call, props: dict[str, Any], keys: list[Any] | None) -> Application:
    unique = props.get("uniqueName")
    if unique:
        purge_expired(call)
    if unique and call.directory.unique_name_taken(unique):
        raise conflict("Another object with the same value for property uniqueName already exists.")
    app = call.directory.create_application({}, owner_ids=[call.principal.service_principal_id])
    apply_update(call, app, props, keys)
    return app


def post_applications(call: Call, match: re.Match[str]) -> Reply:
    authz.require_create(call.principal)
    props, keys = validate_app_body(call.json(), creating=True)
    app = create_app(call, props, keys)
    return Reply.entity(201, call.context_url("applications/$entity"), app.to_json())


def list_applications(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    reject_unknown_options(call.query, expand_owners=True)
    select = app_select(call)
    top = parse_top(call.query.get("$top"))
    count = wants_count(call.query, call.headers)
    flt = parse_filter(call.query.get("$filter"), FILTER_FIELDS, "application")
    candidates: Any = call.directory.applications.values()
    if flt is not None and flt.index is not None:
        name, value = flt.index
        hit = {
            "appId": lambda: call.directory.application_by_app_id(value),
            "uniqueName": lambda: call.directory.application_by_unique_name(value),
            "id": lambda: call.directory.applications.get(value.lower()),
        }.get(name, lambda: None)()
        candidates = (
            [hit] if hit is not None else ([] if name in ("appId", "uniqueName", "id") else candidates)
        )
    return page(
        call,
        "applications",
        candidates,
        select,
        top=top,
        count=count,
        predicate=flt.predicate if flt else None,
    )


def page(
    call: Call,
    context: str,
    candidates: Any,
    select: list[str] | None,
    *,
    top: int,
    count: bool,
    predicate: Any,
) -> Reply:
    offset = decode_skiptoken(call.query.get("$skiptoken"))
    # Without $count, stop one past the page: enough to know whether a nextLink is due.
    wanted = None if count else offset + top + 1
    matched = []
    for candidate in candidates:
        if call.visible(candidate) and (predicate is None or predicate(candidate.props)):
            matched.append(candidate)
            if wanted is not None and len(matched) >= wanted:
                break
    expand = wants_owners(call.query)
    items = [
        _with_owners(call, o.to_json(select), o.owners) if expand else o.to_json(select)
        for o in matched[offset : offset + top]
    ]
    more = offset + top < len(matched)
    return list_reply(
        call,
        context if select is None else f"{context}({','.join(select)})",
        items,
        next_offset=offset + top if more else None,
        count=len(matched) if count else None,
    )


def _with_owners(call: Call, entity_json: str, owner_ids: list[str]) -> str:
    """$expand=owners: the owners (id and type; at most MAX_EXPANDED, as Graph expands) appended."""
    owners = [
        '{"@odata.type":"#microsoft.graph.servicePrincipal","id":"' + owner_id + '"}'
        for owner_id in owner_ids[:MAX_EXPANDED]
        if owner_id in call.directory.service_principals
    ]
    head = entity_json[:-1] + ("," if entity_json != "{}" else "")
    return head + '"owners":[' + ",".join(owners) + "]}"


def count_applications(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    if call.headers.get("ConsistencyLevel", "").lower() != "eventual":
        raise bad_request(
            "$count requires the ConsistencyLevel header set to 'eventual'.", code="Request_UnsupportedQuery"
        )
    total = sum(1 for a in call.directory.applications.values() if call.visible(a))
    return Reply(200, str(total), {"Content-Type": "text/plain;charset=utf-8"})


def get_application(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    app = find_app(call, match)
    select = app_select(call)
    context = "applications/$entity" if select is None else f"applications({','.join(select)})/$entity"
    return Reply.entity(200, call.context_url(context), app_json(app, select, with_keys=True))


def patch_application(call: Call, match: re.Match[str]) -> Reply:
    body = call.json()
    upsert = match["key"] == "uniqueName" and "create-if-missing" in call.headers.get("Prefer", "").lower()
    if upsert:
        existing = call.directory.application_by_unique_name(match["value"])
        props, keys = validate_app_body(body, creating=True)
        if existing is None:
            authz.require_create(call.principal)
            if str(props.get("uniqueName") or match["value"]).lower() != match["value"].lower():
                raise bad_request("Property 'uniqueName' in the body does not match the key in the URL.")
            props["uniqueName"] = match["value"]
            app = create_app(call, props, keys)
            return Reply.entity(201, call.context_url("applications/$entity"), app.to_json())
        authz.require_app_write(call.principal, existing)
        apply_update(call, existing, props, keys)
        return Reply.empty(204)
    app = find_app(call, match)
    props, keys = validate_app_body(body, creating=False)
    authz.require_app_write(call.principal, app)
    apply_update(call, app, props, keys)
    return Reply.empty(204)


def delete_application(call: Call, match: re.Match[str]) -> Reply:
    app = find_app(call, match)
    authz.require_app_write(call.principal, app)
    call.directory.delete_application(app)
    return Reply.empty(204)


def list_owners(call: Call, match: re.Match[str]) -> Reply:
    authz.require_read(call.principal)
    app = find_app(call, match)
    return owners_reply(call, app.owners)


def owners_reply(call: Call, owner_ids: list[str]) -> Reply:
    items = []
    for owner_id in owner_ids:
        sp = call.directory.service_principals.get(owner_id)
        if sp is not None:
            items.append(sp.to_json(["id", "appId", "displayName", "servicePrincipalType"], typed=True))
    return list_reply(call, "directoryObjects", items)


def owner_reference(call: Call) -> ServicePrincipal:
    """The directory object an owners/$ref body names. Owners of an application are users or
    service principals (this tenant holds no users): an unknown id is 404, an application 400."""
    reference = call.json().get("@odata.id")
    if not isinstance(reference, str) or "/" not in reference:
        raise bad_request("Invalid reference: '@odata.id' is required.", code="Request_BadRequest")
    owner_id = require_guid(reference.rstrip("/").rsplit("/", 1)[-1])
    owner = call.directory.service_principals.get(owner_id)
    if owner is not None and call.visible(owner):
        return owner
    other = call.directory.applications.get(owner_id)
    if other is not None and call.visible(other):
        raise bad_request(
            "Unsupported directory object class 'Application' in resource identifier for reference 'owners'."
        )
    raise not_found(owner_id)


def add_owner(call: Call, match: re.Match[str]) -> Reply:
    """POST owners/$ref. Graph documents that Application.ReadWrite.OwnedBy is not enough to add
    another owner, even on an app the caller owns: it takes Application.ReadWrite.All with
    Directory.Read.All, or Directory.ReadWrite.All (authz.require_owner_write)."""
    app = find_app(call, match)
    authz.require_owner_write(call.principal)
    owner = owner_reference(call)
    if owner.id in app.owners:
        raise bad_request(
            "One or more added object references already exist for the following modified properties: 'owners'."
        )
    app.owners.append(owner.id)
    return Reply.empty(204)


def remove_owner(call: Call, match: re.Match[str]) -> Reply:
    """DELETE owners/{id}/$ref: the 403 for a caller that may not change the app comes before the
    404 for an id that is not an owner. The last owner may go (an app may have none)."""
    app = find_app(call, match)
    owner_id = require_guid(match["owner"])
    authz.require_owner_removal(call.principal, app)
    if owner_id not in app.owners:
        raise not_found(owner_id)
    app.owners.remove(owner_id)
    return Reply.empty(204)


def register(router: Router) -> None:
    router.add("GET", "/applications", list_applications)
    router.add("POST", "/applications", post_applications)
    router.add("GET", r"/applications/\$count", count_applications)
    router.add("GET", APP_REF, get_application)
    router.add("PATCH", APP_REF, patch_application)
    router.add("DELETE", APP_REF, delete_application)
    router.add("GET", APP_REF + "/owners", list_owners)
    router.add("POST", APP_REF + r"/owners/\$ref", add_owner)
    router.add("DELETE", APP_REF + r"/owners/(?P<owner>[^/]+)/\$ref", remove_owner)
