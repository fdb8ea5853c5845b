"""Which credentials of a registration are at risk, and why. Pure.

A credential is at risk when (issue 14, DESIGN.md "Escalation"):
- it has expired (its end date has passed) and is still the registration's current credential;
- it is within the at-risk window of its end with no verified successor (the current credential;
  a retiring one has a verified successor by construction);
- its rotation has failed `failures_before_alert` times in a row;
- (the previous one) its overlap has ended but it is kept, because the registration retires
  after-confirm and the connector has not confirmed the new credential: `unconfirmed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.core.catalogue.policy import setting_flag
from functions.core.record.durations import parse_duration
from functions.core.record.models import CredentialType, RegistrationStatus
from functions.core.record.registration import Registration
from functions.core.rotation.jobs import failed_in_a_row, unconfirmed
from functions.signals import AtRiskReason

AT_RISK_WINDOW_SETTING = "REGISTRAR_AT_RISK_WINDOW"
FAILURES_BEFORE_ALERT_SETTING = "REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT"
SIGN_IN_PROOF_SETTING = "REGISTRAR_SIGN_IN_PROOF"
WATCHED_STATUSES = frozenset({RegistrationStatus.ACTIVE, RegistrationStatus.ROTATING})


@dataclass(frozen=True)
class EscalationSettings:
    at_risk_window: timedelta = timedelta(days=14)
    failures_before_alert: int = 3
    # Proof of use (proof_of_use.py): off by default, as it needs AuditLog.Read.All and a licence.
    sign_in_proof: bool = False

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> EscalationSettings:
        """Read REGISTRAR_AT_RISK_WINDOW (ISO 8601, default P14D) and
        REGISTRAR_ROTATION_FAILURES_BEFORE_ALERT (default 3) and REGISTRAR_SIGN_IN_PROOF (default
        false); a bad value raises ValueError."""
        try:
            window = parse_duration(values.get(AT_RISK_WINDOW_SETTING) or "P14D")
        except ValueError as exc:
            raise ValueError(f"{AT_RISK_WINDOW_SETTING}: {exc}") from None
        if window <= timedelta(0):
            raise ValueError(f"{AT_RISK_WINDOW_SETTING}: must be longer than zero")
        raw = values.get(FAILURES_BEFORE_ALERT_SETTING) or "3"
        if not raw.strip().isdigit() or int(raw) < 1:
            raise ValueError(f"{FAILURES_BEFORE_ALERT_SETTING}: expected a whole number, at least 1")
        failures = int(raw)
        proof = setting_flag(SIGN_IN_PROOF_SETTING, values.get(SIGN_IN_PROOF_SETTING), False)
        return cls(at_risk_window=window, failures_before_alert=failures, sign_in_proof=proof)


@dataclass(frozen=True)
class AtRisk:
    """One credential at risk. Ids and dates only."""

    registration_id: str
    tenant_id: str
    app_id: str | None
    profile_id: str
    key_id: str
    generation: int
    expires_on: datetime | None
    reason: AtRiskReason
    failures_in_a_row: int

    def days_to_expiry(self, now: datetime) -> float | None:
        if self.expires_on is None:
            return None
        return round((self.expires_on - now).total_seconds() / 86400, 2)

    def event_key(self, now: datetime) -> str:
        """Once per credential per day: the credential.at_risk event id's key."""
        return f"{self.key_id}:{now.date().isoformat()}"


def assess(record: Registration, now: datetime, settings: EscalationSettings) -> AtRisk | None:
    """The record's current credential, if it is at risk (the most urgent reason first)."""
    credential = record.credential
    if record.status not in WATCHED_STATUSES or credential is None:
        return None
    if credential.type is CredentialType.FEDERATED:
        return None  # nothing expires: a federated credential trusts the issuer's tokens
    failures = failed_in_a_row(record, "rotation")
    reason: AtRiskReason | None = None
    if credential.expires_on is not None and credential.expires_on <= now:
        reason = AtRiskReason.EXPIRED
    elif failures >= settings.failures_before_alert:
        reason = AtRiskReason.ROTATION_FAILING
    elif credential.expires_on is not None and credential.expires_on - now <= settings.at_risk_window:
        reason = AtRiskReason.NEAR_EXPIRY
    if reason is None:
        return _unconfirmed(record, now, failures)
    return AtRisk(
        registration_id=record.id,
        tenant_id=record.tenant_id,
        app_id=record.app_id,
        profile_id=record.profile_id,
        key_id=credential.key_id,
        generation=credential.generation,
        expires_on=credential.expires_on,
        reason=reason,
        failures_in_a_row=failures,
    )


def _unconfirmed(record: Registration, now: datetime, failures: int) -> AtRisk | None:
    """The old credential an after-confirm registration keeps past its overlap, unconfirmed."""
    kept = [
        old
        for old in record.retiring_credentials
        if old.retire_after is not None and old.retire_after <= now and unconfirmed(record, old, now)
    ]
    if not kept:
        return None
    old = min(kept, key=lambda c: c.generation)
    return AtRisk(
        registration_id=record.id,
        tenant_id=record.tenant_id,
        app_id=record.app_id,
        profile_id=record.profile_id,
        key_id=old.key_id,
        generation=old.generation,
        expires_on=old.expires_on,
        reason=AtRiskReason.UNCONFIRMED,
        failures_in_a_row=failures,
    )
