"""Wires the adapters into the core, once per process, lazily.

Importing this module imports no Azure SDK: each adapter (and the SDK behind it) is built on
first use, so function_app imports fast (cold start) and an HTTP route that needs only the
profile catalogue never loads msgraph-sdk. Triggers call `services()`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from functions.resources import REGISTRATION_REQUESTS_QUEUE, REGISTRATIONS_TABLE

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from functions.core.catalogue.lifetimes import CredentialLifetimes
    from functions.core.catalogue.policy import Policy
    from functions.core.catalogue.profiles import ProfileCatalogue
    from functions.core.notification.delivery import DeliveryWorker
    from functions.core.notification.prompt import PromptDeliveries
    from functions.core.notification.signing_secrets import CachedSecrets
    from functions.core.ports import (
        DeliveryLog,
        Directory,
        ExpiryIndex,
        MessageQueue,
        RegistrationStore,
        TokenProbe,
        Vault,
        WebhookTransport,
    )
    from functions.core.provisioning.lifecycle import Lifecycle
    from functions.core.provisioning.workflow import Provisioner
    from functions.core.record.deferral import TenantJobs
    from functions.core.record.registration import Registration
    from functions.core.rotation.keyvault_reactions import KeyVaultReactions
    from functions.core.rotation.rotator import RotationSettings, Rotator
    from functions.settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Services:
    """The process's adapters and core services. Built on first use; one per process."""

    requests_queue = REGISTRATION_REQUESTS_QUEUE

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()
        # Lease owner: which instance works on a registration (shows up in the record while it does).
        self.owner = f"{socket.gethostname()}-{os.getpid()}"
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @cached_property
    def catalogue(self) -> ProfileCatalogue:
        from functions.profiles import load_catalogue

        return load_catalogue()

    @cached_property
    def identity(self) -> Any:
        from functions.adapters.identity import IdentityConfig, RegistrarIdentity

        return RegistrarIdentity(IdentityConfig.from_env(self.settings.values))

    @cached_property
    def policy(self) -> Policy:
        from functions.core.catalogue.policy import policy_from_settings

        tenants = [self.settings.home_tenant_id, *self.identity.config.tenants]
        return policy_from_settings(self.settings.values, allowed_tenants=tenants)

    @cached_property
    def directory(self) -> Directory:
        from functions.adapters.graph import GraphDirectory
        from functions.adapters.graph_pacing import GraphPacer

        pacer = GraphPacer(scale=self.settings.graph_budget_scale)  # one per process: its budgets
        return GraphDirectory(self.identity, self.settings.graph_base_url, pacer=pacer)

    @cached_property
    def vault(self) -> Vault:
        from functions.adapters.keyvault import KeyVaultStore

        return KeyVaultStore(self.identity, self.settings.key_vault_url)

    @cached_property
    def probe(self) -> TokenProbe:
        from functions.adapters.identity import EntraTokenProbe

        return EntraTokenProbe(self.settings.authority_host)

    @cached_property
    def storage(self) -> Any:
        from functions.adapters.tables import StorageConfig

        return StorageConfig.from_env(self.settings.values)

    def _storage_credential(self) -> Any:
        # Identity-based storage (Azure, no connection string) uses the function's own identity.
        return None if self.storage.connection_string else self.identity.credential()

    @cached_property
    def table_service(self) -> Any:
        from functions.adapters.tables import table_service

        return table_service(self.storage, self._storage_credential())

    @cached_property
    def store(self) -> RegistrationStore:
        from functions.adapters.tables import TableRegistrationStore

        return TableRegistrationStore(self.table_service, REGISTRATIONS_TABLE)

    @cached_property
    def queue(self) -> MessageQueue:
        from functions.adapters.queues import StorageQueues

        return StorageQueues(self.storage, self._storage_credential())

    def job_owner(self) -> str:
        """A lease owner for one job: jobs of this process run concurrently (a queue batch, a timer,
        an HTTP call), and a lease shared by the whole process would let them all in at once."""
        return f"{self.owner}-{uuid.uuid4().hex[:8]}"

    # Users before what they use: the store and logs write through the table service, every
    # Azure client authenticates through the identity.
    _CLOSE_ORDER = ("deliveries", "index", "store", "queue", "table_service", "directory", "vault",
                    "probe", "webhook_sender", "identity")  # fmt: skip

    async def close(self) -> None:
        """Close the adapters built so far (each holds HTTP sessions); benchmarks and tools call
        this before their event loop ends. The Functions host never does: it ends the process."""
        for name in self._CLOSE_ORDER:
            adapter = self.__dict__.pop(name, None)
            close = getattr(adapter, "close", None)
            if close is not None:
                await close()
        self._ready = False

    async def ready(self) -> Services:
        """Create the tables once per process (idempotent; Bicep creates them in Azure too)."""
        if not self._ready:
            async with self._ready_lock:
                if not self._ready:
                    from functions.adapters.tables import ensure_tables

                    await ensure_tables(self.table_service)
                    self._ready = True
        return self

    def provisioner(self) -> Provisioner:
        from functions.core.provisioning.workflow import Provisioner, WorkflowSettings

        return Provisioner(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            probe=self.probe,
            clock=self.clock,
            settings=WorkflowSettings(verify_timeout=min(self.settings.verify_timeout, timedelta(minutes=5))),
            owner=self.job_owner(),  # one per run: duplicate deliveries in one process must not share a lease
            lifetimes=self.lifetimes,
            jobs=self.tenant_jobs,
        )

    @cached_property
    def tenant_jobs(self) -> TenantJobs:
        """The jobs of each tenant this process runs: whether a new one starts or is deferred."""
        from functions.core.record.deferral import TenantJobs

        return TenantJobs()

    @cached_property
    def lifetimes(self) -> CredentialLifetimes:
        """End dates of new credentials: the configured maximum (REGISTRAR_MAX_CREDENTIAL_LIFETIME) and
        default, the profile's maximum and the tenant's app management policy, applied at every issue."""
        from functions.core.catalogue.lifetimes import CredentialLifetimes

        return CredentialLifetimes(directory=self.directory, policy=self.policy, profiles=self.catalogue.get)

    # ------------------------------------------------------------ rotation and notification

    @cached_property
    def index(self) -> ExpiryIndex:
        from functions.adapters.table_index import CredentialExpiryIndex

        return CredentialExpiryIndex(self.table_service)

    @cached_property
    def deliveries(self) -> DeliveryLog:
        from functions.adapters.deliveries import TableDeliveryLog

        return TableDeliveryLog(self.table_service)

    @cached_property
    def webhook_sender(self) -> WebhookTransport:
        from functions.adapters.webhooks import WebhookSender

        return WebhookSender(allow_insecure_local=self.settings.webhook_allow_insecure_local)

    @cached_property
    def rotation_settings(self) -> RotationSettings:
        from functions.core.credentials.verification import VerifyPolicy
        from functions.core.rotation.rotator import RotationSettings

        return RotationSettings(
            lead_time=self.settings.rotation_lead_time,
            lifetime_fraction=self.settings.rotation_lifetime_fraction,
            overlap=self.settings.rotation_overlap,
            default_lifetime=self.settings.default_credential_lifetime,
            verify=VerifyPolicy(timeout=min(self.settings.verify_timeout, timedelta(minutes=5))),
        )

    @cached_property
    def webhook_retry_schedule(self) -> tuple[timedelta, ...]:
        from functions.core.notification.events import DEFAULT_RETRY_SCHEDULE

        return self.settings.webhook_retry_schedule or DEFAULT_RETRY_SCHEDULE

    def rotator(self) -> Rotator:
        from functions.core.rotation.rotator import Rotator

        return Rotator(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            probe=self.probe,
            index=self.index,
            queue=self.queue,
            clock=self.clock,
            settings=self.rotation_settings,
            owner=self.job_owner(),
            lifetimes=self.lifetimes,
            jobs=self.tenant_jobs,
        )

    async def settle(self, record: Registration) -> None:
        """After a provisioning run ends (active: schedule its rotation; either way: announce it)."""
        from functions.core.provisioning.outcomes import settle_provisioned

        await settle_provisioned(
            record,
            store=self.store,
            index=self.index,
            queue=self.queue,
            clock=self.clock,
            owner=self.job_owner(),
            settings=self.rotation_settings,
        )

    def reactions(self) -> KeyVaultReactions:
        from functions.core.rotation.keyvault_reactions import KeyVaultReactions

        return KeyVaultReactions(
            store=self.store,
            queue=self.queue,
            index=self.index,
            clock=self.clock,
            owner=self.job_owner(),
            settings=self.rotation_settings,
        )

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
        )

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

    def lifecycle(self) -> Lifecycle:
        from functions.core.provisioning.lifecycle import Lifecycle

        return Lifecycle(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            clock=self.clock,
            owner=self.job_owner(),
        )


_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    global _services  # noqa: PLW0603  (one wiring per process is the point)
    if _services is None:
        from functions.settings import get_settings

        with _lock:
            if _services is None:
                _services = Services(get_settings())
    return _services


def reset_services(replacement: Services | None = None) -> None:
    """Tests: drop the process's wiring (or install one built from other settings)."""
    global _services  # noqa: PLW0603
    with _lock:
        _services = replacement
