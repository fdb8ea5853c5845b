"""The Directory calls of an adoption's permissions step (functions/adapters/graph_permissions.py and
the consent it reuses), through msgraph-sdk against the local tenant: an app a person made, which
Registrar may change only once it owns it (Application.ReadWrite.OwnedBy)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from msgraph.generated.models.application import Application
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.required_resource_access import RequiredResourceAccess as GraphAccess
from msgraph.generated.models.resource_access import ResourceAccess
from msgraph.generated.models.service_principal import ServicePrincipal

from functions.core.ports import RequiredResourceAccess
from functions.core.record.errors import NotFound, PermanentError
from functions.core.record.models import GRAPH_APP_ID
from tests.fixtures.tenant import TenantProcess
from tests.integration.adapter_support import adapters
from tests.integration.tenant_clients import async_secret_credential, graph_client

DIRECTORY_OBJECTS = "https://graph.microsoft.com/v1.0/directoryObjects/"


def test_an_adopted_apps_permissions_are_read_set_granted_and_removed_idempotently(
    tenant: TenantProcess,
) -> None:
    async def main() -> None:
        admin_credential = async_secret_credential(
            tenant, clientId=tenant["adminClientId"], clientSecret=tenant["adminClientSecret"]
        )
        async with adapters(tenant) as a, graph_client(tenant, admin_credential) as admin:
            graph = await a.graph.resource_catalog(a.tenant_id, GRAPH_APP_ID)
            read_all = graph.app_roles["Sites.Read.All"].id
            read_write = graph.app_roles["Sites.ReadWrite.All"].id
            users = graph.app_roles["User.Read.All"].id
            # A person's app, declaring the seeds' Read beside ReadWrite, with no service principal yet.
            made = await admin.applications.post(
                Application(
                    display_name=f"hand-made-{uuid.uuid4().hex[:8]}",
                    required_resource_access=[
                        GraphAccess(
                            resource_app_id=GRAPH_APP_ID,
                            resource_access=[
                                ResourceAccess(id=uuid.UUID(read_all), type="Role"),
                                ResourceAccess(id=uuid.UUID(read_write), type="Role"),
                            ],
                        )
                    ],
                )
            )
            assert made is not None and made.id and made.app_id
            assert await a.graph.service_principal_of(a.tenant_id, made.app_id) is None  # never made here
            wanted = (RequiredResourceAccess(GRAPH_APP_ID, (read_all, users)),)

            with pytest.raises(PermanentError) as denied:  # OwnedBy: not Registrar's app yet
                await a.graph.set_required_resource_access(a.tenant_id, made.id, wanted)
            assert denied.value.code == "Authorization_RequestDenied"

            me = await a.graph.registrar_principal_id(a.tenant_id)
            await admin.applications.by_application_id(made.id).owners.ref.post(
                ReferenceCreate(odata_id=DIRECTORY_OBJECTS + me)
            )
            for _ in range(2):  # PATCH sets the value: twice is the same
                await a.graph.set_required_resource_access(a.tenant_id, made.id, wanted)
                found = await a.graph.application_by_app_id(a.tenant_id, made.app_id)
                assert found is not None and found.required_resource_access == wanted

            sp = await admin.service_principals.post(ServicePrincipal(app_id=made.app_id))
            assert sp is not None and sp.id
            assert await a.graph.service_principal_of(a.tenant_id, made.app_id) == sp.id.lower()
            assert await a.graph.resource_app_id_of(a.tenant_id, graph.service_principal_id) == GRAPH_APP_ID
            with pytest.raises(NotFound):
                await a.graph.resource_app_id_of(a.tenant_id, str(uuid.uuid4()))

            pairs = [(graph.service_principal_id, read_all), (graph.service_principal_id, read_write)]
            await a.graph.assign_app_roles(a.tenant_id, sp.id, pairs)
            await a.graph.assign_app_roles(a.tenant_id, sp.id, pairs)  # Graph's 400 "already exists": done
            held = await a.graph.app_role_assignments(a.tenant_id, sp.id)
            assert {r for _, r in held} == {read_all.lower(), read_write.lower()}

            extra = [(graph.service_principal_id, read_write)]
            await a.graph.remove_app_roles(a.tenant_id, sp.id, extra)
            await a.graph.remove_app_roles(a.tenant_id, sp.id, extra)  # gone already: done
            held = await a.graph.app_role_assignments(a.tenant_id, sp.id)
            assert {r for _, r in held} == {read_all.lower()}

            scopes = frozenset({"User.Read", "Mail.Read"})
            await a.graph.grant_delegated(a.tenant_id, sp.id, graph.service_principal_id, scopes, None)
            grant = (await a.graph.delegated_grants(a.tenant_id, sp.id))[graph.service_principal_id.lower()]
            assert grant.scopes == scopes
            await a.graph.grant_delegated(
                a.tenant_id, sp.id, graph.service_principal_id, frozenset(), grant.grant_id
            )  # exact with no scope left: the grant goes
            assert await a.graph.delegated_grants(a.tenant_id, sp.id) == {}

            await admin.applications.by_application_id(made.id).delete()

    asyncio.run(main())
