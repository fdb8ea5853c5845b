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
from functions.core.ports import QueuedMessage
from functions.core.record.errors import PermanentError


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


# ---------------------------------------------------------------- settling a message sent hidden
# (prompt delivery: the sender deletes or releases the hidden copy of what it attempted itself)

HIDDEN = timedelta(minutes=10)  # far longer than any of these tests: nothing shows up on its own


def message_count(connection: str, name: str) -> int:
    """Every message in the queue, hidden ones included (receive_messages sees only visible ones)."""
    with raw_client(connection, name) as client:
        count = client.get_queue_properties().approximate_message_count
    assert count is not None
    return count


def visible_bodies(connection: str, name: str, *, visibility_timeout: int = 30) -> list[tuple[str, str, str]]:
    """Receive every visible message: (decoded body, id, the receiver's pop receipt) each."""
    with raw_client(connection, name) as client:
        return [
            (base64.b64decode(m.content).decode("utf-8"), m.id, m.pop_receipt or "")
            for m in client.receive_messages(max_messages=32, visibility_timeout=visibility_timeout)
        ]


def test_delete_removes_a_message_sent_hidden_by_its_id_and_pop_receipt(azurite: str) -> None:
    name = f"webhook-deliveries-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        try:
            await queues.send(name, "someone else's")  # stays: delete takes exactly the one it names
            sent = await queues.send(name, "mine", visibility_timeout=HIDDEN)
            assert isinstance(sent, QueuedMessage)
            assert sent.queue_name == name and sent.id and sent.pop_receipt
            assert message_count(azurite, name) == 2
            await queues.delete(sent)
            assert message_count(azurite, name) == 1
            await queues.delete(sent)  # twice: already gone, no error
            await queues.release(sent)  # and releasing what is gone is no error either
        finally:
            await queues.close()

    asyncio.run(run())
    assert [body for body, _, _ in visible_bodies(azurite, name)] == ["someone else's"]
    assert message_count(azurite, name) == 1


def test_release_makes_a_hidden_message_receivable_at_once_with_its_content(azurite: str) -> None:
    name = f"webhook-deliveries-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"deliveryId": "d-1", "prompt": True, "note": "été ✓"})

    async def run() -> QueuedMessage:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        try:
            sent = await queues.send(name, body, visibility_timeout=HIDDEN)
            assert visible_bodies(azurite, name) == []  # hidden, though there
            assert message_count(azurite, name) == 1
            await queues.release(sent)
            return sent
        finally:
            await queues.close()

    sent = asyncio.run(run())
    received = visible_bodies(azurite, name)
    assert [(content, message_id) for content, message_id, _ in received] == [(body, sent.id)]
    assert json.loads(received[0][0]) == json.loads(body)


def test_delete_or_release_after_a_consumer_received_the_message_leaves_it_to_the_consumer(
    azurite: str,
) -> None:
    """The sender's pop receipt is stale once someone received the message: settling it is no
    error (400 PopReceiptMismatch or 404, "no longer ours"), and changes nothing for the consumer."""
    name = f"webhook-deliveries-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        try:
            sent = await queues.send(name, "taken over", visibility_timeout=HIDDEN)
            with raw_client(azurite, name) as consumer:
                # The hidden message shows up early (as after a crash): a consumer receives it.
                consumer.update_message(sent.id, sent.pop_receipt, visibility_timeout=0)
                taken = list(consumer.receive_messages(max_messages=1, visibility_timeout=300))
                assert [m.id for m in taken] == [sent.id]
                assert taken[0].pop_receipt != sent.pop_receipt
                await queues.delete(sent)  # stale receipt: nothing raised, nothing deleted
                await queues.release(sent)  # stale receipt: nothing raised, not made visible
                assert message_count(azurite, name) == 1
                assert visible_bodies(azurite, name) == []  # still the consumer's, hidden
                consumer.delete_message(taken[0].id, taken[0].pop_receipt)  # its receipt still works
            assert message_count(azurite, name) == 0
        finally:
            await queues.close()

    asyncio.run(run())


def test_a_queued_message_repr_does_not_show_its_pop_receipt(azurite: str) -> None:
    name = f"webhook-deliveries-{uuid.uuid4().hex[:8]}"

    async def run() -> QueuedMessage:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        try:
            sent = await queues.send(name, "x", visibility_timeout=HIDDEN)
            await queues.delete(sent)
            return sent
        finally:
            await queues.close()

    sent = asyncio.run(run())
    assert sent.pop_receipt
    for shown in (repr(sent), str(sent), f"{sent!r}", repr([sent])):
        assert sent.pop_receipt not in shown
        assert sent.id in shown and name in shown


def test_reschedule_rewrites_a_held_message_in_place_and_declines_one_taken_by_a_consumer(
    azurite: str,
) -> None:
    """A failed prompt attempt turns its own hidden message into the retry (core/notification/delivery.py)."""
    name = f"webhook-deliveries-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[bool, bool]:
        queues = StorageQueues(StorageConfig(connection_string=azurite))
        await queues.ensure_queues((name,))
        held = await queues.send(name, '{"attempt":1}', visibility_timeout=timedelta(minutes=2))
        rescheduled = await queues.reschedule(held, '{"attempt":2,"é":"✓"}', visibility_timeout=timedelta(0))
        taken = await queues.send(name, '{"attempt":1,"other":true}', visibility_timeout=timedelta(0))
        with raw_client(azurite, name) as client:  # a consumer receives it: the sender's receipt is stale
            received = {
                base64.b64decode(m.content).decode() for m in client.receive_messages(max_messages=10)
            }
        declined = await queues.reschedule(taken, '{"attempt":2}', visibility_timeout=timedelta(seconds=5))
        await queues.close()
        assert received == {'{"attempt":2,"é":"✓"}', '{"attempt":1,"other":true}'}
        return rescheduled, declined

    rescheduled, declined = asyncio.run(scenario())
    assert rescheduled is True and declined is False
    with raw_client(azurite, name) as client:
        assert client.get_queue_properties().approximate_message_count == 2  # rewritten, not added
