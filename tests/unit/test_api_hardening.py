"""The HTTP and queue triggers under hostile input and failing dependencies: who may use the role
routes outside local development, bodies the JSON decoder chokes on, a queue send that fails after
the record was saved, a queued request that reuses a requestId, and a cold start that cannot reach
storage. Over the in-memory fakes (tests/unit/fakes.py), as test_registration_triggers.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions import bootstrap
from functions.core.record.errors import Conflict, TransientError
from functions.core.record.models import RegistrationStatus
from functions.resources import REGISTRATION_REQUESTS_QUEUE, ROTATION_JOBS_QUEUE
from functions.settings import Settings
from functions.triggers import http_registrations as api
from functions.triggers import notifications, rotation
from tests.openapi_check import load_openapi, response_errors
from tests.unit.provisioning_world import TENANT, World
from tests.unit.test_registration_triggers import (
    ALICE_OID,
    FakeServices,
    as_json,
    deliver,
    http,
    principal,
    request_body,
)

AZURE = {
    "REGISTRAR_ENVIRONMENT": "azure",
    "REGISTRAR_HOME_TENANT_ID": TENANT,
    "REGISTRAR_KEY_VAULT_URL": "https://kv-registrar.vault.azure.net",
}
APPROVER = principal("Registrar.Approver")
ADMIN = principal("Registrar.Admin")


def envelope_of(registration_id: str) -> tuple[str, str]:
    return REGISTRATION_REQUESTS_QUEUE, json.dumps({"registrationId": registration_id})


async def held_registration(svc: FakeServices, request_id: str = "INC-T1") -> str:
    """A registration waiting in pending_approval (codetwo-migration-target with mailboxes is tier-0)."""
    body = request_body(request_id, profile="codetwo-migration-target", options={"createMailboxes": True})
    created = as_json(await api.create_registration(http("POST", "registrations", body)))
    await deliver(svc.queue.sent[-1][1])
    assert (await svc.store.get(created["id"])).status is RegistrationStatus.PENDING_APPROVAL
    return str(created["id"])


async def active_registration(svc: FakeServices, request_id: str = "INC-A1") -> str:
    created = as_json(await api.create_registration(http("POST", "registrations", request_body(request_id))))
    await deliver(svc.queue.sent[-1][1])
    assert (await svc.store.get(created["id"])).status is RegistrationStatus.ACTIVE
    return str(created["id"])


# ---------------------------------------------------------------- 1. roles need App Service Authentication


async def test_outside_local_development_role_routes_refuse_without_app_service_authentication(
    svc: FakeServices,
) -> None:
    held = await held_registration(svc)
    active = await active_registration(svc)
    sent = list(svc.queue.sent)
    svc.settings = Settings.from_env(AZURE)  # Azure, and WEBSITE_AUTH_ENABLED not set by the platform

    responses = [
        await api.approve_registration(http("POST", "a", route={"id": held}, headers=APPROVER)),
        await api.decommission_registration(http("DELETE", "d", route={"id": active}, headers=ADMIN)),
        await rotation.rotate_registration(http("POST", "r", route={"id": active}, headers=ADMIN)),
    ]
    for response in responses:
        assert response.status_code == 403 and response.mimetype == "application/problem+json"
        assert "App Service Authentication" in as_json(response)["detail"]
    assert (await svc.store.get(held)).status is RegistrationStatus.PENDING_APPROVAL
    assert (await svc.store.get(active)).status is RegistrationStatus.ACTIVE
    assert svc.queue.sent == sent and svc.directory.apps  # nothing enqueued, nothing deleted


async def test_behind_app_service_authentication_the_roles_count(svc: FakeServices) -> None:
    held = await held_registration(svc)
    svc.settings = Settings.from_env({**AZURE, "WEBSITE_AUTH_ENABLED": "True"})
    approved = await api.approve_registration(http("POST", "a", route={"id": held}, headers=APPROVER))
    assert approved.status_code == 200
    assert svc.queue.sent[-1] == envelope_of(held)


async def test_a_principal_without_an_object_id_is_refused_and_no_actor_is_a_question_mark(
    svc: FakeServices,
) -> None:
    held = await held_registration(svc)
    active = await active_registration(svc)
    no_oid = principal("Registrar.Approver", "Registrar.Admin", oid=None)
    for response in (
        await api.approve_registration(http("POST", "a", route={"id": held}, headers=no_oid)),
        await api.decommission_registration(http("DELETE", "d", route={"id": active}, headers=no_oid)),
        await rotation.rotate_registration(http("POST", "r", route={"id": active}, headers=no_oid)),
    ):
        assert response.status_code == 403 and "object id" in as_json(response)["detail"]
    assert (await svc.store.get(held)).status is RegistrationStatus.PENDING_APPROVAL

    approved = as_json(
        await api.approve_registration(http("POST", "a", route={"id": held}, headers=APPROVER))
    )
    assert approved["approval"]["approvedBy"] == f"alice@contoso.com ({ALICE_OID})"
    rotated = await rotation.rotate_registration(http("POST", "r", route={"id": active}, headers=ADMIN))
    assert rotated.status_code == 202
    (job,) = [json.loads(m) for q, m in svc.queue.sent if q == ROTATION_JOBS_QUEUE]
    assert job["requestedBy"] == f"alice@contoso.com ({ALICE_OID})"
    gone = as_json(
        await api.decommission_registration(http("DELETE", "d", route={"id": active}, headers=ADMIN))
    )
    details = [e["detail"] for doc in (approved, gone) for e in doc["history"]]
    assert f"requested by alice@contoso.com ({ALICE_OID})" in details
    assert not any("?" in (d or "") for d in details)


# ---------------------------------------------------------------- 2. bodies the decoder chokes on


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, "", "nests deeper"),
        (b'{"requestId": "A1", "profile": "x", "n": ' + b"7" * 4400 + b"}", "", "number too large"),
        (b'{"requestId": "A1", "requestId": "B2", "profile": "codetwo-migration-source"}', "requestId", "more"),
        (b'{"requestId": "A1", "profile": "custom", "credential": {"type": "secret", "type": "certificate"}}',
         "credential.type", "more than once"),
    ],
    ids=["deep", "huge-integer", "duplicate-requestId", "duplicate-nested"],
)  # fmt: skip
async def test_bodies_the_decoder_chokes_on_are_400_problem_json(
    svc: FakeServices, raw: bytes, field: str, reason: str
) -> None:
    response = await api.create_registration(http("POST", "registrations", raw=raw))
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    problems = as_json(response)["problems"]
    assert any(p["field"] == field and reason in p["reason"] for p in problems), problems
    assert svc.store.documents == {} and svc.queue.sent == [] and svc.vault.secrets == {}


# ---------------------------------------------------------------- 3. a queue send that fails after the record


async def test_a_failed_send_after_the_record_is_retried_by_the_repeated_post(svc: FakeServices) -> None:
    svc.queue.fail_sends(1)
    first = await api.create_registration(http("POST", "registrations", request_body()))
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    assert first.mimetype == "application/problem+json" and svc.queue.sent == []
    (doc, _), *_ = svc.store.documents.values()
    assert doc["status"] == "accepted"  # saved, and no message for the worker: stranded until...

    again = await api.create_registration(http("POST", "registrations", request_body()))  # the client retries
    assert again.status_code == 200 and as_json(again)["status"] == "accepted"
    registration_id = as_json(again)["id"]
    assert svc.queue.sent == [envelope_of(registration_id)]
    await deliver(svc.queue.sent[-1][1])
    assert (await svc.store.get(registration_id)).status is RegistrationStatus.ACTIVE

    # Once the worker has moved it on, a repeat sends nothing more.
    done = await api.create_registration(http("POST", "registrations", request_body()))
    assert done.status_code == 200 and len(svc.queue.messages(REGISTRATION_REQUESTS_QUEUE)) == 1


async def test_a_failed_send_after_approval_is_retried_by_approving_again(svc: FakeServices) -> None:
    held = await held_registration(svc)
    sent = len(svc.queue.messages(REGISTRATION_REQUESTS_QUEUE))
    svc.queue.fail_sends(1)
    failed = await api.approve_registration(http("POST", "a", route={"id": held}, headers=APPROVER))
    assert failed.status_code == 503 and "Retry-After" in failed.headers
    assert (await svc.store.get(held)).status is RegistrationStatus.ACCEPTED
    assert len(svc.queue.messages(REGISTRATION_REQUESTS_QUEUE)) == sent

    again = await api.approve_registration(http("POST", "a", route={"id": held}, headers=APPROVER))
    assert again.status_code == 200 and svc.queue.sent[-1] == envelope_of(held)
    await deliver(svc.queue.sent[-1][1])
    assert (await svc.store.get(held)).status is RegistrationStatus.ACTIVE
    late = await api.approve_registration(http("POST", "a", route={"id": held}, headers=APPROVER))
    assert late.status_code == 200  # active: nothing more to enqueue
    assert len(svc.queue.messages(REGISTRATION_REQUESTS_QUEUE)) == sent + 1


# ---------------------------------------------------------------- 4. a queued request reusing a requestId


async def test_a_queued_request_reusing_a_request_id_ends_in_the_poison_queue(svc: FakeServices) -> None:
    await deliver(json.dumps(request_body("CHG0100")))
    (doc, _), *_ = svc.store.documents.values()
    assert doc["status"] == "active"
    before = json.dumps(svc.store.documents, sort_keys=True, default=str)
    other = json.dumps(request_body("CHG0100", displayName="Someone else's app"))
    for attempt in range(1, 6):  # host.json maxDequeueCount 5: every attempt raises, then poison
        with pytest.raises(Conflict, match="CHG0100"):
            await deliver(other, dequeue_count=attempt)
    assert json.dumps(svc.store.documents, sort_keys=True, default=str) == before
    assert len(svc.directory.apps) == 1


# ---------------------------------------------------------------- 6. a cold start that cannot reach storage


class ColdServices(FakeServices):
    async def ready(self) -> FakeServices:
        raise TransientError("table service busy", retry_after=timedelta(seconds=7))


@pytest.fixture
def cold() -> Iterator[ColdServices]:
    services = ColdServices(World())
    bootstrap.reset_services(services)  # type: ignore[arg-type]
    yield services
    bootstrap.reset_services(None)


@pytest.mark.parametrize(
    ("handler", "kwargs"),
    [
        (api.create_registration, {"body": request_body()}),
        (api.get_registration, {"route": {"id": "reg-1"}}),
        (api.list_registrations, {}),
        (api.approve_registration, {"route": {"id": "reg-1"}, "headers": APPROVER}),
        (api.decommission_registration, {"route": {"id": "reg-1"}, "headers": ADMIN}),
        (rotation.rotate_registration, {"route": {"id": "reg-1"}, "headers": ADMIN}),
        (rotation.credentials_due, {}),
        (notifications.add_webhook, {"route": {"id": "reg-1"}, "body": {"url": "https://h.example.com/x"}}),
        (notifications.remove_webhook, {"route": {"id": "reg-1", "subscription": "wh-1"}}),
        (notifications.list_deliveries, {"route": {"id": "reg-1"}}),
    ],
    ids=[
        "create",
        "get",
        "list",
        "approve",
        "decommission",
        "rotate",
        "credentials",
        "add-webhook",
        "remove-webhook",
        "deliveries",
    ],
)
async def test_a_cold_start_that_cannot_reach_storage_is_503_with_retry_after(
    cold: ColdServices, handler: Any, kwargs: dict[str, Any]
) -> None:
    response = await handler(http("POST", "x", **kwargs))
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "7"
    # ... and functions/openapi.json says so: the 503, its body and its Retry-After header.
    path, method = OPERATIONS[handler]
    document = load_openapi()
    assert (
        response_errors(
            document, path, method, 503, json.loads(response.get_body()), content_type=response.mimetype
        )
        == []
    )
    assert "Retry-After" in document["paths"][path][method.lower()]["responses"]["503"]["headers"]


OPERATIONS: dict[Any, tuple[str, str]] = {
    api.create_registration: ("/registrations", "POST"),
    api.get_registration: ("/registrations/{id}", "GET"),
    api.list_registrations: ("/registrations", "GET"),
    api.approve_registration: ("/registrations/{id}/approve", "POST"),
    api.decommission_registration: ("/registrations/{id}", "DELETE"),
    rotation.rotate_registration: ("/registrations/{id}/rotate", "POST"),
    rotation.credentials_due: ("/credentials", "GET"),
    notifications.add_webhook: ("/registrations/{id}/webhooks", "POST"),
    notifications.remove_webhook: ("/registrations/{id}/webhooks/{subscription}", "DELETE"),
    notifications.list_deliveries: ("/registrations/{id}/deliveries", "GET"),
}
