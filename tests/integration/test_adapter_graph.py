"""functions/adapters/graph.py through msgraph-sdk against the local tenant (Graph v1.0 over HTTPS)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from functions.core.ports import FederatedCredentialSpec, RedirectUris, RequiredResourceAccess
from functions.core.record.errors import NotFound, PermanentError, TransientError
from functions.core.record.models import EXCHANGE_ONLINE_APP_ID, GRAPH_APP_ID
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters, app_spec, graph_roles, record_requests


def test_upsert_is_idempotent_by_unique_name_and_delete_twice_is_fine(tenant: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant) as a:
            catalog = await a.graph.resource_catalog(a.tenant_id, GRAPH_APP_ID)
            spec = app_spec(
                redirect_uris=RedirectUris(web=("https://connector.example/callback",)),
                required_resource_access=(
                    RequiredResourceAccess(
                        GRAPH_APP_ID,
                        app_role_ids=(catalog.app_roles["User.Read.All"].id,),
                        scope_ids=(catalog.scopes["User.Read"].id,),
                    ),
                ),
                notes="INC0012345",
            )
            first = await a.graph.upsert_application(a.tenant_id, spec)
            second = await a.graph.upsert_application(a.tenant_id, spec)
            assert first.created and not second.created
            assert (first.object_id, first.app_id) == (second.object_id, second.app_id)
            found = await a.graph.find_application(a.tenant_id, spec.unique_name)
            assert found is not None and found.object_id == first.object_id
            assert await a.graph.find_application(a.tenant_id, spec.unique_name + "-absent") is None

            client = a.graph.client(a.tenant_id)
            get = client.applications.by_application_id(first.object_id).to_get_request_information()
            app = await a.graph._send(client, "GET", "application", first.object_id, get)
            assert app["signInAudience"] == "AzureADMyOrg"
            assert app["web"]["redirectUris"] == ["https://connector.example/callback"]
            assert app["notes"] == "INC0012345"
            access = {r["id"]: r["type"] for r in app["requiredResourceAccess"][0]["resourceAccess"]}
            assert access == {
                catalog.app_roles["User.Read.All"].id: "Role",
                catalog.scopes["User.Read"].id: "Scope",
            }

            await a.graph.delete_application(a.tenant_id, first.object_id)
            await a.graph.delete_application(a.tenant_id, first.object_id)
            assert await a.graph.find_application(a.tenant_id, spec.unique_name) is None

    asyncio.run(main())


def test_an_application_is_read_by_app_id_with_its_unique_name_and_permissions(tenant: TenantProcess) -> None:
    """What adoption reads before accepting: GET /applications(appId='...'), None for an unknown one."""

    async def main() -> None:
        async with adapters(tenant) as a:
            catalog = await a.graph.resource_catalog(a.tenant_id, GRAPH_APP_ID)
            role, scope = catalog.app_roles["User.Read.All"].id, catalog.scopes["User.Read"].id
            spec = app_spec(
                required_resource_access=(RequiredResourceAccess(GRAPH_APP_ID, (role,), (scope,)),)
            )
            made = await a.graph.upsert_application(a.tenant_id, spec)
            found = await a.graph.application_by_app_id(a.tenant_id, made.app_id)
            assert found is not None
            assert (found.object_id, found.app_id, found.unique_name) == (
                made.object_id,
                made.app_id,
                spec.unique_name,
            )
            assert found.display_name == spec.display_name
            assert found.required_resource_access == (
                RequiredResourceAccess(GRAPH_APP_ID, (role,), (scope,)),
            )
            assert (
                await a.graph.application_by_app_id(a.tenant_id, "11111111-2222-4333-8444-555555555555")
                is None
            )
            await a.graph.delete_application(a.tenant_id, made.object_id)

    asyncio.run(main())


def test_registrar_finds_itself_among_the_owners_of_an_app_it_made(tenant: TenantProcess) -> None:
    """What the adoption's ownership check reads: Registrar's object id (its token's oid) and the
    app's owners; an app gone is NotFound."""

    async def main() -> None:
        async with adapters(tenant) as a:
            me = await a.graph.registrar_principal_id(a.tenant_id)
            client = a.graph.client(a.tenant_id)
            sp = await client.service_principals_with_app_id(tenant.client_id).get()
            assert me == sp.id.lower()
            made = await a.graph.upsert_application(a.tenant_id, app_spec())
            assert me in await a.graph.application_owner_ids(a.tenant_id, made.object_id)
            await a.graph.delete_application(a.tenant_id, made.object_id)
            with pytest.raises(NotFound):
                await a.graph.application_owner_ids(a.tenant_id, made.object_id)

    asyncio.run(main())


def test_service_principal_and_consent_are_idempotent_and_exact(tenant: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant) as a:
            spec = app_spec()
            racers = await asyncio.gather(*(a.graph.upsert_application(a.tenant_id, spec) for _ in range(3)))
            assert len({(r.object_id, r.app_id) for r in racers}) == 1
            assert sum(r.created for r in racers) == 1
            app = racers[0]
            sps = await asyncio.gather(
                *(a.graph.ensure_service_principal(a.tenant_id, app.app_id) for _ in range(3))
            )
            assert len(set(sps)) == 1
            sp = sps[0]
            assert await a.graph.ensure_service_principal(a.tenant_id, app.app_id) == sp

            pairs = await graph_roles(a.graph, a.tenant_id, 25)  # more than one $batch of 20
            await a.graph.assign_app_roles(a.tenant_id, sp, pairs)
            await a.graph.assign_app_roles(a.tenant_id, sp, [*pairs[:5], *pairs[:5]])  # again, duplicated
            assert await a.graph.app_role_assignments(a.tenant_id, sp) == {
                (r.lower(), i.lower()) for r, i in pairs
            }

            graph_sp = pairs[0][0]
            await a.graph.grant_delegated(
                a.tenant_id, sp, graph_sp, frozenset({"User.Read", "Mail.Read"}), None
            )
            grants = await a.graph.delegated_grants(a.tenant_id, sp)
            assert grants[graph_sp.lower()].scopes == {"User.Read", "Mail.Read"}
            # A retry that did not see the first grant (existing=None) converges on the same grant.
            await a.graph.grant_delegated(a.tenant_id, sp, graph_sp, frozenset({"User.Read"}), None)
            narrowed = await a.graph.delegated_grants(a.tenant_id, sp)
            assert list(narrowed) == [graph_sp.lower()]
            assert narrowed[graph_sp.lower()].scopes == {"User.Read"}
            assert narrowed[graph_sp.lower()].grant_id == grants[graph_sp.lower()].grant_id
            await a.graph.grant_delegated(
                a.tenant_id, sp, graph_sp, frozenset(), narrowed[graph_sp.lower()].grant_id
            )
            assert await a.graph.delegated_grants(a.tenant_id, sp) == {}

    asyncio.run(main())


def test_resource_catalog_is_fetched_once_for_concurrent_callers(tenant: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant) as a:
            sent = record_requests(a.graph, a.tenant_id)
            results = await asyncio.gather(
                *(a.graph.resource_catalog(a.tenant_id, EXCHANGE_ONLINE_APP_ID) for _ in range(8))
            )
            by_name = await a.graph.resource_catalog(a.tenant_id, "Office 365 Exchange Online")
            assert sent == ["GET /v1.0/servicePrincipals"] * 2  # by appId (shared by 8 callers), by name
            assert all(r is results[0] for r in results)
            assert by_name == results[0]
            assert "full_access_as_app" in by_name.app_roles
            assert by_name.app_roles["full_access_as_app"].id == "dc890d15-9560-4a4c-9b7f-a736ec74ec40"
            with pytest.raises(NotFound):
                await a.graph.resource_catalog(a.tenant_id, "No Such Resource")

    asyncio.run(main())


def test_password_and_federated_credentials(tenant: TenantProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issued_values: list[str] = []

    async def main() -> None:
        async with adapters(tenant) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec())
            await a.graph.ensure_service_principal(a.tenant_id, app.app_id)
            start = datetime.now(UTC).replace(microsecond=0)
            issued = await a.graph.add_password(
                a.tenant_id, app.object_id, "gen-1", start, start + timedelta(days=30)
            )
            issued_values.append(issued.secret.reveal())
            assert issued.secret.reveal() not in repr(issued)
            await a.probe.try_secret(
                a.tenant_id, app.app_id, issued.secret
            )  # it works as a connector uses it

            spec = FederatedCredentialSpec(
                name="gen-1-fic", issuer="https://token.example", subject="system:sa:x"
            )
            fic = await a.graph.add_federated_credential(a.tenant_id, app.object_id, spec)
            assert await a.graph.add_federated_credential(a.tenant_id, app.object_id, spec) == fic

            creds = {(c.kind, c.key_id) for c in await a.graph.list_credentials(a.tenant_id, app.object_id)}
            assert creds == {("password", issued.key_id), ("federated", fic)}
            await a.graph.remove_password(a.tenant_id, app.object_id, issued.key_id)
            await a.graph.remove_password(a.tenant_id, app.object_id, issued.key_id)
            creds_after = await a.graph.list_credentials(a.tenant_id, app.object_id)
            assert [(c.kind, c.key_id) for c in creds_after] == [("federated", fic)]

    asyncio.run(main())
    assert issued_values and issued_values[0] not in caplog.text
    assert tenant.client_secret not in caplog.text


def test_throttling_within_the_sdk_retries_is_survived_beyond_it_is_transient(
    tenant_admin: TenantProcess,
) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a:
            spec = app_spec()
            only_this_app = f"/v1.0/applications.*{spec.unique_name}"  # other tests' traffic is untouched
            rule = tenant_admin.add_fault(
                429, path_regex=only_this_app, method="PATCH", count=2, retryAfter=1
            )
            created = await a.graph.upsert_application(a.tenant_id, spec)  # 429, 429, then through
            assert created.created
            remaining = [r for r in tenant_admin.admin("GET", "faults")["value"] if r["id"] == rule["id"]]
            assert remaining in ([], [{**rule, "count": 0}])  # both 429s were served to this call

            tenant_admin.add_fault(429, path_regex=only_this_app, method="GET", count=10, retryAfter=1)
            with pytest.raises(TransientError) as raised:
                await a.graph.find_application(a.tenant_id, spec.unique_name)
            assert raised.value.retry_after == timedelta(seconds=1)

    asyncio.run(main())


def test_batch_items_throttled_by_the_write_budget_are_retried_alone(tenant_admin: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a:
            app = await a.graph.upsert_application(a.tenant_id, app_spec())
            sp = await a.graph.ensure_service_principal(a.tenant_id, app.app_id)
            pairs = await graph_roles(a.graph, a.tenant_id, 80)
            # A write budget of 75 per 150 s (refilling one write per 2 s): four $batch requests of
            # 20 get most items through and some answered 429 with Retry-After, item by item.
            tenant_admin.configure(throttleScale=0.025)
            tenant_admin.admin("POST", "throttling/reset")
            sent = record_requests(a.graph, a.tenant_id)
            await a.graph.assign_app_roles(a.tenant_id, sp, pairs)
            tenant_admin.configure(throttleScale=1.0)
            # 4 batches of 20, then more for the items throttled inside them.
            assert sent.count("POST /v1.0/$batch") > 4
            assert await a.graph.app_role_assignments(a.tenant_id, sp) == {
                (r.lower(), i.lower()) for r, i in pairs
            }

    asyncio.run(main())


async def eventually_equal(
    read: Callable[[], Awaitable[object]], expected: object, timeout: float = 15.0
) -> None:
    """Poll `read` until it returns `expected` (directory lists lag new objects), bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still {value!r}"
        await asyncio.sleep(0.2)


def test_replication_delay_after_create_is_waited_out(tenant_admin: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a:
            pairs = await graph_roles(a.graph, a.tenant_id, 3)
            tenant_admin.configure(replicationDelayMs=1500)
            app = await a.graph.upsert_application(a.tenant_id, app_spec())
            sp = await a.graph.ensure_service_principal(
                a.tenant_id, app.app_id
            )  # NoBackingApplicationObject first
            await a.graph.assign_app_roles(a.tenant_id, sp, pairs)  # principal not visible yet at first
            start = datetime.now(UTC)
            issued = await a.graph.add_password(
                a.tenant_id, app.object_id, "gen-1", start, start + timedelta(days=1)
            )
            assert issued.key_id
            expected = {(r.lower(), i.lower()) for r, i in pairs}
            await eventually_equal(lambda: a.graph.app_role_assignments(a.tenant_id, sp), expected)
            # Re-running the step while the list still lags is harmless: "already exists" is success.
            await a.graph.assign_app_roles(a.tenant_id, sp, pairs)

    asyncio.run(main())


def test_forbidden_is_permanent_with_graphs_code(tenant_admin: TenantProcess) -> None:
    async def main() -> None:
        async with adapters(tenant_admin) as a:
            spec = app_spec()
            tenant_admin.add_fault(
                403, path_regex=f"/v1.0/applications.*{spec.unique_name}", method="PATCH", count=1
            )
            with pytest.raises(PermanentError) as raised:
                await a.graph.upsert_application(a.tenant_id, spec)
            assert raised.value.code == "Authorization_RequestDenied"

    asyncio.run(main())


def test_concurrent_calls_on_a_fresh_client_keep_their_own_keys(tenant: TenantProcess) -> None:
    """msgraph-sdk's key builders share the client's path parameters: a cold client hit by many
    registrations at once must still patch, find and create each one under its own key."""

    async def main() -> None:
        async with adapters(tenant) as a:
            specs = [app_spec("race") for _ in range(12)]
            refs = await asyncio.gather(*(a.graph.upsert_application(a.tenant_id, s) for s in specs))
            found = await asyncio.gather(
                *(a.graph.find_application(a.tenant_id, s.unique_name) for s in specs)
            )
            principals = await asyncio.gather(
                *(a.graph.ensure_service_principal(a.tenant_id, r.app_id) for r in refs)
            )

            assert all(r.created for r in refs)
            assert len({r.object_id for r in refs}) == len(specs)
            assert [f.object_id if f else None for f in found] == [r.object_id for r in refs]
            assert len(set(principals)) == len(specs)
            client = a.graph.client(a.tenant_id)
            for ref, principal in zip(refs, principals, strict=True):
                get = client.service_principals.by_service_principal_id(
                    principal
                ).to_get_request_information()
                sp = await a.graph._send(client, "GET", "servicePrincipal", principal, get)
                assert sp["appId"] == ref.app_id
            for ref in refs:
                await a.graph.delete_application(a.tenant_id, ref.object_id)

    asyncio.run(main())
