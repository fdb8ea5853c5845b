"""In-memory objects of one vault: secret and certificate versions, soft-deleted entries.

Plain dataclasses so snapshot()/restore() are dataclasses.asdict and a constructor call.
Versions keep insertion order (a dict), which is creation order: the last one is "latest".
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

# recoveryLevel of every object: soft delete with 90 days' retention, and whether a purge is
# allowed. With purge protection (infra's vault) Key Vault reports "Recoverable"; without it
# "Recoverable+Purgeable".
RECOVERY_LEVEL = "Recoverable+Purgeable"
PROTECTED_RECOVERY_LEVEL = "Recoverable"
RECOVERABLE_DAYS = 90


def recovery_level(purge_protection: bool) -> str:
    return PROTECTED_RECOVERY_LEVEL if purge_protection else RECOVERY_LEVEL


def now_s() -> int:
    return int(time.time())


def new_version_id() -> str:
    return uuid.uuid4().hex


V = TypeVar("V")


class NameMap(dict[str, V]):
    """Key Vault object names are case-insensitive: "Api-Key" and "api-key" are the same object.
    Keys are folded to lower case; the entries keep the name as first written."""

    def __getitem__(self, name: str) -> V:
        return super().__getitem__(name.lower())

    def __setitem__(self, name: str, value: V) -> None:
        super().__setitem__(name.lower(), value)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def pop(self, name: str, default: Any = None) -> Any:
        return super().pop(name.lower(), default)


@dataclass
class Attributes:
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    created: int = field(default_factory=now_s)
    updated: int = field(default_factory=now_s)

    def to_json(self, level: str = RECOVERY_LEVEL) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled}
        if self.nbf is not None:
            out["nbf"] = self.nbf
        if self.exp is not None:
            out["exp"] = self.exp
        out.update(
            created=self.created,
            updated=self.updated,
            recoveryLevel=level,
            recoverableDays=RECOVERABLE_DAYS,
        )
        return out


@dataclass
class SecretVersion:
    version: str
    value: str = field(repr=False)  # never in a repr, a log line or an error
    attributes: Attributes
    content_type: str | None = None
    tags: dict[str, str] | None = None
    managed: bool = False  # True for the secret backing a certificate
    # Events already sent for this version (each fires once per version).
    near_expiry_sent: bool = False
    expired_sent: bool = False


@dataclass
class CertificateVersion:
    version: str
    cer: bytes  # DER
    x5t: bytes  # SHA-1 of the DER
    attributes: Attributes
    tags: dict[str, str] | None = None
    near_expiry_sent: bool = False
    expired_sent: bool = False


@dataclass
class SecretEntry:
    name: str
    versions: dict[str, SecretVersion] = field(default_factory=dict)

    @property
    def latest(self) -> SecretVersion:
        return next(reversed(self.versions.values()))


@dataclass
class CertificateEntry:
    name: str
    policy: dict[str, Any]
    versions: dict[str, CertificateVersion] = field(default_factory=dict)
    operation: dict[str, Any] | None = None  # the pending (or last) create operation

    @property
    def latest(self) -> CertificateVersion:
        return next(reversed(self.versions.values()))


@dataclass
class Deletion:
    deleted_date: int
    scheduled_purge_date: int

    @classmethod
    def now(cls) -> Deletion:
        deleted = now_s()
        return cls(deleted, deleted + RECOVERABLE_DAYS * 24 * 3600)


# --- snapshot helpers ------------------------------------------------------------------------


def secret_entry_to_dict(entry: SecretEntry) -> dict[str, Any]:
    return asdict(entry)


def secret_entry_from_dict(raw: dict[str, Any]) -> SecretEntry:
    versions = {}
    for version_id, stored in raw["versions"].items():
        fields = {**stored, "attributes": Attributes(**stored["attributes"])}
        versions[version_id] = SecretVersion(**fields)
    return SecretEntry(name=raw["name"], versions=versions)


def certificate_entry_to_dict(entry: CertificateEntry) -> dict[str, Any]:
    out = asdict(entry)
    for version in out["versions"].values():
        version["cer"] = version["cer"].hex()
        version["x5t"] = version["x5t"].hex()
    return out


def certificate_entry_from_dict(raw: dict[str, Any]) -> CertificateEntry:
    versions = {}
    for version_id, stored in raw["versions"].items():
        fields = {
            **stored,
            "attributes": Attributes(**stored["attributes"]),
            "cer": bytes.fromhex(stored["cer"]),
            "x5t": bytes.fromhex(stored["x5t"]),
        }
        versions[version_id] = CertificateVersion(**fields)
    return CertificateEntry(
        name=raw["name"], policy=raw["policy"], versions=versions, operation=raw.get("operation")
    )
