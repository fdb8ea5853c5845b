"""Rotation end to end through the local host: the timer rotates, nobody notices, subscribers are told.

A private stack (its own Azurite, tenant and host) with a rotation sweep every 2 s, a 10 s overlap,
and a tenant that refuses a new secret for 2 s after it is made (Entra's propagation delay). The
tests only call the host's HTTP API (and POST /admin/functions/rotation_sweep, as the real host
offers) and read the tenant back as its bootstrap identity with the official SDKs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.rotation_support import (
    GRAPH_SCOPE,
    Host,
    Receiver,
    leaks,
    running_host,
    tag,
    wait_until,
)

pytestmark = pytest.mark.slow

SETTINGS = {
    "REGISTRAR_ROTATION_SCHEDULE": "*/2 * * * * *",
    "REGISTRAR_ROTATION_OVERLAP": "PT10S",
    "REGISTRAR_WEBHOOK_RETRY_SCHEDULE": "PT1S,PT2S",
}
# NearExpiry 5 s before expiry: a one-minute secret is rotated at 30 s, long before its version
# would be "near expiry" (with Key Vault's 30 days every short-lived version would be, at once).
TENANT_ARGS = ["--propagation-delay", "2", "--near-expiry-window-s", "5"]
ROTATION_EVENTS = ["credential.rotated", "credential.retired"]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, tenant_ca_dir: Path) -> Iterator[Host]:
    with running_host(
        tmp_path_factory.mktemp("rotation-stack"), tenant_ca_dir, SETTINGS, TENANT_ARGS
    ) as client:
        yield client


def generation(host: Host, registration_id: str) -> int:
    return int(host.registration(registration_id)["credential"]["generation"])


# ---------------------------------------------------------------- the prober


@dataclass
class Prober:
    """Every 100 ms: read the LATEST version of the connector's secret and get a token with it."""

    host: Host
    secret_name: str
    tenant_id: str
    app_id: str
    probes: int = 0
    failures: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def probe(self) -> None:
        from azure.identity import ClientSecretCredential

        try:
            latest = self.host.secrets.get_secret(self.secret_name)
            # A new credential object each time: nothing cached, every probe hits the token endpoint.
            credential = ClientSecretCredential(
                self.tenant_id,
                self.app_id,
                latest.value,
                authority=self.host.endpoints["authority"],
                disable_instance_discovery=True,
            )
            self.host.seen.add(latest.value)
            credential.get_token(GRAPH_SCOPE)
            credential.close()
            self.versions.add(latest.properties.version)
        except Exception as exc:  # every failure counts, whatever its kind
            self.failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        self.probes += 1

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.probe()
            self._stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def verified(receiver: Receiver, path: str, secret: str) -> list[dict[str, Any]]:
    """The events received on `path`, each verified with the Standard Webhooks reference library."""
    webhook = Webhook(secret)
    return [webhook.verify(hit.body, hit.headers) for hit in receiver.received(path)]


# ---------------------------------------------------------------- the tests


def test_the_timer_rotates_a_credential_without_a_gap_and_tells_the_subscriber(
    host: Host, receiver: Receiver
) -> None:
    path = f"/rot-{tag()}"
    registration_id, secrets = host.register(
        tag(), lifetime="PT1M", webhooks=[{"url": receiver.url(path), "events": ROTATION_EVENTS}]
    )
    view = host.wait_status(registration_id, "active", timeout_s=60)
    first = view["credential"]
    assert first["generation"] == 1
    with Prober(host, registration_id, view["tenantId"], view["appId"]) as prober:
        # No call from here on: the sweep finds it due (half its one-minute life), the worker
        # rotates, and ten seconds later the old secret is removed from the app.
        wait_until("the first rotation", lambda: generation(host, registration_id) >= 2, timeout_s=75)
        wait_until(
            "the old secret's removal",
            lambda: first["keyId"] not in {p["keyId"] for p in host.passwords(view["appId"])},
            timeout_s=40,
        )
        time.sleep(1.0)  # keep probing a little past the removal
    assert prober.probes > 100, prober.probes
    assert prober.failures == [], prober.failures[:5]
    assert len(prober.versions) >= 2  # it did see the old latest and the new one

    secret = secrets[receiver.url(path)]
    events = wait_until(
        "credential.rotated and credential.retired",
        lambda: got if len(got := verified(receiver, path, secret)) >= 2 else None,
        timeout_s=20,
    )
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["credential.rotated", "credential.retired"], kinds
    rotated, retired = events[0]["data"], events[1]["data"]
    assert rotated["registrationId"] == registration_id and rotated["generation"] == 2
    assert rotated["previousKeyId"] == first["keyId"]
    assert retired["keyId"] == first["keyId"] and retired["currentKeyId"] == rotated["keyId"]
    assert rotated["secretUri"].startswith(host.endpoints["vaultUrl"])
    # Announced once, though both the rotation job and Key Vault's SecretNewVersionCreated announce it.
    gen2 = [e for e in events if e["type"] == "credential.rotated" and e["data"]["generation"] == 2]
    assert len(gen2) == 1, gen2


