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
from typing import TYPE_CHECKING, Any, cast

from functions.resources import REGISTRATION_REQUESTS_QUEUE, REGISTRATIONS_TABLE

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from functions.core.adoption.claims import AppClaims
    from functions.core.adoption.ownership import OwnershipCheck
    from functions.core.adoption.permissions import PermissionStep
    from functions.core.adoption.takeover import Takeover
    from functions.core.catalogue.lifetimes import CredentialLifetimes
    from functions.core.catalogue.policy import Policy
    from functions.core.catalogue.profiles import ProfileCatalogue
    from functions.core.escalation.at_risk import EscalationSettings
    from functions.core.escalation.escalation import Escalation
    from functions.core.escalation.instruments import Instruments
    from functions.core.escalation.proof_of_use import ProofOfUse
    from functions.core.inventory.ports import InventoryStore
    from functions.core.inventory.scanner import InventoryScanner
    from functions.core.notification.delivery import DeliveryWorker
    from functions.core.notification.events import Delivery
    from functions.core.notification.prompt import PromptDeliveries
    from functions.core.notification.signing_secrets import CachedSecrets
    from functions.core.notification.tenant_wide import TenantSubscribers
    from functions.core.ports import (
        DeadLetters,
        DeliveryLog,
        Directory,
        ExpiryIndex,
        InFlightIndex,
        MessageQueue,
        QueueLengths,
        RegistrationStore,
        TenantSubscriptionStore,
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
    def inventory_store(self) -> InventoryStore:
        from functions.adapters.table_inventory import TableInventoryStore

        return TableInventoryStore(self.table_service)

    def inventory_scanner(self) -> InventoryScanner:
        from functions.adapters.graph import GraphDirectory
        from functions.adapters.graph_inventory import GraphInventory
        from functions.core.inventory.scanner import InventoryScanner

        graph = self.directory
        if not isinstance(graph, GraphDirectory):  # tests may replace the directory with a fake
            raise TypeError("the inventory reads Graph through GraphDirectory")
        return InventoryScanner(
            GraphInventory(graph),
            self.inventory_store,
            graph,
            self.store,
            self.catalogue,
            self.clock,
        )

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

    # Users before what they use: the store and logs write through the table service, every
    # Azure client authenticates through the identity.
    _CLOSE_ORDER = ("deliveries", "index", "in_flight", "health_marks", "watchlist", "app_claims",
                    "tenant_subscription_store", "store", "inventory_store", "queue", "table_service",
                    "directory", "vault", "probe", "webhook_sender", "identity")  # fmt: skip

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
        """Create the tables once per process (idempotent; Bicep creates them in Azure too).

        Every trigger awaits this first, in its own task: from here on, whatever it announces also
        reaches the tenant-wide subscribers (core/notification/tenant_wide.py)."""
        from functions.core.notification.tenant_wide import use_tenant_wide

        use_tenant_wide(self.tenant_subscribers)
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
            in_flight=self.in_flight,
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
            in_flight=self.in_flight,
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
            observer=self._delivery_observed,
        )

    def _delivery_observed(self, delivery: Delivery, status: str) -> None:
        self.escalation().delivery_settled(delivery, status)

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

    def ownership_check(self) -> OwnershipCheck:
        from functions.core.adoption.ownership import OwnershipCheck, OwnershipSettings

        settings = OwnershipSettings(take_ownership=self.settings.adoption_takes_ownership)
        return OwnershipCheck(
            self.store,
            self.directory,
            self.clock,
            settings,
            owner=self.job_owner(),
            queue=self.queue,  # adopting: the envelope goes to the worker (the takeover)
            in_flight=self.in_flight,
        )

    @cached_property
    def app_claims(self) -> AppClaims:
        from functions.adapters.table_claims import TableAppClaims

        return TableAppClaims(self.table_service)

    def takeover(self) -> Takeover:
        """The credential takeover of an adopting registration (core/adoption/takeover.py)."""
        from functions.core.adoption.takeover import Takeover

        return Takeover(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            probe=self.probe,
            index=self.index,
            queue=self.queue,
            claims=self.app_claims,
            clock=self.clock,
            rotation=self.rotation_settings,
            owner=self.job_owner(),
            lifetimes=self.lifetimes,
            in_flight=self.in_flight,
            permissions=self.adoption_permissions(),  # drift and reconcile run first
        )

    def adoption_permissions(self) -> PermissionStep:
        """An adoption's permissions step (drift recorded, reconciled as asked, tier-0 additions
        held for approval): the takeover runs it first, holding the registration's lease."""
        from functions.core.adoption.permissions import PermissionStep

        return PermissionStep(self.directory, self.clock, self.policy)

    def lifecycle(self) -> Lifecycle:
        from functions.core.provisioning.lifecycle import Lifecycle

        return Lifecycle(
            store=self.store,
            directory=self.directory,
            vault=self.vault,
            clock=self.clock,
            owner=self.job_owner(),
            in_flight=self.in_flight,
        )

    # ------------------------------------------------------------ escalation

    @cached_property
    def escalation_settings(self) -> EscalationSettings:
        from functions.core.escalation.at_risk import EscalationSettings

        return EscalationSettings.from_values(self.settings.values)

    @cached_property
    def health_marks(self) -> Any:
        from functions.adapters.table_index import IndexHealthMarks

        return IndexHealthMarks(self.table_service)

    @cached_property
    def watchlist(self) -> Any:
        from functions.adapters.table_index import IndexWatchlist

        return IndexWatchlist(self.table_service)

    def escalation(self) -> Escalation:
        from functions.core.escalation.escalation import Escalation
        from functions.core.escalation.snapshot import SnapshotSources

        return Escalation(
            sources=SnapshotSources(
                store=self.store,
                index=self.index,
                # The same adapters, by their other ports: StorageQueues counts a queue's messages,
                # TableDeliveryLog its dead letters.
                lengths=cast("QueueLengths", self.queue),
                dead_letters=cast("DeadLetters", self.deliveries),
                marks=self.health_marks,
                watchlist=self.watchlist,
                clock=self.clock,
            ),
            queue=self.queue,
            instruments=instruments(),
            settings=self.escalation_settings,
            owner=self.job_owner(),
            proof=self.proof_of_use(),
        )

    def proof_of_use(self) -> ProofOfUse | None:
        """Sign-in activity as the connector's confirmation: only with REGISTRAR_SIGN_IN_PROOF on
        (it needs AuditLog.Read.All and an Entra ID P1/P2 licence), and only through Graph."""
        from functions.adapters.graph import GraphDirectory
        from functions.adapters.graph_signins import GraphSignInActivity
        from functions.core.escalation.confirmation import Confirmations
        from functions.core.escalation.proof_of_use import ProofOfUse

        if not self.escalation_settings.sign_in_proof:
            return None
        graph = self.directory
        if not isinstance(graph, GraphDirectory):  # tests may replace the directory with a fake
            return None
        return ProofOfUse(
            activity=GraphSignInActivity(graph),
            confirmations=Confirmations(
                store=self.store, index=self.index, clock=self.clock, owner=self.job_owner()
            ),
        )


_lock = threading.Lock()
_services: Services | None = None
_instruments: Instruments | None = None


def instruments() -> Instruments:
    """The process's OpenTelemetry instruments: one set, however often the services are rebuilt."""
    global _instruments  # noqa: PLW0603  (an instrument registered twice would report twice)
    if _instruments is None:
        from functions.core.escalation.instruments import Instruments

        with _lock:
            if _instruments is None:
                _instruments = Instruments()
    return _instruments


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
