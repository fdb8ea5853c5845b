"""In-memory fakes of the core's ports, faithful to the Protocols' idempotency rules.

They keep state (apps, service principals, grants, secrets, records) so tests assert on outcomes,
and record every call so tests can count round trips. `Crashing` wraps any fake to simulate a
process that dies right after its N-th outside call took effect.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import secrets
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.core.adoption.claims import AppClaim
from functions.core.catalogue.permissions import canonical_resource, catalog_from_json
from functions.core.ports import (
    AppCredential,
    ApplicationRef,
    ApplicationSpec,
    DelegatedGrant,
    ExistingApplication,
    FederatedCredentialSpec,
    IssuedSecret,
    KeyCredentialSpec,
    QueuedMessage,
    RequiredResourceAccess,
    TenantSubscriptionRecord,
    VaultCertificate,
    VaultSecretRef,
)
from functions.core.record.errors import (
    ConcurrencyConflict,
    NotFound,
    PermanentError,
    TransientError,
    ValidationFailed,
)
from functions.core.record.inflight import InFlightWork
from functions.core.record.models import (
    CredentialType,
    Problem,
    RegistrationStatus,
    ResourceCatalog,
    SecretValue,
)
from functions.core.record.registration import Registration, RegistrationPage
from functions.core.record.schedule import RotationJob, index_partition

RESOURCES_DIR = Path(__file__).resolve().parents[2] / "functions" / "profiles" / "resources"


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def note(self, name: str) -> None:
        self.calls.append(name)

    def count(self, name: str) -> int:
        return sum(1 for c in self.calls if c == name)


@dataclass
class FakeApp:
    object_id: str
    app_id: str
    spec: ApplicationSpec
    passwords: dict[str, tuple[str, datetime, datetime, str]] = field(default_factory=dict)  # keyId -> ..
    keys: list[KeyCredentialSpec] = field(default_factory=list)
    federated: dict[str, tuple[str, FederatedCredentialSpec]] = field(
        default_factory=dict
    )  # name -> (id, ..)
    owners: list[str] = field(default_factory=list)  # directory object ids (the registrar's own first)


class FakeDirectory(Recorder):
    """One tenant's Graph: apps by uniqueName, service principals, assignments, grants."""

    LAG_WINDOW_LOOKUPS = 5  # find_application(lag=True): the adapter's retries within its window

    def __init__(self, tenant_id: str) -> None:
        super().__init__()
        self.tenant_id = tenant_id
        self.apps: dict[str, FakeApp] = {}
        self.deleted_apps: list[str] = []
        self.service_principals: dict[str, str] = {}  # appId -> SP id
        self.assignments: set[tuple[str, str, str]] = set()  # (principal, resource SP, appRoleId)
        self.grants: dict[str, tuple[str, str, frozenset[str]]] = {}  # id -> (client, resource, scopes)
        self.catalogs: dict[str, ResourceCatalog] = {}
        # The tenant's app management policy: the longest new credential of a type Entra accepts.
        self.tenant_max_lifetime: dict[CredentialType, timedelta] = {}
        self.registrar_id = str(uuid.uuid4())  # the registrar's own service principal
        self.users: set[str] = set()  # user object ids (owners may be users or service principals)
        self.may_add_owners = True  # False: Graph's 403 for an identity without Application.ReadWrite.All
        # True: Registrar holds Application.ReadWrite.OwnedBy only, so a write to an app it does not
        # own is Graph's 403 (off by default: most tests use apps Registrar made, which it owns).
        self.owned_by_only = False
        # Replication: lookups by uniqueName miss a new app this many times (set on creation).
        self.lookup_lag = 0
        self.unreplicated: dict[str, int] = {}  # app object id -> lookups that still miss it
        self.paced_waits: dict[str, timedelta] = {}  # tenant -> the pacer's predicted wait
        for path in sorted(RESOURCES_DIR.glob("*.json")):
            data = json.loads(path.read_text())
            catalog = catalog_from_json(data, service_principal_id=str(uuid.uuid4()))
            self.catalogs[catalog.app_id] = catalog
            self.service_principals[catalog.app_id] = catalog.service_principal_id

    def predicted_wait(self, tenant_id: str) -> timedelta:
        """What the Graph adapter's pacer would report: set per tenant by a test (zero otherwise)."""
        return self.paced_waits.get(tenant_id, timedelta(0))

    def _tenant(self, tenant_id: str) -> None:
        if tenant_id != self.tenant_id:
            raise PermanentError(f"no identity in tenant {tenant_id}")

    def _app(self, object_id: str) -> FakeApp:
        if object_id not in self.apps:
            raise NotFound("application", object_id)
        return self.apps[object_id]

    def _may_write(self, app: FakeApp) -> None:
        if self.owned_by_only and self.registrar_id not in app.owners:
            raise PermanentError(
                "Insufficient privileges to complete the operation.", code="Authorization_RequestDenied"
            )

    def app_by_unique_name(self, unique_name: str) -> FakeApp | None:
        return next((a for a in self.apps.values() if a.spec.unique_name == unique_name), None)

    async def resource_catalog(self, tenant_id: str, resource: str) -> ResourceCatalog:
        self.note("resource_catalog")
        self._tenant(tenant_id)
        app_id = canonical_resource(resource)
        for catalog in self.catalogs.values():
            if app_id in (catalog.app_id, catalog.display_name):
                return catalog
        raise NotFound("resource", resource)

    async def upsert_application(self, tenant_id: str, spec: ApplicationSpec) -> ApplicationRef:
        self.note("upsert_application")
        self._tenant(tenant_id)
        app = self.app_by_unique_name(spec.unique_name)
        if app is None:
            app = FakeApp(str(uuid.uuid4()), str(uuid.uuid4()), spec, owners=[self.registrar_id])
            self.apps[app.object_id] = app
            if self.lookup_lag:
                self.unreplicated[app.object_id] = self.lookup_lag
            return ApplicationRef(app.object_id, app.app_id, created=True)
        app.spec = spec
        return ApplicationRef(app.object_id, app.app_id)

    async def find_application(
        self, tenant_id: str, unique_name: str, *, lag: bool = False
    ) -> ApplicationRef | None:
        """Misses an app not replicated yet (unreplicated[object id]: lookups that still miss it);
        lag=True stands for the adapter's retries through the replication window: up to
        LAG_WINDOW_LOOKUPS lookups."""
        self.note("find_application")
        app = self.app_by_unique_name(unique_name)
        for _ in range(self.LAG_WINDOW_LOOKUPS if lag else 1):
            if app is None or self.unreplicated.get(app.object_id, 0) <= 0:
                break
            self.unreplicated[app.object_id] -= 1
        else:
            return None
        return ApplicationRef(app.object_id, app.app_id) if app else None

    def add_hand_made_app(
        self, display_name: str, required: Sequence[RequiredResourceAccess] = (), owners: Sequence[str] = ()
    ) -> FakeApp:
        """An app a person made in the portal: no uniqueName, and Registrar not among its owners."""
        spec = ApplicationSpec(
            unique_name="", display_name=display_name, required_resource_access=tuple(required)
        )
        app = FakeApp(str(uuid.uuid4()), str(uuid.uuid4()), spec, owners=list(owners))
        self.apps[app.object_id] = app
        return app

    async def application_by_app_id(self, tenant_id: str, app_id: str) -> ExistingApplication | None:
        self.note("application_by_app_id")
        self._tenant(tenant_id)
        app = next((a for a in self.apps.values() if a.app_id == app_id.lower()), None)
        if app is None:
            return None
        return ExistingApplication(
            object_id=app.object_id,
            app_id=app.app_id,
            display_name=app.spec.display_name,
            unique_name=app.spec.unique_name or None,
            required_resource_access=app.spec.required_resource_access,
        )

    async def ensure_service_principal(self, tenant_id: str, app_id: str) -> str:
        self.note("ensure_service_principal")
        if not any(a.app_id == app_id for a in self.apps.values()):
            raise PermanentError(f"appId {app_id} does not reference a valid application object")
        return self.service_principals.setdefault(app_id, str(uuid.uuid4()))

    async def app_role_assignments(self, tenant_id: str, principal_id: str) -> set[tuple[str, str]]:
        self.note("app_role_assignments")
        return {(r, role) for p, r, role in self.assignments if p == principal_id}

    async def assign_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        self.note("assign_app_roles")
        for resource_sp, role in assignments:
            self.assignments.add((principal_id, resource_sp, role))

    async def delegated_grants(self, tenant_id: str, client_id: str) -> Mapping[str, DelegatedGrant]:
        self.note("delegated_grants")
        return {
            resource: DelegatedGrant(grant_id, resource, scopes)
            for grant_id, (client, resource, scopes) in self.grants.items()
            if client == client_id
        }

    async def grant_delegated(
        self, tenant_id: str, client_id: str, resource_id: str, scopes: frozenset[str], existing: str | None
    ) -> None:
        self.note("grant_delegated")
        if existing is None and any(c == client_id and r == resource_id for c, r, _ in self.grants.values()):
            raise PermanentError("Permission entry already exists.")  # Graph's 409 on a duplicate grant
        if existing is not None and not scopes:  # the adapter DELETEs a grant left with no scope
            self.grants.pop(existing, None)
            return
        self.grants[existing or str(uuid.uuid4())] = (client_id, resource_id, scopes)

    async def service_principal_of(self, tenant_id: str, app_id: str) -> str | None:
        self.note("service_principal_of")
        self._tenant(tenant_id)
        return self.service_principals.get(app_id.lower())

    async def resource_app_id_of(self, tenant_id: str, service_principal_id: str) -> str:
        self.note("resource_app_id_of")
        for app_id, sp_id in self.service_principals.items():
            if sp_id == service_principal_id.lower():
                return app_id
        raise NotFound("servicePrincipal", service_principal_id)

    async def set_required_resource_access(
        self, tenant_id: str, app_object_id: str, access: Sequence[RequiredResourceAccess]
    ) -> None:
        self.note("set_required_resource_access")
        app = self._app(app_object_id)
        app.spec = replace(app.spec, required_resource_access=tuple(access))

    async def remove_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        self.note("remove_app_roles")
        for resource_sp, role in assignments:
            self.assignments.discard((principal_id, resource_sp, role))

    async def list_credentials(self, tenant_id: str, app_object_id: str) -> list[AppCredential]:
        self.note("list_credentials")
        app = self._app(app_object_id)
        found = [AppCredential("password", k, d, s, e) for k, (d, s, e, _) in app.passwords.items()]
        found += [AppCredential("key", k.key_id, k.display_name, k.start, k.end) for k in app.keys]
        found += [AppCredential("federated", i, n, None, None) for n, (i, _) in app.federated.items()]
        return found

    async def add_password(
        self, tenant_id: str, app_object_id: str, display_name: str, start: datetime, end: datetime
    ) -> IssuedSecret:
        self.note("add_password")
        app = self._app(app_object_id)
        self._may_write(app)
        self._enforce_lifetime(CredentialType.SECRET, start, end)
        key_id = str(uuid.uuid4())
        value = secrets.token_urlsafe(30)
        app.passwords[key_id] = (display_name, start, end, value)
        return IssuedSecret(key_id, SecretValue(value), value[:3], start, end)

    async def remove_password(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        self.note("remove_password")
        app = self._app(app_object_id)
        self._may_write(app)
        app.passwords.pop(key_id, None)

    async def set_key_credentials(
        self, tenant_id: str, app_object_id: str, keys: Sequence[KeyCredentialSpec]
    ) -> None:
        self.note("set_key_credentials")
        app = self._app(app_object_id)
        self._may_write(app)
        for key in keys:
            if key.key_id not in {k.key_id for k in app.keys}:  # only new certificates are judged
                self._enforce_lifetime(CredentialType.CERTIFICATE, key.start, key.end)
        app.keys = list(keys)

    async def set_own_key_credentials(
        self,
        tenant_id: str,
        app_object_id: str,
        keys: Sequence[KeyCredentialSpec],
        own_key_ids: Collection[str],
    ) -> None:
        self.note("set_own_key_credentials")
        if app_object_id not in self.apps and not keys:
            return  # the app is gone, and its keys with it (as the adapter)
        app = self._app(app_object_id)
        replaced = {k.key_id for k in keys} | set(own_key_ids)
        others = [k for k in app.keys if k.key_id not in replaced]
        if {k.key_id for k in app.keys} == {k.key_id for k in [*others, *keys]}:
            return  # already so: no write (as the adapter)
        self._may_write(app)
        for key in keys:
            if key.key_id not in {k.key_id for k in app.keys}:  # only new certificates are judged
                self._enforce_lifetime(CredentialType.CERTIFICATE, key.start, key.end)
        app.keys = [*others, *keys]

    async def remove_federated_credential(
        self, tenant_id: str, app_object_id: str, credential_id: str
    ) -> None:
        self.note("remove_federated_credential")
        app = self.apps.get(app_object_id)
        if app is None:
            return
        self._may_write(app)
        app.federated = {name: f for name, f in app.federated.items() if f[0] != credential_id}

    async def remove_key_credential(self, tenant_id: str, app_object_id: str, key_id: str) -> None:
        self.note("remove_key_credential")
        app = self.apps.get(app_object_id)
        if app is None:
            return
        self._may_write(app)
        app.keys = [k for k in app.keys if k.key_id != key_id]

    async def add_federated_credential(
        self, tenant_id: str, app_object_id: str, spec: FederatedCredentialSpec
    ) -> str:
        self.note("add_federated_credential")
        app = self._app(app_object_id)
        if spec.name not in app.federated:
            app.federated[spec.name] = (str(uuid.uuid4()), spec)
        return app.federated[spec.name][0]

    async def delete_application(self, tenant_id: str, app_object_id: str) -> None:
        self.note("delete_application")
        if app_object_id in self.apps:
            self._may_write(self.apps[app_object_id])
        app = self.apps.pop(app_object_id, None)
        if app is not None:
            self.deleted_apps.append(app_object_id)
            sp = self.service_principals.pop(app.app_id, None)
            self.assignments = {a for a in self.assignments if a[0] != sp}
            self.grants = {k: g for k, g in self.grants.items() if g[0] != sp}

    async def registrar_principal_id(self, tenant_id: str) -> str:
        self.note("registrar_principal_id")
        self._tenant(tenant_id)
        return self.registrar_id

    async def application_owner_ids(self, tenant_id: str, app_object_id: str) -> set[str]:
        self.note("application_owner_ids")
        self._tenant(tenant_id)
        return {o.lower() for o in self._app(app_object_id).owners}

    async def add_owner(self, tenant_id: str, app_object_id: str, owner_id: str) -> None:
        self.note("add_owner")
        self._tenant(tenant_id)
        app = self._app(app_object_id)
        if not self.may_add_owners:
            raise PermanentError(
                "Insufficient privileges to complete the operation.", code="Authorization_RequestDenied"
            )
        if owner_id in self.apps:
            raise PermanentError(
                "Unsupported directory object class 'Application'", code="Request_BadRequest"
            )
        principals = {*self.service_principals.values(), self.registrar_id}
        if owner_id not in self.users and owner_id not in principals:
            raise NotFound("user or service principal", owner_id)
        if owner_id not in app.owners:  # Graph's 400 "already exist" is success to the port
            app.owners.append(owner_id)

    async def remove_owner(self, tenant_id: str, app_object_id: str, owner_id: str) -> None:
        self.note("remove_owner")
        self._tenant(tenant_id)
        app = self.apps.get(app_object_id)
        if app is None:
            return  # the app is gone: nothing owned any more
        self._may_write(app)
        if owner_id in app.owners:  # Graph's 404 for one that is not an owner is success to the port
            app.owners.remove(owner_id)

    async def credential_lifetime_limit(self, tenant_id: str, kind: CredentialType) -> timedelta | None:
        return self.tenant_max_lifetime.get(kind)

    def _enforce_lifetime(self, kind: CredentialType, start: datetime, end: datetime) -> None:
        limit = self.tenant_max_lifetime.get(kind)
        if limit is not None and end - start > limit:  # Entra's 400, a PermanentError to the port
            raise PermanentError(
                "Credential lifetime exceeds the max value allowed as per assigned policy.",
                code="CredentialInvalidLifetimeAsPerAppPolicy",
            )

    # ------------------------------------------------------------ test helpers

    def secret_value(self, app_id: str, key_id: str) -> str | None:
        app = next((a for a in self.apps.values() if a.app_id == app_id), None)
        entry = app.passwords.get(key_id) if app else None
        return entry[3] if entry else None


@dataclass
class _Version:
    ref: VaultSecretRef
    value: str
    content_type: str


class FakeVault(Recorder):
    def __init__(self, vault_url: str = "https://vault.test") -> None:
        super().__init__()
        self.url = vault_url
        self.secrets: dict[str, list[_Version]] = {}
        self.certificates: dict[str, list[VaultCertificate]] = {}
        self.deleted: list[str] = []
        self.disabled_certificates: set[tuple[str, str]] = set()  # (name, version)

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
    ) -> VaultSecretRef:
        self.note("set_secret")
        version = uuid.uuid4().hex
        ref = VaultSecretRef(
            name, version, f"{self.url}/secrets/{name}/{version}", expires_on, enabled, dict(tags)
        )
        self.secrets.setdefault(name, []).append(_Version(ref, value.reveal(), content_type))
        return ref

    async def get_secret(self, name: str, version: str | None = None) -> tuple[VaultSecretRef, SecretValue]:
        self.note("get_secret")
        versions = self.secrets.get(name) or []
        found = next((v for v in versions if v.ref.version == version), None) if version else None
        if version is None and versions:
            found = versions[-1]
        if found is None:
            raise NotFound("secret", name)
        return found.ref, SecretValue(found.value)

    async def secret_versions(self, name: str) -> list[VaultSecretRef]:
        self.note("secret_versions")
        return [v.ref for v in self.secrets.get(name, [])]

    async def update_secret_version(
        self, name: str, version: str, *, enabled: bool | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        self.note("update_secret_version")
        for v in self.secrets.get(name, []):
            if v.ref.version == version:
                v.ref = replace(
                    v.ref,
                    enabled=v.ref.enabled if enabled is None else enabled,
                    tags=dict(tags) if tags is not None else v.ref.tags,
                )

    async def delete_secret(self, name: str) -> None:
        self.note("delete_secret")
        if self.secrets.pop(name, None) is not None:
            self.deleted.append(name)

    async def create_certificate(
        self, name: str, *, subject: str, validity_months: int, tags: Mapping[str, str]
    ) -> VaultCertificate:
        self.note("create_certificate")
        version = uuid.uuid4().hex
        der = secrets.token_bytes(64)
        start = datetime(2026, 11, 22, tzinfo=UTC)
        cert = VaultCertificate(
            name=name,
            version=version,
            certificate_uri=f"{self.url}/certificates/{name}/{version}",
            secret_uri=f"{self.url}/secrets/{name}/{version}",
            der=der,
            thumbprint_sha1=hashlib.sha1(der).hexdigest(),  # noqa: S324  (a thumbprint, as Entra uses)
            not_before=start,
            expires_on=start + timedelta(days=30 * validity_months),
        )
        self.certificates.setdefault(name, []).append(cert)
        pfx = "PFX:" + base64.b64encode(der).decode()  # the backing secret holds the "private key"
        ref = VaultSecretRef(name, version, cert.secret_uri, cert.expires_on, True, dict(tags))
        self.secrets.setdefault(name, []).append(_Version(ref, pfx, "application/x-pkcs12"))
        return cert

    async def get_certificate(self, name: str, version: str | None = None) -> VaultCertificate:
        self.note("get_certificate")
        versions = self.certificates.get(name) or []
        found = next((c for c in versions if c.version == version), None) if version else versions[-1:]
        if isinstance(found, list):
            found = found[0] if found else None
        if found is None:
            raise NotFound("certificate", name)
        return found

    async def delete_certificate(self, name: str) -> None:
        self.note("delete_certificate")
        if self.certificates.pop(name, None) is not None:
            self.secrets.pop(name, None)
            self.deleted.append(name)

    async def update_certificate_version(self, name: str, version: str, *, enabled: bool) -> None:
        self.note("update_certificate_version")
        if not any(c.version == version for c in self.certificates.get(name, [])):
            raise NotFound("certificate version", f"{name}/{version}")
        (self.disabled_certificates.discard if enabled else self.disabled_certificates.add)((name, version))
        for v in self.secrets.get(name, []):  # the backing secret version follows, as in Key Vault
            if v.ref.version == version:
                v.ref = replace(v.ref, enabled=enabled)

    def latest_value(self, name: str) -> str | None:
        versions = self.secrets.get(name)
        return versions[-1].value if versions else None


class FakeTokenProbe(Recorder):
    """Accepts a credential that exists on the app, after `not_accepted_for` refusals (propagation)."""

    def __init__(self, directory: FakeDirectory, vault: FakeVault, *, not_accepted_for: int = 0) -> None:
        super().__init__()
        self._directory = directory
        self._vault = vault
        self.not_accepted_for = not_accepted_for
        self.accepted: list[tuple[str, str]] = []  # (appId, keyId)

    def _propagating(self) -> None:
        if self.not_accepted_for > 0:
            self.not_accepted_for -= 1
            raise TransientError(
                "AADSTS7000215: Invalid client secret provided.", retry_after=timedelta(seconds=2)
            )

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue) -> None:
        self.note("try_secret")
        self._propagating()
        for app in self._directory.apps.values():
            if app.app_id == client_id:
                for key_id, (_, _, _, value) in app.passwords.items():
                    if value == secret.reveal():
                        self.accepted.append((client_id, key_id))
                        return
        raise PermanentError("AADSTS7000215: Invalid client secret provided.")

    async def try_certificate(self, tenant_id: str, client_id: str, pem_with_key: SecretValue) -> None:
        self.note("try_certificate")
        self._propagating()
        text = pem_with_key.reveal()
        der = base64.b64decode(text.removeprefix("PFX:"))
        for app in self._directory.apps.values():
            if app.app_id == client_id:
                for key in app.keys:
                    if key.certificate_der == der:
                        self.accepted.append((client_id, key.key_id))
                        return
        raise PermanentError("AADSTS700027: Client assertion contains an invalid signature.")


