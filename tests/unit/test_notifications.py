"""Notification core: Standard Webhooks signatures (checked with the reference package), payloads, fan-out."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from functions.core.notification.events import (
    Delivery,
    DeliveryOutcome,
    WebhookEvent,
    WebhookSubscription,
    delivery_id,
    display_url,
    fan_out,
    new_signing_secret,
    retry_delay,
    signed_headers,
)
from functions.core.record.models import WEBHOOK_EVENTS, SecretValue

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _event(**data: object) -> WebhookEvent:
    return WebhookEvent(
        id="reg-1:g2:credential.rotated",
        type="credential.rotated",
        occurred_at=NOW,
        registration_id="reg-1",
        data={"keyId": "k-2", "secretUri": "https://vault/secrets/reg-1/abc", **data},
    )


def test_reference_implementation_verifies_our_signature() -> None:
    secret = new_signing_secret()
    body = _event().body()
    headers = signed_headers(secret, "msg_1", int(time.time()), body)

    verified = Webhook(secret.reveal()).verify(body, headers)

    assert verified["type"] == "credential.rotated"
    assert verified["data"]["registrationId"] == "reg-1"


def test_reference_implementation_rejects_a_tampered_body_or_another_secret() -> None:
    secret = new_signing_secret()
    body = _event().body()
    headers = signed_headers(secret, "msg_1", int(time.time()), body)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret.reveal()).verify(body.replace(b"k-2", b"k-3"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret().reveal()).verify(body, headers)


def test_signing_secret_is_standard_format_and_never_shown() -> None:
    secret = new_signing_secret()
    assert secret.reveal().startswith("whsec_")
    assert len(secret.reveal()) > 40
    assert secret.reveal() not in repr(secret)
    assert secret.reveal() not in f"{secret}"
    assert new_signing_secret() != secret


def test_payload_carries_ids_and_dates_never_a_secret_value() -> None:
    payload = json.loads(_event(expiresOn=NOW + timedelta(days=90)).body())

    assert payload == {
        "type": "credential.rotated",
        "timestamp": "2026-11-22T03:00:00Z",
        "data": {
            "eventId": "reg-1:g2:credential.rotated",
            "registrationId": "reg-1",
            "keyId": "k-2",
            "secretUri": "https://vault/secrets/reg-1/abc",
            "expiresOn": "2027-02-20T03:00:00Z",
        },
    }
    with pytest.raises(ValueError, match="secret value"):
        _event(nested={"value": [SecretValue("hunter2")]})


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown webhook event type"):
        WebhookEvent(id="x", type="credential.leaked", occurred_at=NOW, registration_id="reg-1")


def test_fan_out_one_delivery_per_interested_subscriber_with_stable_ids() -> None:
    subscriptions = [
        WebhookSubscription(id="s1", registration_id="reg-1", url="https://a.example/hook"),
        WebhookSubscription(
            id="s2", registration_id="reg-1", url="https://b.example/hook", events=("registration.active",)
        ),
        WebhookSubscription(id="s3", registration_id="reg-2", url="https://c.example/hook"),
        WebhookSubscription(id="s4", registration_id="reg-1", url="https://d.example/hook", disabled=True),
    ]
    event = _event()

    first = fan_out(event, subscriptions)
    again = fan_out(event, subscriptions)

    assert [d.subscription_id for d in first] == ["s1"]
    assert [d.delivery_id for d in first] == [d.delivery_id for d in again]  # same webhook-id on a re-run
    assert first[0].delivery_id == delivery_id(event.id, "s1")
    assert delivery_id(event.id, "s1") != delivery_id(event.id, "s2")
    assert json.loads(first[0].body) == event.payload()


def test_delivery_message_round_trips_and_counts_attempts() -> None:
    delivery = fan_out(_event(), [WebhookSubscription(id="s1", registration_id="reg-1", url="https://a/h")])[
        0
    ]

    restored = Delivery.from_message(delivery.to_message())
    retried = restored.next_attempt()

    assert restored == delivery
    assert (retried.attempt, retried.delivery_id, retried.body) == (2, delivery.delivery_id, delivery.body)


def test_retry_schedule_backs_off_then_gives_up() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, 8)]
    known = [d for d in delays if d is not None]

    assert known == sorted(known)
    assert len(set(known)) == len(known)
    assert delays[-1] is None  # after the last scheduled retry: dead-letter
    assert retry_delay(1, schedule=(timedelta(seconds=1),)) == timedelta(seconds=1)
    assert retry_delay(2, schedule=(timedelta(seconds=1),)) is None


@pytest.mark.parametrize(
    ("outcome", "delivered", "gone"),
    [
        (DeliveryOutcome(status=204), True, False),
        (DeliveryOutcome(status=410), False, True),
        (DeliveryOutcome(status=500), False, False),
        (DeliveryOutcome(status=None, error="timed out"), False, False),
    ],
)
def test_delivery_outcomes(outcome: DeliveryOutcome, delivered: bool, gone: bool) -> None:
    assert (outcome.delivered, outcome.gone) == (delivered, gone)


def test_every_documented_event_type_can_be_built() -> None:
    for event_type in WEBHOOK_EVENTS:
        event = WebhookEvent(id=f"e-{event_type}", type=event_type, occurred_at=NOW, registration_id="reg-1")
        assert json.loads(event.body())["type"] == event_type


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.contoso.com/a/b?code=abc123&clientId=x",
            "https://hooks.contoso.com/a/b?code=***&clientId=***",
        ),
        ("https://user:pw@h.example.com:8443/p?flag", "https://***@h.example.com:8443/p?***"),
        ("https://[::1]:9/x#token", "https://[::1]:9/x"),
        ("http://127.0.0.1:5000/hook", "http://127.0.0.1:5000/hook"),
        ("https://h.example.com/p?a=&b", "https://h.example.com/p?a=***&***"),
        ("https://h.example.com:99999/", "(unparseable URL)"),
    ],
)
def test_display_url_hides_user_info_query_values_and_fragment(url: str, shown: str) -> None:
    assert display_url(url) == shown
