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
    extra: dict[str, Any] = field(default_factory=dict)


class Unauthorized(Exception):  # noqa: N818  (mirrors the HTTP status it maps to)
    """Missing, malformed, expired or wrongly-addressed bearer token."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing  # True when no Authorization header was sent at all


# authenticate(request, resource) -> Principal, raising Unauthorized.
# `resource` is GRAPH_RESOURCE or KEY_VAULT_RESOURCE; tokens for another audience are refused.
Authenticator = Callable[[web.Request, str], Awaitable[Principal]]


class DirectoryView(Protocol):
    """What Entra's token endpoint needs from one tenant's directory (implemented in graph/)."""

    tenant_id: str

    def application_by_app_id(self, app_id: str) -> Any | None: ...

    def service_principal_by_app_id(self, app_id: str) -> Any | None: ...

    def resource_for_scope(self, scope: str) -> Any | None:
        """The resource service principal for 'https://graph.microsoft.com/.default' or '<appId>/.default'."""
        ...

    def granted_app_role_values(self, client_sp_id: str, resource_sp_id: str) -> set[str]: ...


class TenantRegistryView(Protocol):
    home_tenant_id: str

    def get(self, tenant_id: str) -> Any | None: ...

    def all(self) -> Mapping[str, Any]: ...


REGISTRY: web.AppKey[Any] = web.AppKey("registry", object)  # TenantRegistry (server.py)
SIM: web.AppKey[SimulationConfig] = web.AppKey("sim", SimulationConfig)
AUTHENTICATE: web.AppKey[Any] = web.AppKey("authenticate", object)  # Authenticator
BASE_URL: web.AppKey[str] = web.AppKey("base_url", str)  # https://127.0.0.1:PORT
