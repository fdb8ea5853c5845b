"""Entra's replication through functions/adapters/graph.py and the local tenant's lag knobs.

A slow replica is no refusal (REFERENCE.md: no SLA): what is still lag when the adapter's window
is over is TransientError (the queue retries), never PermanentError or NotFound, which would fail
the registration and delete its app. A POST /oauth2PermissionGrants answered 409 while the grant
list lags (the SDK's resend of a committed POST, or a re-run) converges on the grant it names.
"""

from __future__ import annotations

import asyncio

import pytest

from functions.core.ports import DelegatedGrant
from functions.core.record.errors import PermanentError, TransientError
from functions.core.record.models import GRAPH_APP_ID
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import Adapters, adapters, app_spec, graph_roles, record_requests

GRANTS = "/v1.0/oauth2PermissionGrants$"
GRANTS_PATH = "/v1.0/oauth2PermissionGrants"
LIST_LAG_MS = 2500  # well inside the adapters' 20 s window


async def _client_and_resource(a: Adapters) -> tuple[str, str]:
    app = await a.graph.upsert_application(a.tenant_id, app_spec("lag"))
    client = await a.graph.ensure_service_principal(a.tenant_id, app.app_id)
    catalog = await a.graph.resource_catalog(a.tenant_id, GRAPH_APP_ID)
    return client, catalog.service_principal_id


async def _grant_when_listed(
    a: Adapters, client: str, resource: str, timeout: float = 15.0
) -> DelegatedGrant:
    deadline = asyncio.get_running_loop().time() + timeout
    while (grant := (await a.graph.delegated_grants(a.tenant_id, client)).get(resource.lower())) is None:
        assert asyncio.get_running_loop().time() < deadline, "the grant was never listed"
        await asyncio.sleep(0.2)
    return grant


def test_a_grant_post_resent_after_a_gateway_timeout_converges(tenant_admin: TenantProcess) -> None:
    """Graph commits the grant and answers 504; the SDK resends; the resend gets 409 while the grant
    list does not show the grant yet. Before: PermanentError (registration failed, app deleted)."""

    async def main() -> None:
        async with adapters(tenant_admin) as a:
            client, resource = await _client_and_resource(a)
            tenant_admin.configure(extra={"consentListLagMs": LIST_LAG_MS})
            tenant_admin.add_fault(504, path_regex=GRANTS, method="POST", count=1, afterCommit=True)
            faults = tenant_admin.stats()["faultsInjected"]
            sent = record_requests(a.graph, a.tenant_id)  # what the adapter sends (the SDK resends below it)
            await a.graph.grant_delegated(a.tenant_id, client, resource, frozenset({"User.Read"}), None)
            # The 504 was served, the SDK's resend got the 409, and the adapter found the grant in the
            # lagging list (GET, GET, ...) and set its scopes (PATCH).
            assert tenant_admin.stats()["faultsInjected"] == faults + 1
            assert sent[:2] == ["POST /v1.0/oauth2PermissionGrants", "GET /v1.0/oauth2PermissionGrants"]
            assert sent[-1].startswith("PATCH /v1.0/oauth2PermissionGrants/")
            grant = await _grant_when_listed(a, client, resource)
            assert grant.scopes == {"User.Read"}

    asyncio.run(main())


