"""Defer instead of sleep: a job whose tenant has no Graph budget for it now goes back on its queue.

Graph's budgets are per (tenant, app) (REFERENCE.md). The Graph adapter paces every call to them
and reports how long a new write in a tenant would wait (Directory.predicted_wait). The core
decides, when a job starts (TenantJobs.admit):
- a wait longer than `most_wait`: the job is not started;
- a tenant whose budget binds (any wait) with `busy_tenant_jobs` jobs already running in this
  process: the job is not started either. Its calls would only queue behind theirs at the
  budget's rate while holding a worker slot, and slots held that way are what would make a
  registration in another tenant wait. Those jobs keep the budget busy by themselves.
A job not started raises Deferred(retry_after), which the triggers turn into the same message put
back on its queue, invisible that long, so the slot serves another tenant meanwhile. A job that
starts waits its calls' short turns in place.

Deferral is decided before the job changes anything (only its lease, given back), so the message
that comes back runs the job from where it was: idempotent as any redelivery.
"""

from __future__ import annotations

from datetime import timedelta

from functions.core.ports import Directory
from functions.core.record.errors import Deferred

# Longer than this, a job is not worth holding a worker slot for: a few calls queued at the
# budget's rate, or a short Retry-After, are waited out in place.
DEFAULT_MOST_WAIT = timedelta(seconds=5)
# Jobs of one tenant running at once in a process while its budget binds: enough to keep the
# budget busy (a registration makes ~8 writes, a rotation 1), few enough to leave the slots free.
DEFAULT_BUSY_TENANT_JOBS = 4
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
    process (bootstrap), shared by every job it runs; jobs of one event loop, so no lock."""

    def __init__(
        self,
        *,
        most_wait: timedelta = DEFAULT_MOST_WAIT,
        busy_tenant_jobs: int = DEFAULT_BUSY_TENANT_JOBS,
    ) -> None:
        self.most_wait = most_wait
        self.busy_tenant_jobs = busy_tenant_jobs
        self._running: dict[str, int] = {}

    def running(self, tenant_id: str) -> int:
        return self._running.get(tenant_id.lower(), 0)

    def admit(self, directory: Directory, tenant_id: str, what: str) -> None:
        """Count the job as running (done() when it ends); Deferred when it should wait on its
        queue instead (then nothing is counted)."""
        key = tenant_id.lower()
        defer_if_paced(directory, tenant_id, what, most=self.most_wait)
        wait = directory.predicted_wait(tenant_id)
        if wait > timedelta(0) and self._running.get(key, 0) >= self.busy_tenant_jobs:
            raise _deferred(what, tenant_id, wait, f" and {self.busy_tenant_jobs} of its jobs are running")
        self._running[key] = self._running.get(key, 0) + 1

    def done(self, tenant_id: str) -> None:
        key = tenant_id.lower()
        self._running[key] = self._running.get(key, 1) - 1
        if self._running[key] <= 0:
            del self._running[key]
