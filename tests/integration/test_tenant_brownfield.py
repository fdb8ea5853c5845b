"""The local tenant, brownfield (issue 15, section 3): the administrator identity, hand-made apps,
owners/$ref by an admin, OwnedBy refused on an app it does not own. Through msgraph-sdk."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from azure.identity import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.reference_create import ReferenceCreate

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import GRAPH_SCOPE, credential, graph_client, odata_error

pytestmark = pytest.mark.asyncio


def client_for(identity: dict[str, Any], client_id: str, secret: str) -> GraphServiceClient:
    """msgraph-sdk for an identity of any tenant the server hosts (the startup-line keys)."""
    secret_credential = ClientSecretCredential(
        identity["tenantId"],
        client_id,
        secret,
        authority=identity["authority"],
        disable_instance_discovery=True,
    )
    client = GraphServiceClient(secret_credential, scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = identity["graphUrl"]
    return client


def admin_client(identity: dict[str, Any]) -> GraphServiceClient:
    return client_for(identity, identity["adminClientId"], identity["adminClientSecret"])


def registrar_client(identity: dict[str, Any]) -> GraphServiceClient:
    return client_for(identity, identity["clientId"], identity["clientSecret"])


async def all_apps(client: Any) -> list[Application]:
    query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(top=999)
    page = await client.applications.get(RequestConfiguration(query_parameters=query))
    found = list(page.value or [])
    while page.odata_next_link:
        page = await client.applications.with_url(page.odata_next_link).get()
        found += page.value or []
    return found


def test_startup_line_names_the_administrator_apart_from_registrar(tenant: TenantProcess) -> None:
    assert tenant["adminClientId"] and tenant["adminClientId"] != tenant.client_id
    token = credential(tenant, tenant["adminClientId"], tenant["adminClientSecret"]).get_token(GRAPH_SCOPE)
    admin_roles = set(jwt.decode(token.token, options={"verify_signature": False})["roles"])
    assert {"Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All"} <= admin_roles
    token = credential(tenant).get_token(GRAPH_SCOPE)
    registrar_roles = set(jwt.decode(token.token, options={"verify_signature": False})["roles"])
    assert "Application.ReadWrite.All" not in registrar_roles  # Registrar never acts as the admin


async def test_brownfield_apps_are_hand_made_and_out_of_registrar_reach(tenant: TenantProcess) -> None:
    identity = tenant.admin("POST", "tenants", {})
    filled = tenant.admin("POST", "brownfield", {"tenantId": identity["tenantId"], "count": 40})
    assert filled["applications"] == 40 and filled["secrets"] + filled["certificates"] > 40

    registrar = registrar_client(identity)
    apps = [a for a in await all_apps(registrar) if "devstack" not in (a.tags or [])]
    assert len(apps) == 40
    ends = [
        c.end_date_time for a in apps for c in [*(a.password_credentials or []), *(a.key_credentials or [])]
    ]
    now = datetime.now(UTC)
    assert any(end < now for end in ends), "some credentials expired"
    assert any(end.year == 2299 for end in ends), "some 'Never' secrets"
    assert {a.sign_in_audience for a in apps} == {"AzureADMyOrg", "AzureADMultipleOrgs"}
    assert all(a.required_resource_access for a in apps)
    assert all(c.secret_text is None for a in apps for c in a.password_credentials or [])

    ownerless = 0
    me = await registrar.service_principals_with_app_id(identity["clientId"]).get()
    for app in apps[:12]:
        owners = await registrar.applications.by_application_id(app.id).owners.get()
        ids = {o.id for o in owners.value or []}
        assert me.id not in ids
        ownerless += not ids
    assert ownerless, "some apps have no owner"

    target = apps[0]
    with pytest.raises(ODataError) as caught:
        await registrar.applications.by_application_id(target.id).patch(Application(notes="mine now"))
    assert odata_error(caught)[:2] == (403, "Authorization_RequestDenied")

    # The administrator adds Registrar as an owner (POST owners/$ref): then OwnedBy may write.
    admin = admin_client(identity)
    reference = ReferenceCreate(odata_id=f"{identity['graphUrl']}/directoryObjects/{me.id}")
    await admin.applications.by_application_id(target.id).owners.ref.post(reference)
    await registrar.applications.by_application_id(target.id).patch(Application(notes="mine now"))
    again = await registrar.applications.by_application_id(target.id).get()
    assert again.notes == "mine now"
    # Registrar itself may not add owners (OwnedBy is not enough, even on an app it owns).
    with pytest.raises(ODataError) as caught:
        await registrar.applications.by_application_id(target.id).owners.ref.post(reference)
    assert odata_error(caught)[0] == 403


async def test_brownfield_from_the_command_line(make_tenant_process: Any) -> None:
    process = make_tenant_process(brownfield=25, brownfield_service_principals=10)
    client = graph_client(process)
    apps = [a for a in await all_apps(client) if "devstack" not in (a.tags or [])]
    assert len(apps) == 25
    sps = await client.service_principals.get()
    hand_made = [sp for sp in sps.value or [] if sp.app_id in {a.app_id for a in apps}]
    assert len(hand_made) == 10
    assert process["adminClientSecret"] not in process.log_path.read_text()


async def test_brownfield_of_chosen_connectors_cycles_through_them(tenant: TenantProcess) -> None:
    """What the demo asks for: a handful of apps of the connectors it names, in that order."""
    identity = tenant.admin("POST", "tenants", {})
    chosen = ["codetwo-backup-exchange", "m365-usage-connector"]
    filled = tenant.admin(
        "POST", "brownfield", {"tenantId": identity["tenantId"], "count": 3, "connectors": chosen}
    )
    assert filled["applications"] == 3
    apps = [a for a in await all_apps(registrar_client(identity)) if "devstack" not in (a.tags or [])]
    titles = sorted(str(a.display_name) for a in apps)
    assert titles == [
        "CodeTwo Backup for Exchange Online (1)",
        "CodeTwo Backup for Exchange Online (3)",
        "Microsoft 365 usage connector (2)",
    ], titles


def test_brownfield_admin_api_refuses_bad_input(tenant: TenantProcess) -> None:
    import urllib.error

    for body, status in (
        ({}, 400),
        ({"count": -1}, 400),
        ({"count": "3"}, 400),
        ({"count": 1, "tenantId": "nope"}, 404),
        ({"count": 1, "connectors": "codetwo-backup-exchange"}, 400),
        ({"count": 1, "connectors": ["no-such-connector"]}, 400),
    ):
        with pytest.raises(urllib.error.HTTPError) as caught:
            tenant.admin("POST", "brownfield", body)
        assert caught.value.code == status, body
