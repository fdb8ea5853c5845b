"""Invoke user functions the way the Python worker does, and log one line per invocation.

Trigger data reaches the function through azure-functions' own converters (the code the real
worker runs); sync functions run in a thread pool, async ones on the host's event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.functions import meta

from devstack.host.functions import FunctionInfo, InvocationContext

log = logging.getLogger("devstack.host")


class InvocationFailed(Exception):  # noqa: N818  (names the outcome the host logs)
    """The function (or binding its input) raised; the trigger decides what that means."""

    def __init__(self, function_name: str, invocation_id: str, cause: BaseException) -> None:
        super().__init__(f"'{function_name}' failed ({type(cause).__name__}), invocation {invocation_id}")
        self.function_name = function_name
        self.invocation_id = invocation_id
        self.cause = cause


class FunctionTimeoutError(Exception):
    """The invocation ran past host.json functionTimeout (the host's FunctionTimeoutException)."""


def format_timespan(value: timedelta) -> str:
    """As .NET prints a TimeSpan: [d.]hh:mm:ss[.fffffff]."""
    ticks = round(value.total_seconds() * 10_000_000)
    seconds, fraction = divmod(ticks, 10_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return (f"{days}." if days else "") + text + (f".{fraction:07d}" if fraction else "")


def datetime_datum(value: Any) -> meta.Datum:
    """A trigger-metadata datetime, formatted as the host sends it (ISO 8601, UTC)."""
    return meta.Datum(type="string", value=value.isoformat() if value is not None else None)


class Invoker:
    def __init__(self, app_dir: Path, max_workers: int | None = None) -> None:
        self.app_dir = app_dir
        # PYTHON_THREADPOOL_THREAD_COUNT is the worker's own knob for the sync-function pool.
        configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
        workers = max_workers or (int(configured) if configured else min(32, (os.cpu_count() or 1) + 4))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="function")
        # host.json functionTimeout (None: no limit); the server sets it once host.json is read.
        self.function_timeout: timedelta | None = None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def invoke(
        self,
        function: FunctionInfo,
        datum: meta.Datum,
        *,
        reason: str,
        trigger_metadata: Mapping[str, meta.Datum] | None = None,
    ) -> Any:
        """Bind `datum` to the trigger parameter, call the function, return its $return value."""
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()
        outcome = "Succeeded"
        try:
            return await self._call_within_timeout(function, datum, trigger_metadata, invocation_id)
        except Exception as exc:
            outcome = "Failed"
            logging.getLogger(f"Function.{function.name}").error(
                "Executed '%s' failed: %s", function.name, type(exc).__name__, exc_info=exc
            )
            raise InvocationFailed(function.name, invocation_id, exc) from exc
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            log.info(
                "Executed 'Functions.%s' (%s, Id=%s, Reason='%s', Duration=%dms)",
                function.name,
                outcome,
                invocation_id,
                reason,
                duration_ms,
            )

    async def _call_within_timeout(
        self,
        function: FunctionInfo,
        datum: meta.Datum,
        trigger_metadata: Mapping[str, meta.Datum] | None,
        invocation_id: str,
    ) -> Any:
        """Run the function; past functionTimeout cancel it and fail, as the host does. (The host then
        restarts the worker; a sync function's thread cannot be stopped here and runs on unobserved.)"""
        kwargs = self._arguments(function, datum, trigger_metadata, invocation_id)
        if function.is_async:
            running: asyncio.Future[Any] = asyncio.ensure_future(function.user_function(**kwargs))
        else:
            call = functools.partial(contextvars.copy_context().run, function.user_function, **kwargs)
            running = asyncio.get_running_loop().run_in_executor(self._executor, call)
        if self.function_timeout is None:
            return await running
        try:
            return await asyncio.wait_for(running, self.function_timeout.total_seconds())
        except TimeoutError:
            if running.done() and not running.cancelled():
                raise  # the function itself raised TimeoutError
            timeout = format_timespan(self.function_timeout)
            log.error(
                "Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
                timeout,
                function.name,
                invocation_id,
            )
            raise FunctionTimeoutError(
                f"Timeout value of {timeout} was exceeded by function: Functions.{function.name}"
            ) from None

    def _arguments(
        self,
        function: FunctionInfo,
        datum: meta.Datum,
        trigger_metadata: Mapping[str, meta.Datum] | None,
        invocation_id: str,
    ) -> dict[str, Any]:
        parameter = function.parameters.get(function.trigger_parameter)
        annotation = parameter.annotation if parameter is not None else None
        kwargs: dict[str, Any] = {
            function.trigger_parameter: _decode(function, datum, trigger_metadata, annotation)
        }
        if "context" in function.parameters and function.trigger_parameter != "context":
            kwargs["context"] = InvocationContext(invocation_id, function.name, str(self.app_dir))
        return kwargs


def _decode(
    function: FunctionInfo,
    datum: meta.Datum,
    trigger_metadata: Mapping[str, meta.Datum] | None,
    annotation: Any,
) -> Any:
    """As the worker: a str/bytes annotation gets the raw payload, anything else the converter's object."""
    if annotation is str and datum.type in {"string", "bytes", "json"}:
        value = datum.value
        return value.decode("utf-8") if isinstance(value, bytes) else value
    if annotation is bytes and datum.type in {"string", "bytes", "json"}:
        value = datum.value
        return value.encode("utf-8") if isinstance(value, str) else value
    converter = meta.get_binding_registry().get(function.trigger_type)
    if converter is None:
        raise NotImplementedError(f"no converter for {function.trigger_type}")
    return converter.decode(datum, trigger_metadata=trigger_metadata)
