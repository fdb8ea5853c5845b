"""What Registrar may grant and to whom: tier-0 approval, lifetimes, redirect URIs, tenants, callers.

Pure decisions from settings; functions.settings builds the Policy once (policy_from_settings).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

from functions.core.catalogue.profiles import Profile
from functions.core.catalogue.webhook_hosts import host_problem
from functions.core.record.durations import format_duration, parse_duration
from functions.core.record.errors import Forbidden
from functions.core.record.models import GRAPH_APP_ID, CredentialType, ResolvedPermission

ROLE_APPROVER = "Registrar.Approver"  # may approve registrations held for tier-0 permissions
ROLE_ADMIN = "Registrar.Admin"  # may decommission registrations and rotate credentials on demand
CLIENT_PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"

# Microsoft Graph permissions that let an app take over the tenant (grant itself roles, add
# credentials to other apps, federate a domain, weaken policies). Names or fnmatch patterns,
# matched case-insensitively. Configurable: REGISTRAR_TIER0_PERMISSIONS (comma-separated).
DEFAULT_TIER0_PERMISSIONS: tuple[str, ...] = (
    "RoleManagement.ReadWrite.*",
    "AppRoleAssignment.ReadWrite.All",
    "Application.ReadWrite.All",
    "Directory.ReadWrite.All",
    "Directory.AccessAsUser.All",
    "Domain.ReadWrite.All",
    "Policy.ReadWrite.*",
    "PrivilegedAccess.ReadWrite.*",
    "PrivilegedAssignmentSchedule.ReadWrite.*",
    "PrivilegedEligibilitySchedule.ReadWrite.*",
    "RoleAssignmentSchedule.ReadWrite.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "DelegatedPermissionGrant.ReadWrite.All",
    "ServicePrincipalEndpoint.ReadWrite.All",
    "UserAuthenticationMethod.ReadWrite.All",
    "User-PasswordProfile.ReadWrite.All",
    "Organization.ReadWrite.All",
    "OnPremDirectorySynchronization.ReadWrite.All",
    "EntitlementManagement.ReadWrite.All",
)

LOCALHOST_NAMES = ("localhost",)
INSECURE_WEBHOOKS_OUTSIDE_LOCAL = (
    "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL: true is only for local development (REGISTRAR_ENVIRONMENT "
    "local, devstack or test); outside it webhook URLs must be https to public hosts: set it to false"
)


@dataclass(frozen=True)
class Policy:
    """Limits Registrar applies to every request.

    allowed_tenants: tenants Registrar has an identity in (None: no restriction, for tests).
    allow_insecure_webhooks: accept http:// webhook URLs (explicit local development only).
    custom_requires_approval: hold every "custom" permission set for an approver.
    """

    tier0_permissions: tuple[str, ...] = DEFAULT_TIER0_PERMISSIONS
    default_credential_lifetime: timedelta = timedelta(days=180)
    max_credential_lifetime: timedelta = timedelta(days=730)
    min_credential_lifetime: timedelta = timedelta(minutes=1)
    allowed_tenants: frozenset[str] | None = None
    allow_insecure_webhooks: bool = False
    custom_requires_approval: bool = False
    max_webhooks: int = 10
    max_owners: int = 20

    def is_tier0(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.tier0_permissions)

    def requires_approval(
        self, permissions: Iterable[ResolvedPermission], *, custom: bool = False
    ) -> list[str]:
        """Why a registration with these permissions must wait for Registrar.Approver (empty: it need not)."""
        reasons = [
            f"{p.name} ({p.kind.value}) on Microsoft Graph is a tier-0 permission"
            for p in sorted(permissions, key=lambda p: (p.name.lower(), p.kind.value))
            if p.resource_app_id.lower() == GRAPH_APP_ID and self.is_tier0(p.name)
        ]
        if custom and self.custom_requires_approval:
            reasons.append("custom permission sets need approval (policy)")
        return reasons

    def tenant_allowed(self, tenant_id: str) -> bool:
        return self.allowed_tenants is None or tenant_id.lower() in self.allowed_tenants

    def redirect_uri_problem(self, uri: str) -> str | None:
        """Why a redirect URI is refused (None: acceptable): https, or http://localhost on any port/path."""
        parts, problem = _url_parts(uri, "redirect URIs")
        if problem or parts is None:
            return problem
        if "*" in uri:
            return "wildcards are not allowed in redirect URIs"
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCALHOST_NAMES):
            return None
        return "redirect URIs must be https, or http://localhost (any port or path)"

    def webhook_url_problem(self, url: str) -> str | None:
        """Why a webhook URL is refused by syntax/policy: scheme, a non-public address literal, a malformed
        host name. Where a host name resolves is the webhook adapter's check, at subscription and at send."""
        parts, problem = _url_parts(url, "webhook URLs")
        if problem or parts is None:
            return problem
        if parts.scheme == "http" and not self.allow_insecure_webhooks:
            return "webhook URLs must be https (http only in explicit local development)"
        if parts.scheme not in ("https", "http"):
            return "webhook URLs must be https"
        # An address literal never meets the adapter's resolver, so its check happens here.
        return host_problem(parts.hostname or "", allow_loopback=self.allow_insecure_webhooks)

    def lifetime_problem(self, lifetime: timedelta, profile: Profile, kind: CredentialType) -> str | None:
        """Why a requested credential lifetime is refused, naming the maximum that applies."""
        if lifetime < self.min_credential_lifetime:
            return f"shorter than the minimum {format_duration(self.min_credential_lifetime)}"
        maximum = self.max_credential_lifetime
        rule = profile.credential_rule(kind)
        source = "policy"
        if rule is not None and rule.max_lifetime is not None and rule.max_lifetime < maximum:
            maximum, source = rule.max_lifetime, f"profile {profile.id}"
        if lifetime > maximum:
            return f"longer than the maximum {format_duration(maximum)} ({source})"
        return None


