"""The adopted app's permissions, a part of the Directory port: its service principal looked up
without making one, a resource named by its service principal id, requiredResourceAccess set by
object id, app role assignments removed (core/adoption/permissions.py).

A mixin of GraphDirectory (graph.py), which provides client(), _send(), _list() and _config().
Granting reuses graph_consent.py (assign_app_roles, grant_delegated), as provisioning's consent does.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence

from functions.adapters.graph_wire import GraphWire
from functions.core.ports import RequiredResourceAccess
from functions.core.record.errors import NotFound


class GraphPermissions(GraphWire):
    async def service_principal_of(self, tenant_id: str, app_id: str) -> str | None:
        client = self.client(tenant_id)
        request = client.service_principals_with_app_id(app_id).to_get_request_information(
            self._config(select=["id", "appId"])
        )
        try:
            found = await self._send(client, "GET", "servicePrincipal", app_id, request)
        except NotFound:
            return None
        return str(found["id"]).lower()

    async def resource_app_id_of(self, tenant_id: str, service_principal_id: str) -> str:
        client = self.client(tenant_id)
        request = client.service_principals.by_service_principal_id(
            service_principal_id
        ).to_get_request_information(self._config(select=["id", "appId"]))
        found = await self._send(client, "GET", "servicePrincipal", service_principal_id, request)
        return str(found["appId"]).lower()

    async def set_required_resource_access(
        self, tenant_id: str, app_object_id: str, access: Sequence[RequiredResourceAccess]
    ) -> None:
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.required_resource_access import (
            RequiredResourceAccess as GraphRequiredResourceAccess,
        )
        from msgraph.generated.models.resource_access import ResourceAccess

        body = Application(
            required_resource_access=[
                GraphRequiredResourceAccess(
                    resource_app_id=entry.resource_app_id,
                    resource_access=[ResourceAccess(id=uuid.UUID(i), type="Role") for i in entry.app_role_ids]
                    + [ResourceAccess(id=uuid.UUID(i), type="Scope") for i in entry.scope_ids],
                )
                for entry in access
            ]
        )
        client = self.client(tenant_id)
        request = client.applications.by_application_id(app_object_id).to_patch_request_information(body)
        await self._send(client, "PATCH", "requiredResourceAccess of application", app_object_id, request)

    async def remove_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        """The assignments' ids come from the principal's list (a pair is not an id); each DELETE
        of one already gone (404) is success, so a re-run after a crash converges."""
        if not assignments:
            return
        wanted = {(resource.lower(), role.lower()) for resource, role in assignments}
        client = self.client(tenant_id)
        builder = client.service_principals.by_service_principal_id(principal_id).app_role_assignments
        listed = await self._list(client, "appRoleAssignments of", principal_id, builder)
        for item in listed:
            if (str(item["resourceId"]).lower(), str(item["appRoleId"]).lower()) not in wanted:
                continue
            request = builder.by_app_role_assignment_id(str(item["id"])).to_delete_request_information()
            with contextlib.suppress(NotFound):  # removed meanwhile: done
                await self._send(client, "DELETE", "appRoleAssignment", str(item["id"]), request)
