"""The shared vocabulary of Registrar's domain: requests, permissions, credentials, statuses.

Pure data (frozen dataclasses and enums); no I/O and no Azure SDK. Capabilities (provisioning,
rotation, notification) add their own records next to these, but every part of the code
speaks about permissions, credentials and requests with the types below.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
SHAREPOINT_ONLINE_APP_ID = "00000003-0000-0ff1-ce00-000000000000"


class SecretValue:
    """A secret (client secret, PFX, webhook signing key) that never shows itself.

    repr/str/format give a fixed mask, so a secret that ends up in a log record, an exception
    message or a dataclass repr cannot leak. Code that must hand the value to an SDK calls
    reveal() at that one place.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('***')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling would copy the value out of our control
        raise TypeError("SecretValue cannot be pickled")


class RegistrationStatus(StrEnum):
    ACCEPTED = "accepted"
    PENDING_APPROVAL = "pending_approval"
    # An adopted app Registrar's service principal does not own yet (Application.ReadWrite.OwnedBy
    # can change only apps it owns): a person adds the owner, Registrar checks again.
    PENDING_OWNERSHIP = "pending_ownership"
    # The adopted app is Registrar's to change now: the credential takeover and drift come next.
    ADOPTING = "adopting"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    # The failure (lastError) is recorded; what was made is being removed, then `failed`.
    FAILING = "failing"
    FAILED = "failed"
    ROTATING = "rotating"
    DECOMMISSIONING = "decommissioning"
    DECOMMISSIONED = "decommissioned"


class PermissionKind(StrEnum):
    APPLICATION = "application"  # app role, consented by appRoleAssignedTo
    DELEGATED = "delegated"  # oauth2 permission scope, consented by oauth2PermissionGrants


@dataclass(frozen=True)
class PermissionRef:
    """A permission as a person names it: resource by appId or display name, permission by name."""

    resource: str
    kind: PermissionKind
    name: str


@dataclass(frozen=True, order=True)
class ResolvedPermission:
    """A permission resolved through Graph: keyed by (resource appId, id), never by name alone."""

    resource_app_id: str
    kind: PermissionKind
    id: str
    name: str


@dataclass(frozen=True)
class ResourcePermission:
    id: str
    value: str
    display_name: str
    enabled: bool = True


@dataclass(frozen=True)
class ResourceCatalog:
    """A resource service principal's permissions as Graph publishes them in one tenant."""

    app_id: str
    service_principal_id: str
    display_name: str
    app_roles: Mapping[str, ResourcePermission]  # by value (name)
    scopes: Mapping[str, ResourcePermission]  # by value (name)

    def permissions(self, kind: PermissionKind) -> Mapping[str, ResourcePermission]:
        return self.app_roles if kind is PermissionKind.APPLICATION else self.scopes


class CredentialType(StrEnum):
    SECRET = "secret"  # noqa: S105  (a credential kind, not a password)
    CERTIFICATE = "certificate"
    FEDERATED = "federated"


@dataclass(frozen=True)
class CredentialSpec:
    """What kind of credential a registration asks for, and for how long."""

    type: CredentialType
    lifetime: timedelta | None = None  # None: the profile's default
    # Federated credentials only:
    issuer: str | None = None
    subject: str | None = None
    audiences: tuple[str, ...] = ("api://AzureADTokenExchange",)


WEBHOOK_EVENTS: tuple[str, ...] = (
    "registration.active",
    "registration.failed",
    "credential.rotated",
    "credential.retired",
    "credential.expiring",
    "credential.expired",
    "rotation.failed",  # a rotation refused for good (escalation), with its reason
    "credential.at_risk",  # once per credential per day while at risk (escalation)
)


@dataclass(frozen=True)
class WebhookSpec:
    url: str
    events: tuple[str, ...] = WEBHOOK_EVENTS


# When an old credential is removed after a rotation (the request's "retirement"): once the overlap
# ends (the default), or once the connector confirmed it uses the new one (and at the latest at the
# old credential's own end).
RETIRE_AFTER_OVERLAP = "after-overlap"
RETIRE_AFTER_CONFIRM = "after-confirm"
RETIREMENT_MODES: tuple[str, ...] = (RETIRE_AFTER_OVERLAP, RETIRE_AFTER_CONFIRM)


@dataclass(frozen=True)
class RegistrationRequest:
    """A validated request, as HTTP intake and the queue both produce it."""

    request_id: str  # the caller's idempotency key (e.g. the ticket number)
    profile_id: str
    tenant_id: str
    display_name: str
    credential: CredentialSpec
    options: Mapping[str, Any] = field(default_factory=dict)
    permissions: tuple[PermissionRef, ...] = ()  # profile "custom" only
    owners: tuple[str, ...] = ()
    requested_by: str | None = None
    webhooks: tuple[WebhookSpec, ...] = ()
    notes: str | None = None
    retirement: str = RETIRE_AFTER_OVERLAP
    # An adoption (core/adoption): appId, retireExisting, reconcile; empty for a new app.
    adopt: Mapping[str, str] = field(default_factory=dict)

    @property
    def registration_id(self) -> str:
        """Deterministic id: the same requestId in the same tenant is the same registration."""
        digest = hashlib.sha256(f"{self.tenant_id.lower()}\n{self.request_id}".encode()).hexdigest()
        return f"reg-{digest[:24]}"

    def fingerprint(self) -> str:
        """Hash of the canonical body: same requestId with a different body is a conflict (409)."""
        body = {
            "profile": self.profile_id,
            "tenantId": self.tenant_id.lower(),
            "displayName": self.display_name,
            "credential": {
                "type": self.credential.type.value,
                "lifetime": self.credential.lifetime.total_seconds() if self.credential.lifetime else None,
                "issuer": self.credential.issuer,
                "subject": self.credential.subject,
            },
            "options": self.options,
            "permissions": sorted([p.resource, p.kind.value, p.name] for p in self.permissions),
            "owners": sorted(self.owners),
            "webhooks": sorted([w.url, sorted(w.events)] for w in self.webhooks),
        }
        if self.retirement != RETIRE_AFTER_OVERLAP:  # the default leaves earlier fingerprints unchanged
            body["retirement"] = self.retirement
        if self.adopt:  # the same requestId adopting another app, or with other options, is a conflict
            body["adopt"] = dict(self.adopt)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: becomes one entry of an application/problem+json body."""

    field: str  # JSON pointer-ish path into the request, e.g. "credential.lifetime"
    reason: str
    suggestion: str | None = None
