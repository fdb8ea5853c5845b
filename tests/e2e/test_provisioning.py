"""Provisioning end to end: HTTP and queue in, through the local Functions host, against the local
tenant (Graph, Entra, Key Vault) and Azurite; the tenant's state is read back with msgraph-sdk as
the tenant's bootstrap identity, credentials are proven by acquiring tokens with them.

One module-scoped run submits every profile twice (HTTP and queue) at once, approves what policy
holds, and waits for all of them; the tests then assert on what that run produced.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.profiles import load_catalogue
from functions.resources import REGISTRATION_REQUESTS_QUEUE, TABLES
from tests.e2e.provisioning_support import (
    GRAPH_SCOPE,
    TERMINAL,
    Run,
    Submitted,
    body_for,
    close_client,
    enqueue,
    expected_permissions,
    graph_client,
    list_all,
    low,
    principal,
    queue_client,
    tenant_state,
    wait_for,
)
from tests.openapi_check import load_openapi, response_errors

pytestmark = pytest.mark.slow


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
