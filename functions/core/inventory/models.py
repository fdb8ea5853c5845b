"""What the inventory keeps per app and per credential: facts Graph returns, never a secret value."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

MatchKind = Literal["exact", "superset", "subset"]
CredentialType = Literal["secret", "certificate"]
Holder = Literal["application", "servicePrincipal"]


@dataclass(frozen=True)
class ProfileMatch:
    """The connector profile closest to an app's requiredResourceAccess, with the difference."""

    profile: str
    kind: MatchKind
    missing: tuple[str, ...] = ()  # what the profile has and the app lacks, "Resource/Name (kind)"
    extra: tuple[str, ...] = ()  # what the app has beyond the profile

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "kind": self.kind,
            "missing": list(self.missing),
            "extra": list(self.extra),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProfileMatch | None:
        if not data:
            return None
        return cls(str(data["profile"]), data["kind"], tuple(data["missing"]), tuple(data["extra"]))


@dataclass(frozen=True)
class CredentialSummary:
    key_id: str
    type: CredentialType
    holder: Holder  # on the application, or on its service principal
    display_name: str | None
    hint: str | None  # a secret's first three characters, as Graph shows them
    thumbprint: str | None  # a certificate's customKeyIdentifier (SHA-1, hex)
    start: datetime | None
    end: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "type": self.type,
            "on": self.holder,
            "displayName": self.display_name,
            "hint": self.hint,
            "thumbprint": self.thumbprint,
            "startDateTime": _iso(self.start),
            "endDateTime": _iso(self.end),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CredentialSummary:
        return cls(
            key_id=str(data["keyId"]),
            type=data["type"],
            holder=data["on"],
            display_name=data.get("displayName"),
            hint=data.get("hint"),
            thumbprint=data.get("thumbprint"),
            start=_parse(data.get("startDateTime")),
            end=_parse(data.get("endDateTime")),
        )


@dataclass(frozen=True)
class AppSummary:
    """One application (or a service principal whose application lives elsewhere) of a tenant."""

    tenant_id: str
    object_id: str
    app_id: str
    holder: Holder
    display_name: str | None
    created: datetime | None = None
    sign_in_audience: str | None = None
    required_resource_access: tuple[tuple[str, str, str], ...] = ()  # (resourceAppId, id, "Role"|"Scope")
    owner_count: int | None = None
    managed_by: str | None = None  # the Registrar registration id, when Registrar made it
    match: ProfileMatch | None = None
    credentials: tuple[CredentialSummary, ...] = field(default=())
    unique_name: str | None = None

    @property
    def managed(self) -> bool:
        return self.managed_by is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "objectId": self.object_id,
            "appId": self.app_id,
            "kind": self.holder,
            "displayName": self.display_name,
            "createdDateTime": _iso(self.created),
            "signInAudience": self.sign_in_audience,
            "requiredResourceAccess": _rra_json(self.required_resource_access),
            "ownerCount": self.owner_count,
            "managed": self.managed,
            "registrationId": self.managed_by,
            "profileMatch": self.match.to_json() if self.match else None,
            "credentials": [c.to_json() for c in self.credentials],
            "uniqueName": self.unique_name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppSummary:
        rra = tuple(
            (str(entry["resourceAppId"]), str(access["id"]), str(access["type"]))
            for entry in data.get("requiredResourceAccess") or []
            for access in entry.get("resourceAccess") or []
        )
        return cls(
            tenant_id=str(data["tenantId"]),
            object_id=str(data["objectId"]),
            app_id=str(data["appId"]),
            holder=data["kind"],
            display_name=data.get("displayName"),
            created=_parse(data.get("createdDateTime")),
            sign_in_audience=data.get("signInAudience"),
            required_resource_access=rra,
            owner_count=data.get("ownerCount"),
            managed_by=data.get("registrationId"),
            match=ProfileMatch.from_json(data.get("profileMatch")),
            credentials=tuple(CredentialSummary.from_json(c) for c in data.get("credentials") or []),
            unique_name=data.get("uniqueName"),
        )


@dataclass(frozen=True)
class InventoryQuery:
    """GET /api/inventory: credentials of one tenant by end date, expired first."""

    tenant_id: str
    ends_before: datetime | None = None  # expiringWithin, as a moment
    managed: bool | None = None
    profile: str | None = None
    limit: int = 100
    continuation: str | None = None


@dataclass(frozen=True)
class CredentialRow:
    """One credential as the inventory lists it, with its app's facts."""

    credential: CredentialSummary
    app: AppSummary

    def to_json(self) -> dict[str, Any]:
        app = self.app
        return {
            **self.credential.to_json(),
            "tenantId": app.tenant_id,
            "appId": app.app_id,
            "objectId": app.object_id,
            "appDisplayName": app.display_name,
            "ownerCount": app.owner_count,
            "managed": app.managed,
            "registrationId": app.managed_by,
            "profileMatch": app.match.to_json() if app.match else None,
        }


@dataclass(frozen=True)
class ScanOutcome:
    tenant_id: str
    mode: Literal["full", "delta"]
    applications: int  # summaries written or removed
    service_principals: int
    requests: int  # Graph requests made


def _rra_json(entries: tuple[tuple[str, str, str], ...]) -> list[dict[str, Any]]:
    by_resource: dict[str, list[dict[str, str]]] = {}
    for resource, permission_id, kind in entries:
        by_resource.setdefault(resource, []).append({"id": permission_id, "type": kind})
    return [{"resourceAppId": r, "resourceAccess": access} for r, access in by_resource.items()]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
