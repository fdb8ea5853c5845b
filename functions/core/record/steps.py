"""Small helpers the workflows share: naming the step an error came from, running steps together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from functions.core.record.errors import (
    NotFound,
    PermanentError,
    RegistrarError,
    TransientError,
    ValidationFailed,
)

_STEP_ATTRIBUTE = "registrar_step"


@asynccontextmanager
async def in_step(step: str) -> AsyncIterator[None]:
    """Tag any RegistrarError raised inside with the step name (the innermost step wins)."""
    try:
        yield
    except RegistrarError as err:
        if not hasattr(err, _STEP_ATTRIBUTE):
            setattr(err, _STEP_ATTRIBUTE, step)
        raise


def step_of(err: BaseException) -> str:
    return str(getattr(err, _STEP_ATTRIBUTE, "workflow"))


def failure_kind(err: BaseException) -> str:
    if isinstance(err, ValidationFailed):
        return "validation"
    if isinstance(err, TransientError):
        return "transient"
    if isinstance(err, PermanentError | NotFound):
        return "permanent"
    return "unexpected"


def _severity(err: BaseException) -> int:
    """Which error of several concurrent failures decides the outcome."""
    if not isinstance(err, RegistrarError):
        return 0  # a bug or a crash: surface it as is
    if isinstance(err, TransientError):
        return 2  # retrying may fix it, but not if a sibling failed for good
    return 1


async def concurrently(*steps: Coroutine[Any, Any, None]) -> None:
    """Run steps together; if one fails the others are cancelled and the most decisive error is
    raised on its own (not as an ExceptionGroup), so callers handle it like a sequential failure."""
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)
    except BaseExceptionGroup as failures:
        leaves = _leaves(failures)
        decisive = min(leaves, key=_severity)
        raise decisive.with_traceback(decisive.__traceback__) from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for err in group.exceptions:
        if isinstance(err, BaseExceptionGroup):
            found.extend(_leaves(err))
        else:
            found.append(err)
    return found
