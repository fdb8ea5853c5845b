"""Accepting a request leaves nothing half-made: signing secrets go only with their record."""

from __future__ import annotations

from typing import Any

import pytest

from functions.core.record.errors import TransientError
from functions.core.record.models import WebhookSpec
from tests.unit.provisioning_world import World


class FailingCreate:
    """The registration store, whose create fails (storage throttled, say) after the secrets were written."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def create(self, record: Any) -> Any:
        raise TransientError("table storage create reg: 503")


async def test_a_failed_record_write_takes_the_webhook_secrets_with_it() -> None:
    world = World()
    request = world.request(
        webhooks=(WebhookSpec("https://a.example.com/hook"), WebhookSpec("https://b.example.com/hook"))
    )
    healthy = world.store
    world.store = FailingCreate(healthy)  # type: ignore[assignment]

    with pytest.raises(TransientError):
        await world.accept(request)

    assert [name for name in world.vault.secrets if name.startswith("webhook-")] == []
    assert len(world.vault.deleted) == 2  # both were written, then removed

    world.store = healthy  # the caller's retry: new secrets, a record that names them
    accepted = await world.accept(request)
    names = {ref.secret_name for ref in accepted.registration.webhooks}
    assert names == {name for name in world.vault.secrets if name.startswith("webhook-")}
