"""Key Vault events (Event Grid schema) from the local tenant to a local subscriber."""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_clients import secret_credential

WAIT_S = 20.0
Event = dict[str, Any]


class Receiver:
    """An Event Grid subscriber on loopback that records what it is sent; can answer 500 at first."""

    def __init__(self, fail_first: int | float = 0) -> None:
        self.fail_first = fail_first
        self.attempts: list[tuple[dict[str, str], list[Event]]] = []  # every POST, failed ones included
        self.events: list[Event] = []  # accepted deliveries only
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with receiver._changed:
                    receiver.attempts.append((dict(self.headers), body))
                    failing = len(receiver.attempts) <= receiver.fail_first
                    if not failing:
                        receiver.events.extend(body)
                    receiver._changed.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/events"

    def wait_for(self, predicate: Callable[[Event], bool], count: int = 1) -> list[Event]:
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                found = [event for event in self.events if predicate(event)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(e["eventType"], e["subject"]) for e in self.events]
                    raise AssertionError(f"no {count} matching event(s) within {WAIT_S} s; got {seen}")
                self._changed.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver(tenant_admin: TenantProcess) -> Iterator[Receiver]:
    receiver = Receiver()
    tenant_admin.configure(eventSubscriberUrl=receiver.url)
    try:
        yield receiver
    finally:
        receiver.close()


def credential(tenant: TenantProcess) -> ClientSecretCredential:
    return secret_credential(tenant)


@pytest.fixture(scope="module")
def secrets(tenant: TenantProcess) -> SecretClient:
    return SecretClient(tenant.vault_url, credential(tenant), verify_challenge_resource=False)


def of(event_type: str, subject: str) -> Callable[[Event], bool]:
    return lambda event: (
        event["eventType"] == f"Microsoft.KeyVault.{event_type}" and event["subject"] == subject
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_new_version_event_has_the_documented_fields(
    tenant: TenantProcess, secrets: SecretClient, receiver: Receiver
) -> None:
    name = unique("evt")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    expires = now + datetime.timedelta(days=365)
    secret = secrets.set_secret(name, "never-in-an-event", not_before=now, expires_on=expires)

    (event,) = receiver.wait_for(of("SecretNewVersionCreated", name))

    assert uuid.UUID(event["id"])
    assert event["topic"].startswith("/subscriptions/")
    assert "/resourceGroups/devstack/providers/Microsoft.KeyVault/vaults/" in event["topic"]
    vault_name = event["topic"].rsplit("/", 1)[1]
    assert event["dataVersion"] == "1" and event["metadataVersion"] == "1"
    event_time = datetime.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
    assert abs((event_time - datetime.datetime.now(datetime.UTC)).total_seconds()) < 300
    assert event["data"] == {
        "Id": secret.id,
        "VaultName": vault_name,
        "ObjectType": "Secret",
        "ObjectName": name,
        "Version": secret.properties.version,
        "NBF": int(now.timestamp()),
        "EXP": int(expires.timestamp()),
    }
    headers, body = next((h, b) for h, b in receiver.attempts if any(e["id"] == event["id"] for e in b))
    assert headers["aeg-event-type"] == "Notification"
    assert isinstance(body, list)
    assert "never-in-an-event" not in json.dumps(receiver.attempts)


def test_certificate_creation_emits_certificate_and_secret_events(
    tenant: TenantProcess, receiver: Receiver
) -> None:
    certificates = CertificateClient(tenant.vault_url, credential(tenant), verify_challenge_resource=False)
    name = unique("evtcert")
    created = certificates.begin_create_certificate(name, CertificatePolicy.get_default()).result()

    (cert_event,) = receiver.wait_for(of("CertificateNewVersionCreated", name))
    (secret_event,) = receiver.wait_for(of("SecretNewVersionCreated", name))

    assert cert_event["data"]["ObjectType"] == "Certificate"
    assert cert_event["data"]["Id"] == created.id
    assert cert_event["data"]["EXP"] == int(created.properties.expires_on.timestamp())  # type: ignore[union-attr]
    assert secret_event["data"]["Id"] == created.secret_id
    assert secret_event["data"]["Version"] == cert_event["data"]["Version"] == created.properties.version


def test_near_expiry_and_expired_fire_once_for_the_current_version_only(
    tenant_admin: TenantProcess, secrets: SecretClient, receiver: Receiver
) -> None:
    tenant_admin.configure(nearExpiryWindowS=0.0)  # nothing is "near" while the versions are set up
    soon = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=3)
    replaced, expiring = unique("replaced"), unique("expiring")
    # `replaced` expires first, but a newer version without expiry supersedes it: no expiry events.
    secrets.set_secret(replaced, "old", expires_on=soon)
    secrets.set_secret(replaced, "new")
    secret = secrets.set_secret(expiring, "v", expires_on=soon + datetime.timedelta(seconds=2))
    tenant_admin.configure(nearExpiryWindowS=60.0)  # now both are within the window

    (near,) = receiver.wait_for(of("SecretNearExpiry", expiring))
    (expired,) = receiver.wait_for(of("SecretExpired", expiring))

    for event in (near, expired):
        assert event["data"]["Version"] == secret.properties.version
        assert event["data"]["EXP"] == int(soon.timestamp()) + 2
        assert event["data"]["NBF"] is None
        assert event["data"]["Id"] == secret.id
    # The scanner pops expiry times in order, so `replaced` (earlier exp) was judged before `expiring`.
    assert [e["eventType"] for e in receiver.events if e["subject"] == replaced] == [
        "Microsoft.KeyVault.SecretNewVersionCreated"
    ] * 2
    assert len([e for e in receiver.events if e["subject"] == expiring]) == 3


