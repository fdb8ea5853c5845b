"""The consent half of the Directory port: app role assignments (application permissions, in
$batch requests: graph_batch.py) and oauth2PermissionGrants (delegated permissions).

A mixin of GraphDirectory (graph.py), which provides client(), _send(), _list(), _config() and
_lag_timeout.

Grant lists lag their writes (REFERENCE.md: 30-60 s, no SLA), so a POST answered 409 (the grant
exists) may name a grant the list does not show yet: that is waited out within the replication
window and is TransientError past it, never a refusal that would fail the registration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from functions.adapters.graph_batch import assign_app_roles
from functions.adapters.graph_errors import LAG_RETRY_AFTER, exists_lag, replication_lag
from functions.adapters.graph_wire import GraphWire
from functions.core.ports import DelegatedGrant
from functions.core.record.errors import NotFound, PermanentError, TransientError


class GraphConsent(GraphWire):
    """appRoleAssignments and AllPrincipals oauth2PermissionGrants of a client service principal."""

    async def app_role_assignments(self, tenant_id: str, principal_id: str) -> set[tuple[str, str]]:
        client = self.client(tenant_id)
        builder = client.service_principals.by_service_principal_id(principal_id).app_role_assignments
        items = await self._list(client, "appRoleAssignments of", principal_id, builder, None, exists_lag)
        return {(str(a["resourceId"]).lower(), str(a["appRoleId"]).lower()) for a in items}

    async def assign_app_roles(
        self, tenant_id: str, principal_id: str, assignments: Sequence[tuple[str, str]]
    ) -> None:
        if assignments:
            await assign_app_roles(
                self.client(tenant_id),
                principal_id,
                assignments,
                lag_timeout=self._lag_timeout,
                on_throttled=lambda headers: self.pacer.item_throttled(tenant_id, headers),
            )

    async def delegated_grants(self, tenant_id: str, client_id: str) -> Mapping[str, DelegatedGrant]:
        client = self.client(tenant_id)
        quoted = client_id.replace("'", "''")
        config = self._config(filter=f"clientId eq '{quoted}'")
        grants = await self._list(
            client, "oauth2PermissionGrants of", client_id, client.oauth2_permission_grants, config
        )
        return {
            str(g["resourceId"]).lower(): DelegatedGrant(
                grant_id=str(g["id"]),
                resource_service_principal_id=str(g["resourceId"]).lower(),
                scopes=frozenset((g.get("scope") or "").split()),
            )
            for g in grants
            if str(g.get("consentType") or "").lower() == "allprincipals"
        }

    async def grant_delegated(
        self, tenant_id: str, client_id: str, resource_id: str, scopes: frozenset[str], existing: str | None
    ) -> None:
        """PATCH (or DELETE, for no scopes) the existing grant; POST one when there is none. A 409 on
        the POST means a grant for this client and resource exists: the SDK resent a POST Graph had
        committed (a 504 after the write), or a re-run after a crash did not see it in the lagging
        list. Its id is read from the list, waiting out the lag, and its scopes are then set."""
        for _ in range(3):  # a grant deleted by someone else meanwhile: POST again (bounded)
            if existing is not None and await self._set_grant_scopes(tenant_id, existing, scopes):
                return
            if not scopes or await self._post_grant(tenant_id, client_id, resource_id, scopes):
                return
            existing = (await self._listed_grant(tenant_id, client_id, resource_id)).grant_id
        raise TransientError(
            f"Graph: the oauth2PermissionGrant of {client_id} on {resource_id} keeps vanishing"
        )

    async def _set_grant_scopes(self, tenant_id: str, grant_id: str, scopes: frozenset[str]) -> bool:
        """Exactly `scopes` on the grant (no scopes: the grant itself goes). False: it is gone."""
        from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant

        client = self.client(tenant_id)
        item = client.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant_id)
        request = (
            item.to_patch_request_information(OAuth2PermissionGrant(scope=" ".join(sorted(scopes))))
            if scopes
            else item.to_delete_request_information()
        )
        try:
            await self._send(client, request.http_method.name, "oauth2PermissionGrant", grant_id, request)
        except NotFound:
            return False
        return True

    async def _post_grant(
        self, tenant_id: str, client_id: str, resource_id: str, scopes: frozenset[str]
    ) -> bool:
        """POST an AllPrincipals grant. False: one exists already (409).

        The SDK may resend this POST (429/503/504): a resend of a committed grant answers 409, which
        is handled as any 409 is, so unlike addPassword it needs no protection from the RetryHandler.
        Either side may not be replicated yet: a 404 or NoBackingApplicationObject is waited out,
        and still answered past the window it is a TransientError."""
        from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant

        client = self.client(tenant_id)
        body = OAuth2PermissionGrant(
            client_id=client_id,
            consent_type="AllPrincipals",
            resource_id=resource_id,
            scope=" ".join(sorted(scopes)),
        )
        request = client.oauth2_permission_grants.to_post_request_information(body)
        try:
            await self._send(client, "POST", "oauth2PermissionGrant for", client_id, request, replication_lag)
        except PermanentError as error:
            if "409" not in str(error):
                raise
            return False
        return True

    async def _listed_grant(self, tenant_id: str, client_id: str, resource_id: str) -> DelegatedGrant:
        """The grant a 409 says exists, once the grant list shows it. The list lags its writes (30-60 s
        in Graph): not listed within the replication window is TransientError (the queue retries),
        never a refusal."""
        deadline = time.monotonic() + self._lag_timeout
        delay = 0.5
        while True:
            found = (await self.delegated_grants(tenant_id, client_id)).get(resource_id.lower())
            if found is not None:
                return found
            if time.monotonic() + delay > deadline:
                raise TransientError(
                    f"Graph: the oauth2PermissionGrant of {client_id} on {resource_id} exists (409) "
                    f"but is not listed after {self._lag_timeout:g} s (the grant list lags)",
                    retry_after=LAG_RETRY_AFTER,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
