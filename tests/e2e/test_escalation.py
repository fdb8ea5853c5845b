"""Failures find people, end to end through the local host.

A private stack (its own Azurite, tenant and host) with a rotation sweep every 2 s, one webhook
retry after 1 s, queue messages poisoned after 2 deliveries, and telemetry written to the stack's
telemetry.jsonl every 2 s. The tenant is made to refuse addPassword (403, a fault rule) and the
tests ask for rotations through the API, as an admin would:
- each failure raises rotation.failed (signed, to the registration's webhook), the third in a row
  credential.at_risk; both show in GET /api/health, the metrics and the telemetry file;
- a delivery nobody accepts is dead-lettered, and an unreadable rotation job is poisoned: both are
  signals (log events, counters, the snapshot);
- a tenant-wide subscription (POST /api/subscriptions) receives all of them, signed;
- "retirement": "after-confirm": the old credential outlives the 5 s overlap and is at risk
  (unconfirmed) until the connector confirms the new one, then it retires;
- no secret value in anything captured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from devstack.stack import Stack
from tests.e2e.after_confirm_support import rotate_unconfirmed
from tests.e2e.rotation_support import (
    ADMIN,
    Host,
    Receiver,
    leaks,
    private_host,
    start_private_stack,
    tag,
    wait_until,
)
from tests.openapi_check import load_openapi, response_errors

pytestmark = pytest.mark.slow

SETTINGS = {
    "REGISTRAR_ROTATION_SCHEDULE": "*/2 * * * * *",
    "REGISTRAR_WEBHOOK_RETRY_SCHEDULE": "PT1S",
    "REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT": "3",
    "REGISTRAR_ROTATION_OVERLAP": "PT5S",
    "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
}
ESCALATION_EVENTS = ["rotation.failed", "credential.at_risk"]
REFUSE_ADD_PASSWORD = {
    "status": 403,
    "method": "POST",
    "pathRegex": "/addPassword",
    "body": {
        "error": {
            "code": "Authorization_RequestDenied",
            "message": "Insufficient privileges to complete the operation.",
        }
    },
}


class Stacked:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.host: Host = private_host(stack)

    @property
    def telemetry_file(self) -> Path:
        return self.stack.options.state_dir / "telemetry.jsonl"

    def telemetry(self) -> list[dict[str, Any]]:
        if not self.telemetry_file.exists():
            return []
        return [
            json.loads(line) for line in self.telemetry_file.read_text(encoding="utf-8").splitlines() if line
        ]

    def signals(self, signal: str) -> list[dict[str, Any]]:
        return [line for line in self.telemetry() if line["kind"] == "log" and line.get("signal") == signal]

    def metric(self, name: str, **attributes: str) -> float | None:
        """The latest exported value of a metric's series (None before its first export)."""
        points = [
            line
            for line in self.telemetry()
            if line["kind"] == "metric" and line["name"] == name and line["attributes"] == attributes
        ]
        return points[-1]["value"] if points else None

    def health(self) -> dict[str, Any]:
        response = self.host.api.get("/api/health")
        assert response.status_code == 200, response.text
        conforms("/health", "GET", response)
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Stacked]:
    stack = start_private_stack(tmp_path_factory.mktemp("escalation-stack"), tenant_ca_dir, SETTINGS)
    client = Stacked(stack)
    try:
        yield client
    finally:
        client.host.close()
        stack.stop()


@dataclass(frozen=True)
class TenantHook:
    id: str
    path: str
    secret: str