def test_a_failure_injected_in_the_rotation_is_redelivered_to_exactly_one_new_credential(
    host: Host,
) -> None:
    # A long life: only the explicit POST .../rotate rotates it during this test.
    registration_id, _ = host.register(tag(), lifetime="PT1H")
    view = host.wait_status(registration_id, "active", timeout_s=60)
    app_id, first_key = view["appId"], view["credential"]["keyId"]
    # addPassword succeeds, then writing the new secret to its staging name fails every time the
    # Key Vault SDK tries (1 + 3 retries): the job fails after a credential was made in Graph.
    fault = host.admin(
        "POST",
        "faults",
        {"status": 500, "method": "PUT", "pathRegex": f"/secrets/{registration_id}-staging", "count": 4},
    )["value"][0]

    response = host.rotate(registration_id)
    assert response.status_code == 202, response.text

    # The host redelivers the job (visibility timeout) and the re-run converges.
    wait_until("the rotation after redelivery", lambda: generation(host, registration_id) == 2, timeout_s=90)
    remaining = {f["id"]: f for f in host.admin("GET", "faults")["value"]}
    assert fault["id"] not in remaining or remaining[fault["id"]].get("count") == 0
    after = host.registration(registration_id)
    new_key = after["credential"]["keyId"]
    passwords = host.passwords(app_id)
    assert {p["keyId"] for p in passwords} == {first_key, new_key}, passwords  # none orphaned
    assert [p["displayName"] for p in passwords].count(after["credential"]["displayName"]) == 1
    assert any(h["step"] == "rotation" and h["outcome"] == "done" for h in after["history"])
    latest = host.secrets.get_secret(registration_id)
    assert latest.properties.tags["keyId"] == new_key
    # The old one is retired on schedule (10 s overlap): only the new credential stays.
    wait_until(
        "the old credential's retirement",
        lambda: {p["keyId"] for p in host.passwords(app_id)} == {new_key},
        timeout_s=40,
    )


def test_sweeps_racing_an_admin_rotate_rotate_the_credential_once(host: Host) -> None:
    registration_id, _ = host.register(tag(), lifetime="PT1M")
    view = host.wait_status(registration_id, "active", timeout_s=60)
    app_id, first_key = view["appId"], view["credential"]["keyId"]

    def due_now() -> bool:
        response = host.api.get("/api/credentials", params={"dueWithin": "PT1S"})
        assert response.status_code == 200, response.text
        return any(i["registrationId"] == registration_id for i in response.json()["items"])

    wait_until("the credential to be due", due_now, timeout_s=60, every_s=0.2)
    # Two sweeps invoked by hand and an admin's rotate, at once (the scheduled sweep joins in too).
    with ThreadPoolExecutor(max_workers=3) as pool:
        calls = [
            pool.submit(host.run_function, "rotation_sweep"),
            pool.submit(host.run_function, "rotation_sweep"),
            pool.submit(host.rotate, registration_id),
        ]
        statuses = [c.result().status_code for c in calls]
    assert statuses == [202, 202, 202], statuses

    wait_until("the rotation", lambda: generation(host, registration_id) >= 2, timeout_s=60)
    after = host.registration(registration_id)
    assert after["credential"]["generation"] == 2
    passwords = {p["keyId"] for p in host.passwords(app_id)}
    assert passwords == {first_key, after["credential"]["keyId"]}  # exactly two during the overlap
    versions = list(host.secrets.list_properties_of_secret_versions(registration_id))
    assert len(versions) == 2, [v.tags for v in versions]
    started = [h for h in after["history"] if h["step"] == "rotation" and h["outcome"] == "started"]
    assert len(started) == 1, started


def test_no_secret_value_leaks_into_logs_tables_queues_or_webhooks(host: Host, receiver: Receiver) -> None:
    """Runs last: every value this module's rotations issued (read from the vault as they were
    current, plus what the vault still holds) and the webhook signing secrets, searched for in the
    host's log, every Table entity, every queue message and every webhook body received."""
    values = host.seen | host.all_secret_values() | {host.endpoints["clientSecret"]}
    assert len(values) >= 5  # several generations of three registrations, and the webhook secret
    bodies = {f"webhook body {i}": hit.body.decode() for i, hit in enumerate(receiver.received())}
    assert leaks(values, host.leak_places(bodies)) == []
