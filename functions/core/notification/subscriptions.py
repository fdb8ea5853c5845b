"""Add or remove a registration's webhook subscriptions after it was requested.

A new subscription's signing secret (Standard Webhooks whsec_...) goes to Key Vault and is shown
to the caller once, in the response that creates it; the record keeps only its Key Vault name.
Removing one deletes that secret, so deliveries still queued for it end as "gone".
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

from functions.core.notification.events import display_url, new_signing_secret
from functions.core.notification.signing_secrets import WEBHOOK_SECRET_CONTENT_TYPE, webhook_secret_name
from functions.core.ports import Clock, RegistrationStore, Vault, WebhookTransport
from functions.core.record.errors import Conflict, NotFound, PermanentError, ValidationFailed
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import WEBHOOK_EVENTS, Problem, SecretValue, WebhookSpec
from functions.core.record.registration import WebhookSubscriptionRef

MAX_SUBSCRIPTIONS = 10


def parse_webhook_body(body: object) -> WebhookSpec:
    problems: list[Problem] = []
    if not isinstance(body, dict):
        raise ValidationFailed([Problem("", "expected a JSON object {url, events}")])
    url = body.get("url")
    if not isinstance(url, str) or not url:
        problems.append(Problem("url", "required: the https URL to deliver to"))
    events = body.get("events", list(WEBHOOK_EVENTS))
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events) or not events:
        problems.append(Problem("events", "expected a non-empty list of event names"))
        events = []
    for index, event in enumerate(events):
        if event not in WEBHOOK_EVENTS:
            problems.append(
                Problem(f"events[{index}]", f"unknown event {event!r}", ", ".join(WEBHOOK_EVENTS))
            )
    unknown = sorted(set(body) - {"url", "events"})
    if unknown:
        problems.append(Problem(unknown[0], f"unknown field(s): {', '.join(unknown)}; allowed: url, events"))
    if problems:
        raise ValidationFailed(problems)
    return WebhookSpec(url=str(url), events=tuple(events))


class Subscriptions:
    def __init__(
        self, *, store: RegistrationStore, vault: Vault, transport: WebhookTransport, clock: Clock, owner: str
    ) -> None:
        self._store = store
        self._vault = vault
        self._transport = transport
        self._clock = clock
        self._owner = owner

    async def _claim(self, registration_id: str) -> RecordKeeper:
        return await RecordKeeper.claim(
            self._store,
            self._clock,
            registration_id,
            owner=self._owner,
            lease_for=timedelta(minutes=1),
            wait=timedelta(seconds=10),
        )

    async def add(
        self, registration_id: str, spec: WebhookSpec
    ) -> tuple[WebhookSubscriptionRef, SecretValue]:
        try:
            await self._transport.check(spec.url)
        except PermanentError as refused:  # the refusal names the reason, never the URL
            raise ValidationFailed([Problem("url", str(refused))]) from None
        keeper = await self._claim(registration_id)
        try:
            existing = next((w for w in keeper.current.webhooks if w.url == spec.url), None)
            if existing is not None:
                # A second subscription to one URL would sign each event twice under two
                # webhook-ids, which the receiver cannot deduplicate (a retried POST does that).
                raise Conflict(
                    f"this URL is already subscribed as {existing.id}; remove that subscription to change it"
                )
            if len(keeper.current.webhooks) >= MAX_SUBSCRIPTIONS:
                raise ValidationFailed(
                    [Problem("url", f"at most {MAX_SUBSCRIPTIONS} webhooks per registration")]
                )
            subscription_id = f"wh-{uuid.uuid4().hex}"
            secret = new_signing_secret()
            name = webhook_secret_name(subscription_id)
            await self._vault.set_secret(
                name,
                secret,
                content_type=WEBHOOK_SECRET_CONTENT_TYPE,
                tags={
                    "registrationId": registration_id,
                    "subscriptionId": subscription_id,
                    "url": display_url(spec.url)[:256],
                },
                expires_on=None,
            )
            ref = WebhookSubscriptionRef(subscription_id, spec.url, spec.events, name, self._clock.now())
            now = self._clock.now()
            await keeper.update(
                lambda r: replace(r, webhooks=(*r.webhooks, ref)).with_event(
                    "webhook", "added", now, subscription_id
                )
            )
        finally:
            await keeper.release()
        return ref, secret

    async def remove(self, registration_id: str, subscription_id: str) -> None:
        keeper = await self._claim(registration_id)
        try:
            ref = next((w for w in keeper.current.webhooks if w.id == subscription_id), None)
            if ref is None:
                raise NotFound("webhook", subscription_id)
            if ref.secret_name:
                await self._vault.delete_secret(ref.secret_name)
            now = self._clock.now()
            await keeper.update(
                lambda r: replace(
                    r, webhooks=tuple(w for w in r.webhooks if w.id != subscription_id)
                ).with_event("webhook", "removed", now, subscription_id)
            )
        finally:
            await keeper.release()
