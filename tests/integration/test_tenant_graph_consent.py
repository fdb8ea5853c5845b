"""Service principals, consent and authorization on the local tenant, through msgraph-sdk."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.app_role import AppRole
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.oauth2_permission_grants.oauth2_permission_grants_request_builder import (
    Oauth2PermissionGrantsRequestBuilder,
)
from msgraph.generated.service_principals.service_principals_request_builder import (
    ServicePrincipalsRequestBuilder,
)

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import (
    GRAPH_APP_ID,
    GRAPH_SCOPE,
    credential,
    graph_client,
    new_identity,
    odata_error,
    unique,
)

EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
SHAREPOINT_APP_ID = "00000003-0000-0ff1-ce00-000000000000"
SITES_READ_ALL = "d13f72ca-a275-4b96-b789-48ebcc4da984"
FULL_ACCESS_AS_APP = "dc890d15-9560-4a4c-9b7f-a736ec74ec40"


@dataclass(frozen=True)
class NewApp:
    id: str
    app_id: str
    display_name: str
    sp_id: str
    service_principal_names: list[str]


async def app_with_sp(client: GraphServiceClient) -> NewApp:
    app = await client.applications.post(
        Application(display_name=unique("consent"), sign_in_audience="AzureADMyOrg")
    )
    assert app is not None and app.id and app.app_id and app.display_name
    sp = await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    assert sp is not None and sp.id and sp.app_id == app.app_id and sp.display_name == app.display_name
    return NewApp(app.id, app.app_id, app.display_name, sp.id, list(sp.service_principal_names or []))


async def test_seeded_resources_carry_the_catalogue_permissions(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    graph = await client.service_principals_with_app_id(GRAPH_APP_ID).get()
    sharepoint = await client.service_principals_with_app_id(SHAREPOINT_APP_ID).get()
    exchange = await client.service_principals_with_app_id(EXCHANGE_APP_ID).get()
    assert graph is not None and graph.display_name == "Microsoft Graph"
    assert len(graph.app_roles or []) == 716 and len(graph.oauth2_permission_scopes or []) == 807
    assert sharepoint is not None and str(SITES_READ_ALL) in {str(r.id) for r in sharepoint.app_roles or []}
    assert exchange is not None
    assert {r.value: str(r.id) for r in exchange.app_roles or []}["full_access_as_app"] == FULL_ACCESS_AS_APP

    config = RequestConfiguration(
        query_parameters=ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
            filter="servicePrincipalNames/any(n:n eq 'https://vault.azure.net')",
            select=["id", "appId", "displayName"],
        )
    )
    vault = await client.service_principals.get(config)
    assert vault is not None and [(s.app_id, s.display_name) for s in vault.value or []] == [
        ("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Azure Key Vault")
    ]


async def test_service_principal_creation_and_duplicate(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await app_with_sp(client)
    assert app.app_id in app.service_principal_names
    by_app_id = await client.service_principals_with_app_id(app.app_id).get()
    assert by_app_id is not None and by_app_id.id == app.sp_id

    with pytest.raises(ODataError) as caught:
        await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    assert odata_error(caught)[:2] == (409, "Request_MultipleObjectsWithSameKeyValue")
    with pytest.raises(ODataError) as caught:
        await client.service_principals.post(ServicePrincipal(app_id=str(uuid.uuid4())))
    status, code, message = odata_error(caught)
    assert (status, code) == (
        400,
        "Request_BadRequest",
    ) and "does not reference a valid application" in message


async def test_replication_delay_hides_new_objects_from_reads_and_dependent_writes(
    tenant_admin: TenantProcess,
) -> None:
    client = graph_client(tenant_admin)
    tenant_admin.configure(replicationDelayMs=4000)  # wide: the first calls must land inside it

    app = await client.applications.post(Application(display_name=unique("replication")))
    assert app is not None and app.id and app.app_id

    with pytest.raises(ODataError) as caught:
        await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    status, code, message = odata_error(caught)
    assert (status, code) == (400, "Request_BadRequest")
    assert (
        message
        == f"The appId '{app.app_id}' of the service principal does not reference a valid application object."
    )
    with pytest.raises(ODataError) as caught:
        await client.applications.by_application_id(app.id).patch(Application(notes="too early"))
    assert odata_error(caught)[:2] == (404, "Request_ResourceNotFound")

    deadline = time.monotonic() + 20
    while True:  # retry as a client must, bounded
        try:
            sp = await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
            break
        except ODataError as error:
            assert odata_error(error)[0] == 400 and time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert sp is not None and sp.app_id == app.app_id
    fetched = await client.applications.by_application_id(app.id).get()
    assert fetched is not None and fetched.id == app.id


async def test_app_role_assignment_grants_the_role_in_tokens(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await app_with_sp(client)
    secret = await client.applications.by_application_id(app.id).add_password.post(
        AddPasswordPostRequestBody()
    )
    sharepoint = await client.service_principals_with_app_id(SHAREPOINT_APP_ID).get()
    assert sharepoint is not None and sharepoint.id and secret is not None and secret.secret_text
    assigned_to = client.service_principals.by_service_principal_id(sharepoint.id).app_role_assigned_to

    assignment = await assigned_to.post(
        AppRoleAssignment(
            principal_id=uuid.UUID(app.sp_id),
            resource_id=uuid.UUID(sharepoint.id),
            app_role_id=uuid.UUID(SITES_READ_ALL),
        )
    )

    assert assignment is not None and assignment.id
    assert len(base64.urlsafe_b64decode(assignment.id + "=")) == 32  # base64url, as Entra's ids
    assert assignment.principal_display_name == app.display_name
    assert assignment.resource_display_name == "Office 365 SharePoint Online"
    token = (
        credential(tenant, app.app_id, secret.secret_text).get_token(f"{SHAREPOINT_APP_ID}/.default").token
    )
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["Sites.Read.All"]
    mine = await client.service_principals.by_service_principal_id(app.sp_id).app_role_assignments.get()
    assert mine is not None and [a.id for a in mine.value or []] == [assignment.id]

    with pytest.raises(ODataError) as caught:
        await assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(app.sp_id),
                resource_id=uuid.UUID(sharepoint.id),
                app_role_id=uuid.UUID(SITES_READ_ALL),
            )
        )
    status, code, message = odata_error(caught)
    assert (status, code, message) == (
        400,
        "Request_BadRequest",
        "Permission being assigned already exists on the object",
    )
    with pytest.raises(ODataError) as caught:  # a Graph role id is not a SharePoint role
        await assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(app.sp_id),
                resource_id=uuid.UUID(sharepoint.id),
                app_role_id=uuid.uuid4(),
            )
        )
    assert odata_error(caught)[0] == 400

    await assigned_to.by_app_role_assignment_id(assignment.id).delete()
    listed = await assigned_to.get()
    assert listed is not None and assignment.id not in {a.id for a in listed.value or []}


async def test_oauth2_permission_grants(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await app_with_sp(client)
    graph = await client.service_principals_with_app_id(GRAPH_APP_ID).get()
    assert graph is not None and graph.id

    grant = await client.oauth2_permission_grants.post(
        OAuth2PermissionGrant(
            client_id=app.sp_id,
            consent_type="AllPrincipals",
            resource_id=graph.id,
            scope="User.Read Mail.Read",
        )
    )
    assert (
        grant is not None and grant.id and grant.principal_id is None and grant.scope == "User.Read Mail.Read"
    )
    with pytest.raises(ODataError) as caught:
        await client.oauth2_permission_grants.post(
            OAuth2PermissionGrant(
                client_id=app.sp_id, consent_type="AllPrincipals", resource_id=graph.id, scope="User.Read"
            )
        )
    assert odata_error(caught)[0] == 409

    await client.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant.id).patch(
        OAuth2PermissionGrant(scope="User.Read Mail.Read Files.Read.All")
    )
    config = RequestConfiguration(
        query_parameters=Oauth2PermissionGrantsRequestBuilder.Oauth2PermissionGrantsRequestBuilderGetQueryParameters(
            filter=f"clientId eq '{app.sp_id}' and resourceId eq '{graph.id}'"
        )
    )
    listed = await client.oauth2_permission_grants.get(config)
    assert listed is not None and [g.scope for g in listed.value or []] == [
        "User.Read Mail.Read Files.Read.All"
    ]

    with pytest.raises(ODataError) as caught:
        await client.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant.id).patch(
            OAuth2PermissionGrant(scope="User.Read Groups.Read.All")  # a typo: Group.Read.All
        )
    assert odata_error(caught)[0] == 400
    await client.oauth2_permission_grants.by_o_auth2_permission_grant_id(grant.id).delete()
    after = await client.oauth2_permission_grants.get(config)
    assert after is not None and after.value == []


async def test_owned_by_cannot_touch_an_app_it_does_not_own(tenant: TenantProcess) -> None:
    other_id, other_secret, _ = new_identity(tenant, ["Application.ReadWrite.OwnedBy"])
    other = graph_client(tenant, other_id, other_secret)
    theirs = await other.applications.post(Application(display_name=unique("theirs")))
    registrar = graph_client(tenant)
    assert theirs is not None and theirs.id

    readable = await registrar.applications.by_application_id(theirs.id).get()
    assert readable is not None and readable.id == theirs.id
    denied = [
        registrar.applications.by_application_id(theirs.id).patch(Application(notes="mine now")),
        registrar.applications.by_application_id(theirs.id).delete(),
        registrar.service_principals.post(ServicePrincipal(app_id=theirs.app_id)),
    ]
    for request in denied:
        with pytest.raises(ODataError) as caught:
            await request
        status, code, message = odata_error(caught)
        assert (status, code, message) == (
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )

    mine = await registrar.applications.post(Application(display_name=unique("released")))
    me = await registrar.service_principals_with_app_id(tenant.client_id).get()
    assert mine is not None and mine.id and me is not None and me.id
    await registrar.applications.by_application_id(mine.id).owners.by_directory_object_id(me.id).ref.delete()
    with pytest.raises(ODataError) as caught:
        await registrar.applications.by_application_id(mine.id).owners.ref.post(
            ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{me.id}")
        )
    assert odata_error(caught)[0] == 403


async def test_caller_without_graph_roles_is_refused(tenant: TenantProcess) -> None:
    bare_id, bare_secret, _ = new_identity(tenant, [])
    token = credential(tenant, bare_id, bare_secret).get_token(GRAPH_SCOPE).token
    assert "roles" not in jwt.decode(token, options={"verify_signature": False})
    bare = graph_client(tenant, bare_id, bare_secret)
    for request in (
        bare.applications.get(),
        bare.applications.post(Application(display_name=unique("denied"))),
    ):
        with pytest.raises(ODataError) as caught:
            await request
        assert odata_error(caught)[:2] == (403, "Authorization_RequestDenied")


async def test_consent_lists_can_lag_their_writes_when_asked(tenant_admin: TenantProcess) -> None:
    client = graph_client(tenant_admin)
    app = await app_with_sp(client)
    sharepoint = await client.service_principals_with_app_id(SHAREPOINT_APP_ID).get()
    assert sharepoint is not None and sharepoint.id
    tenant_admin.configure(extra={"consentListLagMs": 60_000})
    body = AppRoleAssignment(
        principal_id=uuid.UUID(app.sp_id),
        resource_id=uuid.UUID(sharepoint.id),
        app_role_id=uuid.UUID(SITES_READ_ALL),
    )
    assigned_to = client.service_principals.by_service_principal_id(sharepoint.id).app_role_assigned_to

    created = await assigned_to.post(body)

    assert created is not None and created.id
    listed = await client.service_principals.by_service_principal_id(app.sp_id).app_role_assignments.get()
    assert listed is not None and listed.value == []  # the list lags...
    with pytest.raises(ODataError) as caught:  # ...while the write side already knows it
        await assigned_to.post(body)
    assert odata_error(caught)[0] == 400
    tenant_admin.configure(extra={})
    listed = await client.service_principals.by_service_principal_id(app.sp_id).app_role_assignments.get()
    assert listed is not None and [a.id for a in listed.value or []] == [created.id]


async def test_assigning_app_roles_needs_assignment_and_read_roles(tenant: TenantProcess) -> None:
    target = await app_with_sp(graph_client(tenant))
    sharepoint = await graph_client(tenant).service_principals_with_app_id(SHAREPOINT_APP_ID).get()
    assert sharepoint is not None and sharepoint.id
    body = AppRoleAssignment(
        principal_id=uuid.UUID(target.sp_id),
        resource_id=uuid.UUID(sharepoint.id),
        app_role_id=uuid.UUID(SITES_READ_ALL),
    )
    only_assign = graph_client(tenant, *new_identity(tenant, ["AppRoleAssignment.ReadWrite.All"])[:2])
    with pytest.raises(ODataError) as caught:
        await only_assign.service_principals.by_service_principal_id(sharepoint.id).app_role_assigned_to.post(
            body
        )
    assert odata_error(caught)[:2] == (403, "Authorization_RequestDenied")

    roles = ["AppRoleAssignment.ReadWrite.All", "Application.Read.All"]
    assign_and_read = graph_client(tenant, *new_identity(tenant, roles)[:2])
    created = await assign_and_read.service_principals.by_service_principal_id(
        sharepoint.id
    ).app_role_assigned_to.post(body)
    assert created is not None and str(created.principal_id) == target.sp_id


async def test_removing_an_app_role_needs_only_the_assignment_role_and_gone_is_404(
    tenant: TenantProcess,
) -> None:
    """DELETE appRoleAssignments: AppRoleAssignment.ReadWrite.All alone, as Graph documents (no read
    companion, unlike the POST); the assignment deleted twice is 404 (what reconcile's `exact`
    treats as done)."""
    target = await app_with_sp(graph_client(tenant))
    sharepoint = await graph_client(tenant).service_principals_with_app_id(SHAREPOINT_APP_ID).get()
    assert sharepoint is not None and sharepoint.id
    created = (
        await graph_client(tenant)
        .service_principals.by_service_principal_id(sharepoint.id)
        .app_role_assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(target.sp_id),
                resource_id=uuid.UUID(sharepoint.id),
                app_role_id=uuid.UUID(SITES_READ_ALL),
            )
        )
    )
    assert created is not None and created.id

    def delete(client: GraphServiceClient) -> Any:
        assignments = client.service_principals.by_service_principal_id(target.sp_id).app_role_assignments
        return assignments.by_app_role_assignment_id(str(created.id)).delete()

    only_read = graph_client(tenant, *new_identity(tenant, ["Application.Read.All"])[:2])
    with pytest.raises(ODataError) as caught:
        await delete(only_read)
    assert odata_error(caught)[:2] == (403, "Authorization_RequestDenied")

    only_assign = graph_client(tenant, *new_identity(tenant, ["AppRoleAssignment.ReadWrite.All"])[:2])
    await delete(only_assign)
    with pytest.raises(ODataError) as caught:
        await delete(only_assign)
    assert odata_error(caught)[0] == 404
    listed = (
        await graph_client(tenant)
        .service_principals.by_service_principal_id(target.sp_id)
        .app_role_assignments.get()
    )
    assert listed is not None and listed.value == []


async def test_owned_by_is_not_the_read_role_an_app_role_grant_needs(tenant: TenantProcess) -> None:
    """Graph's least privilege for POST appRoleAssignedTo is AppRoleAssignment.ReadWrite.All AND
    Application.Read.All: the registrar's other roles (OwnedBy reads only what it owns) are not
    enough, even to grant a role to an app the caller owns."""
    sharepoint = await graph_client(tenant).service_principals_with_app_id(SHAREPOINT_APP_ID).get()
    assert sharepoint is not None and sharepoint.id
    without_read = [
        "Application.ReadWrite.OwnedBy",
        "AppRoleAssignment.ReadWrite.All",
        "DelegatedPermissionGrant.ReadWrite.All",
        "Policy.Read.All",
    ]
    for roles, expected in (
        (without_read, 403),
        ([*without_read, "Application.Read.All"], 201),
        (["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All", "Directory.Read.All"], 201),
    ):
        caller = graph_client(tenant, *new_identity(tenant, roles)[:2])
        target = await app_with_sp(caller)  # owned by the caller
        request = caller.service_principals.by_service_principal_id(sharepoint.id).app_role_assigned_to.post(
            AppRoleAssignment(
                principal_id=uuid.UUID(target.sp_id),
                resource_id=uuid.UUID(sharepoint.id),
                app_role_id=uuid.UUID(SITES_READ_ALL),
            )
        )
        if expected == 403:
            with pytest.raises(ODataError) as caught:
                await request
            assert odata_error(caught)[:2] == (403, "Authorization_RequestDenied"), roles
        else:
            created = await request
            assert created is not None and str(created.principal_id) == target.sp_id, roles

    # oauth2PermissionGrants: DelegatedPermissionGrant.ReadWrite.All alone, as Graph documents.
    graph = await graph_client(tenant).service_principals_with_app_id(GRAPH_APP_ID).get()
    assert graph is not None and graph.id
    granter = graph_client(tenant, *new_identity(tenant, ["DelegatedPermissionGrant.ReadWrite.All"])[:2])
    target = await app_with_sp(graph_client(tenant))
    grant = await granter.oauth2_permission_grants.post(
        OAuth2PermissionGrant(
            client_id=target.sp_id, consent_type="AllPrincipals", resource_id=graph.id, scope="User.Read"
        )
    )
    assert grant is not None and grant.scope == "User.Read"


async def test_service_principal_mirrors_its_apps_roles_and_identifier_uris(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    api = await app_with_sp(client)
    role_id = uuid.uuid4()
    role = AppRole(
        id=role_id,
        value="Widgets.Read.All",
        display_name="Read widgets",
        description="Read all widgets",
        allowed_member_types=["Application"],
        is_enabled=True,
    )
    identifier = f"api://{api.app_id}"

    await client.applications.by_application_id(api.id).patch(
        Application(identifier_uris=[identifier], app_roles=[role])
    )

    config = RequestConfiguration(
        query_parameters=ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
            filter=f"servicePrincipalNames/any(n:n eq '{identifier}')"
        )
    )
    found = await client.service_principals.get(config)
    assert found is not None and [s.id for s in found.value or []] == [api.sp_id]
    assert [(r.id, r.value) for r in (found.value or [])[0].app_roles or []] == [
        (role_id, "Widgets.Read.All")
    ]
    caller = await app_with_sp(client)
    secret = await client.applications.by_application_id(caller.id).add_password.post(
        AddPasswordPostRequestBody()
    )
    assert secret is not None and secret.secret_text
    await client.service_principals.by_service_principal_id(api.sp_id).app_role_assigned_to.post(
        AppRoleAssignment(
            principal_id=uuid.UUID(caller.sp_id), resource_id=uuid.UUID(api.sp_id), app_role_id=role_id
        )
    )
    token = credential(tenant, caller.app_id, secret.secret_text).get_token(f"{identifier}/.default").token
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["Widgets.Read.All"]
