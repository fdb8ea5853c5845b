"""Work in flight: so that a crashed worker's work resumes in seconds, not after the queue's 10 minutes.

A queue-triggered invocation that dies (a SIGKILL, a deployment, a lost instance) leaves its message
invisible for the trigger's visibility timeout, 10 minutes on Azure, and the registration's lease
held until it lapses. So the worker writes an entry in the in-flight index before it claims the
lease and before its first Graph call (write-ahead), and removes it when the invocation ends on
any path a live process takes: done, failed for good, or handed back to the queue's own retry. An
entry is left behind only by a process that died (or a job cancelled mid-way), and a frequent
sweep (core/recovery/resume.py) sends its message again once the registration's lease lapsed.

The index holds nothing but entries in flight, so reading it costs O(in flight), never O(all
registrations). The entry carries the queue and the exact message to send again: the sweep needs
nothing else, and the re-sent message is one the worker already knows (idempotent by its job id,
or by the registration id).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from functions.core.record.errors import RegistrarError
from functions.core.record.keeper import LeaseHeld

if TYPE_CHECKING:
    from functions.core.ports import InFlightIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InFlightWork:
    key: str  # one per piece of work: the rotation job id, or "<registration id>-provision"
    registration_id: str  # whose lease tells whether a worker is on it
    queue: str  # where its message goes again
    message: str  # the message that started it (ids only: never a secret)
    touched_at: datetime  # when a worker started it, or the sweep last re-sent it
    resumes: int = 0  # how many times the sweep re-sent it
    etag: str | None = None  # as read: the sweep marks a resume only if nobody changed it since


def provisioning_work(registration_id: str, queue: str, now: datetime) -> InFlightWork:
    """A provisioning run: its message is the registration-requests envelope (triggers/queue_messages.py)."""
    return InFlightWork(
        key=f"{registration_id}-provision",
        registration_id=registration_id,
        queue=queue,
        message=json.dumps({"registrationId": registration_id}),
        touched_at=now,
    )


@dataclass
class Tracking:
    """What the block decided about its entry (see `tracked`)."""

    keep_on_failure: bool = False  # a failure from now on leaves the entry for the sweep
    handed_over: bool = False  # the entry outlives the block: another invocation's run removes it


@contextlib.asynccontextmanager
async def tracked(index: InFlightIndex | None, work: InFlightWork) -> AsyncIterator[Tracking]:
    """Hold an in-flight entry for the length of the block (see the module docstring).

    - The block ends, or raises an Exception (a failure recorded, or a TransientError whose message
      the queue delivers again after its short visibility timeout): the entry goes, if nobody wrote
      it again meanwhile (ETag). Unless the block said otherwise: `keep_on_failure` once what follows
      must happen even if this invocation fails (a decommission half-done, a run whose outcome is
      saved but not yet settled), `handed_over` when a message it sent carries the work on (an
      approval: the worker's run writes the same entry and removes it).
    - LeaseHeld: another worker is on the same work; its entry is the same one, and its end removes it.
    - Anything else (CancelledError, a process that dies): the entry stays, for the sweep.
    """
    tracking = Tracking()
    if index is None:
        yield tracking
        return
    etag = await index.put(work)  # write-ahead: before the lease, before Graph
    try:
        yield tracking
    except LeaseHeld:
        raise
    except Exception:
        if not tracking.keep_on_failure:
            await _remove_quietly(index, work.key, etag)
        else:
            log.warning("in-flight entry %s kept: the resume sweep sends its message again", work.key)
        raise
    if not tracking.handed_over:
        await _remove_quietly(index, work.key, etag)


async def _remove_quietly(index: InFlightIndex, key: str, etag: str) -> None:
    # Only our own write: a duplicate that claimed the released lease between our release and this
    # removal has written the entry again, and its run must stay covered.
    try:
        await index.remove(key, etag)
    except RegistrarError as err:  # left behind: the sweep re-sends it once, and that run removes it
        log.warning("in-flight entry %s not removed: %s", key, err)
