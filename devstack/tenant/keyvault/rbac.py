"""Key Vault data-plane RBAC: built-in role definitions, role assignments and the access check.

Assignments name a principal by its service principal object id (``oid``) or, for convenience,
its appId; a scope is the vault ("/") or one object ("/secrets/NAME", "/certificates/NAME").
Managed through the admin API (see keyvault/__init__.py), never through the data plane.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from devstack.tenant.context import Principal

VAULTS = "Microsoft.KeyVault/vaults"

# Built-in roles (ids and dataActions as Azure publishes them).
ROLE_DEFINITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": ("Key Vault Administrator", (f"{VAULTS}/*",)),
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": ("Key Vault Secrets Officer", (f"{VAULTS}/secrets/*",)),
    "4633458b-17de-408a-b874-0445c86b69e6": (
        "Key Vault Secrets User",
        (f"{VAULTS}/secrets/getSecret/action", f"{VAULTS}/secrets/readMetadata/action"),
    ),
    "a4417e6f-fecd-4de8-b567-7b0420556985": (
        "Key Vault Certificates Officer",
        (f"{VAULTS}/certificatecas/*", f"{VAULTS}/certificates/*", f"{VAULTS}/certificatecontacts/write"),
    ),
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": (
        "Key Vault Certificate User",
        (
            f"{VAULTS}/certificates/read",
            f"{VAULTS}/secrets/getSecret/action",
            f"{VAULTS}/secrets/readMetadata/action",
        ),
    ),
    "21090545-7ca7-4776-b22c-e363652d74d2": (
        "Key Vault Reader",
        (f"{VAULTS}/*/read", f"{VAULTS}/secrets/readMetadata/action"),
    ),
}
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
CERTIFICATES_OFFICER = "a4417e6f-fecd-4de8-b567-7b0420556985"
_ROLE_BY_NAME = {name.lower(): role_id for role_id, (name, _) in ROLE_DEFINITIONS.items()}


class RoleError(ValueError):
    """A role assignment request the admin API refuses (400)."""


def resolve_role(role: str) -> str:
    """Role definition id from an id, a full resource id ending in the id, or a built-in name."""
    candidate = role.rsplit("/", 1)[-1].lower()
    if candidate in ROLE_DEFINITIONS:
        return candidate
    if role.lower() in _ROLE_BY_NAME:
        return _ROLE_BY_NAME[role.lower()]
    raise RoleError(
        f"Unknown Key Vault role {role!r}; known: {sorted(n for n, _ in ROLE_DEFINITIONS.values())}"
    )


@dataclass
class RoleAssignment:
    id: str
    principal_id: str
    role_definition_id: str
    scope: str = "/"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principalId": self.principal_id,
            "roleDefinitionId": self.role_definition_id,
            "roleName": ROLE_DEFINITIONS[self.role_definition_id][0],
            "scope": self.scope,
        }


class RoleAssignments:
    def __init__(self) -> None:
        self._by_id: dict[str, RoleAssignment] = {}

    def assign(
        self, principal_id: str, role: str, scope: str = "/", assignment_id: str | None = None
    ) -> RoleAssignment:
        if not principal_id:
            raise RoleError("principalId is required")
        if scope != "/" and not (scope.startswith(("/secrets/", "/certificates/")) and scope.count("/") == 2):
            raise RoleError("scope must be '/', '/secrets/NAME' or '/certificates/NAME'")
        role_id = resolve_role(role)
        for existing in self._by_id.values():  # idempotent, as ARM answers RoleAssignmentExists
            if (existing.principal_id, existing.role_definition_id, existing.scope) == (
                principal_id,
                role_id,
                scope,
            ):
                return existing
        assignment = RoleAssignment(assignment_id or str(uuid.uuid4()), principal_id, role_id, scope)
        self._by_id[assignment.id] = assignment
        return assignment

    def remove(self, assignment_id: str) -> bool:
        return self._by_id.pop(assignment_id, None) is not None

    def all(self) -> list[RoleAssignment]:
        return list(self._by_id.values())

    def allows(self, principal: Principal, data_action: str, object_scope: str) -> bool:
        """object_scope: '/secrets/NAME' or '/certificates/NAME' or '/' for collection operations."""
        for assignment in self._by_id.values():
            if assignment.principal_id not in (principal.service_principal_id, principal.app_id):
                continue
            if assignment.scope != "/" and assignment.scope.lower() != object_scope.lower():
                continue
            patterns = ROLE_DEFINITIONS[assignment.role_definition_id][1]
            if any(fnmatch.fnmatchcase(data_action, pattern) for pattern in patterns):
                return True
        return False

    def snapshot(self) -> list[dict[str, Any]]:
        return [asdict(a) for a in self._by_id.values()]

    def restore(self, raw: list[dict[str, Any]]) -> None:
        self._by_id = {item["id"]: RoleAssignment(**item) for item in raw}
