"""Provisioning end to end: HTTP and queue in, through the local Functions host, against the local
tenant (Graph, Entra, Key Vault) and Azurite; the tenant's state is read back with msgraph-sdk as
the tenant's bootstrap identity, credentials are proven by acquiring tokens with them.

One module-scoped run submits every profile twice (HTTP and queue) at once, approves what policy
holds, and waits for all of them; the tests then assert on what that run produced.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.core.models import (
    EXCHANGE_ONLINE_APP_ID,
    GRAPH_APP_ID,
    SHAREPOINT_ONLINE_APP_ID,
    PermissionKind,
    PermissionRef,
)
from functions.core.permissions import canonical_resource, map_retired_resource
from functions.core.profiles import Profile
from functions.profiles import load_catalogue
from functions.resources import REGISTRATION_REQUESTS_QUEUE, TABLES
from tests.openapi_check import load_openapi, response_errors

pytestmark = pytest.mark.slow

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TERMINAL = {"active", "failed", "decommissioned"}
WAIT_S = 150.0
CUSTOM_PERMISSIONS = [
    {"resource": "Microsoft Graph", "type": "application", "name": "User.Read.All"},
    {"resource": "Office 365 SharePoint Online", "type": "application", "name": "Sites.Read.All"},
    {"resource": "Microsoft Graph", "type": "delegated", "name": "User.Read"},
]


def principal(*roles: str) -> str:
    claims = [{"typ": "roles", "val": r} for r in roles] + [
        {"typ": "name", "val": "e2e-approver@contoso.com"}
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


@pytest.fixture(scope="module")
def run(stack: dict[str, Any]) -> Iterator[Run]:
    catalogue = load_catalogue()
    tag = uuid.uuid4().hex[:6]
    submitted = [
        Submitted(p, channel, body_for(p, f"E2E-{tag}-{channel[0].upper()}-{p.id}"))
        for p in catalogue
        for channel in ("http", "queue")
    ]
    with httpx.Client(base_url=stack["hostUrl"], timeout=60) as api:
        result = Run(stack, api, submitted)

        def submit(s: Submitted) -> None:
            if s.channel == "http":
                response = result.call("POST", "/registrations", "/registrations", json=s.body)
                assert response.status_code == 202, response.text
                s.id = response.json()["id"]
            else:
                enqueue(stack, json.dumps(s.body))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(submit, submitted))
        wait_for(result, submitted, until=TERMINAL | {"pending_approval"})
        for s in submitted:
            if s.view["status"] == "pending_approval":
                approved = result.call(
                    "POST",
                    f"/registrations/{s.id}/approve",
                    "/registrations/{id}/approve",
                    headers={"X-MS-CLIENT-PRINCIPAL": principal("Registrar.Approver")},
                )
                assert approved.status_code == 200, approved.text
                s.view = {}
        wait_for(result, submitted, until=TERMINAL)
        for s in submitted:  # the final view, through GET by id
            s.view = result.call("GET", f"/registrations/{s.id}", "/registrations/{id}").json()
        yield result


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


@pytest.fixture(scope="module")
def tenant_view(run: Run) -> dict[str, Any]:
    active = [s.view for s in run.submitted if s.view["status"] == "active"]
    return asyncio.run(tenant_state(run.endpoints, active))


# ---------------------------------------------------------------- tests


def test_every_profile_ends_active_by_http_and_by_queue(run: Run) -> None:
    not_active = {
        f"{s.channel}:{s.profile.id}": (s.view["status"], s.view.get("lastError"))
        for s in run.submitted
        if s.view["status"] != "active"
    }
    assert not_active == {}
    assert {s.profile.id for s in run.submitted} == {p.id for p in load_catalogue()}


def test_the_tenant_holds_exactly_each_profiles_permissions(run: Run, tenant_view: dict[str, Any]) -> None:
    resources = tenant_view["resources"]
    for s in run.submitted:
        state = tenant_view["apps"][s.id]
        wanted_rra, wanted_roles, wanted_scopes = set(), set(), {}
        for app_id, kind, name in expected_permissions(s):
            sp = resources[app_id]
            if kind == "application":
                role = next(r for r in sp.app_roles if r.value == name)
                wanted_rra.add((app_id, low(role.id), "Role"))
                wanted_roles.add((low(sp.id), low(role.id)))
            else:
                scope = next(x for x in sp.oauth2_permission_scopes if x.value == name)
                wanted_rra.add((app_id, low(scope.id), "Scope"))
                wanted_scopes.setdefault(low(sp.id), set()).add(name)
        label = f"{s.channel}:{s.profile.id}"
        assert (state["object_id"], state["unique_name"], state["sp_id"]) == (
            s.view["objectId"].lower(),
            f"registrar-{s.id}",
            s.view["servicePrincipalId"].lower(),
        ), label
        assert state["rra"] == wanted_rra, label
        assert state["assignments"] == wanted_roles, label
        assert {r: scopes for r, _, scopes in state["grants"]} == wanted_scopes, label
        assert all(kind == "AllPrincipals" for _, kind, _ in state["grants"]), label
        assert len(state["grants"]) == len(wanted_scopes), label


def test_each_app_has_exactly_one_credential_and_it_is_the_one_in_key_vault(
    run: Run, tenant_view: dict[str, Any]
) -> None:
    from azure.identity import CertificateCredential, ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    ep = run.endpoints
    common = {"authority": ep["authority"], "disable_instance_discovery": True}
    vault = SecretClient(
        ep["vaultUrl"],
        ClientSecretCredential(ep["tenantId"], ep["clientId"], ep["clientSecret"], **common),
        verify_challenge_resource=False,
    )
    for s in run.submitted:
        credential = s.view["credential"]
        assert tenant_view["apps"][s.id]["credentials"] == [credential["keyId"].lower()], s.profile.id
        secret = vault.get_secret(s.id)
        assert secret.properties.version == credential["secretUri"].rstrip("/").rsplit("/", 1)[-1]
        if credential["type"] == "secret":
            assert secret.properties.tags["keyId"] == credential["keyId"]
            proof: Any = ClientSecretCredential(ep["tenantId"], s.view["appId"], secret.value, **common)
        else:
            assert credential["type"] == "certificate" and credential["thumbprint"]
            # The certificate's backing secret: PEM text, or base64 PFX (application/x-pkcs12).
            pem = (secret.properties.content_type or "").endswith("pem-file")
            data = secret.value.encode() if pem else base64.b64decode(secret.value)
            proof = CertificateCredential(ep["tenantId"], s.view["appId"], certificate_data=data, **common)
        assert proof.get_token(GRAPH_SCOPE).token


BAD_INPUTS: dict[str, tuple[Any, dict[str, str], int]] = {
    "missing fields": ({"displayName": "{name}"}, {}, 400),
    "unknown profile": (
        {"requestId": "{id}", "profile": "codetwo-bakup-exchange", "displayName": "{name}"},
        {},
        400,
    ),
    "misspelt permission": (
        {
            "requestId": "{id}",
            "profile": "custom",
            "displayName": "{name}",
            "permissions": [
                {"resource": "Microsoft Graph", "type": "application", "name": "Groups.Read.All"}
            ],
        },
        {},
        400,
    ),
    "http redirect uri": (
        {
            "requestId": "{id}",
            "profile": "openfn-msgraph",
            "displayName": "{name}",
            "options": {"redirectUris": {"web": ["http://connector.example.com/callback"]}},
        },
        {},
        400,
    ),
    "lifetime over max": (
        {
            "requestId": "{id}",
            "profile": "m365-usage-connector",
            "displayName": "{name}",
            "credential": {"type": "secret", "lifetime": "P3000D"},
        },
        {},
        400,
    ),
    "wrong types": (
        {"requestId": 42, "profile": ["custom"], "displayName": "{name}", "options": "x"},
        {},
        400,
    ),
    "oversize body": (
        {"requestId": "{id}", "profile": "custom", "displayName": "{name}", "notes": "x" * 70_000},
        {},
        413,
    ),
    "non-json": ("requestId={id}&displayName={name}", {"content-type": "text/plain"}, 415),
    "broken json": ('{"requestId": "{id}", "displayName": "{name}"', {}, 400),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_4xx_problem_and_creates_nothing(run: Run, case: str) -> None:
    template, headers, status = BAD_INPUTS[case]
    name = f"e2e-bad-{uuid.uuid4().hex[:10]}"
    text = (
        (template if isinstance(template, str) else json.dumps(template))
        .replace("{id}", name)
        .replace("{name}", name)
    )
    response = run.call(
        "POST",
        "/registrations",
        "/registrations",
        content=text.encode(),
        headers={"content-type": "application/json", **headers},
    )
    assert response.status_code in (status, 422) if status == 400 else response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == response.status_code and problem["problems"], problem
    assert all(p["field"] is not None and p["reason"] for p in problem["problems"])

    async def apps_named() -> int:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder

        client = graph_client(run.endpoints)
        query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"displayName eq '{name}'"
        )
        found = await client.applications.get(RequestConfiguration(query_parameters=query))
        await close_client(client)
        return len(found.value or [])

    assert asyncio.run(apps_named()) == 0


def test_five_concurrent_duplicates_give_one_registration_and_one_app(run: Run) -> None:
    profile = load_catalogue().get("m365-usage-connector")
    assert profile is not None
    tag = uuid.uuid4().hex[:8]
    body = {**body_for(profile, f"E2E-DUP-{tag}"), "displayName": f"e2e duplicate {tag}"}
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(
            pool.map(lambda _: run.call("POST", "/registrations", "/registrations", json=body), range(5))
        )
    for _ in range(5):  # and the same request 5 times on the queue, as a ticketing system might
        enqueue(run.endpoints, json.dumps(body))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    dup = Submitted(profile, "http", body, id=ids.pop())
    wait_for(run, [dup], until=TERMINAL)
    assert dup.view["status"] == "active"
    time.sleep(2)  # let the queued duplicates drain through the worker

    async def apps_named() -> list[str]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder

        client = graph_client(run.endpoints)
        query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"displayName eq '{body['displayName']}'"
        )
        found = await client.applications.get(RequestConfiguration(query_parameters=query))
        await close_client(client)
        return [low(a.app_id) for a in found.value or []]

    assert asyncio.run(apps_named()) == [dup.view["appId"].lower()]
    assert [r["id"] for r in list_all(run) if r["requestId"] == body["requestId"]] == [dup.id]


def test_real_responses_match_the_openapi_document(run: Run) -> None:
    document = load_openapi()
    served = run.call("GET", "/openapi.json", "/openapi.json").json()
    assert served["openapi"] == document["openapi"] and served["paths"].keys() == document["paths"].keys()
    run.call("GET", "/profiles", "/profiles")
    run.call("GET", "/profiles/codetwo-backup-sharepoint", "/profiles/{id}")
    run.call("GET", "/profiles/nope", "/profiles/{id}")
    run.call("GET", "/registrations/reg-nope", "/registrations/{id}")
    checked = 0
    for template, method, response in run.responses:
        if template == "/openapi.json":
            continue
        content_type = response.headers.get("content-type", "")
        found = response_errors(
            document, template, method, response.status_code, response.json(), content_type=content_type
        )
        assert found == [], (method, template, response.status_code, found[:5])
        checked += 1
    assert checked > 40


def test_no_issued_secret_appears_in_logs_tables_responses_or_queues(run: Run, stack_log: Path) -> None:
    from azure.data.tables import TableServiceClient
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    ep = run.endpoints
    vault = SecretClient(
        ep["vaultUrl"],
        ClientSecretCredential(
            ep["tenantId"],
            ep["clientId"],
            ep["clientSecret"],
            authority=ep["authority"],
            disable_instance_discovery=True,
        ),
        verify_challenge_resource=False,
    )
    issued = [vault.get_secret(s.id).value for s in run.submitted if s.view["credential"]["type"] == "secret"]
    issued = [v for v in issued if v]
    assert len(issued) >= 10
    haystacks = {"host log": stack_log.read_text(encoding="utf-8", errors="replace")}
    haystacks["responses"] = "\n".join(r.text for _, _, r in run.responses)
    tables = TableServiceClient.from_connection_string(ep["storageConnectionString"])
    existing = {t.name for t in tables.list_tables()}
    haystacks["tables"] = "\n".join(
        json.dumps(dict(e), default=str)
        for name in TABLES
        if name in existing
        for e in tables.get_table_client(name).list_entities()
    )
    messages = []
    for name in (REGISTRATION_REQUESTS_QUEUE, f"{REGISTRATION_REQUESTS_QUEUE}-poison"):
        try:
            messages += [m.content for m in queue_client(ep, name).peek_messages(max_messages=32)]
        except Exception:  # noqa: S112  (a queue nobody created holds no message)
            continue
    haystacks["queues"] = "\n".join(messages)
    assert "registrar-reg-" in haystacks["host log"] or len(haystacks["host log"]) > 0
    for where, text in haystacks.items():
        leaked = [v[:3] + "..." for v in issued if v in text]
        assert leaked == [], f"issued secrets found in {where}"
