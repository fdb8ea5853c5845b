"""Load a v2-model function app and describe its functions from their own binding metadata.

Everything the host knows about a function comes from here: azure-functions' get_functions(),
each function's trigger and bindings (as the Python worker reports them to the real host).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.function_app import FunctionRegister

log = logging.getLogger("devstack.host")

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER, EVENT_GRID_TRIGGER)


class AppLoadError(Exception):
    """The app cannot be indexed (import error, no or several FunctionApp objects, bad bindings)."""


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    trigger: dict[str, Any]  # the trigger binding as function.json would hold it
    bindings: tuple[dict[str, Any], ...]
    user_function: Callable[..., Any] = field(repr=False)
    is_async: bool
    parameters: dict[str, inspect.Parameter] = field(repr=False)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_parameter(self) -> str:
        return str(self.trigger["name"])

    @property
    def returns_http(self) -> bool:
        return any(b["type"] == "http" and b["name"] == "$return" for b in self.bindings)

    def describe(self) -> dict[str, Any]:
        """JSON-safe metadata (what GET /admin/functions and --list-functions print)."""
        return {"name": self.name, "triggerType": self.trigger_type, "bindings": list(self.bindings)}


def import_app_module(app_dir: Path, script_file: str = "function_app.py") -> Any:
    """Import the app's script from app_dir as the worker does: app_dir first on sys.path."""
    script = app_dir / script_file
    if not script.exists():
        raise AppLoadError(f"{script} not found")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    module_name = script.stem
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise AppLoadError(f"importing {script} failed: {type(exc).__name__}: {exc}") from exc
    return module


def find_app(module: Any) -> FunctionRegister:
    """The one FunctionApp the module defines (the worker refuses zero or several)."""
    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(f"expected exactly one FunctionApp in {module.__name__}, found {len(apps)}")
    return apps[0]


def index(app: FunctionRegister) -> list[FunctionInfo]:
    """Describe every function of the app; call once per app object (get_functions validates)."""
    try:
        functions = app.get_functions()
    except Exception as exc:
        raise AppLoadError(f"indexing failed: {exc}") from exc
    infos: list[FunctionInfo] = []
    for function in functions:
        described = json.loads(function.get_function_json())
        bindings = tuple(described["bindings"])
        trigger = function.get_trigger()
        name = function.get_function_name()
        if trigger is None or name is None:
            raise AppLoadError(f"function {function} has no trigger or name")
        trigger_binding = next(b for b in bindings if b["name"] == trigger.name)
        user_function = function.get_user_function()
        _warn_unsupported(name, trigger_binding, bindings)
        infos.append(
            FunctionInfo(
                name=name,
                trigger=trigger_binding,
                bindings=bindings,
                user_function=user_function,
                is_async=inspect.iscoroutinefunction(user_function),
                parameters=_parameters(user_function),
            )
        )
    return infos


def _parameters(user_function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """Parameters with resolved annotations: under `from __future__ import annotations` they are strings."""
    try:
        hints = typing.get_type_hints(user_function)
    except Exception:  # an annotation that does not resolve: keep what inspect saw, as the worker would
        hints = {}
    return {
        name: parameter.replace(annotation=hints.get(name, parameter.annotation))
        for name, parameter in inspect.signature(user_function).parameters.items()
    }


def load(app_dir: Path, script_file: str = "function_app.py") -> list[FunctionInfo]:
    return index(find_app(import_app_module(app_dir, script_file)))


def _warn_unsupported(name: str, trigger: dict[str, Any], bindings: tuple[dict[str, Any], ...]) -> None:
    if trigger["type"] not in SUPPORTED_TRIGGERS:
        log.warning("Function '%s': trigger type %s is not served by the local host", name, trigger["type"])
    for binding in bindings:
        if binding is trigger or (binding["type"] == "http" and binding["name"] == "$return"):
            continue
        log.warning(
            "Function '%s': %s binding '%s' is ignored locally", name, binding["type"], binding["name"]
        )


class InvocationContext(func.Context):
    """The `context` argument the Python worker passes to functions that declare one."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        import threading

        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._thread_local_storage = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local_storage

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None