@pytest.fixture(scope="module")
def tenant_hook(stacked: Stacked, receiver: Receiver) -> TenantHook:
    """A ticketing system's inbound endpoint, subscribed tenant-wide before any test registers."""
    path = f"/itsm-{tag()}"
    response = stacked.host.api.post(
        "/api/subscriptions",
        json={
            "url": receiver.url(path) + "?token=s3cr3t-query",
            "events": ["registration.active", *ESCALATION_EVENTS],
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    conforms("/subscriptions", "POST", response)
    body = response.json()
    assert body["url"].endswith("?token=***") and body["secret"].startswith("whsec_")
    stacked.host.seen.add(body["secret"])
    return TenantHook(body["id"], path, body["secret"])


@contextmanager
def refusing_add_password(host: Host) -> Iterator[None]:
    (rule,) = host.admin("POST", "faults", REFUSE_ADD_PASSWORD)["value"]
    try:
        yield
    finally:
        host.admin("DELETE", f"faults/{rule['id']}")


def conforms(template: str, method: str, response: httpx.Response) -> None:
    """The real answer is what functions/openapi.json documents for it (status, media type, schema)."""
    body = response.json() if response.content else None
    found = response_errors(
        load_openapi(),
        template,
        method,
        response.status_code,
        body,
        content_type=response.headers.get("content-type", "application/json"),
    )
    assert found == [], found


def verified(receiver: Receiver, path: str, secret: str) -> list[dict[str, Any]]:
    webhook = Webhook(secret)
    return [webhook.verify(hit.body, hit.headers) for hit in receiver.received(path)]


def test_a_rotation_that_keeps_failing_raises_rotation_failed_each_time_then_at_risk(
    stacked: Stacked, receiver: Receiver, tenant_hook: TenantHook
) -> None:
    host = stacked.host
    path = f"/esc-{tag()}"
    registration_id, secrets = host.register(
        tag(), lifetime="P60D", webhooks=[{"url": receiver.url(path), "events": ESCALATION_EVENTS}]
    )
    view = host.wait_status(registration_id, "active", timeout_s=60)
    assert registration_id not in {i["registrationId"] for i in stacked.health()["atRisk"]["items"]}
    # Entra refuses for the rest of the test: a sweep may run a forced job twice, which must fail too.
    with refusing_add_password(host):
        for attempt in range(1, 4):
            response = host.rotate(registration_id)
            assert response.status_code == 202, response.text
            wait_until(
                f"rotation.failed #{attempt}",
                lambda n=attempt: (
                    len([e for e in receiver.events(path) if e["type"] == "rotation.failed"]) >= n
                ),
                timeout_s=60,
            )

        wait_until(
            "credential.at_risk",
            lambda: [e for e in receiver.events(path) if e["type"] == "credential.at_risk"],
            timeout_s=30,
        )
        events = verified(receiver, path, secrets[receiver.url(path)])  # every one signed
        failed = [e for e in events if e["type"] == "rotation.failed"]
        # Each failure once, counted in a row (a sweep may have run a forced job a fourth time).
        in_a_row = sorted(e["data"]["failuresInARow"] for e in failed)
        assert in_a_row == list(range(1, len(in_a_row) + 1)) and len(in_a_row) >= 3
        assert {e["data"]["reason"] for e in failed} == {"Authorization_RequestDenied"}
        assert {e["data"]["keyId"] for e in failed} == {view["credential"]["keyId"]}
        (at_risk,) = [e for e in events if e["type"] == "credential.at_risk"]  # once, however many sweeps
        assert (
            at_risk["data"]["reason"] == "rotation_failing"
            and at_risk["data"]["registrationId"] == registration_id
        )
        current = host.registration(registration_id)
        # Still the first credential (a repeat of a forced job may be trying, and failing, right now).
        assert current["status"] in ("active", "rotating")
        assert current["credential"]["keyId"] == view["credential"]["keyId"]

        # The tenant-wide subscriber heard the same, signed with its own secret.
        def tenant_events() -> list[dict[str, Any]] | None:
            mine = [
                e
                for e in verified(receiver, tenant_hook.path, tenant_hook.secret)
                if e["data"]["registrationId"] == registration_id
            ]
            return (
                mine if len([e for e in mine if e["type"] in ESCALATION_EVENTS]) >= len(failed) + 1 else None
            )

        heard = wait_until("the tenant-wide subscriber's events", tenant_events, timeout_s=30)
        kinds = [e["type"] for e in heard]
        assert kinds.count("credential.at_risk") == 1 and kinds.count("registration.active") == 1
        assert kinds.count("rotation.failed") >= len(failed)

        # The health snapshot, the telemetry file's log events and its metrics all show it.
        item = wait_until(
            "the health snapshot to list it",
            lambda: next(
                (i for i in stacked.health()["atRisk"]["items"] if i["registrationId"] == registration_id),
                None,
            ),
            timeout_s=10,
        )
        assert item["reason"] == "rotation_failing" and item["failuresInARow"] >= 3
        health = stacked.health()
        assert health["lastSweepAt"] is not None and health["lastInventoryAt"] is None

        def failure_lines() -> list[dict[str, Any]] | None:
            found = [
                s for s in stacked.signals("rotation.failed") if s.get("registration_id") == registration_id
            ]
            return found if len(found) >= 3 else None

        logged = wait_until("three rotation.failed log events", failure_lines, timeout_s=15)
        assert [s["failures_in_a_row"] for s in logged][:3] == [1, 2, 3]
        (risk_line,) = [
            s for s in stacked.signals("credential.at_risk") if s.get("registration_id") == registration_id
        ]
        assert (
            risk_line["reason"] == "rotation_failing" and risk_line["key_id"] == view["credential"]["keyId"]
        )
        wait_until(
            "the metrics to count the failures and the credential at risk",
            lambda: (
                (stacked.metric("registrar.rotations", outcome="failed") or 0) >= 3
                and (stacked.metric("registrar.credentials.at_risk", reason="rotation_failing") or 0) >= 1
            ),
            timeout_s=20,
        )


def test_a_dead_lettered_delivery_and_a_poisoned_message_are_signals(
    stacked: Stacked, receiver: Receiver
) -> None:
    host = stacked.host
    path = f"/refuses-{tag()}"
    receiver.fail_first[path] = 1_000  # answers 503 to everything
    registration_id, _ = host.register(
        tag(), lifetime="P60D", webhooks=[{"url": receiver.url(path), "events": ["registration.active"]}]
    )
    host.wait_status(registration_id, "active", timeout_s=60)
    wait_until(
        "the delivery to be dead-lettered",
        lambda: host.deliveries(registration_id, status="dead_lettered"),
        timeout_s=60,
    )

    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    queue = QueueClient.from_connection_string(
        host.endpoints["storageConnectionString"],
        "rotation-jobs",
        message_encode_policy=TextBase64EncodePolicy(),
    )
    with queue:
        queue.send_message("this is not a rotation job")

    def poisoned_health() -> dict[str, Any] | None:
        health = stacked.health()
        return health if health["poisonMessages"].get("rotation-jobs-poison", 0) >= 1 else None

    health = wait_until("the snapshot to count the poison message", poisoned_health, timeout_s=60)
    assert health["deadLetters"] >= 1
    dead = wait_until(
        "the dead-letter log event",
        lambda: [
            s
            for s in stacked.signals("delivery.dead_lettered")
            if s.get("registration_id") == registration_id
        ],
        timeout_s=15,
    )
    assert dead[0]["event_type"] == "registration.active" and dead[0]["outcome"] == "dead_lettered"
    poisoned = wait_until(
        "the poisoned-message log event",
        lambda: [s for s in stacked.signals("message.poisoned") if s.get("queue") == "rotation-jobs"],
        timeout_s=15,
    )
    assert poisoned[0]["reason"] == "JSONDecodeError"
    wait_until(
        "the gauges and the delivery counter",
        lambda: (
            (stacked.metric("registrar.queue.poison_messages", queue="rotation-jobs-poison") or 0) >= 1
            and (stacked.metric("registrar.deliveries.dead_letters") or 0) >= 1
            and (stacked.metric("registrar.deliveries", outcome="dead_lettered") or 0) >= 1
        ),
        timeout_s=20,
    )


def test_tenant_wide_subscriptions_are_admin_only_checked_like_webhooks_and_removable(
    stacked: Stacked, receiver: Receiver, tenant_hook: TenantHook
) -> None:
    api = stacked.host.api
    forbidden = api.get("/api/subscriptions")  # no Registrar.Admin
    assert forbidden.status_code == 403
    conforms("/subscriptions", "GET", forbidden)
    refused = api.post(
        "/api/subscriptions", json={"url": "http://10.0.0.1/x", "events": ["nope"]}, headers=ADMIN
    )
    assert refused.status_code == 400
    conforms("/subscriptions", "POST", refused)
    assert {p["field"] for p in refused.json()["problems"]} >= {"events[0]"}
    private = api.post("/api/subscriptions", json={"url": "https://203.0.113.9/hook"}, headers=ADMIN)
    assert private.status_code == 400 and [p["field"] for p in private.json()["problems"]] == ["url"]
    listing = api.get("/api/subscriptions", headers=ADMIN)
    conforms("/subscriptions", "GET", listing)
    listed = listing.json()["items"]
    assert tenant_hook.id in {s["id"] for s in listed}
    assert all("secret" not in s and "s3cr3t-query" not in s["url"] for s in listed)
    extra = api.post(
        "/api/subscriptions",
        json={"url": receiver.url(f"/other-{tag()}"), "events": ["rotation.failed"]},
        headers=ADMIN,
    )
    assert extra.status_code == 201, extra.text
    stacked.host.seen.add(extra.json()["secret"])
    one = api.get(f"/api/subscriptions/{extra.json()['id']}", headers=ADMIN)
    assert one.status_code == 200 and one.json()["events"] == ["rotation.failed"]
    conforms("/subscriptions/{id}", "GET", one)
    duplicate = api.post(
        "/api/subscriptions", json={"url": one.json()["url"]}, headers=ADMIN
    )  # no query: as given
    assert duplicate.status_code == 409 and extra.json()["id"] in duplicate.json()["detail"]
    conforms("/subscriptions", "POST", duplicate)
    assert api.delete(f"/api/subscriptions/{extra.json()['id']}", headers=ADMIN).status_code == 204
    gone = api.get(f"/api/subscriptions/{extra.json()['id']}", headers=ADMIN)
    assert gone.status_code == 404
    conforms("/subscriptions/{id}", "GET", gone)


def test_after_confirm_keeps_the_old_credential_until_the_connector_confirms_the_new_one(
    stacked: Stacked, receiver: Receiver
) -> None:
    host = stacked.host
    rotation = rotate_unconfirmed(host, receiver, "confirm", "e2e confirmed retirement")
    registration_id, first, path = rotation.registration_id, rotation.first, rotation.webhook_path
    old_key, new_key = rotation.old_key, rotation.new_key
    items = stacked.health()["atRisk"]["items"]
    assert {(i["registrationId"], i["reason"]) for i in items} >= {(registration_id, "unconfirmed")}

    confirm = f"/api/registrations/{registration_id}/credentials/{{}}/confirm"
    stale = host.api.post(confirm.format(old_key))
    assert stale.status_code == 409
    unknown = host.api.post(confirm.format("00000000-0000-0000-0000-000000000000"))
    assert unknown.status_code == 404
    done = host.api.post(confirm.format(new_key))
    assert done.status_code == 200, done.text
    for answer in (stale, unknown, done):
        conforms("/registrations/{id}/credentials/{keyId}/confirm", "POST", answer)
    assert done.json()["retiringNow"] == [old_key]
    again = host.api.post(confirm.format(new_key))
    assert again.status_code == 200 and again.json()["confirmedOn"] == done.json()["confirmedOn"]

    wait_until(
        "the old credential's retirement",
        lambda: old_key not in {p["keyId"] for p in host.passwords(first["appId"])},
        timeout_s=40,
    )
    retired = wait_until(
        "credential.retired",
        lambda: [e for e in receiver.events(path) if e["type"] == "credential.retired"],
        20,
    )
    assert retired[0]["data"]["keyId"] == old_key
    shown = host.api.get(f"/api/registrations/{registration_id}")
    conforms("/registrations/{id}", "GET", shown)
    view = shown.json()
    assert view["credential"]["confirmedOn"] == done.json()["confirmedOn"]
    assert registration_id not in {i["registrationId"] for i in stacked.health()["atRisk"]["items"]}


def test_no_secret_value_in_the_telemetry_the_log_storage_or_the_health_snapshot(stacked: Stacked) -> None:
    host = stacked.host
    values = host.all_secret_values() | host.seen
    assert values, "the leak check needs the secrets it looks for"
    places = host.leak_places(
        {
            "telemetry file": stacked.telemetry_file.read_text(encoding="utf-8"),
            "health": json.dumps(stacked.health()),
        }
    )
    assert "rotation.failed" in places["telemetry file"]
    assert leaks(values, places) == []
