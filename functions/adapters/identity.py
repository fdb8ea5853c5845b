"""The registrar's own identity per tenant, and the TokenProbe that proves a connector's credential works.

Credentials (azure.identity.aio, for msgraph-sdk and the Key Vault aio clients):
- production, home tenant: the function's managed identity (REGISTRAR_CREDENTIAL=managed_identity,
  REGISTRAR_CLIENT_ID = a user-assigned identity's client id, or empty for system-assigned), or
  DefaultAzureCredential (REGISTRAR_CREDENTIAL=default, e.g. `az login` on a laptop);
- production, other tenants: a multi-tenant app registration in the home tenant whose federated
  identity credential trusts the managed identity (issuer https://login.microsoftonline.com/HOME/v2.0,
  subject = the identity's object id, audience api://AzureADTokenExchange). The registrar presents a
  managed identity token for api://AzureADTokenExchange as the client assertion of that app in the
  target tenant (ClientAssertionCredential). No secret exists anywhere;
- devstack: ClientSecretCredential(tenant, client id, secret, authority=<local authority>,
  disable_instance_discovery=True) issued by the local tenant.

One credential per tenant, made on first use, closed by close().
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.pipeline.transport import AioHttpTransport

from functions.adapters.transport import sdk_client_options
from functions.core.catalogue.policy import is_local_environment
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import SecretValue
from functions.telemetry import redactor

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"  # noqa: S105  (a scope, not a secret)
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# Entra answers these while a new credential (or a new app) has not propagated yet: invalid secret,
# "expired" secret (reported for secrets minutes old, valid by their dates), unknown application,
# certificate/assertion not (yet) registered. Entra documents a delay of minutes; only credentials
# just issued (end dates ahead) are probed and the caller bounds its retries, so these are transient.
PROPAGATION_CODES = frozenset({"7000215", "7000222", "700016", "700027"})
_AADSTS = re.compile(r"AADSTS(\d+)")


def is_loopback_url(url: str) -> bool:
    """True for the devstack's endpoints (https://127.0.0.1:PORT): never true for an Azure endpoint."""
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


@dataclass(frozen=True)
class TenantCredentialConfig:
    """How the registrar authenticates in one tenant other than its home tenant."""

    client_id: str
    client_secret: SecretValue | None = None  # devstack only; production uses `federated`
    federated: bool = False  # client assertion from the managed identity (workload identity federation)


@dataclass(frozen=True)
class IdentityConfig:
    """What identity.py needs from the settings.

    Environment (local.settings.json Values / app settings):
      REGISTRAR_AUTHORITY_HOST     authority, e.g. https://login.microsoftonline.com or https://127.0.0.1:PORT
      REGISTRAR_HOME_TENANT_ID     the tenant the function (and its Key Vault) live in
      REGISTRAR_CREDENTIAL         client_secret | managed_identity | default
      REGISTRAR_CLIENT_ID          client_secret: the app id; managed_identity: user-assigned client id
      REGISTRAR_CLIENT_SECRET      client_secret only (devstack)
      REGISTRAR_TENANT_CREDENTIALS JSON {"<tenantId>": {"clientId": "...", "clientSecret": "..."}} or
                                   {"<tenantId>": {"clientId": "...", "federated": true}}
    """

    authority_host: str
    home_tenant_id: str
    mode: str = "client_secret"
    client_id: str | None = None
    client_secret: SecretValue | None = None
    tenants: Mapping[str, TenantCredentialConfig] = field(default_factory=dict)

    @property
    def devstack(self) -> bool:
        """A loopback authority is the local tenant: Entra's instance discovery must be skipped there."""
        return is_loopback_url(self.authority_host)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentityConfig:
        secret = env.get("REGISTRAR_CLIENT_SECRET") or ""
        tenants = parse_tenant_credentials(env.get("REGISTRAR_TENANT_CREDENTIALS") or "")
        if not is_local_environment(env.get("REGISTRAR_ENVIRONMENT")):
            # An app setting is no place for a secret: in Azure every other tenant is reached by
            # federation from the managed identity (a secret there belongs in Key Vault, if anywhere).
            # "Azure" as Settings means it: any REGISTRAR_ENVIRONMENT but local/devstack/test, unset included.
            holding = sorted(t for t, c in tenants.items() if c.client_secret is not None or not c.federated)
            if holding:
                raise ValueError(
                    'REGISTRAR_TENANT_CREDENTIALS: in Azure every tenant needs "federated": true and no'
                    f" clientSecret (tenants {', '.join(holding)})"
                )
        for known in (secret, *(t.client_secret.reveal() for t in tenants.values() if t.client_secret)):
            redactor.register(known)  # a slip into any log line is masked
        return cls(
            authority_host=(env.get("REGISTRAR_AUTHORITY_HOST") or PUBLIC_AUTHORITY).rstrip("/"),
            home_tenant_id=env.get("REGISTRAR_HOME_TENANT_ID") or "",
            mode=(env.get("REGISTRAR_CREDENTIAL") or "client_secret").strip().lower(),
            client_id=env.get("REGISTRAR_CLIENT_ID") or None,
            client_secret=SecretValue(secret) if secret else None,
            tenants=tenants,
        )


