"""Prompt delivery: the invocation that announces an event attempts its deliveries at once, and
the webhook-deliveries queue keeps every one of them as the fallback.

Why: a delivery left to the queue trigger waits for the host's next poll of an idle queue (up to
host.json maxPollingInterval) and costs a receive and an invocation per subscriber. The announcing
invocation is already running. Within `prompt_deliveries(...)`, the Announcer sends each
delivery's message hidden for `window` and starts its first attempt right away (the same
DeliveryWorker the queue trigger runs); when the invocation's work is done, `settle()` waits for
the attempts and deletes each settled one's message (delivered, gone, or its retry enqueued by the
worker), so the queue trigger never sees it.

Crash safety is the queue's: every delivery is on the queue before its attempt starts.
- The invocation dies: its messages reappear after `window` and the queue trigger delivers them,
  with the same webhook-id. They carry `prompt`, so the worker first reads the delivery log and
  does not send again what the prompt attempt settled.
- An attempt fails unexpectedly (the worker raised), or is still running at `deadline`: it is
  cancelled and its message made visible at once; the queue trigger takes it over.
- A message cannot be deleted (storage failing): it reappears after `window`, as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from datetime import timedelta

from functions.core.delivery import DeliveryWorker
from functions.core.notifications import Delivery
from functions.core.ports import MessageQueue, QueuedMessage

log = logging.getLogger(__name__)

# Longer than any attempt may take before settle() (deadline + the announcing workflow's rest), so
# the queue trigger does not take a message whose prompt attempt is still running.
PROMPT_WINDOW = timedelta(minutes=2)
# An attempt takes at most the webhook timeout (10 s) plus a Key Vault read and a Table write.
PROMPT_DEADLINE = timedelta(seconds=45)

_current: ContextVar[PromptDeliveries | None] = ContextVar("prompt_deliveries", default=None)


def current_prompt() -> PromptDeliveries | None:
    """The prompt deliveries of the running invocation, if its trigger opened them."""
    return _current.get()


class PromptDeliveries:
    def __init__(
        self,
        *,
        worker: DeliveryWorker,
        queue: MessageQueue,
        window: timedelta = PROMPT_WINDOW,
        deadline: timedelta = PROMPT_DEADLINE,
    ) -> None:
        if deadline >= window:
            raise ValueError("the deadline must fall within the window the messages stay hidden")
        self._worker = worker
        self._queue = queue
        self.window = window
        self._deadline = deadline
        self._attempts: list[tuple[asyncio.Task[str], QueuedMessage]] = []
        self._prefetches: list[asyncio.Task[None]] = []

    def prefetch(self, subscription_ids: Sequence[str]) -> None:
        """Read the signing secrets of deliveries about to be announced, while the announcing work
        still waits on other calls (a rotation waits for Entra to accept the new credential)."""
        if subscription_ids:
            self._prefetches.append(asyncio.create_task(self._worker.prefetch(subscription_ids)))

    def start(self, delivery: Delivery, message: QueuedMessage) -> None:
        """Attempt `delivery` now; `message` is its hidden copy on the queue."""
        self._attempts.append((asyncio.create_task(self._worker.deliver(delivery)), message))

    async def settle(self) -> dict[str, int]:
        """Wait for the attempts (up to the deadline), then delete the messages of those that
        settled and release the others to the queue trigger. Returns how many ended how."""
        await self._stop_prefetching()
        attempts, self._attempts = self._attempts, []
        if not attempts:
            return {}
        tasks = [task for task, _ in attempts]
        _, pending = await asyncio.wait(tasks, timeout=self._deadline.total_seconds())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        outcomes = await asyncio.gather(
            *(self._finish(task, message) for task, message in attempts), return_exceptions=True
        )
        counts: dict[str, int] = {}
        for outcome in outcomes:
            key = outcome if isinstance(outcome, str) else "unsettled"
            counts[key] = counts.get(key, 0) + 1
        if counts.get("released") or counts.get("unsettled"):
            log.warning("prompt deliveries left to the queue: %s", counts)
        return counts

    async def _finish(self, task: asyncio.Task[str], message: QueuedMessage) -> str:
        if task.cancelled():
            await self._queue.release(message)
            return "released"
        failure = task.exception()
        if failure is not None:
            log.warning("prompt delivery failed (%s); the queue trigger retries it", type(failure).__name__)
            await self._queue.release(message)
            return "released"
        await self._queue.delete(message)
        return task.result()  # delivered, gone, retrying or dead_lettered

    async def _stop_prefetching(self) -> None:
        prefetches, self._prefetches = self._prefetches, []
        for task in prefetches:
            task.cancel()  # done by now, unless nothing was announced after all
        await asyncio.gather(*prefetches, return_exceptions=True)

    async def abandon(self) -> None:
        """Stop every attempt and hand its message to the queue trigger (the invocation is ending)."""
        await self._stop_prefetching()
        attempts, self._attempts = self._attempts, []
        for task, _ in attempts:
            task.cancel()
        await asyncio.gather(*(task for task, _ in attempts), return_exceptions=True)
        for _, message in attempts:
            with contextlib.suppress(Exception):
                await self._queue.release(message)


@contextlib.asynccontextmanager
async def prompt_deliveries(
    worker: DeliveryWorker,
    queue: MessageQueue,
    *,
    window: timedelta = PROMPT_WINDOW,
    deadline: timedelta = PROMPT_DEADLINE,
) -> AsyncIterator[PromptDeliveries]:
    """Deliveries announced inside are attempted at once and settled on the way out, whether the
    work inside succeeded or raised; cancelled (functionTimeout), they go to the queue trigger."""
    prompt = PromptDeliveries(worker=worker, queue=queue, window=window, deadline=deadline)
    token = _current.set(prompt)
    try:
        yield prompt
    except asyncio.CancelledError:
        await asyncio.shield(prompt.abandon())
        raise
    finally:
        _current.reset(token)
        await prompt.settle()  # after abandon(), nothing is left to settle
