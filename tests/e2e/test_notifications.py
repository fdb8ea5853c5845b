"""Connector notifications end to end through the local host: prompt delivery (attempted by the
announcing invocation, its queued copy deleted), retries, dead letters, the address guard outside
local development, Key Vault's NearExpiry, and the leak check.

A private stack whose webhook retry schedule is PT1S,PT2S (three attempts in about three seconds)
and whose rotation timer fires once a year: rotations here come from Key Vault events only. Webhook receivers are local aiohttp servers on 127.0.0.1 (the devstack allows
http + loopback); every delivery they get is verified with the Standard Webhooks reference library.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient
from standardwebhooks.webhooks import Webhook

from devstack.stack import free_port
from functions.resources import WEBHOOK_DELIVERIES_QUEUE
from tests.e2e.rotation_support import Host, Receiver, leaks, running_host, tag, wait_until

pytestmark = pytest.mark.slow

# The rotation timer fires on 1 January only: rotations here come from Key Vault events alone.
SETTINGS = {"REGISTRAR_WEBHOOK_RETRY_SCHEDULE": "PT1S,PT2S", "REGISTRAR_ROTATION_SCHEDULE": "0 0 0 1 1 *"}
TENANT_ARGS = ["--propagation-delay", "2", "--near-expiry-window-s", "5"]
ATTEMPTS = 3  # the first try and the two retries of the schedule


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Host]:
    with running_host(
        tmp_path_factory.mktemp("notify-stack"), tenant_ca_dir, SETTINGS, TENANT_ARGS
    ) as client:
        yield client


def webhook_delivery_runs(host: Host) -> int:
    """How many times the host has run the webhook-deliveries queue trigger so far (its log)."""
    assert host.log_path is not None
    return host.log_path.read_text(encoding="utf-8", errors="replace").count(
        "Executed 'Functions.webhook_delivery'"
    )


def test_a_rotation_delivers_credential_rotated_at_once_and_leaves_no_message_on_the_queue(
    host: Host, receiver: Receiver
) -> None:
    """Prompt delivery: the rotation worker sends the delivery's message hidden, attempts it in the
    same invocation and deletes the message once delivered, so the queue trigger never sees it.
    Runs first in this module: no other test's delivery is on the queue yet."""
    path = f"/rotated-{tag()}"
    registration_id, secrets = host.register(
        tag(), lifetime="PT1H", webhooks=[{"url": receiver.url(path), "events": ["credential.rotated"]}]
    )
    first = host.wait_status(registration_id, "active", timeout_s=60)["credential"]
    runs_before = webhook_delivery_runs(host)

    response = host.rotate(registration_id)
    assert response.status_code == 202, response.text

    hits = wait_until("credential.rotated", lambda: receiver.received(path), timeout_s=60)
    event = Webhook(secrets[receiver.url(path)]).verify(hits[0].body, hits[0].headers)
    assert event["type"] == "credential.rotated"
    assert event["data"]["registrationId"] == registration_id
    assert event["data"]["previousKeyId"] == first["keyId"]
    items = wait_until(
        "the delivery recorded delivered",
        lambda: host.deliveries(registration_id, status="delivered") or None,
        timeout_s=30,
    )
    assert [(i["eventType"], i["attempts"], i["lastStatus"]) for i in items] == [
        ("credential.rotated", 1, 204)
    ]
    assert host.deliveries(registration_id) == items  # nothing retrying, dead-lettered or gone

    # The hidden copy is deleted just after the attempt settles (approximate_message_count counts
    # hidden messages too): the queue holds nothing, and the queue trigger never ran for it.
    with QueueClient.from_connection_string(
        host.endpoints["storageConnectionString"], WEBHOOK_DELIVERIES_QUEUE
    ) as queue:
        wait_until(
            "the prompt delivery's message to be deleted",
            lambda: queue.get_queue_properties().approximate_message_count == 0,
            timeout_s=10,
        )
    assert webhook_delivery_runs(host) == runs_before
    assert len(receiver.received(path)) == 1  # delivered once, by the rotation's own invocation


def test_a_receiver_down_for_a_while_gets_the_delivery_on_a_retry(host: Host, receiver: Receiver) -> None:
    path = f"/flaky-{tag()}"
    receiver.fail_first[path] = ATTEMPTS - 1  # 503 twice, then 204
    registration_id, secrets = host.register(
        tag(), lifetime="P1D", webhooks=[{"url": receiver.url(path), "events": ["registration.active"]}]
    )
    host.wait_status(registration_id, "active", timeout_s=60)

    def delivered() -> list[dict[str, object]] | None:
        items = host.deliveries(registration_id, status="delivered")
        return items or None

    items = wait_until("the delivery after retries", delivered, timeout_s=30)
    assert [(i["eventType"], i["attempts"], i["lastStatus"]) for i in items] == [
        ("registration.active", ATTEMPTS, 204)
    ]
    hits = receiver.received(path)
    assert len(hits) == ATTEMPTS
    webhook = Webhook(secrets[receiver.url(path)])
    for hit in hits:  # signed at send time: every attempt verifies on its own
        assert webhook.verify(hit.body, hit.headers)["type"] == "registration.active"
    assert len({h.headers["webhook-id"] for h in hits}) == 1  # one event, one webhook-id
    assert host.deliveries(registration_id, status="dead_lettered") == []


