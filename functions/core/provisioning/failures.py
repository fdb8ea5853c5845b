"""Ending a registration as `failed`, crash-safe: the failure is written ahead, then cleaned up.

1. `begin`: save status `failing` with `last_error` (the reason) BEFORE anything is deleted.
   From then on every run (a redelivered message, the last delivery giving up, the sweep of
   stuck registrations) goes straight to step 2: none drives the steps again against an app
   that may already be gone, and the reason is never lost.
2. `finish`: remove what was made (CredentialIssuer.remove_everything: credentials, the app with
   its service principal and consent, the Key Vault secret or certificate; idempotent, so an
   app or secret already gone is success), then save `failed` with the ids cleared. An error
   here is noted in the history (`cleanup` `retrying`/`refused`) and raised; the record stays
   `failing` with its reason, and the next run cleans up again.

outcomes.settle_provisioned announces `failed` (registration.failed) once, after the run.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from functions.core.credentials.issuer import CredentialIssuer
from functions.core.ports import Clock
from functions.core.record.errors import PermanentError, RegistrarError, TransientError, ValidationFailed
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import ErrorInfo, Registration
from functions.core.record.steps import failure_kind, in_step, step_of

log = logging.getLogger(__name__)

CLEANUP_STEP = "cleanup"
GAVE_UP = "gave_up"  # ErrorInfo.kind of a registration ended because it could not finish in time


def error_info(err: Exception, at: datetime) -> ErrorInfo:
    problems = err.problems if isinstance(err, ValidationFailed) else ()
    code = err.code if isinstance(err, PermanentError) else None
    return ErrorInfo(
        step=step_of(err), kind=failure_kind(err), message=str(err), at=at, code=code, problems=problems
    )


def gave_up_info(record: Registration, reason: str, at: datetime) -> ErrorInfo:
    """The failure of a registration given up on: the step it was stuck at, and why it ended."""
    last = record.last_error
    return ErrorInfo(
        step=last.step if last else "workflow",
        kind=GAVE_UP,
        message=reason,
        at=at,
        code=last.code if last else None,
    )


async def begin(keeper: RecordKeeper, info: ErrorInfo) -> None:
    """Write the failure ahead of any delete (idempotent: a record already `failing` keeps its reason)."""

    def failing(r: Registration) -> Registration:
        if r.status is RegistrationStatus.FAILING:
            return r
        return replace(r, status=RegistrationStatus.FAILING, last_error=info).with_event(
            info.step, "failed", info.at, info.kind
        )

    await keeper.update(failing)


async def finish(keeper: RecordKeeper, issuer: CredentialIssuer, clock: Clock) -> None:
    """Remove everything a `failing` registration made, then save it `failed`."""
    try:
        async with in_step(CLEANUP_STEP):
            await issuer.remove_everything(keeper.current)
    except RegistrarError as err:
        outcome = "retrying" if isinstance(err, TransientError) else "refused"
        log.warning("cleanup of the failed registration %s: %s", outcome, err)
        at, detail = clock.now(), str(err)
        try:
            await keeper.update(lambda r: r.with_event(CLEANUP_STEP, outcome, at, detail))
        except RegistrarError as save_err:
            log.warning("could not note the interrupted cleanup: %s", save_err)
        raise
    now = clock.now()
    await keeper.update(
        lambda r: replace(
            r,
            status=RegistrationStatus.FAILED,
            app_object_id=None,
            app_id=None,
            service_principal_id=None,
            credential=None,
            pending_credential=None,
            retiring_credentials=(),
            granted_permissions=(),
            owners_added=(),
            owners_refused=None,  # no app left to add owners to: no manual step either
        ).with_event(
            CLEANUP_STEP, "done", now, "app, service principal, credentials and Key Vault objects removed"
        )
    )
    log.info(
        "registration failed and cleaned up: %s",
        keeper.current.last_error.message if keeper.current.last_error else "",
    )


async def note_pause(keeper: RecordKeeper, err: TransientError, clock: Clock) -> None:
    """Record a transient stop as last_error (a `failing` record keeps its reason: finish noted it)."""
    if keeper.current.status is RegistrationStatus.FAILING:
        return
    info = error_info(err, clock.now())
    try:
        await keeper.update(lambda r: replace(r, last_error=info))
    except RegistrarError as save_err:  # the lease was lost, or storage is down: the retry decides
        log.warning("could not record the pause: %s", save_err)


async def release_quietly(keeper: RecordKeeper) -> None:
    """Give the lease up on an error path; if even that fails, the lease simply expires."""
    try:
        await keeper.release()
    except Exception as err:  # already failing: never mask the error being raised
        log.warning("could not release the lease (it expires on its own): %s", err)
