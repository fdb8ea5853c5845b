"""Structured log events: one `logging` record per signal, its fields from signals.LOG_FIELDS only.

Application Insights keeps a record's `extra` as customDimensions, so the alert rules' KQL finds a
signal by `customDimensions.signal` and its fixed fields; locally the telemetry file keeps them.
Ids, reasons and counts only: never a secret, never a URL (a webhook URL may carry a token).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from functions.signals import LOG_FIELDS, Signal

log = logging.getLogger("registrar.signals")

_ALLOWED = frozenset(LOG_FIELDS) - {"signal"}


def signal_event(signal: Signal, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log `signal` with `fields` (a field not in LOG_FIELDS is a bug: KQL could never find it)."""
    unknown = sorted(set(fields) - _ALLOWED)
    if unknown:
        raise ValueError(f"not a field of signals.LOG_FIELDS: {', '.join(unknown)}")
    extra: dict[str, Any] = {"signal": signal.value}
    for name, value in fields.items():
        if value is None:
            continue
        extra[name] = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
    log.log(level, "%s: %s", signal.value, message, extra=extra)
