"""The tenant's default app management policy, read for the Directory port's credential_lifetime_limit.

GET /policies/defaultAppManagementPolicy (msgraph-sdk: client.policies.default_app_management_policy)
needs Policy.Read.All. Read once per tenant and kept for policy_ttl (an hour by default): policies
change rarely and every rotation in a tenant asks. Without Policy.Read.All (403) the limit is
unknown: Registrar falls back to its configured maximum and warns once per tenant.

Conservative on purpose: a lifetime restriction is applied to every app, also to apps created
before its restrictForAppsCreatedAfterDateTime (a shorter credential is always accepted), and
per-app policies (appManagementPolicies) are not read. A year counts as 365 days and a month as
30 (functions.core.record.durations): Entra's own reading of P1Y or P12M is not documented.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from functions.adapters.graph_wire import GraphWire
from functions.core.record.durations import parse_duration
from functions.core.record.errors import PermanentError, RegistrarError, TransientError
from functions.core.record.models import CredentialType

log = logging.getLogger(__name__)

_RESTRICTIONS = {
    CredentialType.SECRET: ("passwordCredentials", "passwordLifetime"),
    CredentialType.CERTIFICATE: ("keyCredentials", "asymmetricKeyLifetime"),
}
Limits = dict[CredentialType, timedelta]
# Entra's 400 for a new credential longer than the app management policy allows.
LIFETIME_REFUSED = "CredentialInvalidLifetimeAsPerAppPolicy"


def lifetime_limits(policy: dict[str, Any]) -> Limits:
    """The maximum lifetime per credential type that an enabled tenant policy sets for applications."""
    if not policy.get("isEnabled"):
        return {}
    restrictions = policy.get("applicationRestrictions") or {}
    limits: Limits = {}
    for kind, (collection, restriction_type) in _RESTRICTIONS.items():
        for item in restrictions.get(collection) or []:
            if item.get("restrictionType") != restriction_type or item.get("state") == "disabled":
                continue
            try:
                limits[kind] = parse_duration(str(item.get("maxLifetime") or ""))
            except ValueError:
                log.warning("ignoring the tenant policy's unreadable maxLifetime %r", item.get("maxLifetime"))
    return limits


class GraphPolicy(GraphWire):
    """Mixin of GraphDirectory (graph.py), which provides client() and _send()."""

    policy_ttl: float = 3600.0
    _policy_cache: dict[str, tuple[float, Limits]]
    _policy_denied: set[str]

    async def credential_lifetime_limit(self, tenant_id: str, kind: CredentialType) -> timedelta | None:
        key = tenant_id.lower()
        cache = self.__dict__.setdefault("_policy_cache", {})
        cached = cache.get(key)
        if cached is None or cached[0] <= time.monotonic():
            cached = cache[key] = (time.monotonic() + self.policy_ttl, await self._read_limits(tenant_id))
        return cached[1].get(kind)

    async def lifetime_refused(
        self, tenant_id: str, kind: CredentialType, error: RegistrarError
    ) -> RegistrarError:
        """What to raise for `error` from a write of a new `kind` credential. Entra's 400
        CredentialInvalidLifetimeAsPerAppPolicy after the tenant lowered its policy within the
        cache's hour: the tenant's entry is dropped and the policy read again; when the limit for
        `kind` changed, TransientError, so the retry computes the end date with the fresh limit.
        A refusal under the very limit the end date was computed with stays PermanentError
        (a policy Registrar does not read, such as a per-app one: retrying cannot help)."""
        if not isinstance(error, PermanentError) or error.code != LIFETIME_REFUSED:
            return error
        stale = self.__dict__.setdefault("_policy_cache", {}).pop(tenant_id.lower(), None)
        fresh = await self.credential_lifetime_limit(tenant_id, kind)
        if stale is not None and stale[1].get(kind) == fresh:
            return error
        log.warning(
            "tenant %s lowered its app management policy (%s maximum now %s): retrying with it",
            tenant_id,
            kind.value,
            fresh,
        )
        return TransientError(f"{error} (the tenant's policy changed: retrying with the new maximum)")

    async def _read_limits(self, tenant_id: str) -> Limits:
        client = self.client(tenant_id)
        request = client.policies.default_app_management_policy.to_get_request_information()
        try:
            policy = await self._send(client, "GET", "defaultAppManagementPolicy of", tenant_id, request)
        except PermanentError as error:
            if error.code != "Authorization_RequestDenied" and "403" not in str(error):
                raise
            denied = self.__dict__.setdefault("_policy_denied", set())
            if tenant_id.lower() not in denied:
                denied.add(tenant_id.lower())
                log.warning(
                    "cannot read the app management policy of tenant %s (the registrar lacks the Graph "
                    "app role Policy.Read.All): credential lifetimes follow the configured maximum only",
                    tenant_id,
                )
            return {}
        return lifetime_limits(policy or {})
