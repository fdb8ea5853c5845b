"""Authorization as Entra decides it for app-only callers: app roles in the token, plus ownership."""

from __future__ import annotations

from devstack.tenant.context import Principal
from devstack.tenant.graph.errors import forbidden
from devstack.tenant.graph.model import Application, ServicePrincipal

APP_READ_ALL = "Application.Read.All"
APP_READWRITE_ALL = "Application.ReadWrite.All"
APP_OWNED_BY = "Application.ReadWrite.OwnedBy"
APP_ROLE_ASSIGNMENT_RW = "AppRoleAssignment.ReadWrite.All"
GRANT_RW = "DelegatedPermissionGrant.ReadWrite.All"

READ_ROLES = frozenset(
    {APP_READ_ALL, APP_READWRITE_ALL, APP_OWNED_BY, "Directory.Read.All", "Directory.ReadWrite.All"}
)
CONSENT_READ_ROLES = READ_ROLES | {APP_ROLE_ASSIGNMENT_RW, GRANT_RW, "DelegatedPermissionGrant.Read.All"}
CREATE_ROLES = frozenset({APP_READWRITE_ALL, APP_OWNED_BY})


def require_any(principal: Principal, roles: frozenset[str]) -> None:
    if principal.roles.isdisjoint(roles):
        raise forbidden()


def require_read(principal: Principal) -> None:
    require_any(principal, READ_ROLES)


def require_consent_read(principal: Principal) -> None:
    require_any(principal, CONSENT_READ_ROLES)


def require_create(principal: Principal) -> None:
    require_any(principal, CREATE_ROLES)


def require_app_write(principal: Principal, app: Application) -> None:
    """Application.ReadWrite.All, or Application.ReadWrite.OwnedBy on an app the caller owns."""
    if APP_READWRITE_ALL in principal.roles:
        return
    if APP_OWNED_BY in principal.roles and principal.service_principal_id in app.owners:
        return
    raise forbidden()


# Adding an owner to an application (POST owners/$ref), as Graph documents it: Application.ReadWrite.All
# with Directory.Read.All (the owner is a directory object to read), or Directory.ReadWrite.All.
# Application.ReadWrite.OwnedBy (+ Directory.Read.All) is listed as least privileged, but the same page
# notes it is not sufficient to add another owner, even to an app the caller owns.
OWNER_WRITE_ROLE_SETS = (
    frozenset({APP_READWRITE_ALL, "Directory.Read.All"}),
    frozenset({"Directory.ReadWrite.All"}),
)


def require_owner_write(principal: Principal) -> None:
    """Adding an owner to an application: one of OWNER_WRITE_ROLE_SETS, each role of it."""
    if not any(needed <= principal.roles for needed in OWNER_WRITE_ROLE_SETS):
        raise forbidden()


# Removing an owner from an application (DELETE owners/{id}/$ref), as Graph documents it:
# Application.ReadWrite.OwnedBy is the least privilege (on an app the caller owns: it may remove
# another owner, or itself), Application.ReadWrite.All and Directory.ReadWrite.All are higher. Nothing
# documents a refusal to remove an application's last owner (the group page does document one).
def require_owner_removal(principal: Principal, app: Application) -> None:
    if "Directory.ReadWrite.All" in principal.roles:
        return
    require_app_write(principal, app)


def require_sp_write(principal: Principal, sp: ServicePrincipal, app: Application | None) -> None:
    if APP_READWRITE_ALL in principal.roles:
        return
    owned = principal.service_principal_id in sp.owners or (
        app is not None and principal.service_principal_id in app.owners
    )
    if APP_OWNED_BY in principal.roles and owned:
        return
    raise forbidden()


# What reads the service principals of an app role assignment, alongside AppRoleAssignment.ReadWrite.All.
# Application.ReadWrite.OwnedBy is NOT one: it reads only what the caller owns, and the resource
# service principal (Microsoft Graph's, ...) is not.
ASSIGNMENT_READ_ROLES = frozenset(
    {APP_READ_ALL, APP_READWRITE_ALL, "Directory.Read.All", "Directory.ReadWrite.All"}
)


def require_assignment_write(principal: Principal) -> None:
    """Granting (or removing) an app role assignment: AppRoleAssignment.ReadWrite.All AND
    Application.Read.All (Graph's documented least privilege for POST appRoleAssignedTo; higher:
    Directory.Read.All; Application.ReadWrite.All and Directory.ReadWrite.All read too)."""
    require_any(principal, frozenset({APP_ROLE_ASSIGNMENT_RW}))
    require_any(principal, ASSIGNMENT_READ_ROLES)


def require_assignment_delete(principal: Principal) -> None:
    """Removing an app role assignment: AppRoleAssignment.ReadWrite.All alone (Graph's documented
    least privilege for DELETE appRoleAssignments/appRoleAssignedTo, with no read companion,
    unlike the POST), or Application.ReadWrite.All, which Graph lists as the higher one."""
    require_any(principal, frozenset({APP_ROLE_ASSIGNMENT_RW, APP_READWRITE_ALL}))


def require_grant_write(principal: Principal) -> None:
    """POST/PATCH/DELETE oauth2PermissionGrants: DelegatedPermissionGrant.ReadWrite.All alone
    (documented least privilege, no read companion), or the higher Directory.ReadWrite.All."""
    require_any(principal, frozenset({GRANT_RW, "Directory.ReadWrite.All"}))
