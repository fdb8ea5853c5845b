"""App role assignments and delegated permission grants of one tenant, indexed for O(1) lookups:
the token endpoint reads a client's roles on every token request."""

from __future__ import annotations

from typing import Any

from devstack.tenant.graph.model import AppRoleAssignment, PermissionGrant

AssignmentKey = tuple[str, str, str]  # (principal id, resource id, app role id)


class ConsentStore:
    def __init__(self) -> None:
        self.assignments: dict[str, AppRoleAssignment] = {}
        self._by_principal: dict[str, dict[str, AppRoleAssignment]] = {}
        self._by_resource: dict[str, dict[str, AppRoleAssignment]] = {}
        self._by_key: dict[AssignmentKey, AppRoleAssignment] = {}
        self.grants: dict[str, PermissionGrant] = {}
        self._grants_by_client: dict[str, dict[str, PermissionGrant]] = {}

    # ---- application permissions ------------------------------------------------------------
    def add_assignment(self, assignment: AppRoleAssignment) -> None:
        self.assignments[assignment.id] = assignment
        self._by_principal.setdefault(assignment.principal_id, {})[assignment.id] = assignment
        self._by_resource.setdefault(assignment.resource_id, {})[assignment.id] = assignment
        self._by_key[(assignment.principal_id, assignment.resource_id, assignment.app_role_id)] = assignment

    def remove_assignment(self, assignment: AppRoleAssignment) -> None:
        self.assignments.pop(assignment.id, None)
        self._by_principal.get(assignment.principal_id, {}).pop(assignment.id, None)
        self._by_resource.get(assignment.resource_id, {}).pop(assignment.id, None)
        self._by_key.pop((assignment.principal_id, assignment.resource_id, assignment.app_role_id), None)

    def find_assignment(
        self, principal_id: str, resource_id: str, app_role_id: str
    ) -> AppRoleAssignment | None:
        return self._by_key.get((principal_id, resource_id, app_role_id))

    def assignments_of_principal(self, principal_id: str) -> list[AppRoleAssignment]:
        return list(self._by_principal.get(principal_id, {}).values())

    def assignments_of_resource(self, resource_id: str) -> list[AppRoleAssignment]:
        return list(self._by_resource.get(resource_id, {}).values())

    # ---- delegated permissions --------------------------------------------------------------
    def add_grant(self, grant: PermissionGrant) -> None:
        self.grants[grant.id] = grant
        self._grants_by_client.setdefault(grant.client_id, {})[grant.id] = grant

    def remove_grant(self, grant: PermissionGrant) -> None:
        self.grants.pop(grant.id, None)
        self._grants_by_client.get(grant.client_id, {}).pop(grant.id, None)

    def grants_of_client(self, client_id: str) -> list[PermissionGrant]:
        return list(self._grants_by_client.get(client_id, {}).values())

    # ---- a deleted service principal takes its consents along ---------------------------------
    def forget_service_principal(self, sp_id: str) -> None:
        for assignment in self.assignments_of_principal(sp_id) + self.assignments_of_resource(sp_id):
            self.remove_assignment(assignment)
        for grant in [g for g in self.grants.values() if sp_id in (g.client_id, g.resource_id)]:
            self.remove_grant(grant)

    # ---- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "appRoleAssignments": [a.to_dict() for a in self.assignments.values()],
            "oauth2PermissionGrants": [g.to_dict() for g in self.grants.values()],
        }

    def load(self, data: dict[str, Any]) -> None:
        for item in data.get("appRoleAssignments", []):
            self.add_assignment(AppRoleAssignment(**item))
        for item in data.get("oauth2PermissionGrants", []):
            self.add_grant(PermissionGrant(**item))