def test_a_rerun_that_does_not_see_the_grant_yet_sets_its_scopes(tenant_admin: TenantProcess) -> None:
    """A re-run after a crash lists no grant (the list lags), POSTs, gets 409: the grant it names is
    found once listed and given the scopes the profile wants now."""

    async def main() -> None:
        async with adapters(tenant_admin) as a:
            client, resource = await _client_and_resource(a)
            # A lag no loaded machine outlasts while the list is shown not to have the grant; the
            # tenant reads it at each request, so it is lowered once the re-run has met the lag.
            tenant_admin.configure(extra={"consentListLagMs": 60_000})
            await a.graph.grant_delegated(a.tenant_id, client, resource, frozenset({"User.Read"}), None)
            assert await a.graph.delegated_grants(a.tenant_id, client) == {}  # not listed yet
            sent = record_requests(a.graph, a.tenant_id)
            wanted = frozenset({"User.Read", "Mail.Read"})
            rerun = asyncio.create_task(a.graph.grant_delegated(a.tenant_id, client, resource, wanted, None))
            # Its POST is answered 409 and it reads the grant list, which does not show the grant yet
            # (two GETs: the first one's answer is in), then the lag ends.
            deadline = asyncio.get_running_loop().time() + 15.0
            while sent.count(f"GET {GRANTS_PATH}") < 2 and not rerun.done():
                assert asyncio.get_running_loop().time() < deadline, f"the re-run never listed: {sent}"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(tenant_admin.configure, extra={"consentListLagMs": 0})
            await rerun
            assert sent[:3] == [f"POST {GRANTS_PATH}", f"GET {GRANTS_PATH}", f"GET {GRANTS_PATH}"]
            assert sent[-1].startswith(f"PATCH {GRANTS_PATH}/")
            grant = await _grant_when_listed(a, client, resource)
            assert grant.scopes == wanted

    asyncio.run(main())


def test_a_grant_list_lagging_past_the_window_is_transient(tenant_admin: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a, adapters(tenant_admin, lag_timeout=1.0) as short:
            client, resource = await _client_and_resource(a)
            tenant_admin.configure(extra={"consentListLagMs": 60_000})
            await a.graph.grant_delegated(a.tenant_id, client, resource, frozenset({"User.Read"}), None)
            with pytest.raises(TransientError, match="not listed"):
                await short.graph.grant_delegated(
                    a.tenant_id, client, resource, frozenset({"User.Read"}), None
                )

    asyncio.run(main())


def test_replication_outlasting_the_window_is_transient_and_refusals_stay_permanent(
    tenant_admin: TenantProcess,
) -> None:
    """Each Graph call on a new app or service principal, with the tenant's replication delay longer
    than the adapter's window. Before: PermanentError (service principal, $batch) and NotFound
    (grant POST), so the provisioner failed a good registration."""

    async def main() -> None:
        async with adapters(tenant_admin) as a, adapters(tenant_admin, lag_timeout=0.5) as short:
            pairs = await graph_roles(a.graph, a.tenant_id, 2)
            resource = pairs[0][0]
            tenant_admin.configure(replicationDelayMs=6000)
            app = await a.graph.upsert_application(a.tenant_id, app_spec("lag"))
            with pytest.raises(TransientError, match="does not reference a valid application object"):
                await short.graph.ensure_service_principal(a.tenant_id, app.app_id)

            client = await a.graph.ensure_service_principal(a.tenant_id, app.app_id)  # waits it out
            # The new service principal would stay invisible to consent writes for 6 s more, which
            # three calls on a loaded machine may outlast: the delay, read at each request, is made
            # one no run outlasts for them.
            tenant_admin.configure(replicationDelayMs=600_000)
            with pytest.raises(TransientError, match="replication window"):
                await short.graph.assign_app_roles(a.tenant_id, client, pairs)
            with pytest.raises(TransientError, match="replication window"):
                await short.graph.grant_delegated(
                    a.tenant_id, client, resource, frozenset({"User.Read"}), None
                )
            with pytest.raises(TransientError, match="replication window"):
                await short.graph.app_role_assignments(a.tenant_id, client)

            # Refusals are still refusals: an unknown scope, an unknown app role. Back to 6 s: what is
            # left of it (if anything) is waited out by the adapter's window, then the refusal comes.
            tenant_admin.configure(replicationDelayMs=6000)
            with pytest.raises(PermanentError, match="not a scope"):
                await a.graph.grant_delegated(
                    a.tenant_id, client, resource, frozenset({"No.Such.Scope"}), None
                )
            with pytest.raises(PermanentError, match="was not found"):
                await a.graph.assign_app_roles(a.tenant_id, client, [(resource, app.app_id)])

    asyncio.run(main())
