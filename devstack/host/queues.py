"""Queue triggers: poll a Storage queue (Azurite) with the Queues extension's semantics.

From host.json extensions.queues: batchSize messages per fetch, a new fetch once in-flight
messages drop to newBatchThreshold, randomized exponential backoff up to maxPollingInterval
while the queue is empty, base64 message encoding by default, visibilityTimeout before a failed
message reappears, and after maxDequeueCount failed attempts the message is copied to
'<queue>-poison' and deleted. A message that is not valid base64 goes to the poison queue at once,
without invoking the function (extension 5.x: retrying it could never succeed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import random
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devstack.host.config import ConfigError, QueueOptions, resolve
from devstack.host.functions import FunctionInfo
from devstack.host.invoker import InvocationFailed, Invoker, datetime_datum

log = logging.getLogger("devstack.host")

_MIN_POLLING_INTERVAL = timedelta(milliseconds=100)
# Messages are received invisible for 10 minutes and, while their function runs, made invisible
# for another 10 minutes at half-time (azure-webjobs-sdk QueueListener's visibility timer).
_PROCESSING_VISIBILITY_S = 600
# A test knob (never an Azure setting): tests shrink the processing visibility to see its renewal.
PROCESSING_VISIBILITY_KNOB = "DEVSTACK_HOST_PROCESSING_VISIBILITY_SECONDS"
# .NET's Convert.FromBase64String skips these; anything else outside base64 is an error.
_BASE64_WHITESPACE = re.compile(r"[ \t\r\n]")


class MessageDecodingError(Exception):
    """The message is not valid for the configured messageEncoding."""


def decode_body(content: str, encoding: str) -> bytes:
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(_BASE64_WHITESPACE.sub("", content), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageDecodingError(
            "message is not valid base64 (host.json messageEncoding is base64)"
        ) from exc


def queue_datum(body: bytes) -> meta.Datum:
    return meta.Datum(type="bytes", value=body)


def queue_metadata(message: Any) -> dict[str, meta.Datum]:
    """Trigger metadata the host sends with a queue message (names as the worker expects them)."""
    return {
        "Id": meta.Datum(type="string", value=message.id),
        "DequeueCount": meta.Datum(type="int", value=int(message.dequeue_count or 1)),
        "InsertionTime": datetime_datum(message.inserted_on),
        "ExpirationTime": datetime_datum(message.expires_on),
        "NextVisibleTime": datetime_datum(message.next_visible_on),
        "PopReceipt": meta.Datum(type="string", value=message.pop_receipt),
    }


def queue_service_for(function: FunctionInfo, environ: Mapping[str, str]) -> QueueServiceClient:
    """The queue service a trigger's `connection` names, as the Functions host reads it: a setting
    holding a connection string, else an identity-based connection (`<name>__queueServiceUri` or
    `<name>__accountName`, with `<name>__credential` = managedidentity and an optional
    `<name>__clientId`), signed in with the process's managed identity."""
    name = str(function.trigger.get("connection") or "AzureWebJobsStorage")
    value = environ.get(name) or environ.get(f"AzureWebJobs{name}")
    if value:
        return _service(value)
    account_url = environ.get(f"{name}__queueServiceUri")
    account = environ.get(f"{name}__accountName")
    if not account_url and account:
        account_url = f"https://{account}.queue.core.windows.net"
    if not account_url:
        raise ConfigError(f"Function '{function.name}': connection setting '{name}' is missing or empty")
    credential_kind = (environ.get(f"{name}__credential") or "managedidentity").lower()
    if credential_kind != "managedidentity":
        raise ConfigError(f"Function '{function.name}': {name}__credential must be 'managedidentity'")
    from azure.identity.aio import ManagedIdentityCredential

    client_id = environ.get(f"{name}__clientId") or None
    return QueueServiceClient(
        account_url, credential=ManagedIdentityCredential(client_id=client_id), use_env_settings=False
    )


def _service(connection: str) -> QueueServiceClient:
    if connection.strip().lower() == "usedevelopmentstorage=true":
        from devstack.azurite import DEFAULT_PORTS, connection_string

        connection = connection_string(DEFAULT_PORTS["blob"], DEFAULT_PORTS["queue"], DEFAULT_PORTS["table"])
    # use_env_settings=False: the host polls Azurite on loopback, where no proxy applies, and
    # azure-core's default (aiohttp trust_env) would look up proxies and ~/.netrc in a thread on
    # every receive and delete, about half of each call's CPU.
    return QueueServiceClient.from_connection_string(connection, use_env_settings=False)


