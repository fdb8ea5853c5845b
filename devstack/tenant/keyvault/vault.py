"""The KeyVault object the server wires in: state, the auth/RBAC guard, events, persistence."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devstack.tenant.context import (
    KEY_VAULT_RESOURCE,
    Authenticator,
    Principal,
    SimulationConfig,
    Unauthorized,
)

from . import admin
from .certificates import CertificatesApi
from .common import validate_name
from .errors import VaultError, bad_parameter, being_purged, error_response, purge_protected
from .events import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NEAR_EXPIRY,
    CERTIFICATE_NEW_VERSION,
    SECRET_EXPIRED,
    SECRET_NEAR_EXPIRY,
    SECRET_NEW_VERSION,
    EventPublisher,
)
from .expiry import NEAR_EXPIRY, ExpiryScheduler
from .model import (
    Attributes,
    CertificateEntry,
    Deletion,
    NameMap,
    SecretEntry,
    certificate_entry_from_dict,
    certificate_entry_to_dict,
    recovery_level,
    secret_entry_from_dict,
    secret_entry_to_dict,
)
from .rbac import CERTIFICATES_OFFICER, SECRETS_OFFICER, RoleAssignments
from .secrets import SecretsApi

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_VERSION_RE = re.compile(r"^(\d+\.\d+|\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?$")
SERVICE_VERSION = "1.9.2652.1"
_EVENT_TYPES = {
    ("Secret", "new"): SECRET_NEW_VERSION,
    ("Secret", NEAR_EXPIRY): SECRET_NEAR_EXPIRY,
    ("Secret", "expired"): SECRET_EXPIRED,
    ("Certificate", "new"): CERTIFICATE_NEW_VERSION,
    ("Certificate", NEAR_EXPIRY): CERTIFICATE_NEAR_EXPIRY,
    ("Certificate", "expired"): CERTIFICATE_EXPIRED,
}


class KeyVault:
    """One vault served at ``vault_url`` (see the package docstring for wiring)."""

    def __init__(
        self,
        home_tenant_id: str,
        vault_url: str,
        authority: str,
        sim: SimulationConfig,
        authenticate: Authenticator,
        *,
        bootstrap_principal_app_id: str | None = None,
        vault_name: str = "devstack",
        subscription_id: str | None = None,
        mark_dirty: Callable[[], None] | None = None,
        expiry_scan_interval_s: float = 1.0,
        delivery_max_attempts: int = 6,
        delivery_first_backoff_s: float = 0.2,
    ) -> None:
        self.home_tenant_id = home_tenant_id
        self.vault_url = vault_url.rstrip("/")
        self.authority = authority.rstrip("/")
        self.sim = sim
        self._authenticate = authenticate
        self._mark_dirty = mark_dirty
        self.vault_name = vault_name
        subscription = subscription_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"devstack:{home_tenant_id}"))
        self.resource_id = f"/subscriptions/{subscription}/resourceGroups/devstack/providers/Microsoft.KeyVault/vaults/{vault_name}"
        self.secrets: NameMap[SecretEntry] = NameMap()
        self.deleted_secrets: NameMap[tuple[SecretEntry, Deletion]] = NameMap()
        self.certificates: NameMap[CertificateEntry] = NameMap()
        # A deleted certificate keeps its backing secret with it (hidden from /deletedsecrets).
        self.deleted_certificates: NameMap[tuple[CertificateEntry, SecretEntry | None, Deletion]] = NameMap()
        # Names purged but maybe not yet free: name -> time.monotonic() of the purge. The name is
        # free once sim.purge_delay_s has passed since then, the delay read at each request.
        self.purging: NameMap[float] = NameMap()
        self.roles = RoleAssignments()
        self.bootstrap_principal_app_id = bootstrap_principal_app_id
        if bootstrap_principal_app_id:
            self.grant_bootstrap(bootstrap_principal_app_id)
        self.events = EventPublisher(
            sim, self.resource_id, vault_name,
            max_attempts=delivery_max_attempts, first_backoff_s=delivery_first_backoff_s,
        )  # fmt: skip
        self.expiry = ExpiryScheduler(sim, self._on_expiry_due, scan_interval_s=expiry_scan_interval_s)
        self.secrets_api = SecretsApi(self)
        self.certificates_api = CertificatesApi(self)
        self.challenges = 0  # 401 challenges answered (no token sent)
        self.unauthorized = 0  # 401 for a bad, expired or foreign token
        self.forbidden = 0  # 403 ForbiddenByRbac
        self.requests = 0

    # --- wiring API ----------------------------------------------------------------------------

    def grant_bootstrap(self, principal_id: str) -> None:
        """Secrets Officer + Certificates Officer at vault scope (the registrar's own identity)."""
        self.roles.assign(principal_id, SECRETS_OFFICER)
        self.roles.assign(principal_id, CERTIFICATES_OFFICER)

    def routes(self) -> list[web.RouteDef]:
        defs = [
            web.route(method, path, self._guard(handler, action, path))
            for method, path, handler, action in [*self.secrets_api.routes(), *self.certificates_api.routes()]
        ]
        # Anything else under the vault's collections: Key Vault's JSON 404, never aiohttp's text.
        defs += [
            web.route("*", f"/{collection}{tail}", self._unknown_route)
            for collection in ("secrets", "certificates", "deletedsecrets", "deletedcertificates")
            for tail in ("", "/{tail:.*}")
        ]
        return defs + admin.routes(self)

    async def _unknown_route(self, request: web.Request) -> web.Response:
        return error_response(
            404, "NotFound", f"The requested resource {request.method} {request.path[:200]} does not exist."
        )

    async def start(self) -> None:
        await self.events.start()
        await self.expiry.start()

    async def stop(self) -> None:
        await self.expiry.stop()
        await self.events.stop()

    def stats(self) -> dict[str, Any]:
        """For /_sim/stats: event delivery counters and the vault's own request counters."""
        return {
            "requests": self.requests,
            "challenges": self.challenges,
            "unauthorized": self.unauthorized,
            "forbidden": self.forbidden,
            "secrets": len(self.secrets),
            "certificates": len(self.certificates),
            "events": {**self.events.stats(), "expiryPending": self.expiry.pending()},
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "secrets": [secret_entry_to_dict(e) for e in self.secrets.values()],
            "deletedSecrets": [
                {"entry": secret_entry_to_dict(e), "deletion": vars(d)}
                for e, d in self.deleted_secrets.values()
            ],
            "certificates": [certificate_entry_to_dict(e) for e in self.certificates.values()],
            "deletedCertificates": [
                {
                    "entry": certificate_entry_to_dict(c),
                    "secret": secret_entry_to_dict(s) if s else None,
                    "deletion": vars(d),
                }
                for c, s, d in self.deleted_certificates.values()
            ],
            "roleAssignments": self.roles.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.secrets = NameMap()
        for entry in map(secret_entry_from_dict, state.get("secrets", [])):
            self.secrets[entry.name] = entry
        self.deleted_secrets = NameMap()
        for raw in state.get("deletedSecrets", []):
            entry = secret_entry_from_dict(raw["entry"])
            self.deleted_secrets[entry.name] = (entry, Deletion(**raw["deletion"]))
        self.certificates = NameMap()
        for cert in map(certificate_entry_from_dict, state.get("certificates", [])):
            self.certificates[cert.name] = cert
        self.deleted_certificates = NameMap()
        for raw in state.get("deletedCertificates", []):
            cert = certificate_entry_from_dict(raw["entry"])
            secret = secret_entry_from_dict(raw["secret"]) if raw.get("secret") else None
            self.deleted_certificates[cert.name] = (cert, secret, Deletion(**raw["deletion"]))
        self.roles.restore(state.get("roleAssignments", []))
        if self.bootstrap_principal_app_id:
            self.grant_bootstrap(self.bootstrap_principal_app_id)
        for entry in self.secrets.values():
            for version in entry.versions.values():
                if not version.expired_sent:
                    self.expiry.watch("Secret", entry.name, version.version, version.attributes.exp)
        for cert in self.certificates.values():
            for cert_version in cert.versions.values():
                if not cert_version.expired_sent:
                    self.expiry.watch(
                        "Certificate", cert.name, cert_version.version, cert_version.attributes.exp
                    )

    # --- helpers for the handlers --------------------------------------------------------------

    def object_url(self, collection: str, name: str, version: str | None = None) -> str:
        return f"{self.vault_url}/{collection}/{name}" + (f"/{version}" if version is not None else "")

    def mark_dirty(self) -> None:
        if self._mark_dirty is not None:
            self._mark_dirty()

    @property
    def recovery_level(self) -> str:
        return recovery_level(self.sim.purge_protection)

    def purge(self, name: str) -> None:
        """Check that a purge is allowed (403 under purge protection); the name stays taken for
        sim.purge_delay_s (Key Vault purges asynchronously). The caller drops the deleted entry.
        Only the purge time is kept: the delay is read at each request (check_not_purging), so a
        test can hold the name under a long delay and then free it by lowering the knob."""
        if self.sim.purge_protection:
            raise purge_protected()
        if self.sim.purge_delay_s > 0:
            self.purging[name] = time.monotonic()

    def check_not_purging(self, kind: str, name: str) -> None:
        """409 ObjectIsBeingDeleted while a purge of `name` is still under way: until
        sim.purge_delay_s, as configured now, has passed since the purge."""
        purged_at = self.purging.get(name)
        if purged_at is None:
            return
        if time.monotonic() < purged_at + self.sim.purge_delay_s:
            raise being_purged(kind, name)
        self.purging.pop(name)

    def new_version_created(self, object_type: str, name: str, version: str, attributes: Attributes) -> None:
        collection = "secrets" if object_type == "Secret" else "certificates"
        self.events.emit(
            self.events.build(
                _EVENT_TYPES[(object_type, "new")], object_type, name,
                self.object_url(collection, name, version), version=version, nbf=attributes.nbf, exp=attributes.exp,
            )
        )  # fmt: skip
        self.expiry.watch(object_type, name, version, attributes.exp)
        self.mark_dirty()

    def _on_expiry_due(self, kind: str, object_type: str, name: str, version_id: str, exp: int) -> None:
        """Send NearExpiry/Expired once per version, for the current version only, if exp still holds."""
        entry: SecretEntry | CertificateEntry | None = (
            self.secrets.get(name) if object_type == "Secret" else self.certificates.get(name)
        )
        if entry is None or not entry.versions or entry.latest.version != version_id:
            return
        version = entry.latest
        if version.attributes.exp != exp:
            return  # exp changed since this entry was queued; the new exp has its own entry
        if kind == NEAR_EXPIRY:
            if version.near_expiry_sent or time.time() >= exp:
                return  # already expired: only SecretExpired is meaningful now
            version.near_expiry_sent = True
        else:
            if version.expired_sent:
                return
            version.expired_sent = True
        collection = "secrets" if object_type == "Secret" else "certificates"
        self.events.emit(
            self.events.build(
                _EVENT_TYPES[(object_type, kind)], object_type, name,
                self.object_url(collection, name, version_id), version=version_id, nbf=version.attributes.nbf, exp=exp,
            )
        )  # fmt: skip
        self.mark_dirty()

    # --- the guard: challenge auth, api-version, names, RBAC -----------------------------------

    def _challenge_header(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer authorization="{self.authority}/{self.home_tenant_id}", resource="{KEY_VAULT_RESOURCE}"'
            )
        }

    async def _principal(self, request: web.Request) -> Principal:
        try:
            principal = await self._authenticate(request, KEY_VAULT_RESOURCE)
        except Unauthorized as exc:
            if exc.missing:
                self.challenges += 1
                message = "AKV10000: Request is missing a Bearer or PoP token."
            else:
                self.unauthorized += 1
                message = f"AKV10022: Invalid token: {exc.reason}"
            raise VaultError(401, "Unauthorized", message) from None
        if principal.tenant_id != self.home_tenant_id:
            self.unauthorized += 1
            raise VaultError(
                401, "Unauthorized", f"AKV10032: Invalid issuer. Expected tenant {self.home_tenant_id}."
            )
        return principal

    def _forbidden(self, principal: Principal, action: str, scope: str) -> VaultError:
        self.forbidden += 1
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: appid={principal.app_id};oid={principal.service_principal_id};"
            f"iss=https://sts.windows.net/{principal.tenant_id}/\r\n"
            f"Action: '{action}'\r\n"
            f"Resource: '{self.resource_id.lower()}{scope if scope != '/' else ''}'\r\n"
            "Assignment: (not found)\r\n"
            "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            f"Vault: {self.vault_name};location=devstack\r\n"
        )
        return VaultError(403, "Forbidden", message, inner_code="ForbiddenByRbac")

    def _guard(self, handler: Handler, action: str, path: str) -> Handler:
        collection = path.strip("/").split("/", 1)[0].replace("deleted", "")

        async def guarded(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            headers = {"x-ms-keyvault-service-version": SERVICE_VERSION, "x-ms-request-id": str(uuid.uuid4())}
            try:
                principal = await self._principal(request)
                api_version = request.query.get("api-version")
                if not api_version:
                    raise bad_parameter("The 'api-version' query parameter is missing.")
                if not API_VERSION_RE.match(api_version):
                    raise bad_parameter(f"The specified version ({api_version[:40]}) is not recognized.")
                name = request.match_info.get("name")
                if name is not None:
                    validate_name(name)
                scope = f"/{collection}/{name}" if name else "/"
                if not self.roles.allows(principal, action, scope):
                    raise self._forbidden(principal, action, scope)
                response = await handler(request)
            except VaultError as exc:
                if exc.status == 401:
                    headers.update(self._challenge_header())
                return exc.response(headers)
            response.headers.update(headers)
            return response

        return guarded


__all__ = ["KeyVault", "error_response"]
