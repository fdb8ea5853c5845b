"""Ports: what the core needs from the outside world, as Protocols. Adapters implement them.

All ports are async: msgraph-sdk is async-only, and independent steps of a workflow run
concurrently. Every method is idempotent or says how to make the call idempotent. Adapters raise
only core errors (functions.core.record.errors): TransientError (throttling with retry_after, 5xx,
replication delay), PermanentError (denied, invalid), NotFound, ConcurrencyConflict.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from functions.core.record.models import CredentialType, RegistrationStatus, ResourceCatalog, SecretValue
from functions.core.record.registration import Registration, RegistrationPage
from functions.core.record.schedule import RotationJob

if TYPE_CHECKING:  # inflight.py imports the keeper, which imports these ports
    from functions.core.record.inflight import InFlightWork

# ---------------------------------------------------------------- Microsoft Graph (one port)


@dataclass(frozen=True)
class RedirectUris:
    web: tuple[str, ...] = ()
    spa: tuple[str, ...] = ()
    public_client: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequiredResourceAccess:
    """One entry of an application's requiredResourceAccess: ids by resource appId."""

    resource_app_id: str
    app_role_ids: tuple[str, ...] = ()  # type "Role"
    scope_ids: tuple[str, ...] = ()  # type "Scope"


@dataclass(frozen=True)
class ApplicationSpec:
    """The desired state of an app registration (PATCH by uniqueName with create-if-missing)."""

    unique_name: str  # derived from the registration id
    display_name: str
    sign_in_audience: str = "AzureADMyOrg"
    redirect_uris: RedirectUris = RedirectUris()
    required_resource_access: tuple[RequiredResourceAccess, ...] = ()
    notes: str | None = None  # ticket, requester
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplicationRef:
    object_id: str
    app_id: str
    created: bool = False  # True when this call created it


@dataclass(frozen=True)
class ExistingApplication:
    """An application as Graph holds it, read by appId before adoption (never a secret value)."""

    object_id: str
    app_id: str
    display_name: str | None = None
    unique_name: str | None = None  # Registrar's own apps carry registrar-<registration id>
    required_resource_access: tuple[RequiredResourceAccess, ...] = ()


@dataclass(frozen=True)
class AppCredential:
    """A credential as Graph lists it on an application (never with a secret value)."""

    kind: str  # "password" | "key" | "federated"
    key_id: str  # keyId, or the federated credential's id
    display_name: str | None
    start: datetime | None
    end: datetime | None
    thumbprint: str | None = None  # customKeyIdentifier of a key credential (SHA-1, hex)


@dataclass(frozen=True)
class IssuedSecret:
    key_id: str
    secret: SecretValue
    hint: str | None
    start: datetime
    end: datetime
    # True when the directory knows it sent addPassword once and this answer is that POST's (no
    # resend that a lost answer could have doubled): a first issue then has no twin to sweep.
    sent_once: bool = False


@dataclass(frozen=True)
class KeyCredentialSpec:
    """A certificate's public part for keyCredentials (PATCH replaces the whole collection)."""

    key_id: str
    display_name: str
    certificate_der: bytes
    start: datetime
    end: datetime


@dataclass(frozen=True)
class FederatedCredentialSpec:
    name: str  # immutable, <= 120 chars; derived from the registration id
    issuer: str
    subject: str
    audiences: tuple[str, ...] = ("api://AzureADTokenExchange",)


@dataclass(frozen=True)
class DelegatedGrant:
    grant_id: str
    resource_service_principal_id: str
    scopes: frozenset[str]


