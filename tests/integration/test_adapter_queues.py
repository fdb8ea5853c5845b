"""functions/adapters/queues.py against Azurite: messages are base64 on the wire, as the host reads them."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import timedelta

import pytest
from azure.storage.queue import QueueClient

from functions.adapters.queues import StorageQueues
from functions.adapters.tables import StorageConfig
from functions.core.errors import PermanentError


def raw_client(connection: str, name: str) -> QueueClient:
    """A client with no decode policy: it sees the bytes the Functions host sees."""
    return QueueClient.from_connection_string(connection, name)


def test_messages_are_base64_encoded_utf8_json(azurite: str) -> None:
    name = f"registration-requests-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"requestId": "INC0012345", "displayName": "Sauvegarde été ✓"})

    async def send() -> None:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        await queues.send(name, body)  # the queue does not exist yet: created on first send
        await queues.send(name, body)
        await queues.close()

    asyncio.run(send())
    with raw_client(azurite, name) as client:
        messages = list(client.receive_messages(max_messages=10))
    assert len(messages) == 2
    for message in messages:
        assert message.content != body  # not plain text on the wire
        assert json.loads(base64.b64decode(message.content).decode("utf-8")) == json.loads(body)


def test_visibility_delay_hides_the_message_until_due(azurite: str) -> None:
    name = f"rotation-jobs-{uuid.uuid4().hex[:8]}"

    async def send() -> None:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        await queues.ensure_queues((name,))
        await queues.ensure_queues((name,))  # idempotent
        await queues.send(name, "later", visibility_timeout=timedelta(minutes=10))
        await queues.send(name, "now")
        await queues.close()

    asyncio.run(send())
    with raw_client(azurite, name) as client:
        visible = [base64.b64decode(m.content).decode() for m in client.receive_messages(max_messages=10)]
        assert visible == ["now"]
        peeked = client.get_queue_properties().approximate_message_count
    assert peeked == 2  # the delayed one exists, just not visible yet
    with raw_client(azurite, f"{name}-poison") as poison:
        assert poison.get_queue_properties() is not None  # ensure_queues made the poison queue too


def test_oversize_message_is_refused_before_any_call(azurite: str) -> None:
    async def send() -> None:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        try:
            await queues.send("webhook-deliveries", "x" * (49 * 1024))
        finally:
            await queues.close()

    with pytest.raises(PermanentError, match="48 KiB"):
        asyncio.run(send())
