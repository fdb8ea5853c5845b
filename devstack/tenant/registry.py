"""The tenants this server hosts, each a graph/ directory plus its bootstrap identity."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.tenant.graph import directory as graph


@dataclass
class TenantEntry:
    directory: Any  # graph's directory (implements context.DirectoryView)
    client_id: str
    # The bootstrap secret is kept so that the printed clientSecret keeps working across restarts of
    # a local development tenant (Entra itself keeps only a digest: graph/ does too).
    client_secret: str
    # The IDENTITY_HEADER of the "function app" whose managed identity is this tenant's bootstrap
    # identity: the managed identity endpoint knows the caller's tenant by it. App Service's value is a
    # GUID; uuid4 draws its 122 bits from os.urandom, so it is as hard to guess.
    identity_header: str = field(default_factory=lambda: str(uuid.uuid4()))
    # The tenant administrator (graph/directory.py ADMIN_GRAPH_ROLES): what a person does in the
    # portal. Kept, like the bootstrap secret, so the printed adminClientSecret survives restarts.
    admin_client_id: str = ""
    admin_client_secret: str = ""


class TenantRegistry:
    """REGISTRY of context.py: tenant id -> directory."""

    def __init__(self, home_tenant_id: str) -> None:
        self.home_tenant_id = home_tenant_id
        self.entries: dict[str, TenantEntry] = {}
        self._directories: dict[str, Any] = {}

    def get(self, tenant_id: str) -> Any | None:
        return self._directories.get(tenant_id)

    def all(self) -> Mapping[str, Any]:
        return self._directories

    def add(self, tenant_id: str, entry: TenantEntry) -> TenantEntry:
        self.entries[tenant_id] = entry
        self._directories[tenant_id] = entry.directory
        entry.directory.foreign_application = self.multi_tenant_application
        return entry

    def multi_tenant_application(self, app_id: str, asking_tenant: str) -> tuple[Any, str] | None:
        """(application, its home tenant id) of a multi-tenant application registered in a tenant
        other than `asking_tenant`: what Entra finds when another tenant provisions it or it signs in
        there."""
        for tenant_id, directory in self._directories.items():
            if tenant_id == asking_tenant:
                continue
            app = directory.application_by_app_id(app_id)
            if app is not None and app.props.get("signInAudience") in graph.MULTI_TENANT_AUDIENCES:
                return app, tenant_id
        return None

    def by_identity_header(self, value: str) -> tuple[str, TenantEntry] | None:
        """The tenant whose identity header this is (compared in constant time: it is a secret)."""
        found = None
        for tenant_id, entry in self.entries.items():
            if hmac.compare_digest(entry.identity_header.encode(), value.encode()):
                found = (tenant_id, entry)
        return found

    def create(self, tenant_id: str | None = None) -> tuple[str, TenantEntry]:
        tenant_id = tenant_id or str(uuid.uuid4())
        if tenant_id in self.entries:
            raise ValueError(f"tenant {tenant_id} exists")
        directory, client_id, client_secret = graph.new_directory(tenant_id)
        admin_id, admin_secret = graph.new_admin_identity(directory)
        entry = TenantEntry(directory, client_id, client_secret, admin_client_id=admin_id)
        entry.admin_client_secret = admin_secret
        return tenant_id, self.add(tenant_id, entry)

    def to_dict(self) -> dict[str, Any]:
        return {
            "homeTenantId": self.home_tenant_id,
            "tenants": {
                tenant_id: {
                    "clientId": entry.client_id,
                    "clientSecret": entry.client_secret,
                    "identityHeader": entry.identity_header,
                    "adminClientId": entry.admin_client_id,
                    "adminClientSecret": entry.admin_client_secret,
                    "directory": entry.directory.to_dict(),
                }
                for tenant_id, entry in self.entries.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TenantRegistry:
        registry = cls(str(data["homeTenantId"]))
        for tenant_id, saved in data["tenants"].items():
            directory = graph.Directory.from_dict(saved["directory"])
            graph.grant_bootstrap_roles(directory, saved["clientId"])  # roles added since it was saved
            entry = TenantEntry(directory, saved["clientId"], saved["clientSecret"])
            if saved.get("identityHeader"):  # older snapshots have none: a new one is drawn
                entry.identity_header = saved["identityHeader"]
            if saved.get("adminClientId"):
                entry.admin_client_id = saved["adminClientId"]
                entry.admin_client_secret = saved["adminClientSecret"]
            else:  # saved before tenants had an administrator: one is made now
                entry.admin_client_id, entry.admin_client_secret = graph.new_admin_identity(directory)
            registry.add(tenant_id, entry)
        return registry
