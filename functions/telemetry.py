"""Where log records go, what they carry, and the one guard that keeps secret values out of them.

- `configure_telemetry(env)` runs once at startup. With APPLICATIONINSIGHTS_CONNECTION_STRING set,
  records and traces go to Application Insights through azure-monitor-opentelemetry, authenticated
  with the function's managed identity when APPLICATIONINSIGHTS_AUTHENTICATION_STRING says
  `Authorization=AAD` (the resource has local auth disabled); otherwise they go to the console.
- `with log_context(registration_id=..., tenant_id=..., operation=...)` puts those fields on
  every record logged inside the block, from any module (a contextvar, so it follows asyncio tasks).
- `redactor.register(secret)` makes every handler that configure_telemetry set up replace that
  value with `***` wherever it appears: message, arguments, exception text, extra attributes.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import threading
import traceback
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TextIO

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
CONTEXT_FIELDS: tuple[str, ...] = ("registration_id", "tenant_id", "operation")
REDACTED = "***"

# Below this length a "secret" is more likely an ordinary word; redacting it would mangle logs.
# Every secret Registrar handles (client secrets, webhook secrets, tokens, keys) is far longer.
MIN_SECRET_LENGTH = 8
# Rotation registers a new value per credential generation; keep memory bounded on long-lived hosts.
MAX_REGISTERED_SECRETS = 10_000

# Attributes every LogRecord has; anything else on a record came from `extra=` or our filters.
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "registrar_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach fields (registration_id, tenant_id, operation, ...) to every record logged inside."""
    merged = dict(_context.get())
    merged.update({name: str(value) for name, value in fields.items() if value is not None})
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> Mapping[str, str]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the current log_context onto the record as attributes (OpenTelemetry exports them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class SecretRedactor(logging.Filter):
    """Replaces every registered secret value in a record before any handler formats or exports it."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None

    def __repr__(self) -> str:
        return f"SecretRedactor({len(self._secrets)} values registered)"

    def register(self, secret: str | bytes | None) -> None:
        """Remember a secret value (and its URL-encoded form) so that no record shows it."""
        if secret is None:
            return
        text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else str(secret)
        if len(text) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            for form in {text, urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text)}:
                self._secrets[form] = None
                self._secrets.move_to_end(form)
            while len(self._secrets) > MAX_REGISTERED_SECRETS:
                self._secrets.popitem(last=False)
            # Longest first, so a secret containing another is replaced whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = _safe_message(record)
        redacted = self.redact(message)
        if record.exc_info or record.exc_text:
            exception_text = record.exc_text or "".join(traceback.format_exception(*record.exc_info))  # type: ignore[misc]
            if self.redact(exception_text) != exception_text:
                # OpenTelemetry reads exc_info directly: fold the cleaned traceback into the message.
                redacted = f"{redacted}\n{self.redact(exception_text).rstrip()}"
                record.exc_info = None
                record.exc_text = None
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


def _safe_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):  # a bad %-format must not drop the record (or hide a secret)
        return f"{record.msg} {record.args}"


class ContextFormatter(logging.Formatter):
    """Console format: the message, then the log_context fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(
            f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name)
        )
        return f"{line} [{fields}]" if fields else line


# The one redactor every module registers its secrets with.
redactor = SecretRedactor()
context_filter = ContextFilter()


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
        guard_handlers(root)
        return _state


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
        for handler in list(root.handlers):
            if isinstance(handler.formatter, ContextFormatter):
                root.removeHandler(handler)
        _state = None
