"""The OpenTelemetry instruments of functions/signals.py: three counters, and observable gauges read
from the latest health snapshot this process took.

Through the OpenTelemetry API only: with no SDK configured (unit tests, or before
functions/telemetry.py runs) every call is a no-op; in Azure, azure-monitor-opentelemetry's meter
provider exports them to Application Insights; locally, the telemetry file (REGISTRAR_TELEMETRY_FILE).
Attributes are the bounded enumerations of signals.py (outcome, reason, queue): never an id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from functions.core.escalation.snapshot import HealthSnapshot
from functions.signals import (
    CREDENTIALS_AT_RISK,
    DAYS_TO_NEAREST_EXPIRY,
    DEAD_LETTERS,
    DELIVERIES,
    OUTCOMES,
    POISON_MESSAGES,
    PROVISIONINGS,
    ROTATION_BACKLOG,
    ROTATIONS,
    AtRiskReason,
    Metric,
)

METER_NAME = "registrar"


class Instruments:
    """One per process (an instrument created twice on one meter is a duplicate): bootstrap holds it."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self._latest: HealthSnapshot | None = None
        self._lock = threading.Lock()
        self._counters = {
            metric.name: meter.create_counter(metric.name, unit=metric.unit, description=metric.description)
            for metric in (ROTATIONS, PROVISIONINGS, DELIVERIES)
        }
        gauges: tuple[tuple[Metric, object], ...] = (
            (CREDENTIALS_AT_RISK, self._at_risk),
            (DAYS_TO_NEAREST_EXPIRY, self._days_to_nearest_expiry),
            (ROTATION_BACKLOG, self._backlog),
            (POISON_MESSAGES, self._poison_messages),
            (DEAD_LETTERS, self._dead_letters),
        )
        for metric, callback in gauges:
            meter.create_observable_gauge(
                metric.name,
                callbacks=[callback],  # type: ignore[list-item]
                unit=metric.unit,
                description=metric.description,
            )

    def count(self, metric: Metric, outcome: str) -> None:
        """Add one to a counter; an outcome outside signals.OUTCOMES is a bug (unbounded cardinality)."""
        if outcome not in OUTCOMES[metric.name]:
            raise ValueError(f"{outcome!r} is not an outcome of {metric.name}")
        self._counters[metric.name].add(1, {"outcome": outcome})

    def hold(self, snapshot: HealthSnapshot) -> None:
        """The snapshot the gauges report until the next one."""
        with self._lock:
            if self._latest is None or snapshot.taken_at >= self._latest.taken_at:
                self._latest = snapshot

    @property
    def latest(self) -> HealthSnapshot | None:
        return self._latest

    # ------------------------------------------------------------ gauge callbacks

    def _at_risk(self, _: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._latest
        if snapshot is None:
            return []
        counts = snapshot.at_risk_by_reason()
        # Every reason, zeros included: a series that stops instead of reaching 0 would keep an alert firing.
        return [Observation(counts.get(reason, 0), {"reason": reason.value}) for reason in AtRiskReason]

    def _days_to_nearest_expiry(self, _: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._latest
        days = snapshot.days_to_nearest_expiry() if snapshot else None
        return [] if days is None else [Observation(days)]

    def _backlog(self, _: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._latest
        return [] if snapshot is None else [Observation(snapshot.rotation_backlog)]

    def _poison_messages(self, _: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._latest
        if snapshot is None:
            return []
        return [Observation(length, {"queue": queue}) for queue, length in snapshot.poison_messages.items()]

    def _dead_letters(self, _: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._latest
        return [] if snapshot is None else [Observation(snapshot.dead_letters)]
