"""Long queue invocations: the message stays invisible while its function runs (the host renews
its visibility at half-time), and host.json functionTimeout stops a run and fails it."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from azure.storage.queue import QueueClient

from devstack.host.queues import PROCESSING_VISIBILITY_KNOB
from tests.devstack.harness import records, sample_values, start_sample_host, wait_for


def test_a_message_stays_invisible_while_its_function_outlasts_the_processing_visibility(
    azurite: str, tmp_path: Path
) -> None:
    queue_name = f"long-{uuid.uuid4().hex[:10]}"
    record_dir = tmp_path / "records"
    # Received for 3 s, renewed every 1.5 s; the function runs 7 s (a copy would reappear at 3 s).
    values = sample_values(azurite, queue_name, record_dir) | {PROCESSING_VISIBILITY_KNOB: "3"}
    text = "sleep:7"  # the queue is this test's own
    queue = QueueClient.from_connection_string(azurite, queue_name)
    with start_sample_host(tmp_path, values):
        queue.send_message(base64.b64encode(text.encode()).decode())
        wait_for(lambda: records(record_dir, "queue"))
        wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0, timeout=60)
    runs = [r["dequeue_count"] for r in records(record_dir, "queue") if r["body"] == text]
    assert runs == [1]


def test_function_timeout_from_an_app_setting_stops_the_run_and_fails_the_message(
    azurite: str, tmp_path: Path
) -> None:
    queue_name = f"timeout-{uuid.uuid4().hex[:10]}"
    record_dir = tmp_path / "records"
    values = sample_values(azurite, queue_name, record_dir) | {
        # host.json overrides, spelled in other cases: the host's configuration ignores case.
        "azurefunctionsjobhost__FUNCTIONTIMEOUT": "00:00:02",
        "AzureFunctionsJobHost__Extensions__Queues__MaxDequeueCount": "2",  # host.json says 3
    }
    text = "sleep:5"
    encoded = base64.b64encode(text.encode()).decode()
    queue = QueueClient.from_connection_string(azurite, queue_name)
    poison = QueueClient.from_connection_string(azurite, f"{queue_name}-poison")

    def poisoned() -> bool:
        try:
            return encoded in [m.content for m in poison.peek_messages(max_messages=32)]
        except Exception:  # created with the first poison message
            return False

    with start_sample_host(tmp_path, values) as host:
        queue.send_message(encoded)
        wait_for(poisoned, timeout=60)
        assert host.log_path is not None
        log = host.log_path.read_text(encoding="utf-8")
    runs = [r["dequeue_count"] for r in records(record_dir, "queue") if r["body"] == text]
    assert sorted(runs) == [1, 2]
    assert "Timeout value of 00:00:02 exceeded by function 'Functions.work_queue'" in log
