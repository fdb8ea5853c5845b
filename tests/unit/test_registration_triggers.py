"""The HTTP and queue triggers over in-memory fakes: status codes, problem+json, the queue message
schema, roles, and that no secret value appears in a response, a message or a record.

(tests/e2e runs the same paths through the local Functions host against the real adapters.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from functions import bootstrap
from functions.core.catalogue.policy import Policy
from functions.core.escalation.at_risk import EscalationSettings
from functions.core.notification.signing_secrets import CachedSecrets
from functions.core.record.models import RegistrationStatus
from functions.core.rotation.rotator import RotationSettings
from functions.profiles import load_catalogue
from functions.resources import REGISTRATION_REQUESTS_QUEUE
from functions.settings import Settings
from functions.triggers import http_registrations as api
from functions.triggers.queue_messages import UnreadableMessage
from functions.triggers.queue_registrations import registration_worker
from tests.openapi_check import load_openapi, response_errors
from tests.unit.fakes import FakeDeadLetters, FakeHealthMarks, FakeInFlightIndex, FakeQueue, FakeWatchlist
from tests.unit.inventory_fakes import FakeInventoryStore
from tests.unit.provisioning_world import TENANT, World

BASE = "https://registrar.example.com/api"


class FakeExpiryIndex:
    def __init__(self) -> None:
        self.jobs: dict[str, Any] = {}

    async def put(self, job: Any) -> None:
        self.jobs[job.job_id] = job

    async def remove(self, job: Any) -> None:
        self.jobs.pop(job.job_id, None)

    async def due(self, now: Any, *, limit: int | None = None) -> list[Any]:
        return [j for j in self.jobs.values() if j.due <= now][:limit]


class FakeServices:
    requests_queue = REGISTRATION_REQUESTS_QUEUE
    owner = "worker"

    def __init__(self, world: World) -> None:
        self.world = world
        self.settings = Settings.from_env(
            {"REGISTRAR_HOME_TENANT_ID": TENANT, "REGISTRAR_ENVIRONMENT": "test"}
        )
        self.clock = world.clock
        self.catalogue = load_catalogue()
        self.policy = Policy(allowed_tenants=frozenset({TENANT}))
        self.directory = world.directory
        self.vault = world.vault
        self.store = world.store
        self.probe = world.probe
        self.queue = FakeQueue()
        self.index = FakeExpiryIndex()
        self.in_flight = FakeInFlightIndex()
        self.rotation_settings = RotationSettings()
        self.signing_secrets = CachedSecrets(world.vault)
        self.deliveries = FakeDeadLetters()
        self.health_marks = FakeHealthMarks()
        self.watchlist = FakeWatchlist()
        self.escalation_settings = EscalationSettings()
        self.inventory_store = FakeInventoryStore()  # an adoption marks its app managed here

    def job_owner(self) -> str:
        return f"{self.owner}-{uuid.uuid4().hex[:8]}"

    async def ready(self) -> FakeServices:
        return self

    def provisioner(self) -> Any:
        return self.world.provisioner(owner="worker", in_flight=self.in_flight)

    def lifecycle(self) -> Any:
        return self.world.lifecycle(in_flight=self.in_flight)

    settle = bootstrap.Services.settle  # the real wiring, over these fakes
    tell_inventory = bootstrap.Services.tell_inventory
    ownership_check = bootstrap.Services.ownership_check
    adoption_permissions = bootstrap.Services.adoption_permissions
    takeover = bootstrap.Services.takeover
    job_ports = bootstrap.Services.job_ports  # what the takeover works with, over these fakes
    tenant_jobs = bootstrap.Services.tenant_jobs  # one per process, as the host has: its admission
    lifetimes = None  # the takeover's end dates: the defaults

    @property
    def app_claims(self) -> Any:
        return self.world.claims

    escalation = bootstrap.Services.escalation
    proof_of_use = bootstrap.Services.proof_of_use

    def prompt_deliveries(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()  # announcements go to the queue (tests/unit/test_prompt_delivery.py)


def http(
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> func.HttpRequest:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return func.HttpRequest(
        method=method,
        url=f"{BASE}/{path}",
        headers={"content-type": "application/json", **(headers or {})},
        params=params or {},
        route_params=route or {},
        body=data,
    )


ALICE_OID = "2f1d6c8e-5a4b-4c3d-9e8f-7a6b5c4d3e2f"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def principal(*roles: str, oid: str | None = ALICE_OID) -> dict[str, str]:
    claims = [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": "alice@contoso.com"}]
    if oid is not None:
        claims.append({"typ": OID_CLAIM, "val": oid})
    encoded = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    return {"X-MS-CLIENT-PRINCIPAL": encoded}


def request_body(request_id: str = "INC0012345", **extra: Any) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "profile": "codetwo-migration-source",
        "displayName": "CodeTwo migration (source)",
        "credential": {"type": "secret", "lifetime": "P90D"},
        "webhooks": [{"url": "https://connector.example.com/hooks/registrar"}],
        **extra,
    }


async def deliver(text: str, dequeue_count: int = 1) -> None:
    await registration_worker(QueueMessage(id="m1", body=text.encode(), dequeue_count=dequeue_count))


def as_json(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


async def test_post_accepts_enqueues_an_envelope_and_the_worker_makes_it_active(svc: FakeServices) -> None:
    response = await api.create_registration(http("POST", "registrations", request_body()))
    assert response.status_code == 202, response.get_body()
    body = as_json(response)
    assert body["status"] == "accepted"
    assert body["statusUrl"] == f"{BASE}/registrations/{body['id']}"
    assert response.headers["Location"] == body["statusUrl"]
    (hook,) = body["webhooks"]
    assert hook["secret"].startswith("whsec_") and hook["url"].endswith("/hooks/registrar")
    assert svc.queue.sent == [(REGISTRATION_REQUESTS_QUEUE, json.dumps({"registrationId": body["id"]}))]

    await deliver(svc.queue.sent[0][1])
    status = await api.get_registration(http("GET", f"registrations/{body['id']}", route={"id": body["id"]}))
    view = as_json(status)
    assert view["status"] == "active"
    assert view["appId"] and view["objectId"] and view["servicePrincipalId"]
    assert view["credential"]["type"] == "secret" and view["credential"]["secretUri"].startswith("https://")
    assert {p["name"] for p in view["permissions"]} >= {"full_access_as_app"}
    assert [(w["id"], w["url"]) for w in view["webhooks"]] == [(hook["id"], hook["url"])]
    issued = [v[3] for app in svc.directory.apps.values() for v in app.passwords.values()]
    for text in (status.get_body().decode(), response.get_body().decode(), json.dumps(svc.queue.sent)):
        assert all(value not in text for value in issued)
    assert hook["secret"] not in status.get_body().decode()
    assert hook["secret"] not in json.dumps(svc.store.documents)


async def test_the_same_request_is_200_with_the_same_id_and_a_changed_body_is_409(svc: FakeServices) -> None:
    first = as_json(await api.create_registration(http("POST", "registrations", request_body())))
    again = await api.create_registration(http("POST", "registrations", request_body()))
    assert again.status_code == 200 and as_json(again)["id"] == first["id"]
    assert as_json(again)["webhooks"][0]["secret"] is None  # shown once only
    changed = await api.create_registration(
        http("POST", "registrations", request_body(displayName="Another name"))
    )
    assert changed.status_code == 409 and changed.mimetype == "application/problem+json"
    # The repeat (still `accepted`) sent the envelope again; the 409 sent nothing.
    assert svc.queue.sent == [(REGISTRATION_REQUESTS_QUEUE, json.dumps({"registrationId": first["id"]}))] * 2


@pytest.mark.parametrize(
    ("raw", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b"[]", {}, 400),
        (json.dumps(request_body(notes="x" * 70_000)).encode(), {}, 413),
        (b"requestId=1", {"content-type": "application/x-www-form-urlencoded"}, 415),
    ],
    ids=["non-json", "array", "oversize", "form"],
)
async def test_unreadable_bodies_are_problem_json(
    svc: FakeServices, raw: bytes, headers: dict, status: int
) -> None:
    response = await api.create_registration(http("POST", "registrations", raw=raw, headers=headers))
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = as_json(response)
    assert problem["status"] == status and problem["title"] and "problems" in problem
    assert svc.store.documents == {} and svc.queue.sent == []


async def test_every_problem_of_a_bad_request_is_listed(svc: FakeServices) -> None:
    body = {
        "requestId": 12,
        "profile": "codetwo-migraton-source",
        "credential": {"type": "secret", "lifetime": "P5000D"},
    }
    response = await api.create_registration(http("POST", "registrations", body))
    assert response.status_code in (400, 422)
    fields = {p["field"] for p in as_json(response)["problems"]}
    assert {"requestId", "profile"} <= fields
    profile_problem = next(p for p in as_json(response)["problems"] if p["field"] == "profile")
    assert "codetwo-migration-source" in (profile_problem["suggestion"] or "")
    assert svc.directory.apps == {} and svc.queue.sent == []


async def test_a_queued_request_json_is_accepted_and_provisioned(svc: FakeServices) -> None:
    await deliver(json.dumps(request_body("CHG0001")))
    page = svc.store.documents
    (doc, _), *_ = page.values()
    assert doc["status"] == "active" and doc["requestId"] == "CHG0001"
    await deliver(json.dumps(request_body("CHG0001")))  # redelivery: same registration, one app
    assert len(svc.store.documents) == 1 and len(svc.directory.apps) == 1


async def test_a_queued_request_that_fails_validation_becomes_a_failed_registration(
    svc: FakeServices,
) -> None:
    await deliver(json.dumps({"requestId": "CHG0002", "profile": "no-such-profile"}))
    (doc, _), *_ = svc.store.documents.values()
    assert doc["status"] == "failed"
    assert doc["lastError"]["kind"] == "validation"
    assert any(p["field"] == "profile" for p in doc["lastError"]["problems"])
    assert svc.directory.apps == {}


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        "[1, 2]",
        '"a string"',
        '{"requestId": "CHG1", "requestId": "CHG2", "profile": "codetwo-backup-exchange"}',
        '{"requestId": "CHG3", "notes": ' + "[" * 200 + "]" * 200 + "}",
    ],
    ids=["not-json", "array", "string", "repeated-requestId", "too-deep"],
)
async def test_an_unreadable_queue_message_raises_for_the_poison_queue(svc: FakeServices, text: str) -> None:
    with pytest.raises(UnreadableMessage):
        await deliver(text)
    assert svc.store.documents == {}


async def test_approval_needs_the_approver_role_and_enqueues_the_registration(svc: FakeServices) -> None:
    body = request_body("INC-T0", profile="codetwo-migration-target", options={"createMailboxes": True})
    created = as_json(await api.create_registration(http("POST", "registrations", body)))
    await deliver(svc.queue.sent[-1][1])
    held = await svc.store.get(created["id"])
    assert held.status is RegistrationStatus.PENDING_APPROVAL and svc.directory.apps == {}

    route = {"id": created["id"]}
    denied = await api.approve_registration(http("POST", "approve", route=route))
    assert denied.status_code == 403 and denied.mimetype == "application/problem+json"
    wrong = await api.approve_registration(
        http("POST", "approve", route=route, headers=principal("Registrar.Admin"))
    )
    assert wrong.status_code == 403
    approved = await api.approve_registration(
        http("POST", "approve", route=route, headers=principal("Registrar.Approver"))
    )
    assert approved.status_code == 200
    assert as_json(approved)["approval"]["approvedBy"] == f"alice@contoso.com ({ALICE_OID})"
    await deliver(svc.queue.sent[-1][1])
    assert (await svc.store.get(created["id"])).status is RegistrationStatus.ACTIVE


async def test_delete_needs_the_admin_role_and_decommissions(svc: FakeServices) -> None:
    created = as_json(await api.create_registration(http("POST", "registrations", request_body())))
    await deliver(svc.queue.sent[-1][1])
    route = {"id": created["id"]}
    assert (await api.decommission_registration(http("DELETE", "x", route=route))).status_code == 403
    gone = await api.decommission_registration(
        http("DELETE", "x", route=route, headers=principal("Registrar.Admin"))
    )
    assert gone.status_code == 200 and as_json(gone)["status"] == "decommissioned"
    assert svc.directory.apps == {}
    missing = await api.get_registration(http("GET", "x", route={"id": "reg-nope"}))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


async def test_list_filters_and_pages(svc: FakeServices) -> None:
    for n in range(3):
        await api.create_registration(http("POST", "registrations", request_body(f"INC-L{n}")))
    first = as_json(await api.list_registrations(http("GET", "registrations", params={"limit": "2"})))
    assert len(first["items"]) == 2 and first["continuation"]
    rest = as_json(
        await api.list_registrations(
            http("GET", "registrations", params={"limit": "2", "continuation": first["continuation"]})
        )
    )
    assert len(rest["items"]) == 1 and rest["continuation"] is None
    none = as_json(await api.list_registrations(http("GET", "registrations", params={"status": "active"})))
    assert none["items"] == []
    bad = await api.list_registrations(http("GET", "registrations", params={"status": "nope", "limit": "0"}))
    assert bad.status_code == 400 and {p["field"] for p in as_json(bad)["problems"]} == {"status", "limit"}


async def test_profiles_are_listed_and_described(svc: FakeServices) -> None:
    listed = as_json(await api.list_profiles(http("GET", "profiles")))
    ids = {p["id"] for p in listed["items"]}
    assert {"codetwo-migration-target", "openfn-msgraph", "cloudelements-office365", "custom"} <= ids
    one = as_json(await api.get_profile(http("GET", "p", route={"id": "codetwo-backup-sharepoint"})))
    assert one["credentialTypes"] == ["certificate"] and one["permissions"]
    missing = await api.get_profile(http("GET", "p", route={"id": "codetwo-backup-sharepont"}))
    assert missing.status_code == 404
    assert "codetwo-backup-sharepoint" in as_json(missing)["problems"][0]["suggestion"]


def served_routes() -> set[tuple[str, str]]:
    """(path, method) of every HTTP route the trigger blueprints register, as function_app serves them."""
    import importlib
    import pkgutil

    from functions import triggers

    app = func.FunctionApp()
    for module_info in pkgutil.iter_modules(triggers.__path__):
        module = importlib.import_module(f"functions.triggers.{module_info.name}")
        blueprint = getattr(module, "bp", None)
        if isinstance(blueprint, func.Blueprint):
            app.register_functions(blueprint)
    routes = set()
    for function in app.get_functions():
        for binding in json.loads(function.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                routes |= {("/" + binding["route"], m.lower()) for m in binding["methods"]}
    return routes


def test_every_served_route_is_in_the_openapi_document() -> None:
    paths = load_openapi()["paths"]
    routes = served_routes()
    assert {("/registrations/{id}/rotate", "post"), ("/credentials", "get")} <= routes
    missing = sorted(r for r in routes if r[1] not in paths.get(r[0], {}))
    assert missing == []
    documented = {(path, method) for path, item in paths.items() for method in item}
    assert documented - routes == set()  # nothing documented that is not served


async def test_responses_match_the_openapi_document(svc: FakeServices) -> None:
    document = load_openapi()
    served = await api.openapi_document(http("GET", "openapi.json"))
    assert as_json(served)["openapi"].startswith("3.1")
    checks: list[tuple[str, str, func.HttpResponse]] = []
    created = await api.create_registration(http("POST", "registrations", request_body()))
    checks.append(("/registrations", "POST", created))
    checks.append(("/registrations", "POST", await api.create_registration(http("POST", "r", raw=b"{"))))
    checks.append(
        ("/registrations", "POST", await api.create_registration(http("POST", "r", {"profile": 1})))
    )
    await deliver(svc.queue.sent[-1][1])
    route = {"id": as_json(created)["id"]}
    checks.append(("/registrations/{id}", "GET", await api.get_registration(http("GET", "r", route=route))))
    checks.append(
        ("/registrations/{id}", "GET", await api.get_registration(http("GET", "r", route={"id": "x"})))
    )
    checks.append(("/registrations", "GET", await api.list_registrations(http("GET", "registrations"))))
    garbage = await api.list_registrations(http("GET", "r", params={"continuation": "garbage"}))
    assert garbage.status_code == 400 and as_json(garbage)["problems"][0]["field"] == "continuation"
    checks.append(("/registrations", "GET", garbage))
    checks.append(("/profiles", "GET", await api.list_profiles(http("GET", "profiles"))))
    for profile_id in ("codetwo-migration-target", "custom", "nope"):
        checks.append(
            ("/profiles/{id}", "GET", await api.get_profile(http("GET", "p", route={"id": profile_id})))
        )
    checks.append(
        (
            "/registrations/{id}/approve",
            "POST",
            await api.approve_registration(http("POST", "a", route=route)),
        )
    )
    admin = principal("Registrar.Admin")
    deleted = await api.decommission_registration(http("DELETE", "d", route=route, headers=admin))
    checks.append(("/registrations/{id}", "DELETE", deleted))
    for path, method, response in checks:
        body = as_json(response)
        assert (
            response_errors(
                document, path, method, response.status_code, body, content_type=response.mimetype
            )
            == []
        ), (
            path,
            method,
            response.status_code,
        )


def test_the_checker_catches_a_response_that_breaks_the_document() -> None:
    document = load_openapi()
    broken = {"id": "reg-1", "status": "weird", "statusUrl": 3, "webhooks": []}
    found = response_errors(document, "/registrations", "POST", 202, broken, content_type="application/json")
    assert any("weird" in e for e in found) and any("statusUrl" in e for e in found)
    assert response_errors(document, "/registrations", "POST", 418, {}, content_type="application/json")


async def test_a_token_in_a_webhook_url_shows_nowhere_but_the_record(svc: FakeServices) -> None:
    """Receivers often authenticate with the URL (the ?code= of an Azure Function, a Logic App's
    sig=): the API and Key Vault's tags show it without, the record keeps it whole for deliveries.
    (User information in a webhook URL is refused outright.)"""
    token, signature = "Fn-code-7Qx2", "sig-9Kd3"
    hooks = [
        {"url": f"https://receiver.example.com/api/hook?code={token}&clientId=registrar"},
        {"url": f"https://prod-1.westeurope.logic.azure.com/workflows/w1/invoke?sv=1.0&sig={signature}"},
    ]
    created = await api.create_registration(http("POST", "registrations", request_body(webhooks=hooks)))
    body = as_json(created)
    assert [w["url"] for w in body["webhooks"]] == [
        "https://receiver.example.com/api/hook?code=***&clientId=***",
        "https://prod-1.westeurope.logic.azure.com/workflows/w1/invoke?sv=***&sig=***",
    ]
    viewed = await api.get_registration(http("GET", f"registrations/{body['id']}", route={"id": body["id"]}))
    assert [w["url"] for w in as_json(viewed)["webhooks"]] == [w["url"] for w in body["webhooks"]]
    tags = json.dumps([v.ref.tags for versions in svc.vault.secrets.values() for v in versions])
    assert "receiver.example.com/api/hook" in tags
    for text in (created.get_body().decode(), viewed.get_body().decode(), tags):
        assert token not in text and signature not in text
    record = await svc.store.get(body["id"])
    assert [w.url for w in record.webhooks] == [h["url"] for h in hooks]
