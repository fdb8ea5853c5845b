"""One tenant's directory: applications, service principals, consent; indexed for O(1) lookups.

``Directory`` is what Entra's token endpoint reads (context.DirectoryView) and what the Graph
handlers change. All mutation happens synchronously inside one aiohttp handler, so no locks.
Over 400 lines for a reason: every mutation keeps the indexes, deleted items and the delta change
log in step, so they live in one class (persistence shapes are in snapshots.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from devstack.tenant.context import (
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    KEY_VAULT_APP_ID,
    KEY_VAULT_RESOURCE,
    CertificateRecord,
    ClientRecord,
    FederatedRecord,
    ResourceRecord,
    SecretRecord,
)
from devstack.tenant.graph.changes import PURGED, SOFT_DELETED, ChangeLog, new_epoch
from devstack.tenant.graph.consent_store import ConsentStore
from devstack.tenant.graph.model import (
    Application,
    AppRoleAssignment,
    GraphObject,
    PasswordCredential,
    ServicePrincipal,
    guid_bytes_id,
    iso,
    new_secret_text,
    now_utc,
)
from devstack.tenant.graph.seeds import SEEDS, catalogue, seed_props, service_principal_props
from devstack.tenant.graph.shapes import DEFAULT_SIGN_IN_AUDIENCE, application_defaults
from devstack.tenant.graph.snapshots import loaded_application, loaded_service_principal, saved

BOOTSTRAP_DISPLAY_NAME = "Registrar (devstack)"
BOOTSTRAP_GRAPH_ROLES = (
    "Application.ReadWrite.OwnedBy",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",  # Graph's required companion of AppRoleAssignment.ReadWrite.All
    "DelegatedPermissionGrant.ReadWrite.All",
    "Policy.Read.All",  # the tenant's app management policy caps credential lifetimes
)
# The tenant's administrator: a person's Global Administrator work in the portal, as an app (the
# local tenant holds no users). Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All as the
# brief of issue 15 asks, plus Directory.Read.All, which Graph documents as the companion that adding
# an owner (POST owners/$ref) needs beside Application.ReadWrite.All (graph/authz.py). Registrar
# never uses this identity; brownfield apps, and what a test or demo does "as an admin", do.
ADMIN_DISPLAY_NAME = "Tenant administrator (devstack)"
ADMIN_GRAPH_ROLES = (
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Directory.Read.All",
)
RESOURCE_AUDIENCES = {GRAPH_APP_ID: GRAPH_RESOURCE, KEY_VAULT_APP_ID: KEY_VAULT_RESOURCE}


class HasCreatedAt(Protocol):
    created_at: float


class Directory:
    """Implements context.DirectoryView; see module docstring."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.applications: dict[str, Application] = {}
        self.apps_by_app_id: dict[str, Application] = {}
        self.apps_by_unique_name: dict[str, Application] = {}
        self.service_principals: dict[str, ServicePrincipal] = {}
        self.sps_by_app_id: dict[str, ServicePrincipal] = {}
        self.sps_by_name: dict[str, ServicePrincipal] = {}  # servicePrincipalNames, lower case
        self.consent = ConsentStore()
        # Delta queries (graph/delta.py): the order of the last changes, per kind of object. Not
        # saved: a restarted tenant starts a new epoch, and older delta tokens answer as expired.
        self.epoch = new_epoch()
        self.changes = {"application": ChangeLog(), "servicePrincipal": ChangeLog()}
        # /directory/deletedItems (graph/deleted_items.py): soft-deleted applications and service
        # principals by object id, restorable for DELETED_RETENTION_S. A deleted application keeps
        # its uniqueName taken until it is purged (the name comes back with a restore).
        self.deleted: dict[str, GraphObject] = {}
        # GET/PATCH /policies/defaultAppManagementPolicy (graph/app_policy.py), in Graph's shape.
        self.app_management_policy: dict[str, Any] = _default_app_management_policy()
        # Multi-tenant applications registered in the other tenants of this server (set by the
        # registry): their service principals may live here, their credentials stay at home.
        self.foreign_application: Callable[[str, str], tuple[Application, str] | None] = (
            _no_foreign_application
        )

    # ---- context.DirectoryView -------------------------------------------------------------
    def application_by_app_id(self, app_id: str) -> Application | None:
        return self.apps_by_app_id.get(app_id.lower())

    def service_principal_by_app_id(self, app_id: str) -> ServicePrincipal | None:
        return self.sps_by_app_id.get(app_id.lower())

    def resource_for_scope(self, scope: str) -> ServicePrincipal | None:
        resource = scope.strip()
        if resource.endswith("/.default"):
            resource = resource[: -len("/.default")]
        key = resource.lower()
        return self.sps_by_name.get(key) or self.sps_by_name.get(key.rstrip("/"))

    def granted_app_role_values(self, client_sp_id: str, resource_sp_id: str) -> set[str]:
        resource = self.service_principals.get(resource_sp_id)
        if resource is None:
            return set()
        values = set()
        for assignment in self.consent.assignments_of_principal(client_sp_id):
            if assignment.resource_id == resource_sp_id:
                value = resource.role_value(assignment.app_role_id)
                if value:
                    values.add(value)
        return values

    def client_record(self, app_id: str) -> ClientRecord | None:
        """The token endpoint's view of a client: this tenant's application, or a multi-tenant one of
        another tenant of the server whose service principal may be here (Entra reads a client's
        credentials from the application object in its home tenant, its roles where it signs in).
        Built once per change of the application's credentials, cached on the application."""
        app = self.application_by_app_id(app_id)
        if app is None:
            found = self.foreign_application(app_id, self.tenant_id)
            if found is None:
                return None
            app = found[0]
        sp = self.service_principal_by_app_id(app_id)
        sp_id = sp.id if sp is not None else None
        record = app.record_cache
        if not isinstance(record, ClientRecord):
            record = app.record_cache = _client_record(app, sp_id)
        # The cache holds the credentials; the service principal is this tenant's (another tenant,
        # or one created since the record was built).
        return record if record.service_principal_id == sp_id else replace(record, service_principal_id=sp_id)

    def resource_record(self, scope: str) -> ResourceRecord | None:
        sp = self.resource_for_scope(scope)
        if sp is None:
            return None
        audience = RESOURCE_AUDIENCES.get(sp.app_id, scope.strip().removesuffix("/.default"))
        return ResourceRecord(sp.id, sp.app_id, audience)

    # ---- visibility (replication delay) ---------------------------------------------------
    @staticmethod
    def visible(obj: HasCreatedAt, delay_ms: int, now: float | None = None) -> bool:
        if delay_ms <= 0:
            return True
        return ((now if now is not None else time.time()) - obj.created_at) * 1000.0 >= delay_ms

    # ---- applications -----------------------------------------------------------------------
    def create_application(self, props: dict[str, Any], owner_ids: list[str] | None = None) -> Application:
        created = time.time()
        object_id = str(uuid.uuid4())
        app_id = str(uuid.uuid4())
        full = application_defaults()
        full.update(props)
        full.update(id=object_id, appId=app_id, createdDateTime=now_utc().strftime("%Y-%m-%dT%H:%M:%SZ"))
        app = Application(object_id, created, full)
        app.owners = list(owner_ids or [])
        self._index_application(app)
        return app

    def _track(self, obj: GraphObject) -> None:
        self.changes[obj.type_name].touch(obj.id)

    def _index_application(self, app: Application) -> None:
        app.on_change = self._track
        self._track(app)
        self.applications[app.id] = app
        self.apps_by_app_id[app.app_id.lower()] = app
        unique = app.props.get("uniqueName")
        if unique:
            self.apps_by_unique_name[str(unique).lower()] = app

    def application_by_unique_name(self, unique_name: str) -> Application | None:
        return self.apps_by_unique_name.get(unique_name.lower())

    def unique_name_taken(self, unique_name: str) -> bool:
        """By a live application, or by one in deleted items (it would get the name back if restored)."""
        if self.application_by_unique_name(unique_name) is not None:
            return True
        wanted = unique_name.lower()
        return any(
            str(obj.props.get("uniqueName") or "").lower() == wanted
            for obj in self.deleted.values()
            if isinstance(obj, Application)
        )

    def delete_application(self, app: Application) -> None:
        """To deleted items, as Entra does; its service principal goes there too."""
        self._unindex_application(app)
        self._soft_delete(app)
        sp = self.sps_by_app_id.get(app.app_id.lower())
        if sp is not None:
            self.delete_service_principal(sp)

    def _unindex_application(self, app: Application) -> None:
        self.applications.pop(app.id, None)
        self.apps_by_app_id.pop(app.app_id.lower(), None)
        unique = app.props.get("uniqueName")
        if unique:
            self.apps_by_unique_name.pop(str(unique).lower(), None)

    def _soft_delete(self, obj: GraphObject) -> None:
        obj.on_change = None
        obj.props["deletedDateTime"] = iso(now_utc())
        obj.changed()
        obj.deleted_at = time.time()
        self.deleted[obj.id] = obj
        self.changes[obj.type_name].remove(obj.id, SOFT_DELETED)

    def restore(self, obj: GraphObject) -> None:
        """Back from deleted items (a service principal is not restored with its application)."""
        self.deleted.pop(obj.id, None)
        obj.props["deletedDateTime"] = None
        if isinstance(obj, Application):
            self._index_application(obj)
        elif isinstance(obj, ServicePrincipal):
            self._index_service_principal(obj)
        obj.changed()

    def purge(self, obj: GraphObject) -> None:
        """Deleted for good: out of deleted items, its uniqueName free again."""
        if self.deleted.pop(obj.id, None) is not None:
            self.changes[obj.type_name].remove(obj.id, PURGED)

    def purge_expired(self, retention_s: float, now: float | None = None) -> None:
        """Entra keeps deleted items 30 days, then deletes them for good."""
        moment = now if now is not None else time.time()
        for obj in [o for o in self.deleted.values() if moment - o.deleted_at >= retention_s]:
            self.purge(obj)

    def add_password(
        self, app: Application, display_name: str | None, start: datetime, end: datetime
    ) -> tuple[PasswordCredential, str]:
        secret_text = new_secret_text()
        credential = PasswordCredential.issue(secret_text, display_name, start, end, time.time())
        app.password_credentials.append(credential)
        app.credentials_changed()
        return credential, secret_text

    # ---- service principals -------------------------------------------------------------------
    def create_service_principal(
        self, app: Application, owner_ids: list[str] | None = None, *, owner_tenant: str | None = None
    ) -> ServicePrincipal:
        """A service principal of `app` here; owner_tenant: the app's home tenant when it is another."""
        object_id = str(uuid.uuid4())
        api = app.props.get("api") or {}
        props = service_principal_props(
            object_id,
            app.app_id,
            app.display_name,
            owner_tenant=owner_tenant or self.tenant_id,
            names=[app.app_id, *(app.props.get("identifierUris") or [])],
            app_roles=list(app.props.get("appRoles") or []),
            scopes=list(api.get("oauth2PermissionScopes") or []),
            sign_in_audience=str(app.props.get("signInAudience") or DEFAULT_SIGN_IN_AUDIENCE),
            tags=list(app.props.get("tags") or []),
        )
        props["createdDateTime"] = iso(now_utc())
        sp = ServicePrincipal(object_id, time.time(), props)
        sp.owners = list(owner_ids or [])
        self._index_service_principal(sp)
        return sp

    def _index_service_principal(self, sp: ServicePrincipal) -> None:
        sp.on_change = self._track
        self._track(sp)
        self.service_principals[sp.id] = sp
        self.sps_by_app_id[sp.app_id.lower()] = sp
        for name in sp.props.get("servicePrincipalNames") or []:
            self.sps_by_name.setdefault(str(name).lower(), sp)

    def set_service_principal_names(self, sp: ServicePrincipal, names: list[str]) -> None:
        for name in sp.props.get("servicePrincipalNames") or []:
            if self.sps_by_name.get(str(name).lower()) is sp:
                self.sps_by_name.pop(str(name).lower())
        sp.props["servicePrincipalNames"] = names
        for name in names:
            self.sps_by_name.setdefault(name.lower(), sp)

    def delete_service_principal(self, sp: ServicePrincipal) -> None:
        """To deleted items. Its consents go for good here (a restore does not bring them back)."""
        self.service_principals.pop(sp.id, None)
        if self.sps_by_app_id.get(sp.app_id.lower()) is sp:
            self.sps_by_app_id.pop(sp.app_id.lower())
        for name in sp.props.get("servicePrincipalNames") or []:
            if self.sps_by_name.get(str(name).lower()) is sp:
                self.sps_by_name.pop(str(name).lower())
        self.consent.forget_service_principal(sp.id)
        self._soft_delete(sp)

    # ---- consent ----------------------------------------------------------------------------
    def assign_app_role(
        self, principal: ServicePrincipal, resource: ServicePrincipal, app_role_id: str
    ) -> AppRoleAssignment:
        assignment = AppRoleAssignment(
            id=guid_bytes_id(principal.id, str(uuid.uuid4())),
            principal_id=principal.id,
            resource_id=resource.id,
            app_role_id=app_role_id,
            principal_display_name=principal.display_name,
            resource_display_name=resource.display_name,
            created_at=time.time(),
        )
        self.consent.add_assignment(assignment)
        return assignment

    # ---- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        deleted = [
            {"kind": obj.type_name, "deletedAt": obj.deleted_at, "item": saved(obj)}
            for obj in self.deleted.values()
        ]
        return {
            "tenantId": self.tenant_id,
            "applications": [saved(app) for app in self.applications.values()],
            "servicePrincipals": [saved(sp) for sp in self.service_principals.values()],
            "deletedItems": deleted,
            "appManagementPolicy": self.app_management_policy,
            **self.consent.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Directory:
        directory = cls(data["tenantId"])
        directory.app_management_policy = dict(
            data.get("appManagementPolicy") or _default_app_management_policy()
        )
        for item in data["applications"]:
            directory._index_application(loaded_application(item))
        for item in data["servicePrincipals"]:
            directory._index_service_principal(loaded_service_principal(item))
        for kept in data.get("deletedItems") or []:  # snapshots older than deleted items have none
            obj: GraphObject = (
                loaded_application(kept["item"])
                if kept["kind"] == "application"
                else loaded_service_principal(kept["item"])
            )
            obj.deleted_at = float(kept["deletedAt"])
            directory.deleted[obj.id] = obj
        directory.consent.load(data)
        seeded = {sp.seed for sp in directory.service_principals.values() if sp.seed}
        for name in SEEDS:
            if name not in seeded:  # a tenant saved before this service was seeded gains it
                seed_service_principal(directory, name)
        return directory


def _client_record(app: Application, sp_id: str | None) -> ClientRecord:
    return ClientRecord(
        app_id=app.app_id,
        application_id=app.id,
        display_name=app.display_name,
        service_principal_id=sp_id,
        secrets=tuple(
            SecretRecord(p.key_id, p.salt, p.digest, p.start.timestamp(), p.end.timestamp(), p.created_at)
            for p in app.password_credentials
        ),
        certificates=tuple(
            CertificateRecord(
                k.key_id,
                k.thumbprint_sha1,
                k.thumbprint_sha256,
                k.certificate.public_key(),
                k.start.timestamp(),
                k.end.timestamp(),
                k.created_at,
            )
            for k in app.key_credentials
            if k.usage == "Verify"
        ),
        federated=tuple(
            FederatedRecord(f.id, f.issuer, f.subject, tuple(f.audiences), f.created_at)
            for f in app.federated_credentials
        ),
    )


def _default_app_management_policy() -> dict[str, Any]:
    from devstack.tenant.graph.app_policy import default_policy  # app_policy imports http, which imports us

    return default_policy()


MULTI_TENANT_AUDIENCES = frozenset({"AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount"})


def _no_foreign_application(app_id: str, tenant_id: str) -> tuple[Application, str] | None:
    return None


def seed_service_principal(directory: Directory, name: str) -> ServicePrincipal:
    object_id = str(uuid.uuid4())
    sp = ServicePrincipal(object_id, 0.0, seed_props(name, object_id, directory.tenant_id), seed=name)
    _, _, roles_json, scopes_json = catalogue(name)
    sp.prime("appRoles", roles_json)
    sp.prime("oauth2PermissionScopes", scopes_json)
    directory._index_service_principal(sp)
    return sp


def new_directory(tenant_id: str) -> tuple[Directory, str, str]:
    """A seeded tenant: Microsoft's service principals plus the registrar's bootstrap app.

    Returns (directory, bootstrap client id, bootstrap client secret). The bootstrap app holds
    Graph's Application.ReadWrite.OwnedBy, AppRoleAssignment.ReadWrite.All, Application.Read.All,
    DelegatedPermissionGrant.ReadWrite.All and Policy.Read.All app roles.
    """
    directory = Directory(tenant_id)
    for name in SEEDS:
        seed_service_principal(directory, name)
    app = directory.create_application(
        {"displayName": BOOTSTRAP_DISPLAY_NAME, "signInAudience": "AzureADMyOrg", "tags": ["devstack"]}
    )
    app.created_at = 0.0  # exists "since forever": never hidden by the replication delay
    sp = directory.create_service_principal(app)
    sp.created_at = 0.0
    start = now_utc() - timedelta(minutes=5)
    credential, secret_text = directory.add_password(app, "bootstrap", start, start + timedelta(days=730))
    credential.created_at = 0.0  # usable at once, whatever the propagation delay
    grant_bootstrap_roles(directory, app.app_id)
    return directory, app.app_id, secret_text


def new_admin_identity(directory: Directory) -> tuple[str, str]:
    """The tenant administrator's app, service principal, secret and roles (ADMIN_GRAPH_ROLES).
    Returns (client id, client secret)."""
    app = directory.create_application(
        {"displayName": ADMIN_DISPLAY_NAME, "signInAudience": "AzureADMyOrg", "tags": ["devstack"]}
    )
    app.created_at = 0.0
    sp = directory.create_service_principal(app)
    sp.created_at = 0.0
    start = now_utc() - timedelta(minutes=5)
    credential, secret_text = directory.add_password(app, "admin", start, start + timedelta(days=730))
    credential.created_at = 0.0
    _grant_graph_roles(directory, app.app_id, ADMIN_GRAPH_ROLES)
    return app.app_id, secret_text


def grant_bootstrap_roles(directory: Directory, client_id: str) -> None:
    """Give the bootstrap identity each of BOOTSTRAP_GRAPH_ROLES it lacks (a tenant restored from
    a state dir saved before a role joined the list gains it, as production's identity would)."""
    _grant_graph_roles(directory, client_id, BOOTSTRAP_GRAPH_ROLES)


def _grant_graph_roles(directory: Directory, client_id: str, roles: tuple[str, ...]) -> None:
    sp = directory.sps_by_app_id.get(client_id)
    if sp is None:
        return
    graph = directory.sps_by_app_id[GRAPH_APP_ID]
    by_value = {role["value"]: role["id"] for role in graph.props["appRoles"]}
    held = {
        a.app_role_id for a in directory.consent.assignments_of_principal(sp.id) if a.resource_id == graph.id
    }
    for value in roles:
        if by_value[value] not in held:
            directory.assign_app_role(sp, graph, by_value[value])