class FakeRegistrationStore(Recorder):
    """Keeps documents (to_document/from_document round trip, as the Tables adapter does) with ETags."""

    def __init__(self) -> None:
        super().__init__()
        self.documents: dict[str, tuple[dict[str, Any], str]] = {}
        # An ambiguous commit: when this says so for a record being saved, the save takes effect
        # and then ConcurrencyConflict is raised, as when azure-core retries a PUT whose response
        # was lost (read timeout) and the retry gets 412 against the ETag the first one changed.
        self.lose_response: Callable[[Registration], bool] | None = None

    def _load(self, registration_id: str) -> Registration:
        doc, etag = self.documents[registration_id]
        return Registration.from_document(json.loads(json.dumps(doc)), etag=etag)

    async def get(self, registration_id: str) -> Registration:
        self.note("get")
        if registration_id not in self.documents:
            raise NotFound("registration", registration_id)
        return self._load(registration_id)

    async def create(self, registration: Registration) -> tuple[Registration, bool]:
        self.note("create")
        if registration.id in self.documents:
            return self._load(registration.id), False
        self.documents[registration.id] = (registration.to_document(), uuid.uuid4().hex)
        return self._load(registration.id), True

    async def replace(self, registration: Registration) -> Registration:
        self.note("replace")
        if registration.id not in self.documents:
            raise NotFound("registration", registration.id)
        if self.documents[registration.id][1] != registration.etag:
            raise ConcurrencyConflict(f"registration {registration.id} changed")
        self.documents[registration.id] = (registration.to_document(), uuid.uuid4().hex)
        if self.lose_response is not None and self.lose_response(registration):
            raise ConcurrencyConflict(f"registration {registration.id} changed (412 on a retried PUT)")
        return self._load(registration.id)

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
        self.note("list")
        matching = [
            self._load(key)
            for key in sorted(self.documents)
            if (tenant_id is None or self.documents[key][0]["tenantId"] == tenant_id)
            and (app_id is None or _app_of(self.documents[key][0]) == app_id.lower())
            and (profile_id is None or self.documents[key][0]["profileId"] == profile_id)
            and (status is None or self.documents[key][0]["status"] == status.value)
        ]
        if continuation is not None and not continuation.isdigit():  # as the Tables adapter refuses it
            raise ValidationFailed([Problem("continuation", "not a continuation token of this list")])
        start = int(continuation or 0)
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        return RegistrationPage(page, str(start + limit) if more else None)