class Directory(Protocol):
    """Microsoft Graph in a given tenant, with the registrar's own identity in that tenant."""

    def predicted_wait(self, tenant_id: str) -> timedelta:
        """How long a new Graph write in this tenant would wait now for the registrar's budget
        (behind the calls already queued, or a Retry-After): zero when it would go at once."""
        ...

    async def resource_catalog(self, tenant_id: str, resource: str) -> ResourceCatalog:
        """The resource SP's appRoles and scopes; resource by appId or display name. Cached per tenant.

        Raises NotFound when the tenant has no such resource service principal.
        """
        ...

    async def upsert_application(self, tenant_id: str, spec: ApplicationSpec) -> ApplicationRef:
        """PATCH /applications(uniqueName=...) with Prefer: create-if-missing; returns ids either way."""
        ...

    async def find_application(
        self, tenant_id: str, unique_name: str, *, lag: bool = False
    ) -> ApplicationRef | None:
        """GET /applications(uniqueName=...); None when there is none. lag: the app may have been
        created moments ago, so a 404 is retried through Entra's replication window before None."""
        ...

    async def application_by_app_id(self, tenant_id: str, app_id: str) -> ExistingApplication | None:
        """GET /applications(appId='...') with Application.Read.All; None when the tenant has none."""
        ...

    async def ensure_service_principal(self, tenant_id: str, app_id: str) -> str:
        """GET by appId, else POST; retries NoBackingApplicationObject. Returns the SP object id."""
        ...

    async def app_role_assignments(self, tenant_id: str, principal_id: str) -> set[tuple[str, str]]:
        """(resource SP id, appRoleId) pairs already granted to the principal."""
        ...

    async def assign_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        """Grant the given (resource SP id, appRoleId) pairs, in $batch requests of at most 20.

        An assignment that already exists counts as success (idempotent).
        """
        ...

    async def delegated_grants(self, tenant_id: str, client_id: str) -> Mapping[str, DelegatedGrant]:
        """AllPrincipals grants of the client SP, by resource SP id."""
        ...

    async def grant_delegated(
        self, tenant_id: str, client_id: str, resource_id: str, scopes: frozenset[str], existing: str | None
    ) -> None:
        """POST a new AllPrincipals grant, or PATCH the existing grant id to exactly `scopes`
        (no scopes: DELETE the existing grant)."""
        ...

    # The permissions of an app Registrar adopted (core/adoption/permissions.py).

    async def service_principal_of(self, tenant_id: str, app_id: str) -> str | None:
        """GET /servicePrincipals(appId='...'): the app's service principal object id in the
        tenant, or None when it has none (never creates one)."""
        ...

    async def resource_app_id_of(self, tenant_id: str, service_principal_id: str) -> str:
        """The appId of a service principal by its object id (a grant names its resource so).
        NotFound when the tenant has none."""
        ...

    async def set_required_resource_access(
        self, tenant_id: str, app_object_id: str, access: Sequence[RequiredResourceAccess]
    ) -> None:
        """PATCH /applications/{id} {requiredResourceAccess}: REPLACES the collection (idempotent).
        Application.ReadWrite.OwnedBy allows it only on an app Registrar owns."""
        ...

    async def remove_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        """DELETE the principal's app role assignments of these (resource SP id, appRoleId) pairs.
        Idempotent: one that is not there (or answers 404) is success."""
        ...

    async def list_credentials(self, tenant_id: str, app_object_id: str) -> list[AppCredential]: ...

    async def add_password(
        self, tenant_id: str, app_object_id: str, display_name: str, start: datetime, end: datetime
    ) -> IssuedSecret: ...

    async def remove_password(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        """Idempotent: a keyId that is already gone is success."""
        ...

    async def set_key_credentials(
        self, tenant_id: str, app_object_id: str, keys: Sequence[KeyCredentialSpec]
    ) -> None:
        """PATCH keyCredentials: REPLACES the collection, so pass every key to keep."""
        ...

    async def set_own_key_credentials(
        self,
        tenant_id: str,
        app_object_id: str,
        keys: Sequence[KeyCredentialSpec],
        own_key_ids: Collection[str],
    ) -> None:
        """Registrar's certificates on an app that also holds a person's: the keys in `own_key_ids`
        become exactly `keys`, and every other key is written back as Graph holds it (with its
        `key`, returned only on a $select of one application). Graph has no ETag on an
        application, so a key a person adds in that one round trip is lost. Idempotent."""
        ...

    async def remove_key_credential(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        """Remove one keyCredential and keep every other as Graph holds it (with its `key`, which a
        PATCH needs and Graph returns only on a $select of one application): for an app holding
        certificates Registrar did not make. Idempotent: a keyId (or an app) already gone is success."""
        ...

    async def add_federated_credential(
        self, tenant_id: str, app_object_id: str, spec: FederatedCredentialSpec
    ) -> str:
        """Idempotent by name: an existing credential with the same name is returned."""
        ...

    async def remove_federated_credential(
        self, tenant_id: str, app_object_id: str, credential_id: str
    ) -> None:
        """DELETE /applications/{id}/federatedIdentityCredentials/{id} (Application.ReadWrite.OwnedBy on
        an owned app). Idempotent: a credential (or an app) already gone is success."""
        ...

    async def delete_application(self, tenant_id: str, app_object_id: str) -> None:
        """Idempotent: an app already gone is success."""
        ...

    async def credential_lifetime_limit(self, tenant_id: str, kind: CredentialType) -> timedelta | None:
        """The longest lifetime the tenant's app management policy lets a new credential of this
        type have (Entra refuses a longer one), or None: no limit, or it cannot be read (cached)."""
        ...

    async def registrar_principal_id(self, tenant_id: str) -> str:
        """Registrar's own service principal object id in the tenant (the `oid` of its token). Cached."""
        ...

    async def application_owner_ids(self, tenant_id: str, app_object_id: str) -> set[str]:
        """Object ids (lower case) of the app's owners. NotFound when the app is gone."""
        ...

    async def add_owner(self, tenant_id: str, app_object_id: str, owner_id: str) -> None:
        """POST /applications/{id}/owners/$ref for a user or service principal object id.

        Idempotent: an owner already there is success. NotFound(key=owner_id) when the tenant has no
        such object; PermanentError for another kind of object, or code Authorization_RequestDenied
        when the registrar may not add owners (Graph wants Application.ReadWrite.All for that).
        """
        ...

    async def remove_owner(self, tenant_id: str, app_object_id: str, owner_id: str) -> None:
        """DELETE /applications/{id}/owners/{owner}/$ref (Application.ReadWrite.OwnedBy on an app
        the caller owns suffices, itself included; an app may be left without owners).

        Idempotent: an owner that is not one any more, or an app already gone, is success.
        PermanentError code Authorization_RequestDenied when the caller may not change the app.
        """
        ...


# ---------------------------------------------------------------- Entra token endpoint


class TokenProbe(Protocol):
    """Proves a credential works by acquiring an app-only token with it (Graph .default)."""

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue) -> None:
        """Raises TransientError while Entra does not accept it yet, PermanentError when refused."""
        ...

    async def try_certificate(self, tenant_id: str, client_id: str, pem_with_key: SecretValue) -> None: ...


# ---------------------------------------------------------------- Key Vault


@dataclass(frozen=True)
class VaultSecretRef:
    name: str
    version: str
    uri: str  # versioned id: https://vault/secrets/name/version
    expires_on: datetime | None = None
    enabled: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VaultCertificate:
    name: str
    version: str
    certificate_uri: str  # versioned certificate id
    secret_uri: str  # versioned id of the backing secret (PFX/PEM with the private key)
    der: bytes  # public certificate
    thumbprint_sha1: str  # hex
    not_before: datetime
    expires_on: datetime


class SecretReader(Protocol):
    """What reading a secret needs: a Vault, or a cache in front of one."""

    async def get_secret(self, name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        """Raises NotFound."""
        ...


class Vault(Protocol):
    """The registrar's Key Vault (secrets and certificates)."""

    async def set_secret(
        self,
        name: str,
        value: SecretValue,
        *,
        content_type: str,
        tags: Mapping[str, str],
        expires_on: datetime | None,
        not_before: datetime | None = None,
        enabled: bool = True,
    ) -> VaultSecretRef: ...

    async def get_secret(self, name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        """Raises NotFound."""
        ...

    async def secret_versions(self, name: str) -> list[VaultSecretRef]:
        """Every version's properties (no values); empty when the secret does not exist."""
        ...

    async def update_secret_version(
        self, name: str, version: str, *, enabled: bool | None = None, tags: Mapping[str, str] | None = None
    ) -> None: ...

    async def delete_secret(self, name: str) -> None:
        """Soft delete (and purge when allowed); idempotent."""
        ...

    async def create_certificate(
        self, name: str, *, subject: str, validity_months: int, tags: Mapping[str, str]
    ) -> VaultCertificate:
        """A new version with a self-signed policy, RSA 2048, key generated in the vault."""
        ...

    async def get_certificate(self, name: str, version: str | None = None) -> VaultCertificate: ...

    async def delete_certificate(self, name: str) -> None: ...

    async def update_certificate_version(self, name: str, version: str, *, enabled: bool) -> None:
        """Enable or disable one version of a certificate (its backing secret version follows).
        Idempotent; raises NotFound when the version does not exist."""
        ...

    async def import_certificate(
        self, name: str, pem_with_key: SecretValue, *, tags: Mapping[str, str]
    ) -> VaultCertificate:
        """A new version of `name` from a PEM (certificate + private key): how a rotated
        certificate, verified under a staging name, becomes the one connectors read."""
        ...


# ---------------------------------------------------------------- Storage


class Page(Protocol):
    items: Sequence[Any]
    continuation: str | None


class RegistrationStore(Protocol):
    """Registration records (Table storage), with optimistic concurrency by ETag.

    The store keeps `Registration.to_document()` and gives back `Registration.from_document(doc,
    etag=...)`; every returned record carries the ETag of the version it read or wrote.
    """

    async def get(self, registration_id: str) -> Registration:
        """Raises NotFound."""
        ...

    async def create(self, registration: Registration) -> tuple[Registration, bool]:
        """Create if absent. Returns (stored record, True), or (the existing record, False) on a
        duplicate id: never overwrites, never raises for a duplicate."""
        ...

    async def replace(self, registration: Registration) -> Registration:
        """Write if the stored ETag still equals registration.etag, else ConcurrencyConflict.
        NotFound when the record is gone. Returns the record with its new ETag."""
        ...

    async def list(
        self,
        *,
        tenant_id: str | None = None,
        profile_id: str | None = None,
        status: RegistrationStatus | None = None,
        limit: int = 50,
        continuation: str | None = None,
        app_id: str | None = None,
    ) -> RegistrationPage:
        """Records matching every given filter, at most `limit`, oldest first is not promised;
        `continuation` from the previous page's RegistrationPage.continuation (opaque). app_id:
        the records of one app, the one Registrar made or the one it adopted."""
        ...


@dataclass(frozen=True)
class QueuedMessage:
    """A message just sent, as its sender may still settle it: the queue's id and pop receipt
    (which delete and update need) until the message is first received by someone else."""

    queue_name: str
    id: str
    pop_receipt: str = field(repr=False)


class MessageQueue(Protocol):
    """Storage queues, written the way the Functions host reads them (base64 message encoding)."""

    async def send(
        self, queue_name: str, message: str, *, visibility_timeout: timedelta | None = None
    ) -> QueuedMessage:
        """Enqueue one message; visibility_timeout delays its first delivery."""
        ...

    async def delete(self, message: QueuedMessage) -> None:
        """Delete a message this sender still holds (sent hidden, not yet received). Idempotent:
        a message already gone, or received by someone else meanwhile (new pop receipt), is left."""
        ...

    async def release(self, message: QueuedMessage) -> None:
        """Make a message this sender still holds visible at once (its consumer takes it over)."""
        ...

    async def reschedule(
        self, message: QueuedMessage, content: str, *, visibility_timeout: timedelta
    ) -> bool:
        """Rewrite a message this sender still holds and hide it for visibility_timeout; False
        when it is no longer this sender's (received by a consumer, or gone)."""
        ...


class ExpiryIndex(Protocol):
    """Rotation jobs by due time (core/record/schedule.py keys): a sweep reads O(due)."""

    async def put(self, job: RotationJob) -> None:
        """Upsert: scheduling the same job twice is one entry."""
        ...

    async def remove(self, job: RotationJob) -> None:
        """Idempotent."""
        ...

    async def due(self, now: datetime, *, limit: int | None = None) -> list[RotationJob]: ...


class InFlightIndex(Protocol):
    """Work a worker started and has not ended (core/record/inflight.py): it holds nothing else,
    so reading all of it costs O(in flight)."""

    async def put(self, work: InFlightWork) -> str:
        """Upsert the entry and its touched_at (an existing entry keeps its resume count); its ETag."""
        ...

    async def remove(self, key: str, etag: str | None = None) -> None:
        """Idempotent. With `etag`, only the entry as that put left it: one written again since
        (by a duplicate that took the work over, or a sweep that resumed it) stays."""
        ...

    async def all(self) -> list[InFlightWork]:
        """Every entry, each with its ETag."""
        ...

    async def mark_resumed(self, work: InFlightWork, at: datetime) -> bool:
        """touched_at = at and one more resume, only if the entry is unchanged since `work` was
        read (its ETag): False when another sweep or a worker changed or removed it first."""
        ...


@dataclass(frozen=True)
class DeliveryRecord:
    """Where one webhook delivery stands (never its body's secrets: it has none, nor the URL's)."""

    registration_id: str
    delivery_id: str
    subscription_id: str
    event_type: str
    status: str  # delivered | retrying | dead_lettered | gone
    attempts: int
    last_status: int | None
    last_error: str | None
    updated_at: datetime


class DeliveryLog(Protocol):
    """Webhook delivery outcomes (Table storage), readable through the API."""

    async def record(self, entry: DeliveryRecord) -> None:
        """Upsert by (registration id, delivery id)."""
        ...

    async def record_unless_settled(self, entry: DeliveryRecord) -> DeliveryRecord | None:
        """Write a failed attempt's outcome unless the delivery already settled (delivered or gone),
        atomically (a duplicate chain of the same delivery must not overwrite "delivered" with
        "retrying"). Returns the settled record when there is one, else None (written)."""
        ...

    async def get(self, registration_id: str, delivery_id: str) -> DeliveryRecord | None: ...

    async def list(self, registration_id: str, *, status: str | None = None) -> list[DeliveryRecord]: ...


class WebhookTransport(Protocol):
    """Sends one signed delivery; failures of the receiver come back as the outcome, not raised."""

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> Any: ...

    async def check(self, url: str) -> None:
        """Raises PermanentError when the URL may not be a webhook target."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...


class QueueLengths(Protocol):
    """How many messages wait in a queue (Storage's approximate count; one request, no message read)."""

    async def approximate_length(self, queue_name: str) -> int: ...


class DeadLetters(Protocol):
    """Webhook deliveries that ended dead-lettered, across all registrations."""

    async def count_dead_letters(self) -> int: ...


class HealthMarks(Protocol):
    """When periodic work last completed (the rotation sweep, an inventory scan): one entity each."""

    async def mark(self, name: str, at: datetime) -> None:
        """Upsert; idempotent."""
        ...

    async def marks(self) -> dict[str, datetime]: ...


class Watchlist(Protocol):
    """Registrations escalation found at risk outside the expiry index's view (a rotation forced
    early that keeps failing): read by every snapshot, so it stays O(at risk)."""

    async def add(self, registration_id: str) -> None:
        """Idempotent."""
        ...

    async def discard(self, registration_id: str) -> None:
        """Idempotent."""
        ...

    async def members(self) -> list[str]: ...


@dataclass(frozen=True)
class TenantSubscriptionRecord:
    """A tenant-wide webhook subscription as stored (its signing secret is in Key Vault only)."""

    id: str
    url: str  # the full URL (deliveries need it); the API shows display_url()
    events: tuple[str, ...]
    created_at: datetime
    created_by: str | None = None
    # Written first as False (write-ahead), True once its signing secret is in Key Vault; only an
    # active one is delivered to or shown.
    active: bool = True


class TenantSubscriptionStore(Protocol):
    """Tenant-wide webhook subscriptions (Table storage, WebhookSubscriptions)."""

    async def put(self, subscription: TenantSubscriptionRecord) -> None:
        """Upsert by id."""
        ...

    async def get(self, subscription_id: str) -> TenantSubscriptionRecord:
        """Raises NotFound."""
        ...

    async def list(self) -> list[TenantSubscriptionRecord]: ...

    async def remove(self, subscription_id: str) -> None:
        """Idempotent."""
        ...
