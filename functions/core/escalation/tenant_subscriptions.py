"""Tenant-wide webhook subscriptions: POST, GET and DELETE /api/subscriptions (Registrar.Admin).

A subscription takes {"url", "events"} exactly as a registration's webhooks do (the same parser,
the same URL checks, the same answers for bad input) and receives every registration's events,
the escalation ones included (rotation.failed, credential.at_risk): a ticketing system's inbound
endpoint opens an incident from them. Its Standard Webhooks signing secret goes to Key Vault
(webhook-<id>, as for a registration's webhooks, so the delivery worker signs both alike) and is
shown once, in the answer that creates it.

Crash safety, write-ahead: the subscription is stored inactive first, then its secret goes to Key
Vault, then it turns active (delivered to, shown). A POST killed in between leaves an inactive
subscription, invisible and never delivered to; the next POST removes every one older than
ABANDONED_AFTER (its secret, if made, then the record), so nothing half-made stays in Key Vault.
Removal deletes the secret first: queued deliveries end as `gone`, and a crash before the record
goes leaves a subscription whose deliveries end the same, which DELETE removes when repeated.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

from functions.core.notification.events import display_url, new_signing_secret
from functions.core.notification.signing_secrets import WEBHOOK_SECRET_CONTENT_TYPE, webhook_secret_name
from functions.core.notification.tenant_wide import TENANT_SUBSCRIPTION_PREFIX
from functions.core.ports import (
    Clock,
    TenantSubscriptionRecord,
    TenantSubscriptionStore,
    Vault,
    WebhookTransport,
)
from functions.core.record.errors import Conflict, NotFound, PermanentError, ValidationFailed
from functions.core.record.models import Problem, SecretValue, WebhookSpec

MAX_TENANT_SUBSCRIPTIONS = 20
ABANDONED_AFTER = timedelta(minutes=5)  # an inactive subscription this old: its POST died


def subscription_view(record: TenantSubscriptionRecord) -> dict[str, object]:
    """What the API shows: the URL without its user information or query values."""
    return {
        "id": record.id,
        "url": display_url(record.url),
        "events": list(record.events),
        "createdAt": record.created_at.isoformat().replace("+00:00", "Z"),
        "createdBy": record.created_by,
    }


class TenantSubscriptions:
    def __init__(
        self, *, store: TenantSubscriptionStore, vault: Vault, transport: WebhookTransport, clock: Clock
    ) -> None:
        self._store = store
        self._vault = vault
        self._transport = transport
        self._clock = clock

    async def add(
        self, spec: WebhookSpec, created_by: str | None
    ) -> tuple[TenantSubscriptionRecord, SecretValue]:
        try:
            await self._transport.check(spec.url)
        except PermanentError as refused:  # the refusal names the reason, never the URL
            raise ValidationFailed([Problem("url", str(refused))]) from None
        existing = await self._active_after_cleanup()
        same = next((s for s in existing if s.url == spec.url), None)
        if same is not None:
            # Two subscriptions to one URL would sign each event twice under two webhook-ids.
            raise Conflict(
                f"this URL is already subscribed as {same.id}; remove that subscription to change it"
            )
        if len(existing) >= MAX_TENANT_SUBSCRIPTIONS:
            raise ValidationFailed(
                [Problem("url", f"at most {MAX_TENANT_SUBSCRIPTIONS} tenant-wide subscriptions")]
            )
        subscription_id = f"{TENANT_SUBSCRIPTION_PREFIX}{uuid.uuid4().hex}"
        secret = new_signing_secret()
        record = TenantSubscriptionRecord(
            id=subscription_id,
            url=spec.url,
            events=spec.events,
            created_at=self._clock.now(),
            created_by=created_by,
            active=False,
        )
        await self._store.put(record)  # write-ahead: names the secret about to be made
        await self._vault.set_secret(
            webhook_secret_name(subscription_id),
            secret,
            content_type=WEBHOOK_SECRET_CONTENT_TYPE,
            tags={"subscriptionId": subscription_id, "scope": "tenant", "url": display_url(spec.url)[:256]},
            expires_on=None,
        )
        record = replace(record, active=True)
        await self._store.put(record)
        return record, secret

    async def _active_after_cleanup(self) -> list[TenantSubscriptionRecord]:
        """The active subscriptions; inactive ones abandoned by a POST that died are removed."""
        everything = await self._store.list()
        cutoff = self._clock.now() - ABANDONED_AFTER
        for stale in (s for s in everything if not s.active and s.created_at < cutoff):
            await self._vault.delete_secret(webhook_secret_name(stale.id))
            await self._store.remove(stale.id)
        return [s for s in everything if s.active]

    async def get(self, subscription_id: str) -> TenantSubscriptionRecord:
        if not subscription_id.startswith(TENANT_SUBSCRIPTION_PREFIX):
            raise NotFound("subscription", subscription_id)
        record = await self._store.get(subscription_id)
        if not record.active:
            raise NotFound("subscription", subscription_id)
        return record

    async def list(self) -> list[TenantSubscriptionRecord]:
        return sorted((s for s in await self._store.list() if s.active), key=lambda s: s.created_at)

    async def remove(self, subscription_id: str) -> None:
        await self.get(subscription_id)  # NotFound for an unknown id
        await self._vault.delete_secret(webhook_secret_name(subscription_id))
        await self._store.remove(subscription_id)