def test_a_receiver_down_for_good_dead_letters_the_delivery_with_its_error(host: Host) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}/gone"
    registration_id, _ = host.register(
        tag(), lifetime="P1D", webhooks=[{"url": nothing_listens, "events": ["registration.active"]}]
    )
    host.wait_status(registration_id, "active", timeout_s=60)

    items = wait_until(
        "the dead letter",
        lambda: host.deliveries(registration_id, status="dead_lettered") or None,
        timeout_s=30,
    )
    assert len(items) == 1
    dead = items[0]
    assert dead["eventType"] == "registration.active" and dead["attempts"] == ATTEMPTS
    assert dead["lastStatus"] is None and dead["lastError"]  # the connection error, named
    assert "ClientConnectorError" in dead["lastError"] or "connect" in dead["lastError"].lower()
    assert host.deliveries(registration_id, status="delivered") == []


def test_near_expiry_of_the_current_version_enqueues_a_rotation_and_tells_the_subscriber(
    host: Host, receiver: Receiver
) -> None:
    path = f"/expiring-{tag()}"
    registration_id, secrets = host.register(
        tag(),
        lifetime="PT1M",  # due after half its life; no timer here: only the event can rotate it
        webhooks=[{"url": receiver.url(path), "events": ["credential.expiring", "credential.rotated"]}],
    )
    view = host.wait_status(registration_id, "active", timeout_s=60)
    first = view["credential"]

    def due() -> bool:
        items = host.api.get("/api/credentials", params={"dueWithin": "PT0S"}).json()["items"]
        return any(i["registrationId"] == registration_id for i in items)

    # A NearExpiry before the rotation is due is left to the timer (every short-lived version is
    # "near expiry" for Key Vault at once); the event is the safety net for a timer that missed it.
    wait_until("the credential to be due", due, timeout_s=60, every_s=0.5)
    before = host.admin("GET", "config")["nearExpiryWindowS"]
    host.admin("PUT", "config", {"nearExpiryWindowS": 3600})  # Key Vault now finds it near expiry
    try:
        wait_until("credential.expiring", lambda: receiver.received(path), timeout_s=30)
    finally:
        host.admin("PUT", "config", {"nearExpiryWindowS": before})
    wait_until(
        "the rotation the event enqueued",
        lambda: host.registration(registration_id)["credential"]["generation"] >= 2,
        timeout_s=60,
    )
    webhook = Webhook(secrets[receiver.url(path)])
    events = wait_until(
        "credential.rotated",
        lambda: (
            got
            if len(got := [webhook.verify(h.body, h.headers) for h in receiver.received(path)]) >= 2
            else None
        ),
        timeout_s=20,
    )
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"credential.expiring", "credential.rotated"}, [e["type"] for e in events]
    expiring = by_type["credential.expiring"]
    assert expiring["data"]["registrationId"] == registration_id
    assert expiring["data"]["keyId"] == first["keyId"]
    assert by_type["credential.rotated"]["data"]["previousKeyId"] == first["keyId"]


def test_an_https_url_resolving_to_loopback_is_refused_outside_local_development(
    tmp_path: Path, tenant_ca_dir: Path
) -> None:
    settings = {"REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL": "false"}
    with running_host(tmp_path / "strict", tenant_ca_dir, settings) as strict:
        registration_id, _ = strict.register(tag(), lifetime="P1D")
        strict.wait_status(registration_id, "active", timeout_s=60)
        for url in (
            f"https://127.0.0.1:{free_port()}/hook",
            f"https://localhost:{free_port()}/hook",
            f"http://127.0.0.1:{free_port()}/hook",
        ):
            response = strict.api.post(f"/api/registrations/{registration_id}/webhooks", json={"url": url})
            assert response.status_code == 400, (url, response.text)
            assert response.json()["problems"][0]["field"] == "url"
        assert strict.registration(registration_id)["webhooks"] == []


def test_no_secret_value_leaks_into_logs_tables_queues_or_webhooks(host: Host, receiver: Receiver) -> None:
    """Runs last in this module: every secret the vault holds (the registrations' credentials and
    the webhook signing secrets), the ones read earlier, and the registrar's own client secret."""
    values = host.seen | host.all_secret_values() | {host.endpoints["clientSecret"]}
    assert len(values) >= 5
    bodies = {f"webhook body {i}": hit.body.decode() for i, hit in enumerate(receiver.received())}
    assert leaks(values, host.leak_places(bodies)) == []
