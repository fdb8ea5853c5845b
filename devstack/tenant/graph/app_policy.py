"""The tenant's default app management policy (tenantAppManagementPolicy) and its enforcement.

GET /policies/defaultAppManagementPolicy needs Policy.Read.All, Policy.Read.ApplicationConfiguration
or Policy.ReadWrite.ApplicationConfiguration; PATCH needs Policy.ReadWrite.ApplicationConfiguration
(204). When the policy is enabled, a new password (addPassword) or certificate (keyCredentials,
addKey) whose lifetime exceeds the restriction's maxLifetime is refused with Graph's 400
CredentialInvalidLifetimeAsPerAppPolicy, for applications created on or after the restriction's
restrictForAppsCreatedAfterDateTime (null: every application).
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.tenant.graph import authz
from devstack.tenant.graph.errors import GraphError, bad_request, unknown_property
from devstack.tenant.graph.http import Call, Reply, Router
from devstack.tenant.graph.model import Application, iso, parse_iso

POLICY_ID = "00000000-0000-0000-0000-000000000000"
READ_ROLES = frozenset(
    {"Policy.Read.All", "Policy.Read.ApplicationConfiguration", "Policy.ReadWrite.ApplicationConfiguration"}
)
WRITE_ROLES = frozenset({"Policy.ReadWrite.ApplicationConfiguration"})
PASSWORD_RESTRICTIONS = frozenset(
    {
        "passwordAddition",
        "passwordLifetime",
        "symmetricKeyAddition",
        "symmetricKeyLifetime",
        "customPasswordAddition",
    }
)
KEY_RESTRICTIONS = frozenset({"asymmetricKeyLifetime", "trustedCertificateAuthority"})
LIFETIME_RESTRICTION = {"password": "passwordLifetime", "key": "asymmetricKeyLifetime"}
_POLICY_FIELDS = {
    "id",
    "displayName",
    "description",
    "isEnabled",
    "applicationRestrictions",
    "servicePrincipalRestrictions",
}
_CONFIG_FIELDS = {"passwordCredentials", "keyCredentials"}
_RESTRICTION_FIELDS = {
    "restrictionType",
    "maxLifetime",
    "restrictForAppsCreatedAfterDateTime",
    "state",
    "certificateBasedApplicationConfigurationIds",
}
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def default_policy() -> dict[str, Any]:
    """A tenant's policy before anyone changed it: disabled, no restrictions."""
    return {
        "id": POLICY_ID,
        "displayName": "Default app management tenant policy",
        "description": "Default tenant policy that enforces app management restrictions on applications and "
        "service principals. To apply policy to targeted resources, create a new policy and assign it.",
        "isEnabled": False,
        "applicationRestrictions": {"passwordCredentials": [], "keyCredentials": []},
        "servicePrincipalRestrictions": {"passwordCredentials": [], "keyCredentials": []},
    }


