"""Adding and removing webhook subscriptions after the request (functions/core/notification/subscriptions.py)."""

from __future__ import annotations

import pytest

from functions.core.notification.subscriptions import MAX_SUBSCRIPTIONS, Subscriptions
from functions.core.record.errors import Conflict, ValidationFailed
from functions.core.record.models import WebhookSpec
from tests.unit.test_delivery_and_reactions import FakeTransport
from tests.unit.test_rotation import RotationWorld


def subscriptions(world: RotationWorld) -> Subscriptions:
    return Subscriptions(
        store=world.store, vault=world.vault, transport=FakeTransport([]), clock=world.clock, owner="api"
    )


async def test_the_same_url_twice_is_a_conflict_not_a_second_signing_chain() -> None:
    """A client retrying a timed-out POST must not end up with every event signed twice under two
    webhook-ids (the receiver could deduplicate neither)."""
    world = RotationWorld()
    record = await world.active()  # subscribed to https://hooks.example/x at request time
    api = subscriptions(world)
    added, _ = await api.add(record.id, WebhookSpec("https://hooks.example/y", ("credential.rotated",)))

    for url in ("https://hooks.example/x", "https://hooks.example/y"):
        with pytest.raises(Conflict) as conflict:
            await api.add(record.id, WebhookSpec(url, ("credential.rotated",)))
        assert "already subscribed" in str(conflict.value) and url not in str(conflict.value)

    stored = await world.store.get(record.id)
    assert [w.url for w in stored.webhooks] == ["https://hooks.example/x", "https://hooks.example/y"]
    assert added.id in str(conflict.value)


async def test_at_most_the_limit_of_subscriptions() -> None:
    world = RotationWorld()
    record = await world.active()
    api = subscriptions(world)
    for n in range(MAX_SUBSCRIPTIONS - 1):
        await api.add(record.id, WebhookSpec(f"https://hooks.example/{n}", ("credential.rotated",)))
    with pytest.raises(ValidationFailed):
        await api.add(record.id, WebhookSpec("https://hooks.example/one-too-many", ("credential.rotated",)))
