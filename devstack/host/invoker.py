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
            kwargs = self._arguments(function, datum, trigger_metadata, invocation_id)
            if function.is_async:
                return await function.user_function(**kwargs)
            call = functools.partial(contextvars.copy_context().run, function.user_function, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
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