def _app_of(document: Mapping[str, Any]) -> str:
    """The app a stored record made or adopted, as the Tables adapter's App column holds it."""
    adopted = document.get("adoption") or {}
    return str(adopted.get("appId") or document.get("appId") or "").lower()


class FakeQueue(Recorder):
    """Storage queues: what was sent, in order. fail_sends(n) makes the next n sends raise (by
    default TransientError, as the queue adapter maps a 503 or a timeout) without enqueuing."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []
        self.hidden_for: list[timedelta | None] = []  # each sent message's visibility timeout
        self.deleted: set[int] = set()  # indexes into sent
        self.released: set[int] = set()
        self.taken: set[int] = set()  # received by a consumer: the sender's receipt no longer works
        self.receipts: dict[int, str] = {}  # each message's current pop receipt
        self._failures: list[Exception] = []

    def fail_sends(self, count: int = 1, error: Exception | None = None) -> None:
        self._failures.extend(
            error or TransientError("503 Server Busy (queue send)", retry_after=timedelta(seconds=2))
            for _ in range(count)
        )

    async def send(
        self, queue_name: str, message: str, *, visibility_timeout: timedelta | None = None
    ) -> QueuedMessage:
        self.note("send")
        if self._failures:
            raise self._failures.pop(0)
        self.sent.append((queue_name, message))
        self.hidden_for.append(visibility_timeout)
        index = len(self.sent) - 1
        self.receipts[index] = f"receipt-{index}-0"
        return QueuedMessage(queue_name, str(index), self.receipts[index])

    def _held(self, message: QueuedMessage) -> int | None:
        """The message's index while the sender's receipt still works (as Storage checks it)."""
        index = int(message.id)
        if index in self.deleted or index in self.taken or self.receipts.get(index) != message.pop_receipt:
            return None
        return index

    async def delete(self, message: QueuedMessage) -> None:
        self.note("delete")
        index = self._held(message)
        if index is not None:
            self.deleted.add(index)

    async def release(self, message: QueuedMessage) -> None:
        self.note("release")
        index = self._held(message)
        if index is not None:
            self.released.add(index)

    async def reschedule(
        self, message: QueuedMessage, content: str, *, visibility_timeout: timedelta
    ) -> bool:
        self.note("reschedule")
        index = self._held(message)
        if index is None:
            return False
        self.sent[index] = (self.sent[index][0], content)
        self.hidden_for[index] = visibility_timeout
        self.receipts[index] = f"receipt-{index}-{self.count('reschedule')}"  # Storage issues a new one
        return True

    async def approximate_length(self, queue_name: str) -> int:
        """QueueLengths: what a consumer would still receive (poison queues: what tests put there)."""
        self.note("length")
        return len(self.pending(queue_name))

    def pending(self, queue_name: str) -> list[str]:
        """Messages a consumer would still receive: neither deleted by their sender nor taken back."""
        return [m for i, (q, m) in enumerate(self.sent) if q == queue_name and i not in self.deleted]

    def messages(self, queue_name: str) -> list[str]:
        return [m for q, m in self.sent if q == queue_name]


class FakeExpiryIndex(Recorder):
    """The expiry index as Table storage keeps it: one entity per job at (due bucket, job id).

    As the adapter does, put and remove find a job's entity by its id wherever it is, not by the
    bucket of the job they are handed: a job whose due time moved (rotate now, a retry after a
    failure) keeps exactly one entry. due() reads buckets up to now's, then DueAt <= now.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entities: dict[tuple[str, str], RotationJob] = {}  # (PartitionKey, RowKey) -> job
        self.reads = 0

    @property
    def jobs(self) -> dict[str, RotationJob]:
        return {job_id: job for (_, job_id), job in self.entities.items()}

    def partitions_of(self, job_id: str) -> list[str]:
        return sorted(partition for partition, row in self.entities if row == job_id)

    def _drop(self, job_id: str) -> None:
        for key in [k for k in self.entities if k[1] == job_id]:
            del self.entities[key]

    async def put(self, job: RotationJob) -> None:
        self.note("put")
        self._drop(job.job_id)
        self.entities[(job.index_partition, job.job_id)] = job

    async def remove(self, job: RotationJob) -> None:
        self.note("remove")
        self._drop(job.job_id)

    async def due(self, now: datetime, *, limit: int | None = None) -> list[RotationJob]:
        self.note("due")
        high = index_partition(now)
        found = sorted(
            (j for (partition, _), j in self.entities.items() if partition <= high and j.due_at <= now),
            key=lambda j: j.due_at,
        )
        self.reads += len(found)
        return found[:limit] if limit else found


