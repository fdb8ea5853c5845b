"""Which connector profile an app's requiredResourceAccess is closest to: exact, superset or subset.

Profiles name permissions; apps carry ids. ProfileSets holds each profile's permissions as
(resource appId, kind, id), resolved once per scan through the tenant's resource catalogues, and a
label for every id those catalogues know ("Microsoft Graph/User.Read.All (application)").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from functions.core.inventory.models import MatchKind, ProfileMatch
from functions.core.record.models import PermissionKind, ResolvedPermission, ResourceCatalog

Key = tuple[str, str, str]  # (resource appId, "application"|"delegated", permission id), lower case


def key_of(resource_app_id: str, kind: str, permission_id: str) -> Key:
    return (resource_app_id.lower(), kind, permission_id.lower())


def app_keys(required_resource_access: Iterable[tuple[str, str, str]]) -> frozenset[Key]:
    """The app's (resourceAppId, id, "Role"|"Scope") entries as keys."""
    return frozenset(
        key_of(resource, PermissionKind.APPLICATION if kind == "Role" else PermissionKind.DELEGATED, pid)
        for resource, pid, kind in required_resource_access
    )


@dataclass(frozen=True)
class ProfileSets:
    profiles: Mapping[str, frozenset[Key]]
    labels: Mapping[Key, str]

    @classmethod
    def build(
        cls, resolved: Mapping[str, Sequence[ResolvedPermission]], catalogs: Iterable[ResourceCatalog]
    ) -> ProfileSets:
        labels: dict[Key, str] = {}
        for catalog in catalogs:
            for kind in PermissionKind:
                for value, permission in catalog.permissions(kind).items():
                    labels[key_of(catalog.app_id, kind, permission.id)] = (
                        f"{catalog.display_name}/{value} ({kind})"
                    )
        profiles = {
            profile: frozenset(key_of(p.resource_app_id, p.kind, p.id) for p in permissions)
            for profile, permissions in resolved.items()
            if permissions
        }
        return cls(profiles, labels)

    def label(self, key: Key) -> str:
        return self.labels.get(key) or f"{key[0]}/{key[2]} ({key[1]})"

    def best(self, required: frozenset[Key]) -> ProfileMatch | None:
        """The closest profile: exact, else the superset or subset with the smallest difference (on a
        tie a superset first: the app can do what the connector needs). An app that is neither a
        superset nor a subset of any profile matches none."""
        if not required:
            return None
        candidates: list[tuple[int, int, str, ProfileMatch]] = []  # (difference, kind rank, id, match)
        for profile, wanted in self.profiles.items():
            missing, extra = wanted - required, required - wanted
            if missing and extra:
                continue
            rank = 0 if not missing and not extra else (1 if not missing else 2)
            match = ProfileMatch(
                profile,
                "exact" if rank == 0 else ("superset" if rank == 1 else "subset"),
                tuple(sorted(self.label(k) for k in missing)),
                tuple(sorted(self.label(k) for k in extra)),
            )
            candidates.append((len(missing) + len(extra), rank, profile, match))
        return min(candidates)[3] if candidates else None

    def closest(self, required: frozenset[Key], limit: int = 3) -> list[ProfileMatch]:
        """The profiles nearest to the app, fewest differences first, whatever their kind: what a
        person should look at when no profile matches exactly (an adoption without a profile).
        A profile that is neither superset nor subset is reported as a subset with its extras."""
        ranked: list[tuple[int, str, ProfileMatch]] = []
        for profile, wanted in self.profiles.items():
            missing, extra = wanted - required, required - wanted
            kind: MatchKind = (
                "exact" if not missing and not extra else ("superset" if not missing else "subset")
            )
            match = ProfileMatch(
                profile,
                kind,
                tuple(sorted(self.label(k) for k in missing)),
                tuple(sorted(self.label(k) for k in extra)),
            )
            ranked.append((len(missing) + len(extra), profile, match))
        return [match for _, _, match in sorted(ranked)[:limit]]