def parse_tenant_credentials(raw: str) -> dict[str, TenantCredentialConfig]:
    """Parse REGISTRAR_TENANT_CREDENTIALS (empty: only the home tenant). Raises ValueError, secret-free."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("REGISTRAR_TENANT_CREDENTIALS is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("REGISTRAR_TENANT_CREDENTIALS must be a JSON object keyed by tenant id")
    tenants: dict[str, TenantCredentialConfig] = {}
    for tenant_id, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("clientId"), str):
            raise ValueError(f"REGISTRAR_TENANT_CREDENTIALS[{tenant_id!r}] needs a clientId")
        secret = entry.get("clientSecret")
        tenants[tenant_id.lower()] = TenantCredentialConfig(
            client_id=entry["clientId"],
            client_secret=SecretValue(secret) if isinstance(secret, str) and secret else None,
            federated=bool(entry.get("federated", False)),
        )
    return tenants


class RegistrarIdentity:
    """The registrar's async credential per tenant (cached; close() at shutdown)."""

    def __init__(self, config: IdentityConfig) -> None:
        self._config = config
        self._credentials: dict[str, AsyncTokenCredential] = {}
        self._assertion_source: Any = None  # sync managed identity credential, federated tenants only

    @property
    def config(self) -> IdentityConfig:
        return self._config

    def has_tenant(self, tenant_id: str) -> bool:
        """Whether the registrar has an identity in the tenant (a request for another tenant gets 422)."""
        key = tenant_id.lower()
        return key == self._config.home_tenant_id.lower() or key in self._config.tenants

    def credential(self, tenant_id: str | None = None) -> AsyncTokenCredential:
        """The credential for the tenant (default: home). Raises PermanentError for an unknown tenant."""
        key = (tenant_id or self._config.home_tenant_id).lower()
        credential = self._credentials.get(key)
        if credential is None:
            credential = self._credentials[key] = self._build(key)
        return credential

    def _common_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"authority": self._config.authority_host, **sdk_client_options()}
        if self._config.devstack:
            kwargs["disable_instance_discovery"] = True
        return kwargs

    def _build(self, tenant_id: str) -> AsyncTokenCredential:
        from azure.identity.aio import (
            ClientAssertionCredential,
            ClientSecretCredential,
            DefaultAzureCredential,
            ManagedIdentityCredential,
        )

        config = self._config
        if tenant_id == config.home_tenant_id.lower():
            if config.mode == "client_secret":
                if not (config.client_id and config.client_secret):
                    raise PermanentError(
                        "REGISTRAR_CREDENTIAL=client_secret needs REGISTRAR_CLIENT_ID and REGISTRAR_CLIENT_SECRET",
                        code="IdentityNotConfigured",
                    )
                return ClientSecretCredential(
                    tenant_id, config.client_id, config.client_secret.reveal(), **self._common_kwargs()
                )
            if config.mode == "managed_identity":
                return ManagedIdentityCredential(client_id=config.client_id, **sdk_client_options())
            if config.mode == "default":
                return DefaultAzureCredential(
                    authority=config.authority_host,
                    managed_identity_client_id=config.client_id,
                    **sdk_client_options(),
                )
            raise PermanentError(
                f"unknown REGISTRAR_CREDENTIAL {config.mode!r}", code="IdentityNotConfigured"
            )
        tenant = config.tenants.get(tenant_id)
        if tenant is None:
            raise PermanentError(f"the registrar has no identity in tenant {tenant_id}", code="UnknownTenant")
        if tenant.client_secret is not None:
            return ClientSecretCredential(
                tenant_id, tenant.client_id, tenant.client_secret.reveal(), **self._common_kwargs()
            )
        if tenant.federated:
            return ClientAssertionCredential(
                tenant_id, tenant.client_id, self._managed_identity_assertion, **self._common_kwargs()
            )
        raise PermanentError(
            f"tenant {tenant_id} has neither a secret nor federated=true", code="UnknownTenant"
        )

    def _managed_identity_assertion(self) -> str:
        """A managed identity token for api://AzureADTokenExchange: the client assertion in other tenants.

        ClientAssertionCredential calls this synchronously, and only when its own token has expired;
        the sync ManagedIdentityCredential (made once) caches its token, so the event loop rarely
        waits here.
        """
        if self._assertion_source is None:
            from azure.identity import ManagedIdentityCredential as SyncManagedIdentityCredential

            self._assertion_source = SyncManagedIdentityCredential(client_id=self._config.client_id)
        return str(self._assertion_source.get_token(TOKEN_EXCHANGE_SCOPE).token)

    async def close(self) -> None:
        credentials, self._credentials = list(self._credentials.values()), {}
        await asyncio.gather(*(c.close() for c in credentials), return_exceptions=True)
        if self._assertion_source is not None:
            self._assertion_source.close()
            self._assertion_source = None


# ------------------------------------------------------------------------------------------ probe