class FakeInFlightIndex(Recorder):
    """The in-flight index as the Tables adapter keeps it: one entry per key with an ETag; put
    merges (keeps the resume count); mark_resumed only against the ETag read. `entities_read`
    counts what all() returned, as the entities a sweep reads from Table storage."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, tuple[InFlightWork, str]] = {}
        self.entities_read = 0

    async def put(self, work: InFlightWork) -> str:
        self.note("put")
        old = self.entries.get(work.key)
        resumes = old[0].resumes if old else 0
        etag = uuid.uuid4().hex
        self.entries[work.key] = (replace(work, resumes=resumes, etag=None), etag)
        return etag

    async def remove(self, key: str, etag: str | None = None) -> None:
        self.note("remove")
        if etag is None or (key in self.entries and self.entries[key][1] == etag):
            self.entries.pop(key, None)

    async def all(self) -> list[InFlightWork]:
        self.note("all")
        self.entities_read += len(self.entries)
        return [replace(work, etag=etag) for work, etag in self.entries.values()]

    async def mark_resumed(self, work: InFlightWork, at: datetime) -> bool:
        self.note("mark_resumed")
        current = self.entries.get(work.key)
        if current is None or current[1] != work.etag:
            return False
        resumed = replace(current[0], touched_at=at, resumes=current[0].resumes + 1)
        self.entries[work.key] = (resumed, uuid.uuid4().hex)
        return True


class FakeAppClaims(Recorder):
    """Adoption claims as the Tables adapter keeps them: insert-if-absent, replace by ETag."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: dict[tuple[str, str], AppClaim] = {}

    async def insert(self, claim: AppClaim) -> AppClaim:
        self.note("insert")
        key = (claim.tenant_id.lower(), claim.app_id.lower())
        if key not in self.claims:
            self.claims[key] = replace(claim, etag=uuid.uuid4().hex)
        return self.claims[key]

    async def replace(self, claim: AppClaim, etag: str) -> AppClaim:
        self.note("replace")
        key = (claim.tenant_id.lower(), claim.app_id.lower())
        if key not in self.claims:
            raise NotFound("claim", claim.app_id)
        if self.claims[key].etag != etag:
            raise ConcurrencyConflict(f"claim of {claim.app_id} changed")
        self.claims[key] = replace(claim, etag=uuid.uuid4().hex)
        return self.claims[key]


