"""Failures find people: at-risk credentials, the health snapshot, metrics and signal events.

Public surface: `at_risk` (which credentials of a record are at risk, and why: EscalationSettings,
assess), `snapshot` (HealthSnapshot and take_snapshot, read through the expiry index so the cost is
O(at risk + due)), `instruments` (the OpenTelemetry counters and observable gauges of
functions/signals.py) and `escalation` (Escalation: what the triggers call when a rotation, a
provisioning run or a delivery ends, and the watch that announces credential.at_risk).

Above rotation and provisioning (pyproject's core-layers): it reads what they record and never
changes how they work; the triggers hand it their outcomes.
"""
