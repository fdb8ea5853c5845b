"""The resume sweep: re-send the message of work in flight whose worker died, once its lease lapsed.

A timer (triggers/resume_work.py, REGISTRAR_RESUME_SCHEDULE, every 15 s by default) reads the
whole in-flight index (core/record/inflight.py), which holds only work in flight: the sweep reads
O(in flight) entries, and the registration record (one point read) of each entry older than a
work lease, never the settled registrations. An entry is resumed when

- it was written or last resumed more than WORK_LEASE ago (a worker that just started it may not
  have claimed the lease yet; a message just re-sent may still be waiting in its queue), and
- its registration's lease is not live (no worker holds it: a live worker renews it every 10 s).

Resuming marks the entry (ETag: of two sweeps racing on two instances one re-sends, the other
skips) and then sends its message again. The worker that receives it claims the lapsed lease and
carries on from the last saved step; it removes the entry when it ends. A crash between the mark and
the send delays the resume by one lease, never loses it. Worst case from a crash to a re-sent
message: the lease's 30 s (from the last renewal, at most 10 s before the crash, or from the
write-ahead) plus one sweep interval.

An entry re-sent MAX_RESUMES times whose work still has not ended (a message that kills its worker
every time) is dropped with an error; the original message still comes back after the queue's
visibility timeout, and the queue's maxDequeueCount and the stuck-registration sweep end it.
The original message of a resumed run comes back after that timeout too: it finds the work done
(or leased, and retries) and ends at once, as any redelivery does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.core.ports import Clock, InFlightIndex, MessageQueue, RegistrationStore
from functions.core.record.errors import NotFound, RegistrarError
from functions.core.record.inflight import InFlightWork
from functions.core.record.keeper import WORK_LEASE
from functions.signals import Signal

log = logging.getLogger(__name__)

MAX_RESUMES = 5  # as many as the queue's deliveries (host.json maxDequeueCount)
READS_AT_ONCE = 16  # registration point reads in parallel


@dataclass(frozen=True)
class ResumeSweep:
    in_flight: int  # in-flight entries read (the whole index)
    records_read: int  # registrations read to check their lease
    resumed: tuple[str, ...]  # entry keys whose message was sent again
    dropped: tuple[str, ...]  # entries removed: registration gone, or resumed too often


async def resume_lapsed(
    index: InFlightIndex,
    store: RegistrationStore,
    queue: MessageQueue,
    clock: Clock,
    *,
    lease_for: timedelta = WORK_LEASE,
    max_resumes: int = MAX_RESUMES,
) -> ResumeSweep:
    """Re-send every in-flight work whose worker is gone (see the module docstring)."""
    now = clock.now()
    entries = await index.all()
    settled = [work for work in entries if work.touched_at + lease_for <= now]
    slots = asyncio.Semaphore(READS_AT_ONCE)
    outcomes = await asyncio.gather(
        *(
            _resume_one(
                work, index=index, store=store, queue=queue, now=now, slots=slots, max_resumes=max_resumes
            )
            for work in settled
        )
    )
    return ResumeSweep(
        in_flight=len(entries),
        records_read=len(settled),
        resumed=tuple(key for outcome, key in outcomes if outcome == "resumed"),
        dropped=tuple(key for outcome, key in outcomes if outcome in ("gone", "dropped")),
    )


async def _resume_one(
    work: InFlightWork,
    *,
    index: InFlightIndex,
    store: RegistrationStore,
    queue: MessageQueue,
    now: datetime,
    slots: asyncio.Semaphore,
    max_resumes: int,
) -> tuple[str, str]:
    async with slots:
        try:
            try:
                record = await store.get(work.registration_id)
            except NotFound:  # decommissioned and deleted meanwhile: nothing to resume
                await index.remove(work.key)
                return "gone", work.key
            if record.lease_owner is not None and record.lease_until is not None and record.lease_until > now:
                return "held", work.key
            if work.resumes >= max_resumes:
                log.error(
                    "work %s resumed %d times without ending: left to its queue's retries and the "
                    "stuck-registration sweep",
                    work.key,
                    work.resumes,
                    extra=_signal(work, "dropped"),
                )
                await index.remove(work.key)
                return "dropped", work.key
            if not await index.mark_resumed(work, now):
                return "raced", work.key  # another sweep resumed it, or its worker ended it
            await queue.send(work.queue, work.message)
        except RegistrarError as err:  # Table storage or the queue busy: the next sweep tries again
            log.warning("in-flight work %s not resumed this time: %s", work.key, err)
            return "failed", work.key
    log.warning("resumed %s: its worker stopped (lease lapsed)", work.key, extra=_signal(work, "resumed"))
    return "resumed", work.key


def _signal(work: InFlightWork, outcome: str) -> dict[str, str]:
    return {
        "signal": Signal.WORK_RESUMED.value,
        "outcome": outcome,
        "registration_id": work.registration_id,
        "queue": work.queue,
    }