def parse_lifetime(text: Any) -> timedelta:
    """An ISO 8601 duration (a year counted as 365 days, a month as 30: see docs/devstack-graph.md)."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise bad_request(f"Invalid value specified for property 'maxLifetime': {text!r}.")
    years, months, weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(
        days=years * 365 + months * 30 + weeks * 7 + days, hours=hours, minutes=minutes, seconds=seconds
    )


def _restriction(value: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("Invalid value for a credential restriction: a JSON object is expected.")
    for name in value:
        if not name.startswith("@odata.") and name not in _RESTRICTION_FIELDS:
            raise unknown_property(name, "passwordCredentialConfiguration")
    kind = value.get("restrictionType")
    if kind not in allowed:
        raise bad_request(f"Invalid value specified for property 'restrictionType': {kind!r}.")
    item: dict[str, Any] = {
        "restrictionType": kind,
        "state": value.get("state") or "enabled",
        "maxLifetime": value.get("maxLifetime"),
        "restrictForAppsCreatedAfterDateTime": value.get("restrictForAppsCreatedAfterDateTime"),
    }
    if item["state"] not in ("enabled", "disabled"):
        raise bad_request("Invalid value specified for property 'state'.")
    if kind.endswith("Lifetime"):
        if item["maxLifetime"] is None:
            raise bad_request(f"Property 'maxLifetime' is required when restrictionType is {kind}.")
        parse_lifetime(item["maxLifetime"])
    if item["restrictForAppsCreatedAfterDateTime"] is not None:
        moment = parse_iso(item["restrictForAppsCreatedAfterDateTime"], "restrictForAppsCreatedAfterDateTime")
        item["restrictForAppsCreatedAfterDateTime"] = iso(moment)
    return item


def _configuration(value: Any, current: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("Invalid value for 'applicationRestrictions': a JSON object is expected.")
    merged = dict(current)
    for name, items in value.items():
        if name.startswith("@odata."):
            continue
        if name not in _CONFIG_FIELDS:
            raise unknown_property(name, "appManagementConfiguration")
        if not isinstance(items, list):
            raise bad_request(f"Invalid value for '{name}': a JSON array is expected.")
        allowed = PASSWORD_RESTRICTIONS if name == "passwordCredentials" else KEY_RESTRICTIONS
        restrictions = [_restriction(item, allowed) for item in items]
        kinds = [r["restrictionType"] for r in restrictions]
        if len(set(kinds)) != len(kinds):
            raise bad_request("Each restrictionType can be used only once per policy.")
        merged[name] = restrictions
    return merged


def updated_policy(current: dict[str, Any], body: Any) -> dict[str, Any]:
    """The policy after a PATCH with `body` (validated; the stored policy is left alone on error)."""
    if not isinstance(body, dict):
        raise bad_request("Invalid request payload: a JSON object is expected.", code="BadRequest")
    policy = copy.deepcopy(current)
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name not in _POLICY_FIELDS:
            raise unknown_property(name, "tenantAppManagementPolicy")
        if name == "id":
            if value != POLICY_ID:
                raise bad_request("Property 'id' is read-only.")
        elif name == "isEnabled":
            if not isinstance(value, bool):
                raise bad_request("Invalid value specified for property 'isEnabled'.")
            policy[name] = value
        elif name in ("displayName", "description"):
            if not isinstance(value, str):
                raise bad_request(f"Invalid value specified for property '{name}'.")
            policy[name] = value
        else:
            policy[name] = _configuration(value, policy.get(name) or {})
    return policy


def lifetime_limit(policy: dict[str, Any], app: Application, kind: str) -> timedelta | None:
    """The maximum lifetime of a new `kind` ("password" | "key") credential of `app`, or None."""
    if not policy.get("isEnabled"):
        return None
    restrictions = (policy.get("applicationRestrictions") or {}).get(
        "passwordCredentials" if kind == "password" else "keyCredentials"
    ) or []
    for item in restrictions:
        if item.get("restrictionType") != LIFETIME_RESTRICTION[kind] or item.get("state") == "disabled":
            continue
        after = item.get("restrictForAppsCreatedAfterDateTime")
        if after is not None and datetime.fromtimestamp(app.created_at, UTC) < parse_iso(after, "after"):
            return None
        return parse_lifetime(item["maxLifetime"])
    return None


def enforce_lifetime(
    policy: dict[str, Any], app: Application, kind: str, start: datetime, end: datetime
) -> None:
    """Graph's 400 when a new credential outlives the policy's maximum for this app."""
    limit = lifetime_limit(policy, app, kind)
    if limit is None or end - start <= limit:
        return
    message = f"Credential lifetime exceeds the max value allowed as per assigned policy '{POLICY_ID}'."
    raise GraphError(
        400,
        "CredentialInvalidLifetimeAsPerAppPolicy",
        message,
        details=[{"code": "InvalidKeyEndDate", "message": message, "target": "EndDate"}],
    )


# ---- Graph handlers ----------------------------------------------------------------------------
def get_policy(call: Call, match: re.Match[str]) -> Reply:
    authz.require_any(call.principal, READ_ROLES)
    return Reply.data(
        200,
        call.directory.app_management_policy,
        call.context_url("policies/defaultAppManagementPolicy/$entity"),
    )


def patch_policy(call: Call, match: re.Match[str]) -> Reply:
    authz.require_any(call.principal, WRITE_ROLES)
    call.directory.app_management_policy = updated_policy(call.directory.app_management_policy, call.json())
    return Reply.empty(204)


def register(router: Router) -> None:
    router.add("GET", "/policies/defaultAppManagementPolicy", get_policy)
    router.add("PATCH", "/policies/defaultAppManagementPolicy", patch_policy)
