"""ports.MessageQueue on azure-storage-queue (aio): messages written the way the Functions host reads them.

The host's queue trigger decodes message bodies as base64 (host.json messageEncoding, the
default), so messages go out through TextBase64EncodePolicy: UTF-8 text, base64 on the wire.
One QueueClient per queue, made on first use (names in functions/resources.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from functions.adapters.tables import StorageConfig
from functions.adapters.transport import data_plane_options
from functions.core.ports import QueuedMessage
from functions.core.record.errors import NotFound, PermanentError, RegistrarError, TransientError
from functions.resources import QUEUES

MAX_VISIBILITY_DELAY = timedelta(days=7)  # Storage queues refuse a longer visibility timeout
MAX_MESSAGE_BYTES = 48 * 1024  # 64 KiB on the wire, of which base64 takes a third


class _Settled(Exception):  # noqa: N818
    """The message is no longer the sender's to settle (deleted, expired, or received since)."""


def queue_error(error: BaseException, queue_name: str) -> RegistrarError | None:
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    if isinstance(error, ResourceExistsError):  # create_queue on an existing queue (409, or 204)
        return PermanentError(f"queue {queue_name} exists", code="QueueExists")
    if isinstance(error, ResourceNotFoundError):
        return NotFound("queue", queue_name)
    if isinstance(error, ServiceRequestError):
        return TransientError(f"queue storage unreachable for {queue_name}")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status in (408, 429) or status >= 500:
            return TransientError(f"queue {queue_name}: {status}")
        return PermanentError(f"queue {queue_name}: {status}", code=f"HTTP{status}")
    return None


class StorageQueues:
    """MessageQueue port. config: StorageConfig (connection string, or endpoint + credential)."""

    def __init__(self, config: StorageConfig, credential: Any | None = None) -> None:
        self._config = config
        self._credential = credential
        self._clients: dict[str, Any] = {}

    def client(self, queue_name: str) -> Any:
        client = self._clients.get(queue_name)
        if client is None:
            from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
            from azure.storage.queue.aio import QueueClient

            policies: Mapping[str, Any] = {
                "message_encode_policy": TextBase64EncodePolicy(),
                "message_decode_policy": TextBase64DecodePolicy(),
                **data_plane_options(),
            }
            if self._config.connection_string:
                client = QueueClient.from_connection_string(
                    self._config.connection_string, queue_name, **policies
                )
            elif self._config.queue_endpoint and self._credential is not None:
                client = QueueClient(
                    self._config.queue_endpoint, queue_name, credential=self._credential, **policies
                )
            else:
                raise PermanentError(
                    "no queue storage configured (AzureWebJobsStorage)", code="StorageNotConfigured"
                )
            self._clients[queue_name] = client
        return client

    async def ensure_queues(self, names: tuple[str, ...] = QUEUES) -> None:
        """Create the registrar's queues and their poison queues; idempotent (run at startup)."""
        for name in (*names, *(f"{n}-poison" for n in names)):
            await self._create(name)

    async def _create(self, name: str) -> None:
        try:
            await self._call(name, lambda: self.client(name).create_queue())
        except PermanentError as error:
            if error.code != "QueueExists":
                raise

    async def send(
        self, queue_name: str, message: str, *, visibility_timeout: timedelta | None = None
    ) -> QueuedMessage:
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            raise PermanentError(f"message for {queue_name} exceeds 48 KiB", code="MessageTooLarge")
        delay = None
        if visibility_timeout is not None and visibility_timeout > timedelta(0):
            delay = max(1, int(min(visibility_timeout, MAX_VISIBILITY_DELAY).total_seconds()))
        client = self.client(queue_name)
        try:
            sent = await self._call(
                queue_name, lambda: client.send_message(message, visibility_timeout=delay)
            )
        except NotFound:
            # A queue nobody created yet (a fresh Azurite): create it once and send again.
            await self._create(queue_name)
            sent = await self._call(
                queue_name, lambda: client.send_message(message, visibility_timeout=delay)
            )
        return QueuedMessage(queue_name, sent.id, sent.pop_receipt)

    async def delete(self, message: QueuedMessage) -> None:
        client = self.client(message.queue_name)
        with contextlib.suppress(_Settled):
            await self._settle(message, lambda: client.delete_message(message.id, message.pop_receipt))

    async def release(self, message: QueuedMessage) -> None:
        client = self.client(message.queue_name)
        with contextlib.suppress(_Settled):
            await self._settle(
                message,
                lambda: client.update_message(message.id, message.pop_receipt, visibility_timeout=0),
            )

    async def reschedule(
        self, message: QueuedMessage, content: str, *, visibility_timeout: timedelta
    ) -> bool:
        if len(content.encode()) > MAX_MESSAGE_BYTES:
            raise PermanentError(f"message for {message.queue_name} exceeds 48 KiB", code="MessageTooLarge")
        seconds = 0  # as send(): a delay under a second is one second, none is none
        if visibility_timeout > timedelta(0):
            seconds = max(1, int(min(visibility_timeout, MAX_VISIBILITY_DELAY).total_seconds()))
        client = self.client(message.queue_name)
        try:
            await self._settle(
                message,
                lambda: client.update_message(
                    message.id, message.pop_receipt, content=content, visibility_timeout=seconds
                ),
            )
        except _Settled:
            return False
        return True

    async def _settle(self, message: QueuedMessage, attempt: Any) -> None:
        """404 (deleted, or expired) and 400 PopReceiptMismatch (received by a consumer since) mean
        the message is no longer this sender's to settle: _Settled, which the callers ignore."""
        from azure.core.exceptions import HttpResponseError

        try:
            await attempt()
        except Exception as error:
            if isinstance(error, HttpResponseError) and (
                error.status_code == 404 or getattr(error, "error_code", None) == "PopReceiptMismatch"
            ):
                raise _Settled from None
            failure = queue_error(error, message.queue_name)
            if failure is None:
                raise
            raise failure from None

    async def _call(self, queue_name: str, attempt: Any) -> Any:
        failure: RegistrarError | None
        try:
            return await attempt()
        except Exception as error:
            failure = queue_error(error, queue_name)
            if failure is None:
                raise
        raise failure

    async def approximate_length(self, queue_name: str) -> int:
        """QueueLengths port: Storage's approximate message count (one request; 0 for a missing queue)."""
        try:
            properties = await self._call(queue_name, lambda: self.client(queue_name).get_queue_properties())
        except NotFound:
            return 0
        return int(properties.approximate_message_count or 0)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