def test_certificate_near_expiry_and_expired(tenant_admin: TenantProcess, receiver: Receiver) -> None:
    tenant_admin.configure(nearExpiryWindowS=60.0)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "short-lived.example.com")])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    short_lived = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(seconds=3))
        .sign(key, hashes.SHA256())
    )
    pfx = pkcs12.serialize_key_and_certificates(None, key, short_lived, None, serialization.NoEncryption())
    certificates = CertificateClient(
        tenant_admin.vault_url, credential(tenant_admin), verify_challenge_resource=False
    )
    name = unique("shortcert")
    imported = certificates.import_certificate(name, pfx)

    for kind in ("CertificateNearExpiry", "CertificateExpired"):
        (event,) = receiver.wait_for(of(kind, name))
        assert event["data"]["ObjectType"] == "Certificate"
        assert event["data"]["Id"] == imported.id
        assert event["data"]["EXP"] == int(short_lived.not_valid_after_utc.timestamp())
    # The backing secret carries the same dates, so it has its own events.
    receiver.wait_for(of("SecretExpired", name))


def test_failed_deliveries_are_retried_until_accepted(
    tenant_admin: TenantProcess, secrets: SecretClient
) -> None:
    receiver = Receiver(fail_first=2)
    tenant_admin.configure(eventSubscriberUrl=receiver.url)
    before = tenant_admin.stats()["vault"]["events"]
    try:
        name = unique("retry")
        secrets.set_secret(name, "v")
        (event,) = receiver.wait_for(of("SecretNewVersionCreated", name))
    finally:
        receiver.close()

    attempts = [(h, b) for h, b in receiver.attempts if b[0]["id"] == event["id"]]
    assert len(attempts) == 3
    assert [h["aeg-delivery-count"] for h, _ in attempts] == ["0", "1", "2"]
    after = tenant_admin.stats()["vault"]["events"]
    assert after["retried"] - before["retried"] >= 2
    assert after["delivered"] - before["delivered"] >= 1


def test_delivery_is_given_up_after_the_configured_attempts(
    tenant_admin: TenantProcess, secrets: SecretClient
) -> None:
    receiver = Receiver(fail_first=float("inf"))
    tenant_admin.configure(
        eventSubscriberUrl=receiver.url,
        extra={"keyvault_delivery_max_attempts": 3, "keyvault_delivery_first_backoff_s": 0.05},
    )
    before = tenant_admin.stats()["vault"]["events"]["failed"]
    name = unique("giveup")
    try:
        secrets.set_secret(name, "v")
        deadline = time.monotonic() + WAIT_S

        def ours() -> list[dict[str, str]]:
            return [h for h, body in list(receiver.attempts) if body[0]["subject"] == name]

        while len(ours()) < 3 or tenant_admin.stats()["vault"]["events"]["failed"] == before:
            assert time.monotonic() < deadline, "the delivery was never given up"
            time.sleep(0.1)
    finally:
        receiver.close()

    attempts = ours()
    assert [h["aeg-delivery-count"] for h in attempts] == ["0", "1", "2"]
    assert receiver.events == []


def test_subscriber_can_be_changed_through_the_vault_admin_route(
    tenant_admin: TenantProcess, secrets: SecretClient
) -> None:
    first, second = Receiver(), Receiver()
    try:
        tenant_admin.admin("PATCH", "vault/events", {"subscriberUrl": first.url})
        name = unique("switch")
        secrets.set_secret(name, "one")
        first.wait_for(of("SecretNewVersionCreated", name))
        view = tenant_admin.admin("PATCH", "vault/events", {"subscriberUrl": second.url})
        assert view["subscriberUrl"] == second.url
        secrets.set_secret(name, "two")
        second.wait_for(of("SecretNewVersionCreated", name))
        assert len([e for e in first.events if e["subject"] == name]) == 1
    finally:
        first.close()
        second.close()
