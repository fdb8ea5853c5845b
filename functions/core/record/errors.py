"""Typed errors of the domain. Adapters turn SDK errors into these; triggers map them to a status.

Messages never carry a secret value: build them from ids and names only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TypeVar

from functions.core.record.models import Problem

T = TypeVar("T")


class RegistrarError(Exception):
    """Base of every error the core raises on purpose."""


class ValidationFailed(RegistrarError):  # noqa: N818  (names the outcome, like the HTTP 400 it becomes)
    """The request is wrong; every problem is listed (HTTP 400/422 problem+json)."""

    def __init__(self, problems: Sequence[Problem], *, status: int = 400) -> None:
        self.problems = tuple(problems)
        self.status = status
        summary = "; ".join(f"{p.field}: {p.reason}" for p in self.problems)
        super().__init__(f"invalid request: {summary}")


class NotFound(RegistrarError):  # noqa: N818
    def __init__(self, what: str, key: str) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key!r} not found")


class Conflict(RegistrarError):  # noqa: N818
    """The same idempotency key with a different body, or a state that forbids the operation."""


class Forbidden(RegistrarError):  # noqa: N818
    """The caller lacks the app role the operation needs (Registrar.Approver, Registrar.Admin)."""


class ConcurrencyConflict(RegistrarError):  # noqa: N818
    """An optimistic-concurrency write lost (ETag mismatch): re-read and retry."""


class TransientError(RegistrarError):
    """Worth retrying later: throttling, 5xx, replication delay, propagation delay.

    retry_after, when known, is the wait the service asked for (Retry-After).
    """

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Deferred(TransientError):  # noqa: N818  (names the outcome: the job is put back)
    """The tenant's Graph budget is spoken for: the job goes back on its queue, hidden for
    retry_after, instead of waiting in a worker slot (core/record/deferral.py). Nothing was done."""

    def __init__(self, message: str, *, retry_after: timedelta) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after: timedelta = retry_after


class PermanentError(RegistrarError):
    """Retrying cannot help (denied by the directory, refused by policy, invalid data)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RecordInconsistent(PermanentError):  # noqa: N818
    """The record lacks what an earlier step saves before this one runs (a bug, or an entity edited
    by hand). Raised instead of an assert, which `python -O` would strip; retrying cannot help."""

    def __init__(self, registration_id: str, missing: str, step: str) -> None:
        super().__init__(
            f"registration {registration_id}: {missing} is missing at the {step} step",
            code="RecordInconsistent",
        )
        self.missing = missing


def saved(value: T | None, registration_id: str, missing: str, step: str) -> T:
    """`value`, which an earlier step saved in the record; RecordInconsistent if it is not there."""
    if value is None:
        raise RecordInconsistent(registration_id, missing, step)
    return value
