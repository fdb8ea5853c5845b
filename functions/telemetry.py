"""Where log records go, what they carry, and the one guard that keeps secret values out of them.

- `configure_telemetry(env)` runs once at startup. With APPLICATIONINSIGHTS_CONNECTION_STRING set,
  records and traces go to Application Insights through azure-monitor-opentelemetry, authenticated
  with the function's managed identity when APPLICATIONINSIGHTS_AUTHENTICATION_STRING says
  `Authorization=AAD` (the resource has local auth disabled); otherwise they go to the console.
- With REGISTRAR_TELEMETRY_FILE set (devstack up sets it), signal log events and metric points are
  also written to that file as JSON lines (functions/telemetry_file.py): the local stand-in for
  Application Insights, which tests and the demo read.
- `log_context` and `redactor` live in functions.logs (pure, so the core may use them) and are
  re-exported here; every handler configure_telemetry sets up carries both guards.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from functions.logs import (
    CONTEXT_FIELDS,
    MAX_REGISTERED_SECRETS,
    MIN_SECRET_LENGTH,
    REDACTED,
    ContextFilter,
    ContextFormatter,
    SecretRedactor,
    context_filter,
    current_log_context,
    log_context,
    redactor,
)

__all__ = [
    "AUTHENTICATION_STRING_SETTING",
    "CONNECTION_STRING_SETTING",
    "CONTEXT_FIELDS",
    "MAX_REGISTERED_SECRETS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "ContextFilter",
    "ContextFormatter",
    "SecretRedactor",
    "TelemetryState",
    "configure_telemetry",
    "context_filter",
    "current_log_context",
    "guard_handlers",
    "log_context",
    "redactor",
    "reset_for_tests",
]

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
TELEMETRY_FILE_SETTING = "REGISTRAR_TELEMETRY_FILE"  # functions/telemetry_file.py


@dataclass(frozen=True)
class TelemetryState:
    mode: str  # "azure_monitor" or "console"
    credential: Any = None  # the token credential given to the exporters (None: console or key-less)


_state: TelemetryState | None = None
_state_lock = threading.Lock()


def configure_telemetry(settings_env: Mapping[str, str], *, stream: TextIO | None = None) -> TelemetryState:
    """Configure logging and tracing once per process; later calls return the first result."""
    global _state  # noqa: PLW0603 - the process has exactly one telemetry pipeline
    with _state_lock:
        if _state is not None:
            return _state
        root = logging.getLogger()
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        # The Azure SDK's HTTP logging policy writes every request's headers at INFO.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        connection_string = settings_env.get(CONNECTION_STRING_SETTING, "").strip()
        if connection_string:
            _state = _configure_azure_monitor(connection_string, settings_env)
        else:
            # Under a Functions host (Azure's worker, or the devstack's) the root logger already
            # has the host's handler: a second one would print every line twice. Add our console
            # handler only where nothing else handles the records (or a test asks for a stream).
            if stream is not None or not root.handlers:
                handler = logging.StreamHandler(stream or sys.stderr)
                handler.setFormatter(ContextFormatter())
                root.addHandler(handler)
            _state = TelemetryState(mode="console")
            _configure_file(settings_env, root)
        guard_handlers(root)
        return _state


def _configure_file(settings_env: Mapping[str, str], root: logging.Logger) -> None:
    if not (settings_env.get(TELEMETRY_FILE_SETTING) or "").strip():
        return  # the OpenTelemetry SDK is not even imported (cold start)
    from functions.telemetry_file import file_pipeline

    pipeline = file_pipeline(settings_env)
    if pipeline is None:
        return
    handler, meter_provider = pipeline
    root.addHandler(handler)
    from opentelemetry import metrics

    metrics.set_meter_provider(meter_provider)  # the instruments (core/escalation) report through it
    atexit.register(meter_provider.shutdown)  # a last export of what the process counted


def guard_handlers(logger: logging.Logger) -> None:
    """Put the context filter and the redactor on every handler of `logger` (idempotent).

    Handler filters, unlike logger filters, also see records propagated from child loggers.
    """
    for handler in logger.handlers:
        for guard in (context_filter, redactor):
            if guard not in handler.filters:
                handler.addFilter(guard)


def _configure_azure_monitor(connection_string: str, settings_env: Mapping[str, str]) -> TelemetryState:
    # Imported here: the OpenTelemetry stack adds noticeable cold-start time and is unused locally.
    from azure.monitor.opentelemetry import configure_azure_monitor

    credential = _managed_identity_credential(settings_env.get(AUTHENTICATION_STRING_SETTING, ""))
    options: dict[str, Any] = {"connection_string": connection_string, "logger_name": ""}
    if credential is not None:
        options["credential"] = credential
    configure_azure_monitor(**options)
    return TelemetryState(mode="azure_monitor", credential=credential)


def _managed_identity_credential(authentication_string: str) -> Any:
    """The credential the Functions host itself uses: `Authorization=AAD[;ClientId=<user-assigned>]`."""
    parts = dict(
        part.split("=", 1) for part in authentication_string.split(";") if "=" in part and part.strip()
    )
    normalized = {key.strip().lower(): value.strip() for key, value in parts.items()}
    if normalized.get("authorization", "").upper() != "AAD":
        return None  # key-based ingestion (local auth enabled): the connection string suffices
    from azure.identity import ManagedIdentityCredential

    client_id = normalized.get("clientid")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def reset_for_tests() -> None:
    """Forget the configured state and remove the handlers we added (tests only)."""
    global _state  # noqa: PLW0603
    with _state_lock:
        root = logging.getLogger()
        from functions.telemetry_file import SignalLogHandler

        for handler in list(root.handlers):
            if isinstance(handler.formatter, ContextFormatter) or isinstance(handler, SignalLogHandler):
                root.removeHandler(handler)
        _state = None
