"""The devstack host runs the sample app's HTTP, queue, Event Grid and admin-invoked functions."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from devstack.host.launcher import HostProcess
from tests.devstack.harness import http, records, start_sample_host, wait_for


@pytest.fixture(scope="module")
def sample(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sample-host")
    queue_name = f"sample-{uuid.uuid4().hex[:10]}"
    values = {
        "SampleStorage": azurite,
        "SAMPLE_QUEUE": queue_name,
        "SAMPLE_GREETING": "hello from local.settings.json",
        "SAMPLE_SCHEDULE": "*/1 * * * * *",
        "SAMPLE_RECORD_DIR": str(tmp / "records"),
        "AzureWebJobs.every_second.Disabled": "true",  # the timer has its own test and host
        "SAMPLE_SLOW_SCHEDULE": "0 0 0 1 1 *",
        "AzureWebJobs.slow_timer.Disabled": "true",
    }
    host: HostProcess = start_sample_host(tmp, values)
    try:
        yield {"host": host, "records": tmp / "records", "queue": queue_name, "storage": azurite}
    finally:
        host.stop()


def queue_client(sample: dict[str, Any], name: str) -> QueueClient:
    return QueueClient.from_connection_string(sample["storage"], name)


def test_http_route_parameter_settings_and_principal_reach_the_function(sample: dict[str, Any]) -> None:
    item = str(uuid.uuid4())
    status, headers, body = http(
        "GET",
        f"{sample['host'].url}/api/items/{item}?view=full",
        headers={"X-MS-CLIENT-PRINCIPAL": "eyJ1c2VyIjoiYWxpY2UifQ=="},
    )
    assert status == 200
    assert headers["x-sample"] == "yes"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "id": item,
        "method": "GET",
        "view": "full",
        "greeting": "hello from local.settings.json",
        "principal": "eyJ1c2VyIjoiYWxpY2UifQ==",
    }


def test_http_query_joins_repeated_keys_with_commas_and_drops_empty_values(sample: dict[str, Any]) -> None:
    url = f"{sample['host'].url}/api/items/{uuid.uuid4()}"
    assert json.loads(http("GET", f"{url}?view=a&view=&view=b")[2])["view"] == "a,b"
    assert json.loads(http("GET", f"{url}?view=")[2])["view"] is None


def test_http_route_constraints_and_methods_are_enforced(sample: dict[str, Any]) -> None:
    url = sample["host"].url
    assert http("GET", f"{url}/api/items/not-a-guid")[0] == 404
    assert http("DELETE", f"{url}/api/items/{uuid.uuid4()}")[0] == 404
    assert http("GET", f"{url}/api/nowhere")[0] == 404
    assert http("GET", f"{url}/items/{uuid.uuid4()}")[0] == 404  # the route prefix is required


def test_http_catch_all_async_function_with_context(sample: dict[str, Any]) -> None:
    status, headers, body = http("PUT", f"{sample['host'].url}/api/files/a/b/c.txt", body=b"payload")
    assert status == 201
    assert body == b"daolyap"
    assert headers["x-path"] == "a/b/c.txt"
    assert headers["x-function"] == "put_file"
    assert headers["content-type"] == "application/octet-stream"


def test_http_function_that_raises_answers_500(sample: dict[str, Any]) -> None:
    assert http("GET", f"{sample['host'].url}/api/broken")[0] == 500


def test_queue_message_is_base64_decoded_processed_once_and_deleted(sample: dict[str, Any]) -> None:
    text = f"ok-{uuid.uuid4().hex}"
    queue = queue_client(sample, sample["queue"])
    sent = queue.send_message(base64.b64encode(text.encode()).decode())
    seen = wait_for(lambda: [r for r in records(sample["records"], "queue") if r["body"] == text])
    assert seen[0]["id"] == sent.id
    assert seen[0]["dequeue_count"] == 1
    assert seen[0]["pop_receipt"] is True
    wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0)
    assert len([r for r in records(sample["records"], "queue") if r["body"] == text]) == 1


def poison_contents(sample: dict[str, Any]) -> list[str]:
    poison = queue_client(sample, f"{sample['queue']}-poison")
    try:
        return [m.content for m in poison.peek_messages(max_messages=32)]
    except Exception:  # the host creates the poison queue with the first poison message
        return []


def test_failing_message_is_retried_max_dequeue_count_times_then_poisoned(sample: dict[str, Any]) -> None:
    text = f"fail-{uuid.uuid4().hex}"
    encoded = base64.b64encode(text.encode()).decode()
    queue_client(sample, sample["queue"]).send_message(encoded)
    wait_for(lambda: encoded in poison_contents(sample))
    attempts = [r["dequeue_count"] for r in records(sample["records"], "queue") if r["body"] == text]
    assert sorted(attempts) == [1, 2, 3]  # host.json maxDequeueCount 3
    assert encoded not in [
        m.content for m in queue_client(sample, sample["queue"]).peek_messages(max_messages=32)
    ]


def test_message_that_is_not_base64_goes_to_poison_without_reaching_the_function(
    sample: dict[str, Any],
) -> None:
    text = f"not base64 {uuid.uuid4().hex}!"
    queue_client(sample, sample["queue"]).send_message(text)
    wait_for(lambda: text in poison_contents(sample))
    assert not [r for r in records(sample["records"], "queue") if text in r["body"]]
    assert (
        "Message decoding has failed! Check MessageEncoding settings" in sample["host"].log_path.read_text()
    )


def eventgrid_records(sample: dict[str, Any], event_id: str) -> list[dict[str, Any]]:
    return [r for r in records(sample["records"], "eventgrid") if r["id"] == event_id]


def deliver(sample: dict[str, Any], body: Any, kind: str = "Notification", name: str = "on_event") -> int:
    url = f"{sample['host'].url}/runtime/webhooks/eventgrid?functionName={name}"
    headers = {"aeg-event-type": kind, "Content-Type": "application/json"}
    return http("POST", url, json.dumps(body).encode(), headers)[0]


def test_event_grid_schema_delivery_invokes_once_per_event(sample: dict[str, Any]) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    events = [
        {
            "id": event_id,
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
            "subject": "conn-secret",
            "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
            "eventTime": "2026-11-22T01:02:03.1234567Z",
            "data": {
                "Id": "https://kv/secrets/conn-secret/abc",
                "ObjectName": "conn-secret",
                "Version": "abc",
            },
            "dataVersion": "1",
            "metadataVersion": "1",
        }
        for event_id in ids
    ]
    assert deliver(sample, events) == 202
    for event_id in ids:
        (seen,) = wait_for(functools.partial(eventgrid_records, sample, event_id))
        assert seen["schema"] == "eventgrid"
        assert seen["event_type"] == "Microsoft.KeyVault.SecretNewVersionCreated"
        assert seen["subject"] == "conn-secret"
        assert seen["data"]["Version"] == "abc"


def test_event_grid_event_type_header_value_is_matched_in_any_case(sample: dict[str, Any]) -> None:
    event_id = str(uuid.uuid4())
    event = {
        "id": event_id,
        "topic": "/subscriptions/x",
        "subject": "s",
        "eventType": "Sample.Happened",
        "eventTime": "2026-11-22T01:02:03Z",
        "data": {"n": 1},
        "dataVersion": "1",
    }
    assert deliver(sample, [event], kind="notification") == 202
    wait_for(functools.partial(eventgrid_records, sample, event_id))
    validation = [event | {"data": {"validationCode": "code-1"}}]
    url = f"{sample['host'].url}/runtime/webhooks/eventgrid?functionName=on_event"
    status, _, body = http(
        "POST", url, json.dumps(validation).encode(), {"aeg-event-type": "subscriptionvalidation"}
    )
    assert status == 200
    assert json.loads(body) == {"validationResponse": "code-1"}
    assert deliver(sample, [event], kind="SUBSCRIPTIONDELETION") == 202


def test_cloud_events_delivery_single_and_batch(sample: dict[str, Any]) -> None:
    def cloud_event(event_id: str) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "/subscriptions/x/providers/Microsoft.KeyVault/vaults/kv",
            "type": "Microsoft.KeyVault.SecretNearExpiry",
            "subject": "conn-secret",
            "time": "2026-11-22T01:02:03Z",
            "data": {"ObjectName": "conn-secret"},
        }

    single, batched = str(uuid.uuid4()), str(uuid.uuid4())
    assert deliver(sample, cloud_event(single)) == 202
    assert deliver(sample, [cloud_event(batched)]) == 202
    for event_id in (single, batched):
        (seen,) = wait_for(functools.partial(eventgrid_records, sample, event_id))
        assert seen["schema"] == "cloudevents"
        assert seen["event_type"] == "Microsoft.KeyVault.SecretNearExpiry"
        assert seen["topic"] == "/subscriptions/x/providers/Microsoft.KeyVault/vaults/kv"


def test_event_grid_handshakes_and_unknown_function(sample: dict[str, Any]) -> None:
    validation = [
        {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/x",
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-11-22T01:02:03Z",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "dataVersion": "1",
        }
    ]
    url = f"{sample['host'].url}/runtime/webhooks/eventgrid?functionName=on_event"
    status, _, body = http(
        "POST", url, json.dumps(validation).encode(), {"aeg-event-type": "SubscriptionValidation"}
    )
    assert status == 200
    assert json.loads(body) == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    status, headers, _ = http("OPTIONS", url, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert status == 200
    assert headers["webhook-allowed-origin"] == "eventgrid.azure.net"
    assert deliver(sample, validation, name="no_such_function") == 404
    assert deliver(sample, validation, name="get_item") == 404  # not an Event Grid function
    assert deliver(sample, validation, kind="Bogus") == 400


def test_admin_invocation_runs_non_http_functions(sample: dict[str, Any]) -> None:
    url = sample["host"].url
    body = f"by-hand-{uuid.uuid4().hex}"
    assert http("POST", f"{url}/admin/functions/work_queue", json.dumps({"input": body}).encode())[0] == 202
    (seen,) = wait_for(lambda: [r for r in records(sample["records"], "queue") if r["body"] == body])
    assert seen["dequeue_count"] == 1

    event_id = str(uuid.uuid4())
    event = {
        "id": event_id,
        "topic": "t",
        "subject": "s",
        "eventType": "Manual",
        "data": {},
        "dataVersion": "1",
    }
    status = http(
        "POST", f"{url}/admin/functions/on_event", json.dumps({"input": json.dumps(event)}).encode()
    )[0]
    assert status == 202
    wait_for(lambda: eventgrid_records(sample, event_id))

    before = len(records(sample["records"], "timer"))
    assert (
        http("POST", f"{url}/admin/functions/every_second", b'{"input": ""}')[0] == 202
    )  # disabled: still runs
    wait_for(lambda: len(records(sample["records"], "timer")) > before)

    assert http("POST", f"{url}/admin/functions/nope", b"{}")[0] == 404
    assert http("POST", f"{url}/admin/functions/get_item", b"{}")[0] == 400


def test_str_parameter_receives_the_message_body(sample: dict[str, Any]) -> None:
    text = f"plain-{uuid.uuid4().hex}"
    queue_client(sample, f"{sample['queue']}-text").send_message(base64.b64encode(text.encode()).decode())
    (seen,) = wait_for(lambda: [r for r in records(sample["records"], "text") if r["body"] == text])
    assert seen["type"] == "str"


def test_host_lists_functions_from_their_decorators(sample: dict[str, Any]) -> None:
    status, _, body = http("GET", f"{sample['host'].url}/admin/functions")
    assert status == 200
    listed = {f["name"]: f for f in json.loads(body)}
    assert set(listed) == {
        "get_item",
        "put_file",
        "fetch",
        "broken",
        "work_queue",
        "every_second",
        "slow_timer",
        "plain_text",
        "on_event",
    }
    assert listed["work_queue"]["bindings"][0]["queueName"] == "%SAMPLE_QUEUE%"


def test_invocations_are_logged_without_bodies(sample: dict[str, Any]) -> None:
    secret_like = f"do-not-log-{uuid.uuid4().hex}"
    assert http("PUT", f"{sample['host'].url}/api/files/x", body=secret_like.encode())[0] == 201
    log_path: Path = sample["host"].log_path
    lines = wait_for(
        lambda: [line for line in log_path.read_text().splitlines() if "Functions.put_file" in line]
    )
    assert "Succeeded" in lines[-1]
    assert "Id=" in lines[-1]
    assert "Duration=" in lines[-1]
    assert secret_like not in log_path.read_text()
