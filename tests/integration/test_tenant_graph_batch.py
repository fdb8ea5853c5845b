"""Graph $batch on the local tenant: per-item status, dependsOn and 424, limits, per-item throttling.

msgraph_core's BatchRequestItem writes "depends_on" (not Graph's "dependsOn"), so dependencies are
sent as raw JSON here; plain items also go through msgraph_core's BatchRequestContent."""

from __future__ import annotations

import json
import uuid
from typing import Any

from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

from tests.fixtures.tenant import TenantProcess
from tests.integration.tenant_graph_support import RawGraph, assert_graph_error, graph_client, unique


def by_id(body: Any) -> dict[str, Any]:
    return {item["id"]: item for item in body["responses"]}


def test_batch_items_run_in_dependency_order_and_a_failed_dependency_is_424(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    unique_name = unique("batch")
    requests: list[dict[str, Any]] = [
        {
            "id": "create",
            "method": "PATCH",
            "url": f"/applications(uniqueName='{unique_name}')",
            "headers": {"Content-Type": "application/json", "Prefer": "create-if-missing"},
            "body": {"displayName": unique_name, "signInAudience": "AzureADMyOrg"},
        },
        {
            "id": "read",
            "method": "GET",
            "url": f"/applications(uniqueName='{unique_name}')?$select=id,uniqueName",
            "dependsOn": ["create"],
        },
        {"id": "broken", "method": "GET", "url": "/applications/not-a-guid"},
        {
            "id": "after-broken",
            "method": "POST",
            "url": "/applications",
            "headers": {"Content-Type": "application/json"},
            "body": {"displayName": unique("never")},
            "dependsOn": ["broken"],
        },
        {"id": "unknown", "method": "GET", "url": "/noSuchCollection"},
    ]

    status, _, body = raw.call("POST", "/$batch", {"requests": requests})

    assert status == 200
    responses = by_id(body)
    assert [r["id"] for r in body["responses"]] == [r["id"] for r in requests]
    assert responses["create"]["status"] == 201
    assert responses["create"]["body"]["uniqueName"] == unique_name
    assert responses["read"]["status"] == 200
    assert responses["read"]["body"]["id"] == responses["create"]["body"]["id"]
    assert_graph_error(responses["broken"]["status"], responses["broken"]["body"], 400)
    assert_graph_error(responses["after-broken"]["status"], responses["after-broken"]["body"], 424)
    assert_graph_error(responses["unknown"]["status"], responses["unknown"]["body"], 400)
    status, _, found = raw.call("GET", f"/applications?$filter=uniqueName%20eq%20'{unique_name}'&$select=id")
    assert status == 200 and len(found["value"]) == 1


def test_batch_limits_and_malformed_batches(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    item = {"method": "GET", "url": "/applications?$top=1&$select=id"}
    twenty = [{"id": str(i), **item} for i in range(20)]
    status, _, body = raw.call("POST", "/$batch", {"requests": twenty})
    assert status == 200 and [r["status"] for r in body["responses"]] == [200] * 20

    bad_batches = [
        {"requests": [{"id": str(i), **item} for i in range(21)]},
        {"requests": [{"id": "same", **item}, {"id": "same", **item}]},
        {"requests": [{"id": "1", **item, "dependsOn": ["nowhere"]}]},
        {"requests": [{"id": "1", **item, "dependsOn": ["2"]}, {"id": "2", **item, "dependsOn": ["1"]}]},
        {"requests": [{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/applications"}]},
        {"requests": []},
        {"nothing": True},
    ]
    for batch in bad_batches:
        status, headers, answer = raw.call("POST", "/$batch", batch)
        assert_graph_error(status, answer, 400)
        assert headers.get("request-id")
    status, _, answer = raw.call("POST", "/$batch", raw=b"{oops")
    assert_graph_error(status, answer, 400)


def test_batch_items_are_authorised_one_by_one(tenant: TenantProcess) -> None:
    raw = RawGraph(tenant)
    status, _, graph = raw.call(
        "GET", "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id"
    )
    assert status == 200
    requests = [
        {"id": "read", "method": "GET", "url": "/applications?$top=1&$select=id"},
        {  # the registrar holds Application.ReadWrite.OwnedBy: it may not edit Microsoft Graph's SP
            "id": "write",
            "method": "PATCH",
            "url": f"/servicePrincipals/{graph['id']}",
            "headers": {"Content-Type": "application/json"},
            "body": {"notes": "mine"},
        },
    ]
    status, _, body = raw.call("POST", "/$batch", {"requests": requests})
    assert status == 200
    responses = by_id(body)
    assert responses["read"]["status"] == 200
    assert_graph_error(
        responses["write"]["status"], responses["write"]["body"], 403, "Authorization_RequestDenied"
    )


def test_batch_items_are_throttled_individually(tenant_admin: TenantProcess) -> None:
    raw = RawGraph(tenant_admin)
    # Budget of 3,500 RU per 10 s scaled to 5: the items beyond it are answered 429 on their own.
    tenant_admin.configure(throttleScale=5 / 3500)
    tenant_admin.admin("POST", "throttling/reset")
    requests = [
        {"id": str(i), "method": "GET", "url": "/applications/" + str(uuid.uuid4())} for i in range(10)
    ]
    status, _, body = raw.call("POST", "/$batch", {"requests": requests})
    assert status == 200, body
    statuses = [r["status"] for r in body["responses"]]
    assert set(statuses) == {404, 429}, statuses
    throttled = next(r for r in body["responses"] if r["status"] == 429)
    assert int(throttled["headers"]["Retry-After"]) >= 1
    assert throttled["headers"]["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert_graph_error(429, throttled["body"], 429, "Request_ThrottledTemporarily")


async def test_batch_through_msgraph_core(tenant: TenantProcess) -> None:
    client = graph_client(tenant)
    content = BatchRequestContent()
    content.add_request("apps", BatchRequestItem(client.applications.to_get_request_information(), id="apps"))
    missing = client.applications.by_application_id(str(uuid.uuid4())).to_get_request_information()
    content.add_request("missing", BatchRequestItem(missing, id="missing"))
    request_info = await BatchRequestBuilder(
        client.request_adapter, {"XXX": ODataError}
    ).to_post_request_information(content)
    payload: Any = await client.request_adapter.send_primitive_async(
        request_info, "bytes", {"XXX": ODataError}
    )
    responses = by_id(json.loads(payload))
    assert responses["apps"]["status"] == 200 and isinstance(responses["apps"]["body"]["value"], list)
    assert_graph_error(
        responses["missing"]["status"], responses["missing"]["body"], 404, "Request_ResourceNotFound"
    )
