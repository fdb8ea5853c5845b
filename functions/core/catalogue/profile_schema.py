"""Building a Profile from one parsed data file (TOML/JSON), validating every field.

A bad profile raises ProfileError naming the file and the field path (e.g.
"connectors/x.toml: permissions[2].type: expected 'application' or 'delegated'").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from functions.core.catalogue.permissions import canonical_resource
from functions.core.catalogue.profiles import (
    COMMON_OPTIONS,
    OPTION_TYPES,
    PROFILE_ID,
    SIGN_IN_AUDIENCES,
    CredentialRule,
    ManualStep,
    OptionSpec,
    PermissionMapping,
    Profile,
    ProfileError,
    ProfilePermission,
)
from functions.core.ports import RedirectUris
from functions.core.record.durations import format_duration, parse_duration
from functions.core.record.models import CredentialType, PermissionKind


class _Reader:
    """Typed access to one parsed profile file, failing with the file and field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> ProfileError:
        return ProfileError(self.source, path, reason)

    def str_(self, data: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(
                f"{path}{key}", "required non-empty string" if value is None else "expected a string"
            )
        return value

    def req(self, data: Mapping[str, Any], key: str, path: str) -> str:
        value = self.str_(data, key, path)
        if value is None:  # str_ raises for a required field; this keeps that true under -O
            raise self.fail(f"{path}{key}", "required non-empty string")
        return value

    def strs(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{path}{key}", "expected a list of strings")
        return tuple(value)

    def tables(self, data: Mapping[str, Any], key: str) -> list[tuple[str, Mapping[str, Any]]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.fail(key, "expected a list of tables")
        return [(f"{key}[{i}].", v) for i, v in enumerate(value)]

    def duration(self, data: Mapping[str, Any], key: str, path: str) -> timedelta | None:
        text = self.str_(data, key, path, required=False)
        if text is None:
            return None
        try:
            value = parse_duration(text)
        except ValueError as exc:
            raise self.fail(f"{path}{key}", str(exc)) from None
        if value <= timedelta(0):
            raise self.fail(f"{path}{key}", "must be positive")
        return value

    def kind(self, data: Mapping[str, Any], key: str, path: str) -> PermissionKind:
        text = self.req(data, key, path)
        try:
            return PermissionKind(text)
        except ValueError:
            raise self.fail(f"{path}{key}", "expected 'application' or 'delegated'") from None

    def credential_type(self, text: str, path: str) -> CredentialType:
        try:
            return CredentialType(text)
        except ValueError:
            allowed = ", ".join(t.value for t in CredentialType)
            raise self.fail(path, f"unknown credential type {text!r} (allowed: {allowed})") from None

    def known_keys(self, data: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.fail(f"{path}{unknown[0]}", f"unknown field (allowed: {', '.join(allowed)})")


_PROFILE_KEYS = (
    "id", "connector", "title", "description", "seed", "seed_words", "sign_in_audience", "redirect_uris",
    "credentials", "permissions", "options", "manual_steps", "mappings", "notes", "rotation_lead_time",
    "custom",
)  # fmt: skip


def profile_from_dict(data: Mapping[str, Any], *, source: str) -> Profile:
    """Build and validate a Profile from one parsed data file; raise ProfileError naming the field."""
    r = _Reader(source)
    r.known_keys(data, _PROFILE_KEYS, "")
    profile_id = r.req(data, "id", "")
    if not PROFILE_ID.fullmatch(profile_id):
        raise r.fail("id", "lower-case letters, digits and '-' (2-63 characters)")
    custom = data.get("custom", False)
    if not isinstance(custom, bool):
        raise r.fail("custom", "expected true or false")
    seed = r.str_(data, "seed", "", required=not custom)
    seed_words = r.strs(data, "seed_words", "")
    if seed is not None and not seed_words:
        raise r.fail("seed_words", "quote the seed's own words the profile follows")
    audience = r.str_(data, "sign_in_audience", "", required=False) or "AzureADMyOrg"
    if audience not in SIGN_IN_AUDIENCES:
        raise r.fail("sign_in_audience", f"one of {', '.join(SIGN_IN_AUDIENCES)}")
    options = tuple(_option(r, path, raw) for path, raw in r.tables(data, "options"))
    option_names = {opt.name for opt in options}
    permissions = tuple(
        _permission(r, path, raw, option_names) for path, raw in r.tables(data, "permissions")
    )
    if not permissions and not custom and not any(opt.grants for opt in options):
        raise r.fail("permissions", "a profile needs at least one permission")
    if len(set(permissions)) != len(permissions):
        raise r.fail("permissions", "duplicate permission")
    credentials = tuple(_credential(r, path, raw) for path, raw in r.tables(data, "credentials"))
    if not credentials:
        raise r.fail("credentials", "at least one allowed credential type")
    if len({c.type for c in credentials}) != len(credentials):
        raise r.fail("credentials", "duplicate credential type")
    redirect_raw = data.get("redirect_uris", {})
    if not isinstance(redirect_raw, Mapping):
        raise r.fail("redirect_uris", "expected a table")
    r.known_keys(redirect_raw, ("web", "spa", "public_client", "decision"), "redirect_uris.")
    redirect = RedirectUris(
        web=r.strs(redirect_raw, "web", "redirect_uris."),
        spa=r.strs(redirect_raw, "spa", "redirect_uris."),
        public_client=r.strs(redirect_raw, "public_client", "redirect_uris."),
    )
    steps = tuple(_manual_step(r, path, raw, option_names) for path, raw in r.tables(data, "manual_steps"))
    if len({s.id for s in steps}) != len(steps):
        raise r.fail("manual_steps", "duplicate step id")
    return Profile(
        id=profile_id,
        connector=r.req(data, "connector", ""),
        title=r.req(data, "title", ""),
        description=r.req(data, "description", ""),
        seed=seed,
        seed_words=seed_words,
        sign_in_audience=audience,
        redirect_uris=redirect,
        redirect_uri_decision=r.str_(redirect_raw, "decision", "redirect_uris.", required=False),
        credentials=credentials,
        permissions=permissions,
        options=options,
        manual_steps=steps,
        mappings=tuple(_mapping(r, path, raw) for path, raw in r.tables(data, "mappings")),
        notes=r.strs(data, "notes", ""),
        rotation_lead_time=r.duration(data, "rotation_lead_time", ""),
        custom=custom,
        source=source,
    )


def _permission(r: _Reader, path: str, raw: Mapping[str, Any], options: set[str]) -> ProfilePermission:
    r.known_keys(raw, ("resource", "type", "name", "seed_spelling", "when"), path)
    when = r.str_(raw, "when", path, required=False)
    if when is not None and when not in options:
        raise r.fail(f"{path}when", f"no option named {when!r}")
    return ProfilePermission(
        resource=canonical_resource(r.req(raw, "resource", path)),
        kind=r.kind(raw, "type", path),
        name=r.req(raw, "name", path),
        seed_spelling=r.str_(raw, "seed_spelling", path, required=False),
        when=when,
    )


def _option(r: _Reader, path: str, raw: Mapping[str, Any]) -> OptionSpec:
    keys = (
        "name",
        "type",
        "description",
        "default",
        "allowed",
        "grants",
        "seed_spelling",
        "sets",
        "min_items",
    )
    r.known_keys(raw, keys, path)
    name = r.req(raw, "name", path)
    if name in COMMON_OPTIONS:
        raise r.fail(f"{path}name", f"{name!r} is a common option every profile has")
    kind = r.req(raw, "type", path)
    if kind not in OPTION_TYPES:
        raise r.fail(f"{path}type", f"one of {', '.join(OPTION_TYPES)}")
    allowed = r.strs(raw, "allowed", path)
    default = raw.get("default")
    expected = {"boolean": bool, "string": str, "string-list": list}[kind]
    if default is not None and not isinstance(default, expected):
        raise r.fail(f"{path}default", f"expected a {kind}")
    values = default if isinstance(default, list) else [default] if isinstance(default, str) else []
    if allowed and any(v not in allowed for v in values):
        raise r.fail(f"{path}default", "every default value must be among the allowed values")
    grants = None
    if "grants" in raw:
        g = raw["grants"]
        if kind != "string-list" or not isinstance(g, Mapping):
            raise r.fail(f"{path}grants", "a table {resource, type} on a string-list option")
        grants = (
            canonical_resource(r.req(g, "resource", f"{path}grants.")),
            r.kind(g, "type", f"{path}grants."),
        )
    spelling = raw.get("seed_spelling", {})
    if not isinstance(spelling, Mapping) or any(k not in allowed for k in spelling):
        raise r.fail(f"{path}seed_spelling", "a table of allowed value -> the seed's spelling")
    sets = r.str_(raw, "sets", path, required=False)
    if sets is not None and (sets != "sign_in_audience" or kind != "string"):
        raise r.fail(f"{path}sets", "only a string option may set 'sign_in_audience'")
    if sets and any(v not in SIGN_IN_AUDIENCES for v in allowed):
        raise r.fail(f"{path}allowed", f"sign-in audiences are {', '.join(SIGN_IN_AUDIENCES)}")
    min_items = raw.get("min_items", 0)
    if not isinstance(min_items, int) or isinstance(min_items, bool) or min_items < 0:
        raise r.fail(f"{path}min_items", "a non-negative integer")
    return OptionSpec(
        name=name,
        type=kind,
        description=r.req(raw, "description", path),
        default=default,
        allowed=allowed,
        grants=grants,
        seed_spelling=dict(spelling),
        sets=sets,
        min_items=min_items,
    )


def _credential(r: _Reader, path: str, raw: Mapping[str, Any]) -> CredentialRule:
    r.known_keys(raw, ("type", "default_lifetime", "max_lifetime", "key_size", "note"), path)
    default = r.duration(raw, "default_lifetime", path)
    if default is None:
        raise r.fail(f"{path}default_lifetime", "required (ISO 8601 duration like P180D)")
    maximum = r.duration(raw, "max_lifetime", path)
    if maximum is not None and maximum < default:
        raise r.fail(f"{path}max_lifetime", f"shorter than default_lifetime {format_duration(default)}")
    key_size = raw.get("key_size")
    if key_size is not None and (not isinstance(key_size, int) or key_size not in (2048, 3072, 4096)):
        raise r.fail(f"{path}key_size", "2048, 3072 or 4096")
    return CredentialRule(
        type=r.credential_type(r.req(raw, "type", path), f"{path}type"),
        default_lifetime=default,
        max_lifetime=maximum,
        key_size=key_size,
        note=r.str_(raw, "note", path, required=False),
    )


def _manual_step(r: _Reader, path: str, raw: Mapping[str, Any], options: set[str]) -> ManualStep:
    r.known_keys(raw, ("id", "title", "detail", "seed_words", "when_credential", "when_option"), path)
    when_option = r.str_(raw, "when_option", path, required=False)
    if when_option is not None and when_option not in options:
        raise r.fail(f"{path}when_option", f"no option named {when_option!r}")
    return ManualStep(
        id=r.req(raw, "id", path),
        title=r.req(raw, "title", path),
        detail=r.req(raw, "detail", path),
        seed_words=r.str_(raw, "seed_words", path, required=False),
        when_credential=tuple(
            r.credential_type(t, f"{path}when_credential") for t in r.strs(raw, "when_credential", path)
        ),
        when_option=when_option,
    )


def _mapping(r: _Reader, path: str, raw: Mapping[str, Any]) -> PermissionMapping:
    keys = ("from_resource", "from_type", "from_name", "to_resource", "to_type", "to_name", "note")
    r.known_keys(raw, keys, path)
    return PermissionMapping(
        from_resource=r.req(raw, "from_resource", path),
        from_kind=r.kind(raw, "from_type", path),
        from_name=r.req(raw, "from_name", path),
        to_resource=canonical_resource(r.req(raw, "to_resource", path)),
        to_kind=r.kind(raw, "to_type", path),
        to_name=r.req(raw, "to_name", path),
        note=r.req(raw, "note", path),
    )