class QueueListener:
    def __init__(
        self, function: FunctionInfo, invoker: Invoker, options: QueueOptions, environ: dict[str, str]
    ) -> None:
        self.function = function
        self.invoker = invoker
        self.options = options
        self.queue_name = resolve(str(function.trigger["queueName"]), environ).lower()
        self.service = queue_service_for(function, environ)
        self.queue: QueueClient = self.service.get_queue_client(self.queue_name)
        self.poison: QueueClient = self.service.get_queue_client(f"{self.queue_name}-poison")
        self._in_flight: set[asyncio.Task[None]] = set()
        self.processing_visibility_s = max(
            1, int(environ.get(PROCESSING_VISIBILITY_KNOB) or _PROCESSING_VISIBILITY_S)
        )

    async def ensure_queue(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self.queue.create_queue()

    async def close(self, drain_s: float = 5.0) -> None:
        """Let running invocations finish (up to drain_s), as the host drains at shutdown; then
        cancel the rest, whose messages are made visible again at once rather than after the lease."""
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.service.close()
        credential = getattr(self.service, "credential", None)  # a managed identity's: its session
        close = getattr(credential, "close", None)
        if close is not None and asyncio.iscoroutinefunction(close):
            await close()

    async def run(self) -> None:
        await self.ensure_queue()
        delay = _MIN_POLLING_INTERVAL
        idle = asyncio.Event()
        while True:
            if len(self._in_flight) > self.options.threshold:
                idle.clear()
                await idle.wait()  # set when an in-flight message completes
                continue
            try:
                messages = [
                    m
                    async for m in self.queue.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=self.processing_visibility_s,
                    )
                ]
            except ResourceNotFoundError:
                await self.ensure_queue()  # deleted under us (tests do): the host recreates it
                messages = []
            if not messages:
                await asyncio.sleep(delay.total_seconds() * random.uniform(0.8, 1.0))
                delay = min(delay * 2, max(self.options.max_polling_interval, _MIN_POLLING_INTERVAL))
                continue
            delay = _MIN_POLLING_INTERVAL
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self._in_flight.add(task)
                task.add_done_callback(functools.partial(self._done, idle=idle))

    def _done(self, task: asyncio.Task[None], *, idle: asyncio.Event) -> None:
        self._in_flight.discard(task)
        idle.set()

    async def _process(self, message: QueueMessage) -> None:
        try:
            await self._handle(message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
            raise
        except Exception:  # storage said no (e.g. the lease was lost): the message simply comes back later
            log.exception("Function '%s': could not settle message %s", self.function.name, message.id)

    async def _handle(self, message: QueueMessage) -> None:
        if message.dequeue_count and message.dequeue_count > self.options.max_dequeue_count:
            await self._move_to_poison(message)  # failed before a crash could record it
            return
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except MessageDecodingError:
            log.error(
                "Message decoding has failed! Check MessageEncoding settings. MessageId=%s (function '%s')",
                message.id,
                self.function.name,
            )
            await self._move_to_poison(message)
            return
        metadata = queue_metadata(message)
        stop = asyncio.Event()
        renewal = asyncio.create_task(self._keep_invisible(message, stop))
        try:
            await self.invoker.invoke(
                self.function,
                queue_datum(body),
                reason="New queue message detected",
                trigger_metadata=metadata,
            )
            failed = False
        except InvocationFailed:  # raised, or stopped at functionTimeout
            failed = True
        finally:
            await self._stop_renewal(renewal, stop)
        if failed:
            await self._failed(message)
            return
        await self.queue.delete_message(message.id, message.pop_receipt)

    async def _keep_invisible(self, message: QueueMessage, stop: asyncio.Event) -> None:
        """While the invocation runs, at half the processing visibility make the message invisible
        for another full one; the new pop receipt replaces the old (settling the message needs it)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.processing_visibility_s / 2)
            if stop.is_set():
                return
            try:
                receipt = await self.queue.update_message(
                    message.id, message.pop_receipt, visibility_timeout=self.processing_visibility_s
                )
            except Exception:  # the host logs it and keeps the invocation running
                log.exception("Function '%s': could not renew message %s", self.function.name, message.id)
                continue
            message.pop_receipt = receipt.pop_receipt
            message.next_visible_on = receipt.next_visible_on

    @staticmethod
    async def _stop_renewal(renewal: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Stop renewing, letting an update under way finish so its pop receipt is not lost."""
        stop.set()
        with contextlib.suppress(Exception):
            await renewal

    async def _failed(self, message: QueueMessage) -> None:
        if (message.dequeue_count or 1) >= self.options.max_dequeue_count:
            await self._move_to_poison(message)
            return
        await self.queue.update_message(
            message.id,
            message.pop_receipt,
            visibility_timeout=int(self.options.visibility_timeout.total_seconds()),
        )

    async def _move_to_poison(self, message: QueueMessage) -> None:
        log.warning(
            "Message %s has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            message.id,
            self.options.max_dequeue_count,
            self.poison.queue_name,
        )
        with contextlib.suppress(ResourceExistsError):
            await self.poison.create_queue()
        await self.poison.send_message(message.content)  # the stored text, still encoded as it came
        await self.queue.delete_message(message.id, message.pop_receipt)


async def invoke_by_hand(function: FunctionInfo, invoker: Invoker, text: str) -> None:
    """POST /admin/functions/NAME for a queue function: the input is the message body."""
    import uuid
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    metadata = {
        "Id": meta.Datum(type="string", value=str(uuid.uuid4())),
        "DequeueCount": meta.Datum(type="int", value=1),
        "InsertionTime": datetime_datum(now),
        "ExpirationTime": datetime_datum(now + timedelta(days=7)),
        "NextVisibleTime": datetime_datum(now),
        "PopReceipt": meta.Datum(type="string", value=""),
    }
    await invoker.invoke(
        function, queue_datum(text.encode("utf-8")), reason="Admin", trigger_metadata=metadata
    )
