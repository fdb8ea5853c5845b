"""Local telemetry: signal log events and metric points as JSON lines in one file.

Set REGISTRAR_TELEMETRY_FILE (devstack up sets `.devstack/telemetry.jsonl`) and
functions/telemetry.py adds, beside the console, a logging handler that writes each structured log
event (a record carrying `signal`, with its signals.LOG_FIELDS) and an OpenTelemetry meter provider
whose reader exports every REGISTRAR_TELEMETRY_INTERVAL (ISO 8601, default PT60S) to the same file:
what Application Insights would store as AppTraces and AppMetrics rows, for tests and the demo.

A line: {"kind": "log", "time", "level", "signal", "message", <fields>} or
{"kind": "metric", "time", "name", "attributes", "value"} (a counter's value is its running total).
The handler runs behind the same redactor as every other handler (telemetry.guard_handlers).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from functions.core.record.durations import parse_duration
from functions.signals import LOG_FIELDS

TELEMETRY_FILE_SETTING = "REGISTRAR_TELEMETRY_FILE"
TELEMETRY_INTERVAL_SETTING = "REGISTRAR_TELEMETRY_INTERVAL"
DEFAULT_INTERVAL = "PT60S"


class JsonLinesFile:
    """Appends whole lines from any thread (the logging handler and the metric reader's thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        text = "".join(json.dumps(e, separators=(",", ":"), default=str) + "\n" for e in entries)
        with self._lock, self.path.open("a", encoding="utf-8") as stream:
            stream.write(text)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class SignalLogHandler(logging.Handler):
    """Writes the records that carry a `signal` (the structured log events), and only their fixed fields."""

    def __init__(self, sink: JsonLinesFile) -> None:
        super().__init__(level=logging.INFO)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "signal", None) is None:
            return
        try:
            entry: dict[str, Any] = {"kind": "log", "time": _now(), "level": record.levelname}
            entry.update({f: getattr(record, f) for f in LOG_FIELDS if hasattr(record, f)})
            entry["message"] = record.getMessage()  # after the redactor, which rewrote msg and args
            self._sink.write([entry])
        except Exception:
            self.handleError(record)


class JsonLinesMetricExporter(MetricExporter):
    def __init__(self, sink: JsonLinesFile) -> None:
        super().__init__()
        self._sink = sink

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        at = _now()
        entries = [
            {
                "kind": "metric",
                "time": at,
                "name": metric.name,
                "attributes": dict(point.attributes or {}),
                "value": point.value,
            }
            for resource in metrics_data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
            if hasattr(point, "value")
        ]
        self._sink.write(entries)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def file_pipeline(settings_env: Mapping[str, str]) -> tuple[logging.Handler, MeterProvider] | None:
    """The handler and meter provider writing to REGISTRAR_TELEMETRY_FILE, or None when it is unset."""
    path = (settings_env.get(TELEMETRY_FILE_SETTING) or "").strip()
    if not path:
        return None
    interval = parse_duration(settings_env.get(TELEMETRY_INTERVAL_SETTING) or DEFAULT_INTERVAL)
    sink = JsonLinesFile(Path(path))
    reader = PeriodicExportingMetricReader(
        JsonLinesMetricExporter(sink), export_interval_millis=max(interval.total_seconds(), 0.1) * 1000
    )
    return SignalLogHandler(sink), MeterProvider(metric_readers=[reader])
