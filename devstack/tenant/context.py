"""The contract between the parts of the local tenant (server, Entra, Graph, Key Vault).

server.py builds one aiohttp Application and stores these objects under the AppKeys below;
graph/ and keyvault/ read them from ``request.app[...]``. Keep this module free of logic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

# Resource identifiers the token endpoint accepts in scope=RESOURCE/.default.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
SHAREPOINT_APP_ID = "00000003-0000-0ff1-ce00-000000000000"
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
# Azure Storage: tokens for https://storage.azure.com, which Azurite accepts with --oauth basic.
STORAGE_APP_ID = "e406a681-f3d4-42a8-90b6-c2b029497af1"
STORAGE_RESOURCE = "https://storage.azure.com"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
# Audience of addKey/removeKey proof tokens (the retired Azure AD Graph).
PROOF_AUDIENCE = "00000002-0000-0000-c000-000000000000"


@dataclass(frozen=True)
class Principal:
    """Who called: taken from a validated access token. Never holds the token itself."""

    tenant_id: str
    app_id: str  # the client's appId (token claim appid/azp)
    service_principal_id: str  # the client's service principal object id (token claim oid)
    roles: frozenset[str]  # app role values granted on the token's resource
    audience: str


@dataclass
class SimulationConfig:
    """What the tenant injects, switchable at start (CLI) and at run time (/_sim admin API)."""

    latency_ms: float = 0.0  # fixed latency added to every call
    latency_jitter_ms: float = 0.0  # plus uniform random 0..jitter
    propagation_delay_s: float = 0.0  # a new credential is refused by the token endpoint for N s
    replication_delay_ms: int = 0  # new objects invisible to reads/dependents for N ms
    near_expiry_window_s: float = 30 * 24 * 3600.0  # Key Vault SecretNearExpiry lead
    event_subscriber_url: str | None = None  # Key Vault events go here (Event Grid schema)
    # Key Vault purge protection (infra's vault has enablePurgeProtection: true): a purge answers
    # 403 and recoveryLevel is "Recoverable". Off: purge works and frees the name after
    # purge_delay_s (a write meanwhile answers 409 ObjectIsBeingDeleted, as Key Vault's async purge).
    purge_protection: bool = True
    purge_delay_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # Graph throttling (token buckets per app+tenant, REFERENCE.md). scale multiplies every budget,
    # so 0.01 lets a test exhaust it in a few requests; tenant_size picks 3,500/5,000/8,000 RU.
    throttling_enabled: bool = True
    throttle_scale: float = 1.0
    tenant_size: str = "small"  # small (<50 users) | medium (50-500) | large (>500)


class Unauthorized(Exception):  # noqa: N818  (mirrors the HTTP status it maps to)
    """Missing, malformed, expired or wrongly-addressed bearer token."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing  # True when no Authorization header was sent at all


# authenticate(request, resource) -> Principal, raising Unauthorized.
# `resource` is GRAPH_RESOURCE or KEY_VAULT_RESOURCE; tokens for another audience are refused.
Authenticator = Callable[[web.Request, str], Awaitable[Principal]]


@dataclass(frozen=True)
class SecretRecord:
    """One passwordCredential as the token endpoint checks it. The secret itself is never kept:
    graph/ stores ``digest = hashlib.sha256(salt + secretText.encode()).digest()``."""

    key_id: str
    salt: bytes
    digest: bytes
    start: float  # Unix seconds (startDateTime)
    end: float  # Unix seconds (endDateTime)
    created: float  # Unix seconds when it was added (propagation delay counts from here)


@dataclass(frozen=True)
class CertificateRecord:
    """One keyCredential (AsymmetricX509Cert, usage Verify) as the token endpoint checks it."""

    key_id: str
    sha1_thumbprint: bytes  # SHA-1 of the certificate DER (x5t of RS256 assertions)
    sha256_thumbprint: bytes  # SHA-256 of the certificate DER (x5t#S256 of PS256 assertions)
    public_key: Any  # cryptography RSA public key object of the certificate
    start: float
    end: float
    created: float


@dataclass(frozen=True)
class FederatedRecord:
    """One federatedIdentityCredential as the token endpoint matches a federated client assertion."""

    id: str
    issuer: str  # compared case-sensitively with the assertion's iss, as Entra does
    subject: str  # ... with its sub
    audiences: tuple[str, ...]  # ... one of them with its aud
    created: float  # Unix seconds of the last change (propagation delay counts from here)


@dataclass(frozen=True)
class ClientRecord:
    """Everything the token endpoint needs about one client app in one tenant."""

    app_id: str
    application_id: str  # the application object id
    display_name: str
    service_principal_id: str | None  # None: no service principal in this tenant -> AADSTS700016
    secrets: tuple[SecretRecord, ...]
    certificates: tuple[CertificateRecord, ...]
    federated: tuple[FederatedRecord, ...] = ()


@dataclass(frozen=True)
class ResourceRecord:
    """A resource the token endpoint can issue tokens for (scope RESOURCE/.default)."""

    service_principal_id: str
    app_id: str
    audience: str  # the token's aud: GRAPH_RESOURCE, KEY_VAULT_RESOURCE, or the resource's identifier


class DirectoryView(Protocol):
    """What Entra's token endpoint needs from one tenant's directory (implemented in graph/)."""

    tenant_id: str

    def application_by_app_id(self, app_id: str) -> Any | None: ...

    def service_principal_by_app_id(self, app_id: str) -> Any | None: ...

    def resource_for_scope(self, scope: str) -> Any | None:
        """The resource service principal for 'https://graph.microsoft.com/.default' or '<appId>/.default'."""
        ...

    def granted_app_role_values(self, client_sp_id: str, resource_sp_id: str) -> set[str]: ...

    # Typed views, so the token endpoint needs no knowledge of graph/'s internal objects. Both are
    # on the token hot path: answer from memory, no copying.
    def client_record(self, app_id: str) -> ClientRecord | None:
        """None when no application with this appId exists in this tenant."""
        ...

    def resource_record(self, scope: str) -> ResourceRecord | None:
        """For 'https://graph.microsoft.com/.default', '<appId>/.default', 'https://vault.azure.net/.default'."""
        ...


class TenantRegistryView(Protocol):
    home_tenant_id: str

    def get(self, tenant_id: str) -> Any | None: ...

    def all(self) -> Mapping[str, Any]: ...


REGISTRY: web.AppKey[Any] = web.AppKey("registry", object)  # TenantRegistry (server.py)
SIM: web.AppKey[SimulationConfig] = web.AppKey("sim", SimulationConfig)
AUTHENTICATE: web.AppKey[Any] = web.AppKey("authenticate", object)  # Authenticator
BASE_URL: web.AppKey[str] = web.AppKey("base_url", str)  # https://127.0.0.1:PORT
# Callable[[], None]: graph/ and keyvault/ may call it after a write so persistence saves soon
# (the server also marks state dirty after every successful non-GET request).
MARK_DIRTY: web.AppKey[Any] = web.AppKey("mark_dirty", object)
