"""Permission drift of an adopted app, computed: what it declares and what is granted, against the
profile, and the changes a reconcile mode makes. Pure: permissions.py reads Graph and applies.

A permission is keyed by (resource appId, kind, permission id), lower case: the same name has
different ids on different resources (DESIGN.md), and Graph returns GUIDs in either case.
- declared: the app's requiredResourceAccess (what the portal shows under "API permissions");
- granted: its service principal's app role assignments (application permissions) and the scopes
  of its AllPrincipals oauth2PermissionGrants (delegated; a grant names scopes by value). Grants a
  user gave for themselves (consentType Principal) are a person's, not the app's, and not read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from functions.core.ports import DelegatedGrant, RequiredResourceAccess
from functions.core.record.models import PermissionKind, ResolvedPermission, ResourceCatalog
from functions.core.record.registration import Drift, DriftedPermission

REPORT = "report"
ADD_MISSING = "add-missing"
EXACT = "exact"

Key = tuple[str, PermissionKind, str]  # (resource appId, kind, permission id), lower case


def key_of(permission: ResolvedPermission) -> Key:
    return (permission.resource_app_id.lower(), permission.kind, permission.id.lower())


@dataclass(frozen=True)
class AppPermissions:
    """The adopted app's permissions as Graph listed them at one moment."""

    required_resource_access: tuple[RequiredResourceAccess, ...]
    service_principal_id: str | None  # None: the app has no service principal, so nothing granted
    role_assignments: frozenset[tuple[str, str]] = frozenset()  # (resource SP id, appRoleId), lower
    grants: Mapping[str, DelegatedGrant] = field(default_factory=dict)  # by resource SP id, lower
    catalogs: Mapping[str, ResourceCatalog] = field(default_factory=dict)  # by resource appId, lower
    resource_app_ids: Mapping[str, str] = field(default_factory=dict)  # resource SP id -> appId, lower

    @property
    def declared(self) -> frozenset[Key]:
        keys: set[Key] = set()
        for entry in self.required_resource_access:
            resource = entry.resource_app_id.lower()
            keys.update((resource, PermissionKind.APPLICATION, i.lower()) for i in entry.app_role_ids)
            keys.update((resource, PermissionKind.DELEGATED, i.lower()) for i in entry.scope_ids)
        return frozenset(keys)

    @property
    def granted(self) -> frozenset[Key]:
        keys: set[Key] = set()
        for resource_sp, role in self.role_assignments:
            resource = self.resource_app_ids.get(resource_sp, resource_sp)
            keys.add((resource, PermissionKind.APPLICATION, role))
        for resource_sp, grant in self.grants.items():
            resource = self.resource_app_ids.get(resource_sp, resource_sp)
            keys.update(
                (resource, PermissionKind.DELEGATED, self._scope_id(resource, s)) for s in grant.scopes
            )
        return frozenset(keys)

    def _scope_id(self, resource: str, value: str) -> str:
        catalog = self.catalogs.get(resource)
        scope = catalog.scopes.get(value) if catalog else None
        return scope.id.lower() if scope else value.lower()  # a scope the resource does not list

    def resource_principal(self, resource_app_id: str) -> str | None:
        """The resource's service principal id in the tenant (None: the tenant has none)."""
        catalog = self.catalogs.get(resource_app_id.lower())
        if catalog is not None:
            return catalog.service_principal_id.lower()
        mapped = next(
            (sp for sp, app in self.resource_app_ids.items() if app == resource_app_id.lower()), None
        )
        if mapped is None and resource_app_id.lower() in self.grants:
            return (
                resource_app_id.lower()
            )  # a grant whose resource could not be named: keyed by its principal
        return mapped

    def name_of(self, key: Key) -> tuple[str, str]:
        """(resource display name, permission value) for a key, from the resource's catalogue."""
        resource, kind, permission_id = key
        catalog = self.catalogs.get(resource)
        if catalog is None:
            return resource, permission_id
        for permission in catalog.permissions(kind).values():
            if permission.id.lower() == permission_id:
                return catalog.display_name or resource, permission.value
        return catalog.display_name or resource, permission_id


def compute_drift(wanted: Sequence[ResolvedPermission], app: AppPermissions, read_at: datetime) -> Drift:
    """Missing: a profile permission not both declared and granted. Extra: anything declared or
    granted that the profile does not name (the seeds' Read beside ReadWrite shows up here)."""
    declared, granted = app.declared, app.granted
    wanted_keys = {key_of(p): p for p in wanted}
    missing = []
    for key, permission in sorted(wanted_keys.items()):
        if key in declared and key in granted:
            continue
        resource, _ = app.name_of(key)
        missing.append(
            DriftedPermission(
                resource_app_id=key[0],
                resource=resource,
                value=permission.name,
                kind=permission.kind,
                id=key[2],
                declared=key in declared,
                granted=key in granted,
            )
        )
    extra = []
    for key in sorted((declared | granted) - wanted_keys.keys()):
        resource, value = app.name_of(key)
        extra.append(
            DriftedPermission(
                resource_app_id=key[0],
                resource=resource,
                value=value,
                kind=key[1],
                id=key[2],
                declared=key in declared,
                granted=key in granted,
            )
        )
    return Drift(read_at=read_at, missing=tuple(missing), extra=tuple(extra))


