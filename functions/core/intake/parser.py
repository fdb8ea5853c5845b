"""Field-by-field checks of a registration request body, collecting every problem.

Used by functions.core.intake.requests; kept apart so each module stays readable. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from functions.core.catalogue.permissions import canonical_resource, suggest_names
from functions.core.catalogue.policy import Policy
from functions.core.catalogue.profiles import COMMON_OPTIONS, OptionSpec, Profile, ProfileCatalogue
from functions.core.record.durations import format_duration, parse_duration
from functions.core.record.models import (
    WEBHOOK_EVENTS,
    CredentialSpec,
    CredentialType,
    PermissionKind,
    PermissionRef,
    Problem,
    WebhookSpec,
)

MAX_PROBLEMS = 50  # at most this many problems in one answer (the last says how many were left out)
MAX_BODY_BYTES = 64 * 1024  # the HTTP trigger refuses larger bodies with 413 before parsing
MAX_DISPLAY_NAME = 120
MAX_CUSTOM_PERMISSIONS = 50
MAX_REDIRECT_URIS = 20
TOP_LEVEL_FIELDS = (
    "requestId", "profile", "displayName", "tenantId", "options", "credential", "owners",
    "requestedBy", "webhooks", "permissions", "notes", "retirement",
)  # fmt: skip
CREDENTIAL_FIELDS = ("type", "lifetime", "issuer", "subject", "audiences")
WEBHOOK_FIELDS = ("url", "events")
PERMISSION_FIELDS = ("resource", "type", "name")
REDIRECT_PLATFORMS = ("web", "spa", "publicClient")
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)  # fmt: skip


def _did_you_mean(names: Sequence[str]) -> str | None:
    return f"did you mean {' or '.join(names)}?" if names else None


class RequestParser:
    """Collects every problem of one body instead of stopping at the first."""

    def __init__(self, catalogue: ProfileCatalogue, policy: Policy) -> None:
        self.catalogue = catalogue
        self.policy = policy
        self.problems: list[Problem] = []
        self.tenant_refused = False
        self.tenant_id: str | None = None
        self.custom_refs: tuple[PermissionRef, ...] = ()
        self.custom_ref_indexes: tuple[int, ...] = ()

    def add(self, path: str, reason: str, suggestion: str | None = None) -> None:
        self.problems.append(Problem(path, reason, suggestion))

    def string(self, value: Any, path: str, *, max_len: int, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.add(path, "required")
            return None
        if not isinstance(value, str):
            self.add(path, f"expected a string, got {type_name(value)}")
            return None
        text = value.strip()
        if not text:
            self.add(path, "must not be empty")
            return None
        if len(text) > max_len:
            self.add(path, f"longer than {max_len} characters")
            return None
        if _CONTROL.search(text):
            self.add(path, "contains control characters")
            return None
        return text

    def object_(self, value: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any] | None:
        if not isinstance(value, dict):
            self.add(path, f"expected an object, got {type_name(value)}")
            return None
        for key in value:
            if key not in allowed:
                shown = key if len(key) <= 64 else key[:61] + "..."  # never echo a huge key back
                close = _did_you_mean(suggest_names(shown, allowed, limit=1))
                listing = f"allowed: {', '.join(allowed)}"
                self.add(f"{path}.{shown}" if path else shown, "unknown field",
                         f"{close} {listing}" if close else listing)  # fmt: skip
        return value

    def list_(self, value: Any, path: str, *, max_items: int) -> list[Any] | None:
        if not isinstance(value, list):
            self.add(path, f"expected an array, got {type_name(value)}")
            return None
        if len(value) > max_items:
            self.add(path, f"more than {max_items} items")
            return None
        return value

    # ---------------------------------------------------------------- fields

    def profile(self, value: Any) -> Profile | None:
        name = self.string(value, "profile", max_len=64, required=True)
        if name is None:
            return None
        profile = self.catalogue.get(name)
        if profile is None:
            self.add("profile", f"unknown profile {name!r}",
                     _did_you_mean(self.catalogue.suggest(name)) or f"known: {', '.join(self.catalogue.ids())}")  # fmt: skip
        return profile

    def tenant(self, value: Any, home_tenant_id: str) -> str | None:
        if value is None:
            if not GUID.fullmatch(home_tenant_id or ""):
                self.add("tenantId", "required: Registrar has no home tenant configured")
                return None
            tenant = home_tenant_id
        else:
            text = self.string(value, "tenantId", max_len=36)
            if text is None:
                return None
            if not GUID.fullmatch(text):
                self.add("tenantId", "expected a tenant id (GUID)")
                return None
            tenant = text
        tenant = tenant.lower()
        self.tenant_id = tenant
        if not self.policy.tenant_allowed(tenant):
            self.tenant_refused = True
            self.add("tenantId", f"Registrar has no identity in tenant {tenant}",
                     "ask an operator to onboard the tenant first")  # fmt: skip
        return tenant

    def options(self, value: Any, profile: Profile | None) -> dict[str, Any]:
        if value is None:
            return {}
        declared = {opt.name: opt for opt in profile.options} if profile else {}
        if profile is None:  # nothing to check the options against; the profile problem says why
            return {}
        raw = self.object_(value, "options", [*declared, *COMMON_OPTIONS])
        chosen: dict[str, Any] = {}
        for name, item in (raw or {}).items():
            path = f"options.{name}"
            spec = declared.get(name)
            if name == "redirectUris":
                checked: Any = self.redirect_uris(item, path)
            elif spec is None:
                continue  # already reported as an unknown field
            else:
                checked = self.option_value(spec, item, path)
            if checked is not None:
                chosen[name] = checked
        return chosen

    def option_value(self, spec: OptionSpec, item: Any, path: str) -> Any:
        if spec.type == "boolean":
            if isinstance(item, bool):
                return item
            self.add(path, f"expected a boolean (true or false), got {type_name(item)}")
            return None
        if spec.type == "string-list":
            return self.string_list(item, path, spec.allowed, spec.min_items)
        text = self.string(item, path, max_len=256)
        if text is not None and spec.allowed and text not in spec.allowed:
            self.add(path, f"{text!r} is not allowed",
                     _did_you_mean(suggest_names(text, spec.allowed)) or f"allowed: {', '.join(spec.allowed)}")  # fmt: skip
            return None
        return text

    def string_list(self, value: Any, path: str, allowed: Sequence[str], min_items: int) -> list[str] | None:
        items = self.list_(value, path, max_items=200)
        if items is None:
            return None
        ok = True
        values: list[str] = []
        for i, item in enumerate(items):
            text = self.string(item, f"{path}[{i}]", max_len=256)
            if text is None:
                ok = False
            elif allowed and text not in allowed:
                ok = False
                self.add(f"{path}[{i}]", f"{text!r} is not among the allowed values",
                         _did_you_mean(suggest_names(text, allowed)) or f"allowed: {', '.join(allowed)}")  # fmt: skip
            elif text not in values:
                values.append(text)
        if ok and len(values) < min_items:
            self.add(path, f"choose at least {min_items}")
            return None
        return values if ok else None

    def redirect_uris(self, value: Any, path: str) -> dict[str, list[str]] | None:
        raw = self.object_(value, path, REDIRECT_PLATFORMS)
        if raw is None:
            return None
        result: dict[str, list[str]] = {}
        for platform in REDIRECT_PLATFORMS:
            if platform not in raw:
                continue
            items = self.list_(raw[platform], f"{path}.{platform}", max_items=MAX_REDIRECT_URIS)
            uris: list[str] = []
            for i, item in enumerate(items or ()):
                text = self.string(item, f"{path}.{platform}[{i}]", max_len=256)
                reason = self.policy.redirect_uri_problem(text) if text is not None else None
                if reason:
                    self.add(
                        f"{path}.{platform}[{i}]",
                        reason,
                        "use https://..., or http://localhost for development",
                    )
                elif text is not None and text not in uris:
                    uris.append(text)
            result[platform] = uris
        return result

    def credential(self, value: Any, profile: Profile | None) -> CredentialSpec | None:
        raw: Mapping[str, Any] = {}
        if value is not None:
            checked = self.object_(value, "credential", CREDENTIAL_FIELDS)
            if checked is None:
                return None
            raw = checked
        kind = self.credential_type(raw.get("type"), profile)
        # Without a usable type, the other fields are still checked, as far as they can be.
        lifetime = self.lifetime(raw.get("lifetime"), profile, kind)
        if kind is None:
            self.federated_fields(raw, required=False)
            return None
        if kind is not CredentialType.FEDERATED:
            for key in ("issuer", "subject", "audiences"):
                if key in raw:
                    self.add(f"credential.{key}", "only for credential type 'federated'")
            return CredentialSpec(type=kind, lifetime=lifetime)
        if "lifetime" in raw:
            self.add("credential.lifetime", "federated credentials do not expire; leave lifetime out")
        issuer, subject, audiences = self.federated_fields(raw, required=True)
        if issuer is None or subject is None:
            return None
        return CredentialSpec(type=kind, issuer=issuer, subject=subject, audiences=audiences)

    def federated_fields(
        self, raw: Mapping[str, Any], *, required: bool
    ) -> tuple[str | None, str | None, tuple[str, ...]]:
        issuer = self.string(raw.get("issuer"), "credential.issuer", max_len=600, required=required)
        if issuer is not None and not re.match(r"^https://[^\s/?#]+", issuer):
            self.add("credential.issuer", "the issuer must be an https URL")
        subject = self.string(raw.get("subject"), "credential.subject", max_len=600, required=required)
        audiences = CredentialSpec(type=CredentialType.FEDERATED).audiences
        if "audiences" in raw:
            items = self.list_(raw["audiences"], "credential.audiences", max_items=1) or []
            audiences = tuple(
                a for i, a in enumerate(items) if self.string(a, f"credential.audiences[{i}]", max_len=600)
            )
        return issuer, subject, audiences

    def credential_type(self, value: Any, profile: Profile | None) -> CredentialType | None:
        if value is None:
            return profile.default_credential_type if profile else CredentialType.SECRET
        text = self.string(value, "credential.type", max_len=32)
        allowed = [t.value for t in (profile.credential_types if profile else CredentialType)]
        if text is not None and text not in allowed:
            self.add(
                "credential.type",
                f"{text!r} is not allowed for this profile",
                f"allowed: {', '.join(allowed)}",
            )
            return None
        return CredentialType(text) if text is not None else None

    def lifetime(self, value: Any, profile: Profile | None, kind: CredentialType | None) -> timedelta | None:
        if value is None:
            return None
        path = "credential.lifetime"
        hint = "expected an ISO 8601 duration like P90D (or a number of seconds)"
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.add(path, f"{hint}, got {type_name(value)}")
            return None
        try:
            lifetime = parse_duration(value) if isinstance(value, str) else timedelta(seconds=value)
        except (ValueError, OverflowError):
            self.add(path, hint, "P90D, P1Y, PT12H or 7776000")
            return None
        if kind is None:  # type unknown: only the policy's own bounds apply
            reason = self.policy_lifetime_problem(lifetime)
        elif profile is not None and kind is not CredentialType.FEDERATED:
            reason = self.policy.lifetime_problem(lifetime, profile, kind)
        else:
            reason = None
        if reason:
            self.add(path, reason)
            return None
        return lifetime

    def policy_lifetime_problem(self, lifetime: timedelta) -> str | None:
        if lifetime < self.policy.min_credential_lifetime:
            return f"shorter than the minimum {format_duration(self.policy.min_credential_lifetime)}"
        if lifetime > self.policy.max_credential_lifetime:
            return f"longer than the maximum {format_duration(self.policy.max_credential_lifetime)} (policy)"
        return None

    def owners(self, value: Any) -> tuple[str, ...]:
        items = self.list_(value, "owners", max_items=self.policy.max_owners) if value is not None else []
        owners: list[str] = []
        for i, item in enumerate(items or ()):
            if not isinstance(item, str) or not GUID.fullmatch(item):
                self.add(f"owners[{i}]", "expected a user or service principal object id (GUID)")
            elif item.lower() not in owners:
                owners.append(item.lower())
        return tuple(owners)

    def webhooks(self, value: Any) -> tuple[WebhookSpec, ...]:
        items = self.list_(value, "webhooks", max_items=self.policy.max_webhooks) if value is not None else []
        hooks: list[WebhookSpec] = []
        for i, item in enumerate(items or ()):
            path = f"webhooks[{i}]"
            raw = self.object_(item, path, WEBHOOK_FIELDS)
            if raw is None:
                continue
            url = self.string(raw.get("url"), f"{path}.url", max_len=2048, required=True)
            reason = self.policy.webhook_url_problem(url) if url is not None else None
            if reason:
                self.add(f"{path}.url", reason)
            events: tuple[str, ...] = WEBHOOK_EVENTS
            if "events" in raw:
                chosen = self.string_list(raw["events"], f"{path}.events", WEBHOOK_EVENTS, 1)
                events = tuple(chosen) if chosen is not None else ()
            if url is not None and not reason and events:
                if any(h.url == url for h in hooks):
                    self.add(f"{path}.url", "the same URL is subscribed twice")
                else:
                    hooks.append(WebhookSpec(url=url, events=events))
        return tuple(hooks)

    def permissions(self, value: Any, profile: Profile | None) -> tuple[PermissionRef, ...]:
        if profile is not None and not profile.custom:
            if value is not None:
                self.add("permissions", f"only profile 'custom' takes permissions; {profile.id}'s are fixed")
            return ()
        if value is None:
            if profile is not None:
                self.add("permissions", "profile 'custom' needs a list of {resource, type, name}")
            return ()
        items = self.list_(value, "permissions", max_items=MAX_CUSTOM_PERMISSIONS) or []
        if not items and isinstance(value, list):
            self.add("permissions", "profile 'custom' needs at least one permission")
        refs: list[PermissionRef] = []
        indexes: list[int] = []
        for i, item in enumerate(items):
            raw = self.object_(item, f"permissions[{i}]", PERMISSION_FIELDS)
            if raw is None:
                continue
            resource = self.string(
                raw.get("resource"), f"permissions[{i}].resource", max_len=256, required=True
            )
            kind_text = self.string(raw.get("type"), f"permissions[{i}].type", max_len=32, required=True)
            name = self.string(raw.get("name"), f"permissions[{i}].name", max_len=256, required=True)
            kinds = [k.value for k in PermissionKind]
            if kind_text is not None and kind_text not in kinds:
                self.add(f"permissions[{i}].type", f"{kind_text!r} is not a permission type",
                         _did_you_mean(suggest_names(kind_text, kinds, limit=1)) or "application or delegated")  # fmt: skip
                continue
            if resource and kind_text and name:
                refs.append(PermissionRef(canonical_resource(resource), PermissionKind(kind_text), name))
                indexes.append(i)
        self.custom_refs, self.custom_ref_indexes = tuple(refs), tuple(indexes)
        return tuple(refs)