def _url_parts(url: str, what: str) -> tuple[SplitResult | None, str | None]:
    """Split a URL, or say what makes it unusable for any callback (port, user info, fragment)."""
    if len(url) > 2048:
        return None, "longer than 2048 characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None, "not a valid URL"
    if parts.username or parts.password:
        return None, f"{what} cannot carry user information"
    if parts.fragment or "#" in url:
        return None, f"{what} cannot contain a fragment (#)"
    if not parts.hostname:
        return None, f"{what} need a host"
    return parts, None


LOCAL_ENVIRONMENTS = ("local", "devstack", "test")  # REGISTRAR_ENVIRONMENT values of local development
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def is_local_environment(environment: str | None) -> bool:
    """REGISTRAR_ENVIRONMENT names local development (anything else, or nothing, is Azure)."""
    return (environment or "").strip().lower() in LOCAL_ENVIRONMENTS


def setting_flag(name: str, text: str | None, default: bool) -> bool:
    """A boolean app setting: true/false, 1/0, yes/no, on/off (any case); empty takes the default.
    Anything else raises ValueError naming the setting (a typo must not silently mean False)."""
    word = (text or "").strip().lower()
    if not word:
        return default
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name}: expected true or false (also 1/0, yes/no, on/off), got {word[:20]!r}")


def policy_from_settings(
    values: Mapping[str, str], *, allowed_tenants: Iterable[str] | None = None
) -> Policy:
    """A Policy from app settings (REGISTRAR_TIER0_PERMISSIONS, REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME,
    REGISTRAR_MAX_CREDENTIAL_LIFETIME, REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL,
    REGISTRAR_CUSTOM_REQUIRES_APPROVAL). Empty values take the defaults; a bad value raises ValueError
    naming the setting, and so does REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL=true outside local development
    (REGISTRAR_ENVIRONMENT). allowed_tenants: the home tenant plus every tenant with a configured identity."""
    base = Policy()

    def duration(key: str, default: timedelta) -> timedelta:
        text = values.get(key, "").strip()
        if not text:
            return default
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None

    insecure = setting_flag(
        "REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL", values.get("REGISTRAR_WEBHOOK_ALLOW_INSECURE_LOCAL"), False
    )
    if insecure and not is_local_environment(values.get("REGISTRAR_ENVIRONMENT")):
        raise ValueError(INSECURE_WEBHOOKS_OUTSIDE_LOCAL)
    tier0_text = values.get("REGISTRAR_TIER0_PERMISSIONS", "")
    tier0 = tuple(p.strip() for p in tier0_text.split(",") if p.strip()) or base.tier0_permissions
    policy = Policy(
        tier0_permissions=tier0,
        default_credential_lifetime=duration(
            "REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME", base.default_credential_lifetime
        ),
        max_credential_lifetime=duration("REGISTRAR_MAX_CREDENTIAL_LIFETIME", base.max_credential_lifetime),
        allowed_tenants=frozenset(t.strip().lower() for t in allowed_tenants if t.strip())
        if allowed_tenants is not None
        else None,
        allow_insecure_webhooks=insecure,
        custom_requires_approval=setting_flag(
            "REGISTRAR_CUSTOM_REQUIRES_APPROVAL", values.get("REGISTRAR_CUSTOM_REQUIRES_APPROVAL"), False
        ),
    )
    if policy.default_credential_lifetime > policy.max_credential_lifetime:
        raise ValueError(
            "REGISTRAR_DEFAULT_CREDENTIAL_LIFETIME is longer than REGISTRAR_MAX_CREDENTIAL_LIFETIME"
        )
    return policy


def default_lifetime(profile: Profile, policy: Policy, kind: CredentialType) -> timedelta:
    """The lifetime a credential gets when the request names none: the profile's, else the policy's."""
    rule = profile.credential_rule(kind)
    return rule.default_lifetime if rule is not None else policy.default_credential_lifetime


