"""Defer instead of sleep: a job whose tenant has no Graph budget for it now goes back on its queue.

Graph's budgets are per (tenant, app) (REFERENCE.md). The Graph adapter paces every call to them
and reports how long a new write in a tenant would wait (Directory.predicted_wait). A job that
would wait longer than `most` is not started: it raises Deferred(retry_after = that wait), which
the triggers turn into the same message put back on its queue, invisible that long, so the worker
slot serves another tenant meanwhile. A job that starts waits its calls' short turns in place.

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
# Wake a little after the budget is expected back: a message that returns a hair early is deferred again.
MARGIN = timedelta(seconds=1)


def defer_if_paced(directory: Directory, tenant_id: str, what: str, *, most: timedelta) -> None:
    """Raise Deferred when a write in `tenant_id` would wait longer than `most` now."""
    wait = directory.predicted_wait(tenant_id)
    if wait > most:
        retry_after = wait + MARGIN
        raise Deferred(
            f"{what}: tenant {tenant_id}'s Graph budget is spoken for for {wait.total_seconds():.1f} s;"
            f" deferred {retry_after.total_seconds():.0f} s",
            retry_after=retry_after,
        )
