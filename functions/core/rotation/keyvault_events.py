"""Key Vault's Event Grid events, parsed tolerantly.

Published samples disagree: data keys come as "Id"/"id", "VaultName"/"vaultName", "NBF"/"nbf";
NBF/EXP as Unix seconds (number or numeric string), as ISO 8601 text, or null; the event type
with or without the "Microsoft.KeyVault." prefix; Event Grid or CloudEvents envelope. This
module accepts all of them and refuses only what carries no usable object name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class KeyVaultEventKind(StrEnum):
    NEW_VERSION = "NewVersionCreated"
    NEAR_EXPIRY = "NearExpiry"
    EXPIRED = "Expired"


class ObjectType(StrEnum):
    SECRET = "Secret"  # noqa: S105  (a Key Vault object type, not a password)
    CERTIFICATE = "Certificate"
    KEY = "Key"


@dataclass(frozen=True)
class KeyVaultEvent:
    event_id: str
    kind: KeyVaultEventKind
    object_type: ObjectType
    vault_name: str | None
    object_name: str
    version: str | None
    object_id: str | None  # the versioned URI when the event carries it
    not_before: datetime | None
    expires_on: datetime | None


class UnusableEvent(ValueError):  # noqa: N818
    """Not a Key Vault object event Registrar can act on (wrong type, or no object name)."""


def _lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in data.items()}


# Key Vault sends seconds since the epoch; a number this large can only be milliseconds (year 5138+).
_MILLISECONDS_FROM = 1e11


def _epoch(number: float) -> datetime | None:
    if number > _MILLISECONDS_FROM:
        number /= 1000
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None  # out of range (negative, infinite, NaN, absurd): unknown, not a failure


def _moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise UnusableEvent("a date field holds a boolean")
    if isinstance(value, int | float):
        return _epoch(float(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return _epoch(number)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None  # tolerate: an unreadable date is treated as unknown, not as a failure
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _kind_and_type(event_type: str) -> tuple[KeyVaultEventKind, ObjectType]:
    short = event_type.rsplit(".", 1)[-1]
    for object_type in ObjectType:
        if short.startswith(object_type.value):
            rest = short[len(object_type.value) :]
            for kind in KeyVaultEventKind:
                if rest == kind.value:
                    return kind, object_type
    raise UnusableEvent(f"not a Key Vault object event: {event_type!r}")


def parse_key_vault_event(
    *, event_id: str, event_type: str, subject: str | None, data: Mapping[str, Any] | None
) -> KeyVaultEvent:
    """Build a KeyVaultEvent from an Event Grid (or CloudEvents) event's parts."""
    kind, object_type = _kind_and_type(event_type or "")
    fields = _lower_keys(data if isinstance(data, Mapping) else {})
    object_name = fields.get("objectname") or (subject or "").rsplit("/", 1)[-1] or None
    if not object_name or not isinstance(object_name, str):
        raise UnusableEvent("the event names no Key Vault object")
    version = fields.get("version")
    object_id = fields.get("id")
    if not version and isinstance(object_id, str):
        # .../secrets/<name>/<version>
        parts = object_id.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == object_name:
            version = parts[-1]
    vault_name = fields.get("vaultname")
    return KeyVaultEvent(
        event_id=event_id,
        kind=kind,
        object_type=object_type,
        vault_name=str(vault_name) if vault_name else None,
        object_name=object_name,
        version=str(version) if version else None,
        object_id=str(object_id) if object_id else None,
        not_before=_moment(fields.get("nbf")),
        expires_on=_moment(fields.get("exp")),
    )


def parse_envelope(envelope: Mapping[str, Any]) -> KeyVaultEvent:
    """From a raw JSON event in Event Grid schema (eventType) or CloudEvents schema (type)."""
    fields = _lower_keys(envelope)
    data = fields.get("data")
    return parse_key_vault_event(
        event_id=str(fields.get("id") or ""),
        event_type=str(fields.get("eventtype") or fields.get("type") or ""),
        subject=fields.get("subject"),
        data=data if isinstance(data, Mapping) else None,
    )
