"""Stopping the host: a queue message still being processed is released, not held for its lease."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from azure.storage.queue import QueueClient

from tests.devstack.harness import records, sample_values, start_sample_host, wait_for


def test_message_in_progress_at_shutdown_is_visible_again_at_once(azurite: str, tmp_path: Path) -> None:
    queue_name = f"shutdown-{uuid.uuid4().hex[:10]}"
    record_dir = tmp_path / "records"
    values = sample_values(azurite, queue_name, record_dir) | {"DEVSTACK_HOST_DRAIN_SECONDS": "0.5"}
    text = "sleep:4"  # longer than the drain at shutdown
    queue = QueueClient.from_connection_string(azurite, queue_name)
    with start_sample_host(tmp_path, values) as host:
        queue.send_message(base64.b64encode(text.encode()).decode())
        wait_for(lambda: records(record_dir, "queue"))  # the function has started
        assert queue.peek_messages(max_messages=1) == []  # held invisible while it runs
        host.stop()
    (message,) = queue.peek_messages(max_messages=1)  # without a release it would hide for 10 minutes
    assert base64.b64decode(message.content).decode() == text
    assert message.dequeue_count == 1
