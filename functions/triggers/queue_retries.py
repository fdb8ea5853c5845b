"""How many times the Functions host delivers a queue message before it moves it to `-poison`.

The host reads extensions.queues.maxDequeueCount from host.json (5 here; 5 is also the host's own
default), and an app setting `AzureFunctionsJobHost__extensions__queues__maxDequeueCount`
(any case) overrides host.json. The app reads the same two places, in the same order, so the worker knows
which delivery is the last one (QueueMessage.dequeue_count reaching it): there it ends the
registration as failed instead of raising into the poison queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import azure.functions as func

    from functions.bootstrap import Services

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"  # the function app's root
MAX_DEQUEUE_SETTING = "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"
DEFAULT_MAX_DEQUEUE_COUNT = 5


def max_dequeue_count(values: Mapping[str, str], host_json: Path = HOST_JSON) -> int:
    # Case-insensitive, as the host's configuration reads it; the environment's own spelling wins.
    raw = (values.get(MAX_DEQUEUE_SETTING) or "").strip()
    if not raw:
        wanted = MAX_DEQUEUE_SETTING.lower()
        raw = next((str(v).strip() for k, v in values.items() if k.lower() == wanted and v), "")
    if raw:
        try:
            count = int(raw)
        except ValueError:
            log.error("%s=%r is not a whole number; reading host.json", MAX_DEQUEUE_SETTING, raw)
        else:
            if count >= 1:
                return count
    return _from_host_json(host_json)


@cache
def _from_host_json(path: Path) -> int:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["extensions"]["queues"]["maxDequeueCount"]
        count = int(value)
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning(
            "no maxDequeueCount in %s (%s): the host's default %d", path, err, DEFAULT_MAX_DEQUEUE_COUNT
        )
        return DEFAULT_MAX_DEQUEUE_COUNT
    return count if count >= 1 else DEFAULT_MAX_DEQUEUE_COUNT


def is_last_delivery(dequeue_count: int | None, values: Mapping[str, str]) -> bool:
    """Whether the host moves the message to the poison queue if this delivery raises (unknown: no)."""
    return dequeue_count is not None and dequeue_count >= max_dequeue_count(values)


@asynccontextmanager
async def poison_watch(msg: func.QueueMessage, queue_name: str, svc: Services) -> AsyncIterator[None]:
    """Around a queue handler: when its last delivery raises, the host moves the message to
    `<queue>-poison`, so that is a signal (message.poisoned); the exception goes on to the host."""
    try:
        yield
    except Exception as err:
        if is_last_delivery(msg.dequeue_count, svc.settings.values):
            # The exception's type only: its text may quote the message, which may quote anything.
            svc.escalation().message_poisoned(queue_name, type(err).__name__)
        raise
