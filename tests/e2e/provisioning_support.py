"""Helpers of tests/e2e/test_provisioning.py: submitting through the host, waiting, and reading
the tenant back with msgraph-sdk as the tenant's bootstrap identity."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from functions.core.catalogue.permissions import canonical_resource, map_retired_resource
from functions.core.catalogue.profiles import Profile
from functions.core.record.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    SHAREPOINT_ONLINE_APP_ID,
    PermissionKind,
    PermissionRef,
)
from functions.resources import REGISTRATION_REQUESTS_QUEUE

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TERMINAL = {"active", "failed", "decommissioned"}
WAIT_S = 150.0
CUSTOM_PERMISSIONS = [
    {"resource": "Microsoft Graph", "type": "application", "name": "User.Read.All"},
    {"resource": "Office 365 SharePoint Online", "type": "application", "name": "Sites.Read.All"},
    {"resource": "Microsoft Graph", "type": "delegated", "name": "User.Read"},
]


E2E_APPROVER_OID = "0e2e0000-0000-4000-8000-0000000a9901"  # Registrar refuses principals without an oid


def principal(*roles: str) -> str:
    claims = [{"typ": "roles", "val": r} for r in roles] + [
        {"typ": "name", "val": "e2e-approver@contoso.com"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": E2E_APPROVER_OID},
    ]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


@dataclass
class Submitted:
    profile: Profile
    channel: str  # "http" | "queue"
    body: dict[str, Any]
    id: str | None = None
    view: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    endpoints: dict[str, Any]
    api: httpx.Client
    submitted: list[Submitted]
    responses: list[tuple[str, str, httpx.Response]] = field(default_factory=list)  # (path, method, response)

    def call(self, method: str, path: str, template: str, **kwargs: Any) -> httpx.Response:
        response = self.api.request(method, f"/api{path}", **kwargs)
        self.responses.append((template, method, response))
        return response


def body_for(profile: Profile, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": request_id,
        "profile": profile.id,
        "displayName": f"e2e {profile.id}",
        "requestedBy": "e2e@contoso.com",
    }
    if profile.custom:
        body["permissions"] = CUSTOM_PERMISSIONS
    return body


def queue_client(endpoints: dict[str, Any], name: str = REGISTRATION_REQUESTS_QUEUE) -> Any:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    return QueueClient.from_connection_string(
        endpoints["storageConnectionString"],
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def enqueue(endpoints: dict[str, Any], text: str) -> None:
    from azure.core.exceptions import ResourceExistsError

    client = queue_client(endpoints)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.send_message(text)


def list_all(run: Run) -> list[dict[str, Any]]:
    """Every registration, page by page (the session's stack is shared with other tests)."""
    items: list[dict[str, Any]] = []
    params = {"limit": "100"}
    while True:
        page = run.call("GET", "/registrations", "/registrations", params=params).json()
        items += page["items"]
        if not page["continuation"]:
            return items
        params = {"limit": "100", "continuation": page["continuation"]}


def wait_for(run: Run, items: list[Submitted], *, until: set[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        pending = [s for s in items if s.view.get("status") not in until]
        if not pending:
            return
        if time.monotonic() > deadline:
            states = {f"{s.channel}:{s.profile.id}": s.view.get("status") for s in pending}
            raise AssertionError(f"registrations did not settle in {WAIT_S:.0f} s: {states}")
        by_request = {r["requestId"]: r for r in list_all(run)}
        for s in pending:
            found = by_request.get(s.body["requestId"])
            if found is not None:
                s.id, s.view = found["id"], found
        time.sleep(0.5)


# ---------------------------------------------------------------- the tenant, read back


def low(value: Any) -> str:
    """msgraph-sdk gives ids as UUID objects: compare them as lower-case text."""
    return str(value).lower()


def graph_client(endpoints: dict[str, Any]) -> Any:
    from azure.identity.aio import ClientSecretCredential
    from msgraph import GraphServiceClient

    credential = ClientSecretCredential(
        endpoints["tenantId"],
        endpoints["clientId"],
        endpoints["clientSecret"],
        authority=endpoints["authority"],
        disable_instance_discovery=True,
    )
    client = GraphServiceClient(credential, scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = endpoints["graphUrl"]
    client.registrar_test_credential = credential  # closed by close_client
    return client


async def close_client(client: Any) -> None:
    await client.request_adapter._http_client.aclose()
    await client.registrar_test_credential.close()


def expected_permissions(s: Submitted) -> set[tuple[str, str, str]]:
    """(resource appId, kind, name) the profile asks for, as a person reads the profile file."""
    if s.profile.custom:
        refs = [(p["resource"], PermissionKind(p["type"]), p["name"]) for p in CUSTOM_PERMISSIONS]
    else:
        refs = [(r.resource, r.kind, r.name) for r in s.profile.permission_refs({})]
    expected = set()
    for resource, kind, name in refs:
        mapped, _ = map_retired_resource(PermissionRef(resource, kind, name))
        expected.add((canonical_resource(mapped.resource), mapped.kind.value, mapped.name))
    return expected


def by_key(client: Any, builder: Any, key: str) -> Any:
    """An alternate-key request builder with its own path parameters. msgraph-sdk's
    client.applications_with_app_id(x) writes x into the client's SHARED path_parameters dict, so
    concurrent lookups on one client can read each other's key."""
    return builder(client.request_adapter, dict(client.path_parameters), key)


async def tenant_state(endpoints: dict[str, Any], views: list[dict[str, Any]]) -> dict[str, Any]:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
        ApplicationsWithAppIdRequestBuilder,
    )
    from msgraph.generated.oauth2_permission_grants.oauth2_permission_grants_request_builder import (
        Oauth2PermissionGrantsRequestBuilder,
    )
    from msgraph.generated.service_principals_with_app_id.service_principals_with_app_id_request_builder import (
        ServicePrincipalsWithAppIdRequestBuilder,
    )

    client = graph_client(endpoints)
    resources: dict[str, Any] = {}

    async def resource(app_id: str) -> Any:
        if app_id not in resources:
            resources[app_id] = await by_key(client, ServicePrincipalsWithAppIdRequestBuilder, app_id).get()
        return resources[app_id]

    async def one(view: dict[str, Any]) -> dict[str, Any]:
        app = await by_key(client, ApplicationsWithAppIdRequestBuilder, view["appId"]).get()
        sp = await by_key(client, ServicePrincipalsWithAppIdRequestBuilder, view["appId"]).get()
        assignments = await client.service_principals.by_service_principal_id(
            sp.id
        ).app_role_assignments.get()
        query = Oauth2PermissionGrantsRequestBuilder.Oauth2PermissionGrantsRequestBuilderGetQueryParameters(
            filter=f"clientId eq '{sp.id}'"
        )
        grants = await client.oauth2_permission_grants.get(RequestConfiguration(query_parameters=query))
        return {
            "rra": {
                (low(r.resource_app_id), low(a.id), a.type)
                for r in app.required_resource_access or []
                for a in r.resource_access or []
            },
            "assignments": {(low(a.resource_id), low(a.app_role_id)) for a in assignments.value or []},
            "grants": [
                (low(g.resource_id), g.consent_type, set((g.scope or "").split())) for g in grants.value
            ],
            "credentials": [low(c.key_id) for c in app.password_credentials or []]
            + [low(c.key_id) for c in app.key_credentials or []],
            "sign_in_audience": app.sign_in_audience,
            "object_id": low(app.id),
            "unique_name": app.unique_name,
            "sp_id": low(sp.id),
        }

    states = await asyncio.gather(*(one(v) for v in views))
    for app_id in (GRAPH_APP_ID, EXCHANGE_ONLINE_APP_ID, SHAREPOINT_ONLINE_APP_ID):
        await resource(app_id)
    await close_client(client)
    return {"apps": dict(zip([v["id"] for v in views], states, strict=True)), "resources": resources}