def aadsts_code(error: BaseException) -> str | None:
    """The AADSTS number of an azure-identity error (from the response's error_codes or its text)."""
    response = getattr(error, "response", None)
    if response is not None:
        try:
            codes = json.loads(response.text()).get("error_codes") or []
            if codes:
                return str(codes[0])
        except Exception:  # noqa: S110  (a body that is not Entra's JSON: fall back to the text)
            pass
    match = _AADSTS.search(str(getattr(error, "message", "") or error))
    return match.group(1) if match else None


def _probe_error(error: BaseException, tenant_id: str, client_id: str) -> Exception:
    """Map an azure-identity failure to a core error whose message holds ids and codes only.

    azure-identity's messages carry Entra's error_description, which names the app but not the
    secret; the message is still rebuilt here so nothing the server echoed can reach a log.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    status = getattr(getattr(error, "response", None), "status_code", None)
    code = aadsts_code(error)
    where = f"app {client_id} in tenant {tenant_id}"
    # No answer at all (connect failure, reset, read timeout), also when azure-identity wrapped it
    # in a status-less ClientAuthenticationError("Authentication failed: ..."): Entra never judged
    # the credential, so this proves nothing about it.
    unanswered = (ServiceRequestError, ServiceResponseError, asyncio.TimeoutError, OSError)
    cause: BaseException | None = error if status is None and code is None else None
    for _ in range(8):  # the chain azure-identity and azure-core build is short
        if cause is None:
            break
        if isinstance(cause, unanswered):
            return TransientError(f"token endpoint unavailable for {where} ({type(cause).__name__})")
        cause = cause.__cause__ or cause.__context__
    if status is not None and (status >= 500 or status == 429):
        return TransientError(f"token endpoint unavailable for {where} (status {status})")
    if code in PROPAGATION_CODES:
        return TransientError(f"Entra does not accept the credential of {where} yet: AADSTS{code}")
    if isinstance(error, ClientAuthenticationError | HttpResponseError):
        return PermanentError(
            f"Entra refused the credential of {where}: AADSTS{code or '?'}",
            code=f"AADSTS{code}" if code else None,
        )
    return PermanentError(f"credential of {where} unusable: {type(error).__name__}", code="InvalidCredential")


class _SharedSessionTransport(AioHttpTransport):
    """azure-core's aiohttp transport over a session it does not own: closing the credential
    leaves the session (and its connections) open for the next one."""

    def __init__(self, sessions: Callable[[bool], Any], *, use_env_settings: bool) -> None:
        super().__init__(use_env_settings=use_env_settings)
        self._sessions = sessions

    async def open(self) -> None:
        if not getattr(self, "session", None):  # (azure-core leaves the attribute untyped)
            self.session = self._sessions(self._use_env_settings)
            self._session_owner = False
        await super().open()


class EntraTokenProbe:
    """TokenProbe: acquires a Graph .default app-only token through azure-identity, as a connector would.

    A fresh credential per probe (no token cache shared with anything), closed at once; the token
    is dropped. authority_host: REGISTRAR_AUTHORITY_HOST. Only the connections to the token
    endpoint are shared between probes (one aiohttp session per event loop, close() at shutdown):
    a new TLS handshake per probe sat on a new registration's critical path.
    """

    def __init__(self, authority_host: str, *, scope: str = GRAPH_SCOPE) -> None:
        self._authority = authority_host.rstrip("/")
        self._scope = scope
        self._session: Any = None
        self._session_loop: Any = None

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"authority": self._authority, **sdk_client_options()}
        if is_loopback_url(self._authority):
            kwargs["disable_instance_discovery"] = True
        kwargs["transport"] = _SharedSessionTransport(
            self._shared_session, use_env_settings=kwargs.get("use_env_settings", True)
        )
        return kwargs

    def _shared_session(self, trust_env: bool) -> Any:
        """The probes' aiohttp session in the running loop (made there on first use)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(
                trust_env=trust_env, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
            self._session_loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue) -> None:
        from azure.identity.aio import ClientSecretCredential

        credential = ClientSecretCredential(tenant_id, client_id, secret.reveal(), **self._kwargs())
        await self._acquire(credential, tenant_id, client_id)

    async def try_certificate(self, tenant_id: str, client_id: str, pem_with_key: SecretValue) -> None:
        """pem_with_key: the certificate's backing secret (PEM with the key, or base64 PKCS12)."""
        from azure.identity.aio import CertificateCredential

        text = pem_with_key.reveal()
        try:
            data = text.encode() if "-----BEGIN" in text else base64.b64decode(text, validate=True)
            credential = CertificateCredential(tenant_id, client_id, certificate_data=data, **self._kwargs())
        except ValueError:
            raise PermanentError(
                f"the certificate for app {client_id} has no usable RSA private key",
                code="InvalidCertificate",
            ) from None
        await self._acquire(credential, tenant_id, client_id)

    async def _acquire(self, credential: Any, tenant_id: str, client_id: str) -> None:
        failure: Exception | None = None
        async with credential:
            try:
                await credential.get_token(self._scope)
            except Exception as error:
                failure = _probe_error(error, tenant_id, client_id)
        if failure is not None:
            # Raised outside the except block: no __context__ chains azure-identity's text to ours.
            raise failure
