"""Prompt delivery: the invocation that announces an event attempts its deliveries at once, and
the webhook-deliveries queue keeps every one of them as the fallback.

Why: a delivery left to the queue trigger waits for the host's next poll of an idle queue (up to
host.json maxPollingInterval) and costs a receive and an invocation per subscriber. The announcing
invocation is already running. Within `prompt_deliveries(...)`, the Announcer sends each
delivery's message hidden for `window` and starts its first attempt right away (the same
DeliveryWorker the queue trigger runs, holding the message). Once the attempt has settled, the
message is deleted (delivered, gone) or becomes the retry itself: a failed attempt rewrites it in
place as attempt 2, hidden for the retry delay, so one delivery never has two retry chains.

Every attempt is bounded from its start, not from when the invocation ends: `deadline` for the
attempt (a free slot included: at most `concurrency` attempts at once per process, so a burst
of rotations cannot exhaust the webhook sender's connection pool), then the delete waits at most
`linger` for the invocation's work to finish (deletes are deferred so that a fan-out's POSTs go
first). Deadline + linger stay well inside `window`, so the queue trigger never takes a message
whose prompt attempt is still running.

Crash safety is the queue's: every delivery is on the queue before its attempt starts.
- The worker process dies (on Azure, functionTimeout also restarts the worker process): the
  messages reappear after `window` and the queue trigger delivers them with the same webhook-id.
  They carry `prompt`, so the worker first reads the delivery log and does not send again what
  the prompt attempt settled.
- An attempt raises, runs past its deadline, or is cancelled (the local host cancels at
  functionTimeout): its message is made visible at once; the queue trigger takes it over.
- A message cannot be deleted (storage failing): it reappears after `window`, as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from functions.core.notification.delivery import DeliveryWorker
from functions.core.notification.events import Delivery
from functions.core.ports import MessageQueue, QueuedMessage

log = logging.getLogger(__name__)

PROMPT_WINDOW = timedelta(minutes=2)
# The webhook timeout (10 s) plus a Key Vault read and a Table write, with room for their retries.
PROMPT_DEADLINE = timedelta(seconds=45)
# Event Grid waits 30 s for its webhook's answer before it retries the event.
EVENT_GRID_PROMPT_DEADLINE = timedelta(seconds=15)
PROMPT_LINGER = timedelta(seconds=30)
SETTLING_CALL_S = 5.0  # a release or delete after the attempt; the window covers one that fails
PROMPT_CONCURRENCY = 64  # the webhook sender pools 100 connections; queue-triggered retries need some

_current: ContextVar[PromptDeliveries | None] = ContextVar("prompt_deliveries", default=None)


def current_prompt() -> PromptDeliveries | None:
    """The prompt deliveries of the running invocation, if its trigger opened them and they are
    not settled yet (a task that outlives the block keeps the variable, not the right to use it)."""
    prompt = _current.get()
    return None if prompt is None or prompt.closed else prompt


class PromptDeliveries:
    def __init__(
        self,
        *,
        worker: DeliveryWorker,
        queue: MessageQueue,
        window: timedelta = PROMPT_WINDOW,
        deadline: timedelta = PROMPT_DEADLINE,
        linger: timedelta = PROMPT_LINGER,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        if deadline + linger >= window:
            raise ValueError(
                "the deadline and the linger must fall within the window the messages stay hidden"
            )
        self._worker = worker
        self._queue = queue
        self.window = window
        self._deadline_s = deadline.total_seconds()
        self._linger_s = linger.total_seconds()
        self._slots = slots or asyncio.Semaphore(PROMPT_CONCURRENCY)
        self._closing = asyncio.Event()  # set when settled or abandoned: no more attempts start
        self._attempts: list[asyncio.Task[str]] = []
        self._prefetches: list[asyncio.Task[None]] = []

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def prefetch(self, subscription_ids: Sequence[str]) -> None:
        """Read the signing secrets of deliveries about to be announced, while the announcing work
        still waits on other calls (a rotation waits for Entra to accept the new credential)."""
        if subscription_ids and not self.closed:
            self._prefetches.append(asyncio.create_task(self._worker.prefetch(subscription_ids)))

    def start(self, delivery: Delivery, message: QueuedMessage) -> bool:
        """Attempt `delivery` now; `message` is its hidden copy on the queue. False once these
        prompt deliveries are settled (the caller hands the message to the queue trigger)."""
        if self.closed:
            return False
        self._attempts.append(asyncio.create_task(self._attempt(delivery, message)))
        return True

    async def _attempt(self, delivery: Delivery, message: QueuedMessage) -> str:
        try:
            async with asyncio.timeout(self._deadline_s), self._slots:
                status = await self._worker.deliver(delivery, held=message)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(message))
            raise
        except Exception as failure:  # TimeoutError at the deadline, or the worker raised
            log.warning(
                "prompt delivery %s not settled (%s); the queue trigger takes it over",
                delivery.delivery_id,
                type(failure).__name__,
            )
            await asyncio.shield(self._release(message))
            return "released"
        if status == "retrying":
            return status  # the held message is the retry now (or someone else's already)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._linger_s):
                    await self._closing.wait()  # the invocation's own work first
            await self._queue.delete(message)
        except asyncio.CancelledError:
            await asyncio.shield(self._delete_quietly(message))
            raise
        except Exception as failure:  # it reappears after the window; the worker skips it then
            log.warning(
                "prompt delivery %s: message not deleted (%s)", delivery.delivery_id, type(failure).__name__
            )
            return "undeleted"
        return status

    async def _delete_quietly(self, message: QueuedMessage) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SETTLING_CALL_S):
                await self._queue.delete(message)

    async def _release(self, message: QueuedMessage) -> None:
        """Bounded: past the deadline, the window is the fallback, not more waiting on storage."""
        try:
            async with asyncio.timeout(SETTLING_CALL_S):
                await self._queue.release(message)
        except Exception as failure:  # it reappears after the window instead
            log.warning("prompt delivery message not released (%s)", type(failure).__name__)

    async def settle(self) -> dict[str, int]:
        """Close, then wait for every attempt to end (each is bounded on its own). Returns how
        many ended how: delivered, gone, retrying, dead_lettered, released, undeleted."""
        self._closing.set()  # the lingering deletes go now
        attempts, self._attempts = self._attempts, []  # before any await: a cancel finds them all
        try:
            await self._stop_prefetching()
            outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        except asyncio.CancelledError:  # each attempt, cancelled with us, releases its message
            for task in attempts:
                task.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)
            raise
        counts: dict[str, int] = {}
        for outcome in outcomes:
            key = outcome if isinstance(outcome, str) else "released"
            counts[key] = counts.get(key, 0) + 1
        if counts.get("released") or counts.get("undeleted"):
            log.warning("prompt deliveries left to the queue: %s", counts)
        return counts

    async def _stop_prefetching(self) -> None:
        prefetches, self._prefetches = self._prefetches, []
        for task in prefetches:
            task.cancel()  # done by now, unless nothing was announced after all
        await asyncio.gather(*prefetches, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[PromptDeliveries]:
        """Deliveries announced inside are attempted at once and settled on the way out, whether
        the work inside succeeded or raised; cancelled, they go to the queue trigger."""
        token = _current.set(self)
        try:
            yield self
        except asyncio.CancelledError:
            await asyncio.shield(self.abandon())
            raise
        finally:
            _current.reset(token)
            await self.settle()  # after abandon(), nothing is left to settle

    async def abandon(self) -> None:
        """Stop every attempt; each hands its message to the queue trigger (the invocation ends)."""
        self._closing.set()
        attempts, self._attempts = self._attempts, []  # before any await, as in settle()
        for task in attempts:
            task.cancel()
        await self._stop_prefetching()
        await asyncio.gather(*attempts, return_exceptions=True)


def prompt_deliveries(
    worker: DeliveryWorker, queue: MessageQueue, **limits: Any
) -> contextlib.AbstractAsyncContextManager[PromptDeliveries]:
    """PromptDeliveries(worker=..., queue=..., **limits).opened(): limits are window, deadline,
    linger and slots, as PromptDeliveries takes them."""
    return PromptDeliveries(worker=worker, queue=queue, **limits).opened()