@dataclass(frozen=True)
class Changes:
    """What a reconcile mode changes on the app, from one reading. Each part sets a computed value
    (or adds/removes exact pairs), so applying it again, or after a fresh reading, converges."""

    required_resource_access: tuple[RequiredResourceAccess, ...] | None = None  # None: unchanged
    roles_to_add: tuple[tuple[str, PermissionKind, str], ...] = ()  # keys, granted through the SP
    grants_to_set: tuple[tuple[str, frozenset[str]], ...] = ()  # (resource appId, exact scopes)
    roles_to_remove: tuple[tuple[str, str], ...] = ()  # (resource SP id, appRoleId)
    newly_granted: tuple[ResolvedPermission, ...] = ()  # what the app gains: tier-0 ones need approval

    @property
    def none(self) -> bool:
        return (
            self.required_resource_access is None
            and not self.roles_to_add
            and not self.grants_to_set
            and not self.roles_to_remove
        )

    @property
    def needs_principal(self) -> bool:
        """Adding grants needs the app's service principal (made if the app has none)."""
        return bool(self.roles_to_add) or any(scopes for _, scopes in self.grants_to_set)

    def summary(self) -> str:
        parts = []
        if self.required_resource_access is not None:
            parts.append("requiredResourceAccess set")
        if self.roles_to_add:
            parts.append(f"{len(self.roles_to_add)} app role(s) granted")
        if self.grants_to_set:
            parts.append(f"{len(self.grants_to_set)} delegated grant(s) set")
        if self.roles_to_remove:
            parts.append(f"{len(self.roles_to_remove)} app role(s) removed")
        return ", ".join(parts) or "nothing to change"


def plan_changes(mode: str, wanted: Sequence[ResolvedPermission], app: AppPermissions) -> Changes:
    """report: nothing. add-missing: declare and grant what the profile names and the app lacks.
    exact: also remove what the profile does not name, from requiredResourceAccess and the grants."""
    if mode not in (ADD_MISSING, EXACT):
        return Changes()
    declared, granted = app.declared, app.granted
    wanted_keys = {key_of(p): p for p in wanted}
    target = _target_access(mode, wanted, app.required_resource_access, declared)
    access = None if _keys_of(target) == declared else target
    roles_to_add = tuple(
        key for key in sorted(wanted_keys) if key[1] is PermissionKind.APPLICATION and key not in granted
    )
    newly_granted = tuple(wanted_keys[key] for key in sorted(wanted_keys) if key not in granted)
    grants = _target_grants(mode, wanted, app)
    roles_to_remove: tuple[tuple[str, str], ...] = ()
    if mode == EXACT:
        roles_to_remove = tuple(
            sorted(
                (resource_sp, role)
                for resource_sp, role in app.role_assignments
                if (app.resource_app_ids.get(resource_sp, resource_sp), PermissionKind.APPLICATION, role)
                not in wanted_keys
            )
        )
    return Changes(access, roles_to_add, grants, roles_to_remove, newly_granted)


def _keys_of(access: Iterable[RequiredResourceAccess]) -> frozenset[Key]:
    return AppPermissions(tuple(access), None).declared


def _target_access(
    mode: str,
    wanted: Sequence[ResolvedPermission],
    current: Sequence[RequiredResourceAccess],
    declared: frozenset[Key],
) -> tuple[RequiredResourceAccess, ...]:
    """exact: the profile's entries only; add-missing: the app's entries (as they are) plus the
    profile's permissions they lack. One entry per resource, in the order first seen."""
    roles: dict[str, list[str]] = {}
    scopes: dict[str, list[str]] = {}
    names: dict[str, str] = {}  # resource appId (lower) -> as written
    if mode == ADD_MISSING:
        for entry in current:
            resource = entry.resource_app_id.lower()
            names.setdefault(resource, entry.resource_app_id)
            roles.setdefault(resource, []).extend(entry.app_role_ids)
            scopes.setdefault(resource, []).extend(entry.scope_ids)
    for permission in wanted:
        key = key_of(permission)
        if mode == ADD_MISSING and key in declared:
            continue
        names.setdefault(key[0], permission.resource_app_id)
        bucket = roles if permission.kind is PermissionKind.APPLICATION else scopes
        ids = bucket.setdefault(key[0], [])
        if key[2] not in {i.lower() for i in ids}:
            ids.append(permission.id)
        (scopes if bucket is roles else roles).setdefault(key[0], [])
    return tuple(
        RequiredResourceAccess(names[r], tuple(roles.get(r, ())), tuple(scopes.get(r, ()))) for r in names
    )


def _target_grants(
    mode: str, wanted: Sequence[ResolvedPermission], app: AppPermissions
) -> tuple[tuple[str, frozenset[str]], ...]:
    """Per resource appId, the exact scopes its AllPrincipals grant must hold where that differs
    from what it holds: add-missing keeps the scopes granted beyond the profile; exact holds only
    the profile's (an empty set removes the grant)."""
    wanted_scopes: dict[str, set[str]] = {}
    for permission in wanted:
        if permission.kind is PermissionKind.DELEGATED:
            wanted_scopes.setdefault(permission.resource_app_id.lower(), set()).add(permission.name)
    held: dict[str, frozenset[str]] = {}
    for resource_sp, grant in app.grants.items():
        held[app.resource_app_ids.get(resource_sp, resource_sp)] = grant.scopes
    resources = set(wanted_scopes) | (set(held) if mode == EXACT else set())
    changes = []
    for resource in sorted(resources):
        now = held.get(resource, frozenset())
        target = frozenset(wanted_scopes.get(resource, set()))
        if mode == ADD_MISSING:
            target |= now
        if target != now:
            changes.append((resource, target))
    return tuple(changes)
