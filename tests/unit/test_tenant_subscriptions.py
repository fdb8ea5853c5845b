"""Tenant-wide webhook subscriptions (core/escalation/tenant_subscriptions.py, core/notification/tenant_wide.py):
the same checks as a registration's webhooks, the secret in Key Vault only, and every registration's
events (those with no webhook of their own included) fanned out to them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.core.escalation.tenant_subscriptions import TenantSubscriptions, subscription_view
from functions.core.notification.signing_secrets import webhook_secret_name
from functions.core.notification.tenant_wide import TenantSubscribers, tenant_wide
from functions.core.provisioning.outcomes import settle_provisioned
from functions.core.record.errors import Conflict, NotFound, PermanentError, ValidationFailed
from functions.core.record.models import WebhookSpec
from tests.unit.fakes import Crash, FakeTenantSubscriptionStore
from tests.unit.provisioning_world import fast_sleep
from tests.unit.test_delivery_and_reactions import FakeTransport
from tests.unit.test_rotation import SETTINGS, RotationWorld


class RefusingTransport(FakeTransport):
    async def check(self, url: str) -> None:
        raise PermanentError("the host resolves to a private address", code="WebhookRefused")


def api(
    world: RotationWorld, store: FakeTenantSubscriptionStore, transport: FakeTransport | None = None
) -> TenantSubscriptions:
    return TenantSubscriptions(
        store=store, vault=world.vault, transport=transport or FakeTransport([]), clock=world.clock
    )


async def test_a_subscription_keeps_its_secret_in_key_vault_and_shows_it_once() -> None:
    world = RotationWorld()
    store = FakeTenantSubscriptionStore()
    record, secret = await api(world, store).add(
        WebhookSpec("https://itsm.example/api/now/incident?code=abc123", ("credential.at_risk",)),
        "admin (oid)",
    )

    assert record.id.startswith("ts-") and secret.reveal().startswith("whsec_")
    assert world.vault.latest_value(webhook_secret_name(record.id)) == secret.reveal()
    assert secret.reveal() not in repr(store.items) and secret.reveal() not in str(subscription_view(record))
    assert subscription_view(record)["url"] == "https://itsm.example/api/now/incident?code=***"
    assert (await api(world, store).get(record.id)).created_by == "admin (oid)"

    with pytest.raises(Conflict) as conflict:  # the same URL twice: two signing chains, refused
        await api(world, store).add(WebhookSpec(record.url, ("rotation.failed",)), None)
    assert record.id in str(conflict.value) and "abc123" not in str(conflict.value)

    await api(world, store).remove(record.id)
    assert world.vault.latest_value(webhook_secret_name(record.id)) is None and store.items == {}
    with pytest.raises(NotFound):
        await api(world, store).remove(record.id)
    with pytest.raises(NotFound):
        await api(world, store).get("wh-not-a-tenant-one")


async def test_a_refused_url_is_a_validation_problem_and_nothing_is_kept() -> None:
    world = RotationWorld()
    store = FakeTenantSubscriptionStore()
    with pytest.raises(ValidationFailed) as refused:
        await api(world, store, RefusingTransport([])).add(
            WebhookSpec("https://10.0.0.5/x", ("rotation.failed",)), None
        )
    assert [p.field for p in refused.value.problems] == ["url"]
    assert store.items == {}
    assert not any(name.startswith("webhook-ts-") for name in world.vault.secrets)


async def test_every_registration_s_events_reach_the_tenant_wide_subscribers_even_without_webhooks() -> None:
    world = RotationWorld()
    store = FakeTenantSubscriptionStore()
    subscription, _ = await api(world, store).add(
        WebhookSpec("https://itsm.example/in", ("registration.active", "credential.at_risk")), None
    )
    request = world.request("INC-NO-HOOKS", credential=world.credential)  # no webhook of its own
    accepted = await world.accept(request, world.plan(credential=world.credential))
    record = await world.provisioner().run(accepted.registration.id)
    subscribers = TenantSubscribers(store, ttl=timedelta(0))

    with tenant_wide(subscribers):
        await settle_provisioned(
            record,
            store=world.store,
            index=world.index,
            queue=world.queue,
            clock=world.clock,
            owner="worker",
            settings=SETTINGS,
            sleep=fast_sleep,
        )
        await settle_provisioned(  # re-run after a crash: not announced twice
            await world.store.get(record.id),
            store=world.store,
            index=world.index,
            queue=world.queue,
            clock=world.clock,
            owner="worker",
            settings=SETTINGS,
            sleep=fast_sleep,
        )

    (delivery,) = world.queue.deliveries()
    assert delivery.subscription_id == subscription.id and delivery.url == subscription.url
    assert delivery.event_type == "registration.active" and delivery.registration_id == record.id

    outside = world.request("INC-OUTSIDE", credential=world.credential)  # no tenant-wide context: none
    accepted = await world.accept(outside, world.plan(credential=world.credential))
    other = await world.provisioner().run(accepted.registration.id)
    await settle_provisioned(
        other,
        store=world.store,
        index=world.index,
        queue=world.queue,
        clock=world.clock,
        owner="w",
        settings=SETTINGS,
    )
    assert len(world.queue.deliveries()) == 1


class DyingVault:
    """The vault of a POST killed right after the signing secret was written."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def set_secret(self, *args: object, **kwargs: object) -> None:
        await self._inner.set_secret(*args, **kwargs)  # type: ignore[attr-defined]
        raise Crash("killed after set_secret")


async def test_a_post_killed_half_way_leaves_nothing_visible_and_the_next_post_cleans_it_up() -> None:
    world = RotationWorld()
    store = FakeTenantSubscriptionStore()
    dying = TenantSubscriptions(
        store=store, vault=DyingVault(world.vault), transport=FakeTransport([]), clock=world.clock
    )  # type: ignore[arg-type]
    with pytest.raises(Crash):
        await dying.add(WebhookSpec("https://itsm.example/in", ("credential.at_risk",)), None)
    (abandoned,) = store.items.values()
    name = webhook_secret_name(abandoned.id)
    assert not abandoned.active and world.vault.latest_value(name) is not None
    assert await api(world, store).list() == []  # never shown
    assert (
        await TenantSubscribers(store, ttl=timedelta(0)).for_registration("reg-x") == []
    )  # never delivered to
    with pytest.raises(NotFound):
        await api(world, store).get(abandoned.id)

    world.clock.advance(timedelta(minutes=6))
    added, _ = await api(world, store).add(
        WebhookSpec("https://itsm.example/in", ("credential.at_risk",)), None
    )
    assert list(store.items) == [added.id] and store.items[added.id].active  # the same URL: no conflict
    assert world.vault.latest_value(name) is None  # the abandoned secret is gone