class Crash(Exception):  # noqa: N818  (the process died: not an error the workflow handles)
    pass


class Faults:
    """Counts outside calls across every wrapped fake; raises Crash once `crash_after` took effect."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.crash_after = crash_after
        self.count = 0
        self.crashed = False

    def after_call(self, name: str) -> None:
        self.count += 1
        if self.crash_after is not None and self.count >= self.crash_after:
            self.crashed = True
            raise Crash(f"crashed after call {self.count} ({name})")


class Crashing:
    """Wraps a fake: each async method runs, then the shared Faults decide whether we 'die'."""

    def __init__(self, target: Any, faults: Faults) -> None:
        self._target = target
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        # Plain methods (predicted_wait: a look at the pacer, no call to the service) pass through.
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._faults.crashed:
                raise Crash("the process is gone")
            result = await attribute(*args, **kwargs)
            self._faults.after_call(name)
            return result

        return call


class Flaky:
    """Wraps a fake: a share of calls fail with TransientError, either before taking effect (429,
    503) or after (the response was lost, e.g. a 504 once the write was done)."""

    def __init__(self, target: Any, rng: Any, rate: float) -> None:
        self._target = target
        self._rng = rng
        self._rate = rate

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        # Plain methods (predicted_wait: a look at the pacer, no call to the service) pass through.
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            roll = self._rng.random()
            if roll < self._rate / 2:
                raise TransientError(f"429 Too Many Requests ({name})", retry_after=timedelta(seconds=1))
            result = await attribute(*args, **kwargs)
            if roll < self._rate:
                raise TransientError(f"504 Gateway Timeout after {name} took effect")
            return result

        return call


class FakeDeadLetters(Recorder):
    """DeadLetters: a count the test sets; reading it costs that many entity reads, as Tables does."""

    def __init__(self, count: int = 0) -> None:
        super().__init__()
        self.count_now = count

    async def count_dead_letters(self) -> int:
        self.note("dead_letters")
        return self.count_now


class FakeHealthMarks(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.at: dict[str, datetime] = {}

    async def mark(self, name: str, at: datetime) -> None:
        self.note("mark")
        self.at[name] = at

    async def marks(self) -> dict[str, datetime]:
        self.note("marks")
        return dict(self.at)


class FakeWatchlist(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    async def add(self, registration_id: str) -> None:
        self.note("add")
        self.ids.add(registration_id)

    async def discard(self, registration_id: str) -> None:
        self.note("discard")
        self.ids.discard(registration_id)

    async def members(self) -> list[str]:
        self.note("members")
        return sorted(self.ids)


class FakeTenantSubscriptionStore(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, TenantSubscriptionRecord] = {}

    async def put(self, subscription: TenantSubscriptionRecord) -> None:
        self.note("put")
        self.items[subscription.id] = subscription

    async def get(self, subscription_id: str) -> TenantSubscriptionRecord:
        self.note("get")
        if subscription_id not in self.items:
            raise NotFound("subscription", subscription_id)
        return self.items[subscription_id]

    async def list(self) -> list[TenantSubscriptionRecord]:
        self.note("list")
        return list(self.items.values())

    async def remove(self, subscription_id: str) -> None:
        self.note("remove")
        self.items.pop(subscription_id, None)
