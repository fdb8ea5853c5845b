"""Directory objects as Graph shows them, plus what only Entra keeps (secret digests, certificates).

Each object keeps its Graph properties in ``props`` (never mutated in place by readers) and caches
the JSON text of each property, so a response is assembled from cached fragments instead of
re-serialising, say, the 716 appRoles of Microsoft Graph's service principal on every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar

from cryptography import x509

from devstack.tenant.graph.errors import bad_request

# Entra's client secrets: 40 characters of letters, digits and "_-.~", "Q~" at positions 4-5.
SECRET_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~"


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise bad_request(f"Invalid value specified for property '{name}'.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"Invalid value specified for property '{name}'.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def new_secret_text() -> str:
    # One urandom call instead of 37 secrets.choice() calls: the modulo bias over 66 symbols is
    # irrelevant for a development tenant, and addPassword stays cheap.
    raw = secrets.token_bytes(38)
    text = "".join(SECRET_ALPHABET[b % len(SECRET_ALPHABET)] for b in raw[:37])
    return f"{text[:3]}{raw[37] % 10}Q~{text[3:]}"


def guid_bytes_id(*guids: str) -> str:
    """Ids of appRoleAssignments and grants: base64url of GUID bytes, as Entra builds them."""
    raw = b"".join(uuid.UUID(g).bytes_le for g in guids)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class PasswordCredential:
    key_id: str
    display_name: str | None
    hint: str
    salt: bytes
    digest: bytes
    start: datetime
    end: datetime
    created_at: float  # epoch seconds: the token endpoint applies the propagation delay from here

    @classmethod
    def issue(
        cls, secret_text: str, display_name: str | None, start: datetime, end: datetime, created_at: float
    ) -> PasswordCredential:
        salt = secrets.token_bytes(16)
        return cls(
            key_id=str(uuid.uuid4()),
            display_name=display_name,
            hint=secret_text[:3],
            salt=salt,
            digest=hashlib.sha256(salt + secret_text.encode()).digest(),
            start=start,
            end=end,
            created_at=created_at,
        )

    def verify(self, secret_text: str) -> bool:
        candidate = hashlib.sha256(self.salt + secret_text.encode()).digest()
        return hmac.compare_digest(candidate, self.digest)

    def is_valid_at(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def to_graph(self) -> dict[str, Any]:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": None,
            "startDateTime": iso(self.start),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "displayName": self.display_name,
            "hint": self.hint,
            "salt": self.salt.hex(),
            "digest": self.digest.hex(),
            "start": iso(self.start),
            "end": iso(self.end),
            "createdAt": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PasswordCredential:
        return cls(
            key_id=data["keyId"],
            display_name=data["displayName"],
            hint=data["hint"],
            salt=bytes.fromhex(data["salt"]),
            digest=bytes.fromhex(data["digest"]),
            start=parse_iso(data["start"], "start"),
            end=parse_iso(data["end"], "end"),
            created_at=float(data["createdAt"]),
        )


@dataclass
class KeyCredential:
    key_id: str
    display_name: str | None
    type: str
    usage: str
    der: bytes
    start: datetime
    end: datetime
    created_at: float

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @cached_property
    def thumbprint_sha1(self) -> bytes:
        return hashlib.sha1(self.der, usedforsecurity=False).digest()

    @cached_property
    def thumbprint_sha256(self) -> bytes:
        return hashlib.sha256(self.der).digest()

    def is_valid_at(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def to_graph(self, *, include_key: bool = False) -> dict[str, Any]:
        return {
            "customKeyIdentifier": base64.b64encode(self.thumbprint_sha1).decode(),
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "key": base64.b64encode(self.der).decode() if include_key else None,
            "keyId": self.key_id,
            "startDateTime": iso(self.start),
            "type": self.type,
            "usage": self.usage,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "displayName": self.display_name,
            "type": self.type,
            "usage": self.usage,
            "der": base64.b64encode(self.der).decode(),
            "start": iso(self.start),
            "end": iso(self.end),
            "createdAt": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyCredential:
        return cls(
            key_id=data["keyId"],
            display_name=data["displayName"],
            type=data["type"],
            usage=data["usage"],
            der=base64.b64decode(data["der"]),
            start=parse_iso(data["start"], "start"),
            end=parse_iso(data["end"], "end"),
            created_at=float(data["createdAt"]),
        )


@dataclass
class FederatedIdentityCredential:
    id: str
    name: str
    issuer: str
    subject: str
    audiences: list[str]
    description: str | None = None
    # Unix seconds of the last change of issuer/subject/audiences: the token endpoint ignores the
    # credential until the propagation delay has passed since then (as for secrets and certificates).
    # Snapshots without it load as 0.0, i.e. long propagated.
    created_at: float = 0.0

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "issuer": self.issuer,
            "subject": self.subject,
            "audiences": list(self.audiences),
            "description": self.description,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_graph(), "createdAt": self.created_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FederatedIdentityCredential:
        fields = {k: data[k] for k in ("id", "name", "issuer", "subject", "audiences", "description")}
        return cls(**fields, created_at=float(data.get("createdAt", 0.0)))


class GraphObject:
    """Graph properties in insertion order, with a JSON fragment cached per property."""

    type_name: ClassVar[str] = "directoryObject"

    def __init__(self, object_id: str, created_at: float, props: dict[str, Any]) -> None:
        self.id = object_id
        self.created_at = created_at  # epoch seconds; replication delay counts from here
        self.props = props
        self._fragments: dict[str, str] = {}
        self._full: str | None = None  # the whole object's JSON, for GETs without $select
        # Set by the directory that holds the object: its change log (delta queries) hears of
        # every change. Every mutation of props ends in changed(), so none is missed.
        self.on_change: Callable[[GraphObject], None] | None = None
        self.deleted_at = 0.0  # epoch seconds it went to deleted items (while it is there)

    def changed(self) -> None:
        self._fragments.clear()
        self._full = None
        if self.on_change is not None:
            self.on_change(self)

    def fragment(self, name: str) -> str:
        text = self._fragments.get(name)
        if text is None:
            text = json.dumps(self.props.get(name), separators=(",", ":"))
            self._fragments[name] = text
        return text

    def to_json(
        self, select: list[str] | None = None, *, overrides: dict[str, str] | None = None, typed: bool = False
    ) -> str:
        """JSON text of the object (or of the selected properties); ``overrides`` maps a name to JSON text."""
        if select is None and not overrides and not typed:
            if self._full is None:
                self._full = (
                    json.dumps(self.props, separators=(",", ":"))
                    if not self._fragments
                    else self.to_json(list(self.props))
                )
            return self._full
        names = select if select is not None else list(self.props)
        parts = [f'"@odata.type":"#microsoft.graph.{self.type_name}"'] if typed else []
        for name in names:
            text = overrides.get(name) if overrides else None
            parts.append(f'"{name}":{text if text is not None else self.fragment(name)}')
        return "{" + ",".join(parts) + "}"


class Application(GraphObject):
    type_name = "application"

    def __init__(self, object_id: str, created_at: float, props: dict[str, Any]) -> None:
        super().__init__(object_id, created_at, props)
        self.password_credentials: list[PasswordCredential] = []
        self.key_credentials: list[KeyCredential] = []
        self.federated_credentials: list[FederatedIdentityCredential] = []
        self.owners: list[str] = []  # directory object ids (service principals here)
        self.record_cache: Any = None  # the token endpoint's ClientRecord, rebuilt after changes

    @property
    def app_id(self) -> str:
        return str(self.props["appId"])

    @property
    def display_name(self) -> str:
        return str(self.props.get("displayName") or "")

    def credentials_changed(self) -> None:
        self.props["passwordCredentials"] = [p.to_graph() for p in self.password_credentials]
        self.props["keyCredentials"] = [k.to_graph() for k in self.key_credentials]
        self.record_cache = None
        self.changed()


class ServicePrincipal(GraphObject):
    type_name = "servicePrincipal"

    def __init__(
        self, object_id: str, created_at: float, props: dict[str, Any], seed: str | None = None
    ) -> None:
        super().__init__(object_id, created_at, props)
        self.owners: list[str] = []
        self.seed = seed  # catalogue name for Microsoft's own service principals (not persisted in full)
        self._role_values: dict[str, str] | None = None

    def changed(self) -> None:
        super().changed()
        self._role_values = None

    def prime(self, name: str, json_text: str) -> None:
        """Reuse a fragment serialised once for every tenant (the seed catalogues)."""
        self._fragments[name] = json_text

    def role_value(self, app_role_id: str) -> str | None:
        if self._role_values is None:
            self._role_values = {str(r["id"]): str(r["value"]) for r in self.props.get("appRoles") or []}
        return self._role_values.get(app_role_id)

    def app_role(self, app_role_id: str) -> dict[str, Any] | None:
        for role in self.props.get("appRoles") or []:
            if role.get("id") == app_role_id:
                return dict(role)
        return None

    @property
    def app_id(self) -> str:
        return str(self.props["appId"])

    @property
    def display_name(self) -> str:
        return str(self.props.get("displayName") or "")

    @property
    def account_enabled(self) -> bool:
        return bool(self.props.get("accountEnabled", True))


@dataclass
class AppRoleAssignment:
    id: str
    principal_id: str
    resource_id: str
    app_role_id: str
    principal_display_name: str
    resource_display_name: str
    created_at: float
    principal_type: str = "ServicePrincipal"

    def to_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deletedDateTime": None,
            "appRoleId": self.app_role_id,
            "createdDateTime": iso(datetime.fromtimestamp(self.created_at, UTC)),
            "principalDisplayName": self.principal_display_name,
            "principalId": self.principal_id,
            "principalType": self.principal_type,
            "resourceDisplayName": self.resource_display_name,
            "resourceId": self.resource_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__}


@dataclass
class PermissionGrant:
    id: str
    client_id: str
    consent_type: str
    principal_id: str | None
    resource_id: str
    scope: str
    created_at: float = field(default=0.0)

    def to_graph(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "consentType": self.consent_type,
            "id": self.id,
            "principalId": self.principal_id,
            "resourceId": self.resource_id,
            "scope": self.scope,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__}
