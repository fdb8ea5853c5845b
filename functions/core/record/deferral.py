"""Defer instead of sleep: a job whose tenant has no Graph budget for it now goes back on its queue.

Graph's budgets are per (tenant, app) (REFERENCE.md). The Graph adapter paces every call to them
and reports how long a new write in a tenant would wait (Directory.predicted_wait). The core
decides, when a job starts (TenantJobs.admit):
- a wait longer than `most_wait`: the job is not started;
- a tenant whose running jobs in this process already expect `writes_in_flight` Graph writes
  (about 8 registrations, or 64 rotations): the job is not started either. Its calls would only
  queue behind theirs at the budget's rate while holding a worker slot, and slots held that way
  are what would make a registration in another tenant wait. Those jobs keep the budget busy by
  themselves (64 writes are 3.2 s of Graph's 3,000 writes per 150 s), and half of the host's
  16 slots stay free for other tenants.
A job not started raises Deferred(retry_after), which the triggers turn into the same message put
back on its queue, invisible that long, so the slot serves another tenant meanwhile. A job that
starts waits its calls' short turns in place.

Deferral is decided before the job changes anything (only its lease, given back), so the message
that comes back runs the job from where it was: idempotent as any redelivery.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from functions.core.ports import Directory
from functions.core.record.errors import Deferred

# Longer than this, a job is not worth holding a worker slot for: a few calls queued at the
# budget's rate, or a short Retry-After, are waited out in place.
DEFAULT_MOST_WAIT = timedelta(seconds=5)
# Graph writes the running jobs of one tenant may expect at once in a process: enough to keep the
# budget busy (a registration makes ~8 writes, a rotation 1), few enough to leave the slots free.
DEFAULT_WRITES_IN_FLIGHT = 64
# The rate of a tenant's jobs is read from the last RATE_WINDOW that ended within RATE_HORIZON_S:
# ends long ago tell of how little work there was then, not of how fast jobs can end now (a rate
# read across an idle hour would put a new backlog minutes apart). A deferred job not back STALE_S
# after it was due came back on another instance (or is gone). No turn is further than MAX_TURN_S:
# a job back early is only deferred again (a lease claim and release), one back late waits idle.
RATE_WINDOW = 32
RATE_HORIZON_S = 30.0
STALE_S = 60.0
MAX_TURN_S = 60.0
# Turns are spaced for jobs ending this much faster than they have: the rate read is what the
# budget allowed while it was not kept full, so spacing by it alone holds the backlog to that rate
# (the estimate fulfils itself). A job back a little early is only deferred again.
OVERSUPPLY = 1.25
# Wake a little after the budget is expected back: a message that returns a hair early is deferred again.
MARGIN = timedelta(seconds=1)


def defer_if_paced(directory: Directory, tenant_id: str, what: str, *, most: timedelta) -> None:
    """Raise Deferred when a write in `tenant_id` would wait longer than `most` now."""
    wait = directory.predicted_wait(tenant_id)
    if wait > most:
        raise _deferred(what, tenant_id, wait)


def _deferred(what: str, tenant_id: str, wait: timedelta, why: str = "") -> Deferred:
    retry_after = wait + MARGIN
    return Deferred(
        f"{what}: tenant {tenant_id}'s Graph budget is spoken for for {wait.total_seconds():.1f} s{why};"
        f" deferred {retry_after.total_seconds():.0f} s",
        retry_after=retry_after,
    )


class TenantJobs:
    """The jobs of each tenant running in this process, and the admission of new ones. One per
    process (bootstrap), shared by every job it runs; jobs of one event loop, so no lock.

    A deferred job comes back when its turn is expected, not at once: after the jobs deferred before it, at the rate the tenant's jobs have been ending here
    (a backlog of 300 comes back spread over the time it takes, instead of every job knocking
    every few seconds, each knock a lease claim and release)."""

    def __init__(
        self,
        *,
        most_wait: timedelta = DEFAULT_MOST_WAIT,
        writes_in_flight: int = DEFAULT_WRITES_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most_wait = most_wait
        self.writes_in_flight = writes_in_flight
        self._clock = clock
        self._running: dict[str, int] = {}  # jobs
        self._writes: dict[str, int] = {}  # the writes those jobs expect
        self._ended: dict[str, deque[float]] = {}  # when the tenant's last jobs ended
        self._waiting: dict[str, dict[str, float]] = {}  # deferred jobs -> when they are due back

    def running(self, tenant_id: str) -> int:
        return self._running.get(tenant_id.lower(), 0)

    def admit(self, directory: Directory, tenant_id: str, what: str, *, writes: int = 1) -> None:
        """Count the job as running (done() when it ends, with the same `writes`: the Graph writes
        it expects); Deferred when it should wait on its queue instead (then nothing is counted).
        `what` names the job (the same on each delivery)."""
        key = tenant_id.lower()
        waiting = self._waiting.setdefault(key, {})
        now = self._clock()
        expected = self._writes.get(key, 0)
        wait = directory.predicted_wait(tenant_id)
        busy = expected and expected + writes > self.writes_in_flight
        if wait > self.most_wait or busy:
            why = f" and its running jobs expect {expected} writes" if busy else ""
            deferred = _deferred(what, tenant_id, max(wait, self._turn(key, what, now)), why)
            waiting[what] = now + deferred.retry_after.total_seconds()
            raise deferred
        waiting.pop(what, None)
        self._running[key] = self._running.get(key, 0) + 1
        self._writes[key] = expected + writes

    def _turn(self, key: str, what: str, now: float) -> timedelta:
        """How long until `what`'s turn: the jobs deferred before it, at the rate jobs end here."""
        waiting = self._waiting[key]
        for name in [n for n, due in waiting.items() if due < now - STALE_S]:
            del waiting[name]  # came back elsewhere, or gone
        due = waiting.get(what)
        ahead = sum(1 for name, other in waiting.items() if name != what and (due is None or other < due))
        ended = [at for at in self._ended.get(key, ()) if at >= now - RATE_HORIZON_S]
        if len(ended) < 2 or ended[-1] <= ended[0]:
            return timedelta(0)
        rate = OVERSUPPLY * (len(ended) - 1) / (ended[-1] - ended[0])
        return timedelta(seconds=min(ahead / rate, MAX_TURN_S))

    def done(self, tenant_id: str, *, writes: int = 1) -> None:
        key = tenant_id.lower()
        self._running[key] = self._running.get(key, 1) - 1
        self._writes[key] = self._writes.get(key, writes) - writes
        if self._running[key] <= 0:
            del self._running[key]
            self._writes.pop(key, None)
        self._ended.setdefault(key, deque(maxlen=RATE_WINDOW)).append(self._clock())
