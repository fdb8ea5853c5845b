"""Connector profiles: what a connector needs in Entra ID, as its vendor's guide (a seed) says.

A profile is pure data, built and validated here from a parsed dict (TOML/JSON); reading the files
is functions.profiles' job. A bad profile raises ProfileError naming the file and the field, so a
broken catalogue fails loudly at load instead of at a customer's registration.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from functions.core.ports import RedirectUris
from functions.core.record.models import CredentialType, PermissionKind, PermissionRef

SIGN_IN_AUDIENCES = ("AzureADMyOrg", "AzureADMultipleOrgs")
PROFILE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
OPTION_TYPES = ("boolean", "string", "string-list")
# Options every profile accepts, on top of its own (validated by functions.core.intake.requests).
COMMON_OPTIONS = ("redirectUris",)


class ProfileError(ValueError):
    """A profile file is wrong: names the file and the field."""

    def __init__(self, source: str, field_name: str, reason: str) -> None:
        self.source = source
        self.field = field_name
        self.reason = reason
        super().__init__(f"{source}: {field_name}: {reason}")


@dataclass(frozen=True)
class ProfilePermission:
    """One permission of a profile. `when` names a boolean option that must be true to include it."""

    resource: str  # appId (well-known display names are stored as their appId)
    kind: PermissionKind
    name: str  # the correct name, as the resource publishes it
    seed_spelling: str | None = None  # the seed's own (wrong) spelling, when it differs
    when: str | None = None

    def ref(self) -> PermissionRef:
        return PermissionRef(self.resource, self.kind, self.name)


@dataclass(frozen=True)
class OptionSpec:
    """A request option a profile declares (request body: options.<name>).

    boolean options may add permissions (ProfilePermission.when); a string-list with `grants`
    turns each chosen value into a permission of that resource and type; a string option with
    `sets = "sign_in_audience"` chooses the app's sign-in audience.
    """

    name: str
    type: str  # one of OPTION_TYPES
    description: str
    default: Any = None
    allowed: tuple[str, ...] = ()
    grants: tuple[str, PermissionKind] | None = None  # (resource appId, kind) for string-list
    seed_spelling: Mapping[str, str] = field(default_factory=dict)  # correct value -> seed's spelling
    sets: str | None = None
    min_items: int = 0


@dataclass(frozen=True)
class CredentialRule:
    """An allowed credential type with its default and maximum lifetime."""

    type: CredentialType
    default_lifetime: timedelta
    max_lifetime: timedelta | None = None
    key_size: int | None = None  # certificates: RSA key size the connector requires
    note: str | None = None


@dataclass(frozen=True)
class ManualStep:
    """Work that remains for a person after Registrar is done; the API reports it back."""

    id: str
    title: str
    detail: str
    seed_words: str | None = None
    when_credential: tuple[CredentialType, ...] = ()  # empty: whatever the credential
    when_option: str | None = None


@dataclass(frozen=True)
class PermissionMapping:
    """A seed permission Registrar grants differently (e.g. retired Azure AD Graph -> Microsoft Graph)."""

    from_resource: str
    from_kind: PermissionKind
    from_name: str
    to_resource: str
    to_kind: PermissionKind
    to_name: str
    note: str


@dataclass(frozen=True)
class Profile:
    id: str
    connector: str
    title: str
    description: str
    seed: str | None  # file name in shared/seeds/ (None only for the "custom" profile)
    seed_words: tuple[str, ...]
    sign_in_audience: str
    redirect_uris: RedirectUris
    redirect_uri_decision: str | None
    credentials: tuple[CredentialRule, ...]
    permissions: tuple[ProfilePermission, ...]
    options: tuple[OptionSpec, ...] = ()
    manual_steps: tuple[ManualStep, ...] = ()
    mappings: tuple[PermissionMapping, ...] = ()
    notes: tuple[str, ...] = ()
    rotation_lead_time: timedelta | None = None
    custom: bool = False  # permissions come from the request (profile "custom")
    source: str = ""  # the data file it was loaded from

    @property
    def credential_types(self) -> tuple[CredentialType, ...]:
        return tuple(rule.type for rule in self.credentials)

    @property
    def default_credential_type(self) -> CredentialType:
        return self.credentials[0].type

    def credential_rule(self, kind: CredentialType) -> CredentialRule | None:
        return next((rule for rule in self.credentials if rule.type is kind), None)

    def option(self, name: str) -> OptionSpec | None:
        return next((opt for opt in self.options if opt.name == name), None)

    def options_with_defaults(self, options: Mapping[str, Any]) -> dict[str, Any]:
        merged = {opt.name: opt.default for opt in self.options if opt.default is not None}
        merged.update(options)
        return merged

    def permission_refs(self, options: Mapping[str, Any] | None = None) -> tuple[PermissionRef, ...]:
        """The permissions a registration with these (validated) options gets, without duplicates."""
        chosen = self.options_with_defaults(options or {})
        refs: list[PermissionRef] = [
            perm.ref() for perm in self.permissions if perm.when is None or chosen.get(perm.when) is True
        ]
        for opt in self.options:
            if opt.grants is not None:
                resource, kind = opt.grants
                refs.extend(PermissionRef(resource, kind, str(v)) for v in chosen.get(opt.name) or ())
        return tuple(dict.fromkeys(refs))

    def sign_in_audience_for(self, options: Mapping[str, Any] | None = None) -> str:
        chosen = self.options_with_defaults(options or {})
        for opt in self.options:
            if opt.sets == "sign_in_audience" and isinstance(chosen.get(opt.name), str):
                return str(chosen[opt.name])
        return self.sign_in_audience

    def redirect_uris_for(self, options: Mapping[str, Any] | None = None) -> RedirectUris:
        """The profile's redirect URIs; options.redirectUris replaces them platform by platform."""
        given = (options or {}).get("redirectUris") or {}
        return RedirectUris(
            web=tuple(given.get("web", self.redirect_uris.web)),
            spa=tuple(given.get("spa", self.redirect_uris.spa)),
            public_client=tuple(given.get("publicClient", self.redirect_uris.public_client)),
        )

    def manual_steps_for(
        self, options: Mapping[str, Any] | None = None, credential_type: CredentialType | None = None
    ) -> tuple[ManualStep, ...]:
        chosen = self.options_with_defaults(options or {})
        return tuple(
            step
            for step in self.manual_steps
            if (
                not step.when_credential or credential_type is None or credential_type in step.when_credential
            )
            and (step.when_option is None or chosen.get(step.when_option) is True)
        )


class ProfileCatalogue:
    """Every profile by id (immutable once built)."""

    def __init__(self, profiles: Iterable[Profile]) -> None:
        by_id: dict[str, Profile] = {}
        for profile in profiles:
            if profile.id in by_id:
                raise ProfileError(profile.source, "id", f"duplicate id {profile.id!r}")
            by_id[profile.id] = profile
        self._by_id = dict(sorted(by_id.items()))

    def get(self, profile_id: str) -> Profile | None:
        return self._by_id.get(profile_id)

    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def suggest(self, profile_id: str) -> list[str]:
        """The closest existing ids to a mistyped one (best first)."""
        return difflib.get_close_matches(profile_id.lower(), self._by_id, n=3, cutoff=0.5)

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._by_id
