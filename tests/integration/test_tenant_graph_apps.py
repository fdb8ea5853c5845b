"""Graph v1.0 applications on the local tenant, driven through msgraph-sdk (and raw HTTPS where the
SDK cannot express the request: malformed bodies, unknown properties)."""

from __future__ import annotations

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.web_application import WebApplication

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import (
    RawGraph,
    assert_graph_error,
    graph_client,
    odata_error,
    unique,
)


def list_config(
    **query: object,
) -> RequestConfiguration[ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters]:
    return RequestConfiguration(
        query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(**query)  # type: ignore[arg-type]
    )


async def test_created_app_has_graph_defaults_and_the_caller_as_owner(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    name = unique("defaults")

    created = await client.applications.post(Application(display_name=name))

    assert created is not None and created.id and created.app_id
    assert created.sign_in_audience == "AzureADandPersonalMicrosoftAccount"
    assert created.password_credentials == [] and created.key_credentials == []
    fetched = await client.applications.by_application_id(created.id).get()
    assert fetched is not None and fetched.display_name == name and fetched.app_id == created.app_id
    owners = await client.applications.by_application_id(created.id).owners.get()
    assert owners is not None and owners.value is not None
    me = await client.service_principals_with_app_id(tenant.client_id).get()
    assert me is not None
    assert [owner.id for owner in owners.value] == [me.id]


async def test_display_name_is_required(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    with pytest.raises(ODataError) as caught:
        await client.applications.post(Application(sign_in_audience="AzureADMyOrg"))
    status, code, _ = odata_error(caught)
    assert (status, code) == (400, "Request_BadRequest")


async def test_filter_select_top_and_paging(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    tag = unique("tag")
    names = [unique(f"page{i}") for i in range(5)]
    for name in names:
        await client.applications.post(
            Application(display_name=name, tags=[tag], sign_in_audience="AzureADMyOrg")
        )

    first = await client.applications.get(
        list_config(filter=f"tags/any(t:t eq '{tag}')", select=["id", "displayName"], top=2)
    )
    assert first is not None and first.value is not None and len(first.value) == 2
    assert first.odata_next_link and "$skiptoken=" in first.odata_next_link
    assert first.value[0].app_id is None  # not selected
    seen = [app.display_name for app in first.value]
    page = first
    while page.odata_next_link:
        next_page = await client.applications.with_url(page.odata_next_link).get()
        assert next_page is not None and next_page.value is not None
        seen += [app.display_name for app in next_page.value]
        page = next_page
    assert seen == names

    by_app_id = await client.applications.get(list_config(filter=f"appId eq '{names[0]}'"))
    assert by_app_id is not None and by_app_id.value == []
    prefix = await client.applications.get(list_config(filter=f"startswith(displayName,'{names[3]}')"))
    assert prefix is not None and [a.display_name for a in prefix.value or []] == [names[3]]


async def test_count_needs_consistency_level(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    tag = unique("count")
    for _ in range(3):
        await client.applications.post(Application(display_name=unique("count"), tags=[tag]))
    config = list_config(filter=f"tags/any(t:t eq '{tag}')", count=True)
    with pytest.raises(ODataError) as caught:
        await client.applications.get(config)
    assert odata_error(caught)[0] == 400
    config.headers.add("ConsistencyLevel", "eventual")
    counted = await client.applications.get(config)
    assert counted is not None and counted.odata_count == 3


async def test_filter_on_credentials_is_unsupported(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    with pytest.raises(ODataError) as caught:
        await client.applications.get(
            list_config(filter="passwordCredentials/any(p:p/endDateTime le 2030-01-01T00:00:00Z)")
        )
    status, code, _ = odata_error(caught)
    assert (status, code) == (400, "Request_UnsupportedQuery")


async def test_upsert_by_unique_name_creates_then_updates(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    unique_name = unique("upsert")
    builder = client.applications_with_unique_name(unique_name)
    prefer = RequestConfiguration()  # type: ignore[var-annotated]
    prefer.headers.add("Prefer", "create-if-missing")

    created = await builder.patch(Application(display_name="first", sign_in_audience="AzureADMyOrg"), prefer)
    assert created is not None and created.unique_name == unique_name and created.display_name == "first"

    updated = await builder.patch(
        Application(display_name="second", web=WebApplication(redirect_uris=["https://example.test/cb"])),
        prefer,
    )
    assert updated is None  # 204
    fetched = await builder.get()
    assert fetched is not None and fetched.id == created.id and fetched.display_name == "second"
    assert fetched.web is not None and fetched.web.redirect_uris == ["https://example.test/cb"]

    with pytest.raises(ODataError) as caught:
        await client.applications_with_unique_name(unique("missing")).patch(Application(display_name="x"))
    assert odata_error(caught)[:2] == (404, "Request_ResourceNotFound")
    with pytest.raises(ODataError) as caught:
        await client.applications_with_unique_name(unique("nameless")).patch(Application(notes="x"), prefer)
    assert odata_error(caught)[0] == 400


async def test_get_and_delete_by_app_id_delete_removes_service_principal(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    from msgraph.generated.models.service_principal import ServicePrincipal

    app = await client.applications.post(Application(display_name=unique("delete")))
    assert app is not None and app.app_id and app.id
    await client.service_principals.post(ServicePrincipal(app_id=app.app_id))
    fetched = await client.applications_with_app_id(app.app_id).get()
    assert fetched is not None and fetched.id == app.id

    await client.applications_with_app_id(app.app_id).delete()

    for request in (
        client.applications.by_application_id(app.id).get(),
        client.service_principals_with_app_id(app.app_id).get(),
    ):
        with pytest.raises(ODataError) as caught:
            await request
        assert odata_error(caught)[:2] == (404, "Request_ResourceNotFound")


async def test_patch_updates_and_refuses_password_credentials(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    app = await client.applications.post(Application(display_name=unique("patch")))
    assert app is not None and app.id
    await client.applications.by_application_id(app.id).patch(
        Application(notes="ticket INC1", tags=["a", "b"])
    )
    fetched = await client.applications.by_application_id(app.id).get()
    assert fetched is not None and fetched.notes == "ticket INC1" and fetched.tags == ["a", "b"]

    raw = RawGraph(tenant)
    status, _, body = raw.call("PATCH", f"/applications/{app.id}", {"passwordCredentials": []})
    assert_graph_error(status, body, 400)


def test_malformed_requests_get_graph_shaped_errors(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    status, _, app = raw.call("POST", "/applications", {"displayName": unique("malformed")})
    assert status == 201
    cases = [
        ("POST", "/applications", None, b"{not json", 400),
        ("POST", "/applications", None, b"[1,2]", 400),
        ("POST", "/applications", {"displayName": "x", "colour": "blue"}, None, 400),
        ("PATCH", f"/applications/{app['id']}", {"signInAudience": "Everyone"}, None, 400),
        ("PATCH", f"/applications/{app['id']}", {"tags": "not-a-list"}, None, 400),
        ("GET", "/applications/not-a-guid", None, None, 400),
        ("GET", "/applications/00000000-0000-0000-0000-000000000001", None, None, 404),
        ("GET", "/applications?$top=1000", None, None, 400),
        ("GET", "/applications?$select=colour", None, None, 400),
        ("GET", "/applications?$filter=displayName%20eq", None, None, 400),
        ("GET", "/applications?$filter=" + "(" * 500 + "appId%20eq%20'x'" + ")" * 500, None, None, 400),
        ("GET", "/applications?$filter=keyCredentials/any(k:k/keyId%20eq%20'x')", None, None, 400),
        ("GET", "/noSuchCollection", None, None, 400),
        ("GET", f"/applications/{app['id']}/noSuchThing", None, None, 400),
        ("PUT", "/applications", {"displayName": "x"}, None, 405),
    ]
    for method, path, body, raw_body, expected in cases:
        status, headers, answer = raw.call(method, path, body, raw=raw_body)
        assert_graph_error(status, answer, expected)
        assert headers.get("request-id") and headers.get("client-request-id"), (method, path)


def test_missing_or_bad_token_is_401(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    raw.token = "not-a-token"
    status, _, body = raw.call("GET", "/applications")
    assert_graph_error(status, body, 401, "InvalidAuthenticationToken")


async def test_lists_page_at_100_by_default(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    tag = unique("hundred")
    for batch in range(6):  # 120 applications, 20 per $batch
        requests = [
            {
                "id": str(i),
                "method": "POST",
                "url": "/applications",
                "headers": {"Content-Type": "application/json"},
                "body": {"displayName": unique(f"p{batch}-{i}"), "tags": [tag]},
            }
            for i in range(20)
        ]
        status, _, body = raw.call("POST", "/$batch", {"requests": requests})
        assert status == 200 and {r["status"] for r in body["responses"]} == {201}
    client = graph_client(tenant)

    first = await client.applications.get(list_config(filter=f"tags/any(t:t eq '{tag}')", select=["id"]))

    assert first is not None and len(first.value or []) == 100 and first.odata_next_link
    second = await client.applications.with_url(first.odata_next_link).get()
    assert second is not None and len(second.value or []) == 20 and second.odata_next_link is None
    assert not {a.id for a in first.value or []} & {a.id for a in second.value or []}


def test_wrongly_typed_values_are_400_not_500(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    bodies = [
        {"displayName": "x", "signInAudience": {"not": "a string"}},
        {"displayName": ["x"]},
        {
            "displayName": "x",
            "requiredResourceAccess": [{"resourceAppId": "x", "resourceAccess": [{"type": "Role"}]}],
        },
        {"displayName": "x", "keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": 5}]},
    ]
    for body in bodies:
        status, _, answer = raw.call("POST", "/applications", body)
        assert_graph_error(status, answer, 400)
    batch = {"requests": [{"id": "1", "method": "GET", "url": "/applications", "dependsOn": [{"id": "0"}]}]}
    status, _, answer = raw.call("POST", "/$batch", batch)
    assert_graph_error(status, answer, 400)
