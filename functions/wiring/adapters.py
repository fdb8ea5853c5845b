"""The adapters, one per outside service, and what every capability's wiring shares (the clock,
lease owners, the per-tenant job admission, credential lifetimes). Built on first use."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from functions.resources import REGISTRATION_REQUESTS_QUEUE, REGISTRATIONS_TABLE

if TYPE_CHECKING:
    from functions.core.catalogue.lifetimes import CredentialLifetimes
    from functions.core.catalogue.policy import Policy
    from functions.core.catalogue.profiles import ProfileCatalogue
    from functions.core.ports import (
        DeliveryLog,
        Directory,
        ExpiryIndex,
        InFlightIndex,
        MessageQueue,
        RegistrationStore,
        TokenProbe,
        Vault,
        WebhookTransport,
    )
    from functions.core.record.deferral import TenantJobs
    from functions.settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Adapters:
    """The process's adapters: each built on first use, so a route that needs only the catalogue
    never loads an Azure SDK."""

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

    @property
    def tenants(self) -> list[str]:
        """Every tenant Registrar has an identity in: home first."""
        return list(
            dict.fromkeys(
                [self.settings.home_tenant_id.lower(), *(t.lower() for t in self.identity.config.tenants)]
            )
        )

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

    @cached_property
    def index(self) -> ExpiryIndex:
        from functions.adapters.table_index import CredentialExpiryIndex

        return CredentialExpiryIndex(self.table_service)

    @cached_property
    def in_flight(self) -> InFlightIndex:
        """Work started and not ended (provisioning runs, rotation jobs), for the resume sweep."""
        from functions.adapters.table_index import TableInFlightIndex

        return TableInFlightIndex(self.table_service)

    @cached_property
    def deliveries(self) -> DeliveryLog:
        from functions.adapters.deliveries import TableDeliveryLog

        return TableDeliveryLog(self.table_service)

    @cached_property
    def webhook_sender(self) -> WebhookTransport:
        from functions.adapters.webhooks import WebhookSender

        return WebhookSender(allow_insecure_local=self.settings.webhook_allow_insecure_local)
