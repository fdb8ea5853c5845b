"""Connector notifications: events, Standard Webhooks signatures, fan-out and retry schedule.

Pure: no I/O. The delivery worker (functions/triggers) sends what this module builds through the
webhook adapter, and the subscription's signing secret comes from Key Vault.

Standard Webhooks (https://www.standardwebhooks.com): headers webhook-id, webhook-timestamp
(Unix seconds) and webhook-signature "v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>",
keyed with the base64 part of a "whsec_<base64>" secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from functions.core.record.models import WEBHOOK_EVENTS, SecretValue
from functions.logs import redactor

SECRET_PREFIX = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
SIGNATURE_VERSION = "v1"
# A delivery's final outcomes: once one is recorded, no failed attempt (of a duplicate chain of the
# same delivery, e.g. after an announcement was re-sent) may record over it or retry it.
SETTLED_STATUSES = frozenset({"delivered", "gone"})
# Standard Webhooks receivers reject timestamps more than 5 minutes away: sign at send time.
DEFAULT_RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)


def new_signing_secret() -> SecretValue:
    """A fresh subscription secret in the Standard Webhooks format (whsec_ + 32 random bytes)."""
    value = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    redactor.register(value)  # a slip into any log line is masked
    return SecretValue(value)


def _signing_key(secret: SecretValue) -> bytes:
    text = secret.reveal()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        # `from None`: the original error could quote the secret's characters.
        raise ValueError("webhook signing secret is not whsec_<base64>") from None


def sign(secret: SecretValue, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value for one delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: SecretValue, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


@dataclass(frozen=True)
class WebhookSubscription:
    """A connector's endpoint for one registration. Its signing secret lives in Key Vault only."""

    id: str
    registration_id: str
    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS
    created_at: datetime | None = None
    disabled: bool = False

    def wants(self, event_type: str) -> bool:
        return not self.disabled and event_type in self.events


@dataclass(frozen=True)
class WebhookEvent:
    """One thing that happened to a registration, as connectors receive it.

    `id` is deterministic (built by the caller from what happened, e.g. registration id +
    credential generation + type) so that re-running a step never announces it twice.
    """

    id: str
    type: str
    occurred_at: datetime
    registration_id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in WEBHOOK_EVENTS:
            raise ValueError(f"unknown webhook event type {self.type!r}")
        _refuse_secrets(self.data, "data")

    def payload(self) -> dict[str, Any]:
        """The JSON body: {type, timestamp, data} as Standard Webhooks recommends; ids only."""
        return {
            "type": self.type,
            "timestamp": _iso(self.occurred_at),
            "data": {"eventId": self.id, "registrationId": self.registration_id, **dict(self.data)},
        }

    def body(self) -> bytes:
        return json.dumps(
            self.payload(), separators=(",", ":"), sort_keys=True, default=_json_default
        ).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, SecretValue):  # belt and braces: __post_init__ already refused it
        raise TypeError("a secret value cannot be part of a webhook payload")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _refuse_secrets(value: Any, path: str) -> None:
    if isinstance(value, SecretValue):
        raise ValueError(f"webhook payload field {path} holds a secret value")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_secrets(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_secrets(item, f"{path}[{index}]")


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The webhook-id of one event to one subscriber: the same on every retry and re-run."""
    digest = hashlib.sha256(f"{event_id}\n{subscription_id}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


@dataclass(frozen=True)
class Delivery:
    """One event to one subscriber: the message on the webhook-deliveries queue."""

    delivery_id: str
    subscription_id: str
    registration_id: str
    url: str
    event_type: str
    body: str  # the exact JSON that is signed and sent
    attempt: int = 1
    first_attempt_at: str | None = None
    # Sent for a prompt attempt by the announcing invocation (core/notification/prompt.py): should the
    # queue ever hand this message over, that attempt may have settled it already.
    prompt: bool = False

    def to_message(self) -> str:
        fields: dict[str, object] = {
            "deliveryId": self.delivery_id,
            "subscriptionId": self.subscription_id,
            "registrationId": self.registration_id,
            "url": self.url,
            "eventType": self.event_type,
            "body": self.body,
            "attempt": self.attempt,
            "firstAttemptAt": self.first_attempt_at,
        }
        if self.prompt:
            fields["prompt"] = True
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_message(cls, text: str) -> Delivery:
        data = json.loads(text)
        return cls(
            delivery_id=str(data["deliveryId"]),
            subscription_id=str(data["subscriptionId"]),
            registration_id=str(data["registrationId"]),
            url=str(data["url"]),
            event_type=str(data["eventType"]),
            body=str(data["body"]),
            attempt=int(data.get("attempt", 1)),
            first_attempt_at=data.get("firstAttemptAt"),
            prompt=data.get("prompt") is True,
        )

    def next_attempt(self) -> Delivery:
        return Delivery(
            delivery_id=self.delivery_id,
            subscription_id=self.subscription_id,
            registration_id=self.registration_id,
            url=self.url,
            event_type=self.event_type,
            body=self.body,
            attempt=self.attempt + 1,
            first_attempt_at=self.first_attempt_at,
        )


def fan_out(event: WebhookEvent, subscriptions: Iterable[WebhookSubscription]) -> list[Delivery]:
    """One Delivery per subscription that wants this event type (one per delivery id)."""
    body = event.body().decode()
    deliveries: dict[str, Delivery] = {}
    for subscription in subscriptions:
        if subscription.registration_id != event.registration_id or not subscription.wants(event.type):
            continue
        delivery = Delivery(
            delivery_id=delivery_id(event.id, subscription.id),
            subscription_id=subscription.id,
            registration_id=event.registration_id,
            url=subscription.url,
            event_type=event.type,
            body=body,
        )
        deliveries[delivery.delivery_id] = delivery
    return list(deliveries.values())


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt gave: a status code or a transport error (never a response body)."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410 Gone: Standard Webhooks' way for a receiver to unsubscribe; stop retrying."""
        return self.status == 410

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.error is None else self.error


def retry_delay(attempt: int, schedule: Sequence[timedelta] = DEFAULT_RETRY_SCHEDULE) -> timedelta | None:
    """How long to wait after failed attempt number `attempt` (1-based); None: give up, dead-letter."""
    if attempt < 1 or attempt > len(schedule):
        return None
    return schedule[attempt - 1]


def display_url(url: str) -> str:
    """A webhook URL as the API, Key Vault tags and operators see it: user info and query values
    hidden. Receivers often authenticate with a token in the URL (an Azure Functions ?code=, a
    Logic Apps sig=, basic auth in the authority); the full URL is kept only where a delivery
    needs it (the registration record and the delivery messages). A token in the path itself
    cannot be told from an ordinary path segment and is shown as given.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    authority = ("***@" if parts.username or parts.password else "") + host + (f":{port}" if port else "")
    query = "&".join(
        f"{pair.split('=', 1)[0]}=***" if "=" in pair else "***" for pair in parts.query.split("&") if pair
    )
    return f"{parts.scheme}://{authority}{parts.path}" + (f"?{query}" if query else "")