def credential_end(
    start: datetime,
    requested_lifetime: timedelta | None,
    profile: Profile,
    policy: Policy,
    tenant_max_lifetime: timedelta | None = None,
    *,
    credential_type: CredentialType | None = None,
) -> datetime:
    """End date of a new credential: the requested (or default) lifetime, capped by the policy's
    maximum, the profile's maximum for that credential type, and the tenant's app management policy
    maximum when known (Entra refuses credentials longer than that)."""
    kind = credential_type or profile.default_credential_type
    lifetime = requested_lifetime or default_lifetime(profile, policy, kind)
    caps = [policy.max_credential_lifetime]
    rule = profile.credential_rule(kind)
    if rule is not None and rule.max_lifetime is not None:
        caps.append(rule.max_lifetime)
    if tenant_max_lifetime is not None and tenant_max_lifetime > timedelta(0):
        caps.append(tenant_max_lifetime)
    return start + min(lifetime, *caps)


# ---------------------------------------------------------------- callers (App Service authentication)

_ROLE_CLAIM_TYPES = ("roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_OID_CLAIM_TYPES = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")
EASY_AUTH_REQUIRED = (
    "this operation needs App Service Authentication (Easy Auth) enabled on the function app, which "
    "vouches for the caller's X-MS-CLIENT-PRINCIPAL header; it is not enabled here, so the header could be "
    "forged and no caller is trusted with an app role (see docs/deploy.md, 'App roles for people')"
)


@dataclass(frozen=True)
class CallerPrincipal:
    """The caller as App Service authentication (Easy Auth) describes it in X-MS-CLIENT-PRINCIPAL.

    Trust it only behind App Service authentication, which strips a client-sent header of that name
    (authorize() refuses it elsewhere, except in local development).
    """

    auth_type: str | None
    name: str | None
    object_id: str | None
    roles: frozenset[str] = field(default_factory=frozenset)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def actor(self) -> str:
        """How records name this caller (approvedBy, history): the display name and the object id,
        which is stable and unique. Only principals with an object id act (require_role)."""
        if not self.object_id:
            raise Forbidden("the authenticated principal carries no object id (oid) claim")
        if self.name and self.name != self.object_id:
            return f"{self.name} ({self.object_id})"
        return self.object_id


def parse_client_principal(header_value: str | None) -> CallerPrincipal | None:
    """Decode X-MS-CLIENT-PRINCIPAL (base64 JSON: auth_typ, name_typ, role_typ, claims [{typ, val}]).

    Roles are the claims whose typ is role_typ (or "roles"). None when absent or malformed.
    """
    if not header_value or not header_value.strip():
        return None
    text = header_value.strip()
    try:
        raw = base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None
        )
        data: Any = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("claims", []), list):
        return None
    claims = [
        (str(c.get("typ")), str(c.get("val")))
        for c in data.get("claims", [])
        if isinstance(c, Mapping) and c.get("typ") is not None and c.get("val") is not None
    ]
    role_typ = data.get("role_typ")
    name_typ = data.get("name_typ")
    role_types = {*_ROLE_CLAIM_TYPES, *([role_typ] if isinstance(role_typ, str) else [])}
    name = next((v for t, v in claims if t == name_typ), None) or next(
        (v for t, v in claims if t in ("name", "preferred_username")), None
    )
    object_id = next((v.strip() for t, v in claims if t in _OID_CLAIM_TYPES and v.strip()), None)
    return CallerPrincipal(
        auth_type=data.get("auth_typ") if isinstance(data.get("auth_typ"), str) else None,
        name=name,
        object_id=object_id,
        roles=frozenset(v for t, v in claims if t in role_types),
    )


def require_role(caller: CallerPrincipal | None, role: str) -> CallerPrincipal:
    """Return the caller when it holds the app role and has an object id; raise Forbidden (HTTP 403)
    otherwise."""
    if caller is None:
        raise Forbidden(f"this operation needs the app role {role}; no authenticated principal")
    if not caller.has_role(role):
        raise Forbidden(f"this operation needs the app role {role}")
    if not caller.object_id:
        raise Forbidden(
            f"this operation needs the app role {role} held by a principal with an object id (oid claim)"
        )
    return caller


def authorize(header_value: str | None, role: str, *, principal_trusted: bool) -> CallerPrincipal:
    """The caller of a role-protected route, from its X-MS-CLIENT-PRINCIPAL header.

    principal_trusted: App Service Authentication vouches for the header (WEBSITE_AUTH_ENABLED), or
    this is local development (the local host passes the header through). Otherwise Forbidden,
    whatever the header says: anyone holding a function key could have written it."""
    if not principal_trusted:
        raise Forbidden(EASY_AUTH_REQUIRED)
    return require_role(parse_client_principal(header_value), role)


__all__ = [
    "CLIENT_PRINCIPAL_HEADER",
    "DEFAULT_TIER0_PERMISSIONS",
    "ROLE_ADMIN",
    "ROLE_APPROVER",
    "CallerPrincipal",
    "Policy",
    "authorize",
    "credential_end",
    "default_lifetime",
    "is_local_environment",
    "parse_client_principal",
    "policy_from_settings",
    "require_role",
    "setting_flag",
]
