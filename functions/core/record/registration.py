"""The registration record: everything Registrar knows about one connector registration.

One record per registration id, saved (Table storage, optimistic concurrency with ETags) after
every workflow step, so a crash at any point resumes from the last saved step. It holds ids,
names, dates and URIs only: never a secret value (the credential lives in Key Vault, and the
webhook signing secrets too).

Records are immutable: workflows derive the next version with `dataclasses.replace` (or the
helpers below) and hand it to the RegistrationStore. `to_document()` / `from_document()` give a
JSON-able dict in camelCase, which the Tables adapter stores as it likes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from functions.core.record.models import (
    RETIRE_AFTER_OVERLAP,
    RETIREMENT_MODES,
    CredentialSpec,
    CredentialType,
    PermissionKind,
    Problem,
    RegistrationStatus,
    ResolvedPermission,
)

# History is for people reading the status: bounded so a record stays far below Table limits.
MAX_HISTORY = 60
SCHEMA_VERSION = 1

TERMINAL_STATUSES = frozenset(
    {RegistrationStatus.ACTIVE, RegistrationStatus.FAILED, RegistrationStatus.DECOMMISSIONED}
)


@dataclass(frozen=True)
class ProvisioningPlan:
    """What to build, resolved at intake (profile + request + policy): the worker needs nothing else."""

    display_name: str
    sign_in_audience: str = "AzureADMyOrg"
    web_redirect_uris: tuple[str, ...] = ()
    spa_redirect_uris: tuple[str, ...] = ()
    public_client_redirect_uris: tuple[str, ...] = ()
    permissions: tuple[ResolvedPermission, ...] = ()
    credential: CredentialSpec = field(
        default_factory=lambda: CredentialSpec(CredentialType.SECRET, timedelta(days=180))
    )
    manual_steps: tuple[str, ...] = ()
    approval_reasons: tuple[str, ...] = ()  # empty: no approval needed
    notes: str | None = None
    owners: tuple[str, ...] = ()
    requested_by: str | None = None


@dataclass(frozen=True)
class CredentialState:
    """A credential that exists on the app and (secret, certificate) in Key Vault."""

    type: CredentialType
    generation: int
    display_name: str
    key_id: str  # passwordCredential/keyCredential keyId, or federated credential id
    start: datetime | None = None
    expires_on: datetime | None = None
    secret_name: str | None = None
    secret_uri: str | None = None  # versioned; for a certificate, its backing secret (PFX)
    secret_version: str | None = None
    certificate_name: str | None = None
    certificate_uri: str | None = None
    certificate_version: str | None = None
    thumbprint: str | None = None
    issuer: str | None = None  # federated only
    subject: str | None = None
    verified_at: datetime | None = None
    retire_after: datetime | None = None  # retiring credentials only
    confirmed_at: datetime | None = None  # the connector said it uses this one (POST .../confirm)


@dataclass(frozen=True)
class PendingCredential:
    """Write-ahead: saved BEFORE the Graph call that creates the credential, so a retry can find it."""

    type: CredentialType
    generation: int
    display_name: str
    started_at: datetime
    certificate_version: str | None = None  # a vault certificate already made for this generation


@dataclass(frozen=True)
class StepEvent:
    step: str
    outcome: str  # started | done | skipped | failed | retrying
    at: datetime
    detail: str | None = None


@dataclass(frozen=True)
class ErrorInfo:
    step: str
    kind: str  # transient | permanent | validation
    message: str
    at: datetime
    code: str | None = None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Approval:
    reasons: tuple[str, ...]
    approved_by: str | None = None
    approved_at: datetime | None = None

    @property
    def granted(self) -> bool:
        return self.approved_at is not None


@dataclass(frozen=True)
class WebhookSubscriptionRef:
    """A webhook subscription; its signing secret is in Key Vault under `secret_name`, never here."""

    id: str
    url: str
    events: tuple[str, ...]
    secret_name: str | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class FoundCredential:
    """A credential the adopted app held when Registrar took it over (never a value): the only
    ones a later retirement may remove (docs/adoption.md)."""

    key_id: str
    type: CredentialType  # secret (passwordCredentials) or certificate (keyCredentials)
    display_name: str | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class DriftedPermission:
    """One permission on which an adopted app and its profile differ, named as a person reads it.

    declared: in the app's requiredResourceAccess; granted: consented (an app role assignment of
    its service principal, or a scope of its AllPrincipals delegated grant). A missing one lacks
    at least one of the two; an extra one has at least one."""

    resource_app_id: str
    resource: str  # the resource's display name (Microsoft Graph, ...), or its appId when unknown
    value: str  # the permission's name (Sites.Read.All), or its id when the resource does not list it
    kind: PermissionKind
    id: str
    declared: bool
    granted: bool


@dataclass(frozen=True)
class Drift:
    """The adopted app's permissions against its profile, as read at `read_at` (core/adoption/
    permissions.py). reconcile_started_at is written ahead of the first change, so a run that died
    half-way keeps this reading (what the app had at adoption) and finishes the same change."""

    read_at: datetime
    missing: tuple[DriftedPermission, ...] = ()
    extra: tuple[DriftedPermission, ...] = ()
    reconcile_started_at: datetime | None = None
    reconciled_at: datetime | None = None  # the reconcile (any mode, report too) is done

    @property
    def none(self) -> bool:
        return not self.missing and not self.extra


@dataclass(frozen=True)
class Adoption:
    """An app a person made that this registration took over (core/adoption). Kept apart from
    app_object_id/app_id, which name an app Registrar made and may delete (failure cleanup,
    decommission): an adopted app is never deleted unless its release asks for that."""

    app_id: str
    app_object_id: str
    display_name: str | None = None
    retire_existing: str = "after-overlap"  # when the credentials found at adoption go: never, now
    reconcile: str = "report"  # what is done about permission drift: add-missing, exact
    profile_inferred: bool = False  # the profile came from the app's exact match
    registrar_principal_id: str | None = None  # Registrar's service principal in the tenant, once read
    owned_at: datetime | None = None  # when Registrar was first seen among the app's owners
    owner_added_by_registrar: bool = False  # it added itself (Application.ReadWrite.All): release removes it
    # Recorded, by keyId, with the ownership (the moment Registrar may act on the app): a credential
    # not listed here is never removed by Registrar.
    found_credentials: tuple[FoundCredential, ...] = ()
    drift: Drift | None = None  # its permissions against the profile, once read (adopting)
    # Decommission asked to delete the app (DELETE ...?deleteApp=true) rather than release it: saved
    # with `decommissioning`, so the worker that finishes a crashed decommission does the same.
    delete_app: bool = False

    def ownership_step(self) -> str:
        """The manual step of `pending_ownership`: the exact command, and the portal path."""
        owner = self.registrar_principal_id or "<Registrar's service principal object id>"
        app = f"{self.display_name} ({self.app_id})" if self.display_name else self.app_id
        return (
            f"Add Registrar as an owner of application {app}: "
            f"az ad app owner add --id {self.app_id} --owner-object-id {owner} "
            f"(or Entra ID > App registrations > {self.display_name or self.app_id} > Owners > Add owners); "
            f"then POST /api/registrations/{{id}}/recheck, or wait for the next check"
        )


@dataclass(frozen=True)
class Registration:
    id: str
    request_id: str
    fingerprint: str
    profile_id: str
    tenant_id: str
    status: RegistrationStatus
    created_at: datetime
    updated_at: datetime
    plan: ProvisioningPlan
    request: Mapping[str, Any] = field(default_factory=dict)  # the body as received (no secrets)
    unique_name: str | None = None
    app_object_id: str | None = None
    app_id: str | None = None
    service_principal_id: str | None = None
    consent_started: bool = False
    granted_permissions: tuple[ResolvedPermission, ...] = ()
    owners_added: tuple[str, ...] = ()  # plan.owners that Graph confirmed as owners of the app
    owners_refused: str | None = None  # why Graph would not add owners: they are a manual step
    credential: CredentialState | None = None
    pending_credential: PendingCredential | None = None
    retiring_credentials: tuple[CredentialState, ...] = ()
    history: tuple[StepEvent, ...] = ()
    last_error: ErrorInfo | None = None
    approval: Approval | None = None
    webhooks: tuple[WebhookSubscriptionRef, ...] = ()
    adoption: Adoption | None = None  # set when the registration adopts an existing app
    lease_owner: str | None = None
    lease_until: datetime | None = None
    etag: str | None = None  # set by the store; not part of the document

    # ------------------------------------------------------------ derivations

    def with_event(self, step: str, outcome: str, at: datetime, detail: str | None = None) -> Registration:
        history = (*self.history, StepEvent(step, outcome, at, detail))[-MAX_HISTORY:]
        return replace(self, history=history, updated_at=at)

    @property
    def retirement(self) -> str:
        """after-overlap (default) or after-confirm: from the request as accepted (intake validated it)."""
        value = self.request.get("retirement")
        return value if value in RETIREMENT_MODES else RETIRE_AFTER_OVERLAP

    def step_done(self, step: str) -> bool:
        return any(e.step == step and e.outcome in ("done", "skipped") for e in self.history)

    @property
    def manual_steps(self) -> tuple[str, ...]:
        """The profile's manual steps, plus adding the owners Registrar was not allowed to add (and,
        for an adoption waiting for ownership, making Registrar an owner first)."""
        if self.adoption is not None and self.status is RegistrationStatus.PENDING_OWNERSHIP:
            step = self.adoption.ownership_step().replace("{id}", self.id)
            return (step, *self.plan.manual_steps)
        pending = [o for o in self.plan.owners if o not in self.owners_added]
        if self.owners_refused is None or not pending:
            return self.plan.manual_steps
        app = self.app_id or "the app registration"
        step = f"Add owners {', '.join(pending)} to application {app} in Entra ID ({self.owners_refused})"
        return (*self.plan.manual_steps, step)

    # ------------------------------------------------------------ serialisation

    def to_document(self) -> dict[str, Any]:
        """A JSON-able dict (camelCase) of everything but the ETag."""
        from functions.core.record.documents import to_document

        return to_document(self)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, etag: str | None = None) -> Registration:
        from functions.core.record.documents import from_document

        return from_document(doc, etag=etag)


@dataclass(frozen=True)
class RegistrationPage:
    items: Sequence[Registration]
    continuation: str | None = None


def credential_display_name(registration_id: str, generation: int) -> str:
    """The name a credential carries on the app: the write-ahead key a retry searches for."""
    return f"registrar-{registration_id}-g{generation}"


def unique_name_for(registration_id: str) -> str:
    """The app's uniqueName (alternate key for PATCH ... Prefer: create-if-missing)."""
    return f"registrar-{registration_id}"


def vault_object_name(registration_id: str) -> str:
    """Key Vault secret (or certificate) name of a registration's credential: letters, digits, '-'."""
    return registration_id


# The ids Registrar issues: RegistrationRequest.registration_id, and intake's record of a request
# it could not even read (reg-invalid-...). Anything else names no registration.
REGISTRATION_ID = re.compile(r"reg-(?:[0-9a-f]{24}|invalid-[0-9a-f]{20})")


def is_registration_id(value: str) -> bool:
    """Whether `value` has the shape of an id Registrar issues (checked before any I/O)."""
    return REGISTRATION_ID.fullmatch(value) is not None
