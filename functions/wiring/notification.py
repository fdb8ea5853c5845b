"""Wiring of core/notification: webhook delivery, prompt delivery, signing secrets, tenant-wide
subscribers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from functions.wiring.adapters import Adapters

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from functions.core.notification.delivery import DeliveryWorker
    from functions.core.notification.events import Delivery
    from functions.core.notification.prompt import PromptDeliveries
    from functions.core.notification.signing_secrets import CachedSecrets
    from functions.core.notification.tenant_wide import TenantSubscribers
    from functions.core.ports import (
        TenantSubscriptionStore,
    )


class NotificationWiring(Adapters):
    """core/notification over the adapters."""

    @cached_property
    def webhook_retry_schedule(self) -> tuple[timedelta, ...]:
        from functions.core.notification.events import DEFAULT_RETRY_SCHEDULE

        return self.settings.webhook_retry_schedule or DEFAULT_RETRY_SCHEDULE

    @cached_property
    def signing_secrets(self) -> CachedSecrets:
        """Webhook signing secrets, read from Key Vault once per subscription and name for a while."""
        from functions.core.notification.signing_secrets import CachedSecrets

        return CachedSecrets(self.vault)

    def delivery_worker(self) -> DeliveryWorker:
        from functions.core.notification.delivery import DeliveryWorker

        return DeliveryWorker(
            vault=self.signing_secrets,
            transport=self.webhook_sender,
            queue=self.queue,
            deliveries=self.deliveries,
            clock=self.clock,
            schedule=self.webhook_retry_schedule,
            observer=self._delivery_observed,
        )

    def _delivery_observed(self, delivery: Delivery, status: str) -> None:
        """A delivery settled (delivered, or dead-lettered): escalation, above, listens here."""

    @cached_property
    def prompt_slots(self) -> asyncio.Semaphore:
        """Prompt delivery attempts at once in this process, across invocations."""
        from functions.core.notification.prompt import PROMPT_CONCURRENCY

        return asyncio.Semaphore(PROMPT_CONCURRENCY)

    def prompt_deliveries(
        self, deadline: timedelta | None = None
    ) -> AbstractAsyncContextManager[PromptDeliveries]:
        """A trigger that may announce events wraps its work in this: the deliveries announced are
        attempted at once, the queue trigger taking over what this invocation does not settle."""
        from functions.core.notification.prompt import PROMPT_DEADLINE, PromptDeliveries

        return PromptDeliveries(
            worker=self.delivery_worker(),
            queue=self.queue,
            deadline=deadline or PROMPT_DEADLINE,
            slots=self.prompt_slots,
        ).opened()

    @cached_property
    def tenant_subscription_store(self) -> TenantSubscriptionStore:
        from functions.adapters.tenant_subscriptions import TableTenantSubscriptions

        return TableTenantSubscriptions(self.table_service)

    @cached_property
    def tenant_subscribers(self) -> TenantSubscribers:
        """Tenant-wide subscriptions, read at most every 30 s by this process."""
        from functions.core.notification.tenant_wide import TenantSubscribers

        return TenantSubscribers(self.tenant_subscription_store)
