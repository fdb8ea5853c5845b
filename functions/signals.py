"""The telemetry schema: every signal name, log field and metric Registrar emits, in one place.

Alert rules and the workbook (infra/) query these names in KQL, and a test holds every field a
query names to this module, so a rename here that the queries miss fails the build.

How they land in Application Insights (workspace-based, azure-monitor-opentelemetry):
- a structured log event is a `logging` record whose `extra` holds the LOG_FIELDS below; it is a
  row of AppTraces (classic: `traces`) with those fields in Properties (`customDimensions`),
  `signal` naming which event it is;
- a metric is an OpenTelemetry instrument; its points are rows of AppMetrics (`customMetrics`)
  with the instrument's name in Name and its attributes in Properties.

Cardinality: metric attributes are bounded enumerations (outcome, queue, reason); registration
ids, tenant ids and key ids appear only on log events, never as a metric dimension.
Pure data: no import beyond the standard library, so the core may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Signal(StrEnum):
    """The value of the `signal` field of a structured log event."""

    CREDENTIAL_AT_RISK = "credential.at_risk"
    ROTATION_FAILED = "rotation.failed"
    ROTATION_SUCCEEDED = "rotation.succeeded"
    ROTATION_SWEEP_COMPLETED = "rotation.sweep_completed"
    REGISTRATION_FAILED = "registration.failed"
    DELIVERY_DEAD_LETTERED = "delivery.dead_lettered"
    MESSAGE_POISONED = "message.poisoned"
    # Work whose worker died, sent to its queue again by the resume sweep (outcome "resumed"), or
    # given up on after too many resumes (outcome "dropped"): core/recovery/resume.py.
    WORK_RESUMED = "work.resumed"
    INVENTORY_SCAN_COMPLETED = "inventory.scan_completed"
    HEALTH_SNAPSHOT = "health.snapshot"


class AtRiskReason(StrEnum):
    """Why a credential is at risk (`reason` on credential.at_risk)."""

    NEAR_EXPIRY = "near_expiry"  # within the at-risk window of its end, no verified successor
    ROTATION_FAILING = "rotation_failing"  # its rotation failed the alert threshold of times in a row
    EXPIRED = "expired"
    UNCONFIRMED = "unconfirmed"  # after-confirm retirement: the overlap ended with no confirmation
    UNMANAGED = "unmanaged"  # an inventoried credential Registrar does not manage, near its end


# Fields a structured log event may carry (customDimensions / Properties). Fixed: KQL relies on them.
LOG_FIELDS: tuple[str, ...] = (
    "signal",
    "reason",
    "outcome",
    "registration_id",
    "tenant_id",
    "app_id",
    "profile",
    "key_id",
    "generation",
    "expires_on",
    "days_to_expiry",
    "failures_in_a_row",
    "queue",
    "subscription_id",
    "event_type",
    "status",
)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" or "gauge"
    unit: str
    attributes: tuple[str, ...]
    description: str


ROTATIONS = Metric(
    "registrar.rotations", "counter", "{rotation}", ("outcome",), "Rotation jobs run, by outcome"
)
PROVISIONINGS = Metric(
    "registrar.provisionings", "counter", "{registration}", ("outcome",), "Provisioning runs that ended"
)
DELIVERIES = Metric(
    "registrar.deliveries", "counter", "{delivery}", ("outcome",), "Webhook delivery attempts, by outcome"
)
CREDENTIALS_AT_RISK = Metric(
    "registrar.credentials.at_risk", "gauge", "{credential}", ("reason",), "Credentials at risk now"
)
DAYS_TO_NEAREST_EXPIRY = Metric(
    "registrar.credentials.days_to_nearest_expiry", "gauge", "d", (), "Days until the next credential ends"
)
ROTATION_BACKLOG = Metric(
    "registrar.rotation.backlog", "gauge", "{job}", (), "Rotation jobs due and not yet done"
)
POISON_MESSAGES = Metric(
    "registrar.queue.poison_messages", "gauge", "{message}", ("queue",), "Messages in each poison queue"
)
DEAD_LETTERS = Metric(
    "registrar.deliveries.dead_letters", "gauge", "{delivery}", (), "Webhook deliveries dead-lettered"
)

METRICS: tuple[Metric, ...] = (
    ROTATIONS,
    PROVISIONINGS,
    DELIVERIES,
    CREDENTIALS_AT_RISK,
    DAYS_TO_NEAREST_EXPIRY,
    ROTATION_BACKLOG,
    POISON_MESSAGES,
    DEAD_LETTERS,
)

# Bounded values of the `outcome` attribute, per counter.
OUTCOMES: dict[str, tuple[str, ...]] = {
    ROTATIONS.name: ("rotated", "retired", "skipped", "deferred", "failed"),
    PROVISIONINGS.name: ("active", "failed", "pending_approval", "pending_ownership", "deferred"),
    DELIVERIES.name: ("delivered", "retried", "dead_lettered", "gone"),
}
