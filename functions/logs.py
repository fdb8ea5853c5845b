"""What every log record carries, and the one guard that keeps secret values out of them.

Pure logging machinery (no exporter, no Azure SDK), so that the core may use it:
- `with log_context(registration_id=..., tenant_id=..., operation=...)` puts those fields on
  every record logged inside the block, from any module (a contextvar, so it follows asyncio tasks).
- `redactor.register(secret)` makes every guarded handler replace that value with `***` wherever
  it appears: message, arguments, exception text, extra attributes.

functions.telemetry wires these onto the handlers it configures (console or Azure Monitor).
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import traceback
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

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
