"""Escalation: what a rotation, a provisioning run or a delivery ending means for people.

The triggers hand their outcomes here (rotation and provisioning never import this package):
- every outcome adds to its counter (signals.ROTATIONS, PROVISIONINGS, DELIVERIES);
- a rotation refused for good logs `rotation.failed` and announces it, signed, to the
  registration's subscribers; once it has failed `failures_before_alert` times in a row the
  credential is at risk and `credential.at_risk` follows;
- a failed registration, a dead-lettered delivery and a poisoned message log their signal;
- `watch()`, after each rotation sweep, takes the health snapshot, feeds the gauges, logs
  `health.snapshot`, and announces `credential.at_risk` for each credential at risk, once per
  credential per day (the event id names the day; the record's history remembers it was announced).
- with proof of use on (proof_of_use.py), an old credential kept back for want of confirmation is
  first checked against the tenant's sign-in activity, when kept and at each watch: a sign-in with
  the new keyId confirms it, and it is then released instead of announced.

Crash-safe: events are announced through the record keeper (lease + ETag) with deterministic ids,
and a rotation failure's event is keyed by the failure's time in the history, so any later run
announces what a crashed one did not, and nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from functions.core.escalation.at_risk import AtRisk, EscalationSettings, assess
from functions.core.escalation.instruments import Instruments
from functions.core.escalation.log_events import signal_event
from functions.core.escalation.proof_of_use import ProofOfUse
from functions.core.escalation.snapshot import (
    INVENTORY_MARK,
    SWEEP_MARK,
    HealthSnapshot,
    SnapshotSources,
    take_snapshot,
)
from functions.core.notification.announcer import Announcer, announced, event_for
from functions.core.notification.events import Delivery, WebhookEvent
from functions.core.ports import MessageQueue
from functions.core.record.errors import NotFound, RegistrarError
from functions.core.record.keeper import LeaseHeld, RecordKeeper, Sleep
from functions.core.record.registration import Registration, StepEvent
from functions.core.record.schedule import RotationJob
from functions.signals import DELIVERIES, OUTCOMES, PROVISIONINGS, ROTATIONS, AtRiskReason, Signal

log = logging.getLogger(__name__)

ROTATION_STEP = "rotation"
# A rotation job's outcome (core/rotation/rotator.Outcome) as the bounded `outcome` of registrar.rotations.
ROTATION_OUTCOMES = {
    "rotated": "rotated",
    "retired": "retired",
    "skipped": "skipped",
    "kept": "deferred",
    "deferred": "deferred",
}
# A delivery attempt's status (core/notification/delivery.py) as the outcome of registrar.deliveries.
DELIVERY_OUTCOMES = {
    "delivered": "delivered",
    "retrying": "retried",
    "dead_lettered": "dead_lettered",
    "gone": "gone",
}


def failures_since_success(record: Registration) -> list[StepEvent]:
    """The rotation failures recorded since the last successful rotation, oldest first."""
    failures: list[StepEvent] = []
    for event in reversed(record.history):
        if event.step == ROTATION_STEP and event.outcome == "done":
            break
        if event.step == ROTATION_STEP and event.outcome == "failed":
            failures.append(event)
    return failures[::-1]


def rotation_failed_event(record: Registration, failure: StepEvent, in_a_row: int) -> WebhookEvent:
    credential = record.credential
    error = record.last_error if record.last_error and record.last_error.step == ROTATION_STEP else None
    return event_for(
        record,
        "rotation.failed",
        f"failed-{failure.at.strftime('%Y%m%dT%H%M%S%f')}",
        failure.at,
        keyId=credential.key_id if credential else None,
        generation=credential.generation if credential else None,
        expiresOn=credential.expires_on if credential else None,
        reason=failure.detail,  # the error code
        message=error.message if error else None,
        failuresInARow=in_a_row,
    )


def at_risk_event(record: Registration, item: AtRisk, at: datetime) -> WebhookEvent:
    return event_for(
        record,
        "credential.at_risk",
        item.event_key(at),
        at,
        keyId=item.key_id,
        generation=item.generation,
        expiresOn=item.expires_on,
        daysToExpiry=item.days_to_expiry(at),
        reason=item.reason.value,
        failuresInARow=item.failures_in_a_row,
    )


class Escalation:
    def __init__(
        self,
        *,
        sources: SnapshotSources,
        queue: MessageQueue,
        instruments: Instruments,
        settings: EscalationSettings,
        owner: str,
        sleep: Sleep = asyncio.sleep,
        proof: ProofOfUse | None = None,
    ) -> None:
        self._sources = sources
        self._proof = proof
        self._store = sources.store
        self._clock = sources.clock
        self._announcer = Announcer(queue=queue, clock=sources.clock)
        self._instruments = instruments
        self._settings = settings
        self._owner = owner
        self._sleep = sleep

    # ------------------------------------------------------------ outcomes the triggers report

    def rotation_ran(self, job: RotationJob, outcome: str) -> None:
        self._instruments.count(ROTATIONS, ROTATION_OUTCOMES.get(outcome, "skipped"))
        if outcome == "rotated":
            signal_event(
                Signal.ROTATION_SUCCEEDED,
                "credential rotated",
                registration_id=job.registration_id,
                generation=job.generation + 1,
                outcome="rotated",
            )

    async def retirement_kept(self, job: RotationJob) -> None:
        """A retirement kept back: if it waits for the connector's confirmation, the old credential
        is at risk (`unconfirmed`): on the watchlist (its job waits at the old credential's end,
        perhaps beyond the window) and announced."""
        self._instruments.count(ROTATIONS, "deferred")
        try:
            record = await self._store.get(job.registration_id)
        except NotFound:
            return
        item = assess(record, self._clock.now(), self._settings)
        if item is None:
            return
        # On the watchlist first: if what follows dies, the next watch still finds it (and asks
        # for its proof of use again).
        await self._sources.watchlist.add(record.id)
        if item.reason is AtRiskReason.UNCONFIRMED and await self._proven_in_use(record):
            return
        await self._announce(record, [at_risk_event(record, item, self._clock.now())], at_risk=item)

    async def rotation_failed(self, job: RotationJob) -> None:
        """After a rotation job was refused for good (the rotator recorded it on the registration)."""
        self._instruments.count(ROTATIONS, "failed")
        try:
            record = await self._store.get(job.registration_id)
        except NotFound:
            return
        failures = failures_since_success(record)
        if not failures:
            return  # a retirement kept back, or already recorded as rotated: nothing failed
        latest = failures[-1]
        credential = record.credential
        signal_event(
            Signal.ROTATION_FAILED,
            f"rotation failed ({len(failures)} in a row): {latest.detail}",
            level=logging.ERROR,
            reason=latest.detail,
            outcome="failed",
            registration_id=record.id,
            tenant_id=record.tenant_id,
            app_id=record.app_id,
            profile=record.profile_id,
            key_id=credential.key_id if credential else None,
            generation=credential.generation if credential else None,
            expires_on=credential.expires_on if credential else None,
            failures_in_a_row=len(failures),
        )
        events = [rotation_failed_event(record, f, n) for n, f in enumerate(failures, start=1)]
        item = assess(record, self._clock.now(), self._settings)
        if item is not None:
            # Its job may wait beyond the window (a forced rotation): snapshots must see it anyway.
            await self._sources.watchlist.add(record.id)
            events.append(at_risk_event(record, item, self._clock.now()))
        await self._announce(record, events, at_risk=item)

    def provisioning_ended(self, record: Registration) -> None:
        outcome = record.status.value
        if outcome in OUTCOMES[PROVISIONINGS.name]:
            self._instruments.count(PROVISIONINGS, outcome)
        if outcome == "failed":
            error = record.last_error
            signal_event(
                Signal.REGISTRATION_FAILED,
                f"registration failed at {error.step if error else 'an unknown step'}",
                level=logging.ERROR,
                reason=(error.code or error.kind) if error else None,
                outcome="failed",
                status=outcome,
                registration_id=record.id,
                tenant_id=record.tenant_id,
                app_id=record.app_id,
                profile=record.profile_id,
            )

    def delivery_settled(self, delivery: Delivery, status: str) -> None:
        outcome = DELIVERY_OUTCOMES.get(status)
        if outcome is None:
            return
        self._instruments.count(DELIVERIES, outcome)
        if outcome == "dead_lettered":
            signal_event(
                Signal.DELIVERY_DEAD_LETTERED,
                f"webhook delivery dead-lettered after {delivery.attempt} attempts",
                level=logging.ERROR,
                outcome=outcome,
                registration_id=delivery.registration_id,
                subscription_id=delivery.subscription_id,
                event_type=delivery.event_type,
            )

    def message_poisoned(self, queue_name: str, reason: str) -> None:
        """Called on a message's last delivery when it raises: the host moves it to `<queue>-poison`."""
        signal_event(
            Signal.MESSAGE_POISONED,
            f"message goes to {queue_name}-poison",
            level=logging.ERROR,
            queue=queue_name,
            reason=reason,
        )

    # ------------------------------------------------------------ the periodic watch

    async def health(self) -> HealthSnapshot:
        """The snapshot now, for GET /api/health; also what the gauges report next."""
        snapshot = await take_snapshot(self._sources, self._settings)
        self._instruments.hold(snapshot)
        return snapshot

    async def inventory_scanned(self) -> None:
        """After an inventory scan of a tenant: the snapshot's lastInventoryAt (GET /api/health)."""
        await self._sources.marks.mark(INVENTORY_MARK, self._clock.now())

    async def watch(self) -> HealthSnapshot:
        """After a rotation sweep: mark it, take the snapshot, announce what is at risk."""
        await self._sources.marks.mark(SWEEP_MARK, self._clock.now())
        snapshot = await self.health()
        signal_event(
            Signal.HEALTH_SNAPSHOT,
            f"{len(snapshot.at_risk)} credential(s) at risk, backlog {snapshot.rotation_backlog}",
            status="at_risk" if snapshot.at_risk else "ok",
        )
        signal_event(Signal.ROTATION_SWEEP_COMPLETED, "rotation sweep completed", outcome="completed")
        for item in snapshot.at_risk:
            try:
                record = await self._store.get(item.registration_id)
            except NotFound:
                continue
            if item.reason is AtRiskReason.UNCONFIRMED and await self._proven_in_use(record):
                continue
            await self._announce(record, [at_risk_event(record, item, snapshot.taken_at)], at_risk=item)
        return snapshot

    async def _proven_in_use(self, record: Registration) -> bool:
        """Whether the tenant's sign-in activity confirmed the new credential (proof of use on)."""
        if self._proof is None:
            return False
        try:
            return await self._proof.confirm_if_used(record)
        except RegistrarError as err:  # busy (lease) or changed meanwhile: the next watch asks again
            log.info("proof of use for %s not recorded yet: %s", record.id, err)
            return False

    # ------------------------------------------------------------ announcing

    async def _announce(
        self, record: Registration, events: list[WebhookEvent], *, at_risk: AtRisk | None
    ) -> None:
        """Announce what the record has not yet announced (its history says), under its lease."""
        todo = [e for e in events if not announced(record, e.id)]
        if not todo:
            return
        try:
            keeper = await RecordKeeper.claim(
                self._store,
                self._clock,
                record.id,
                owner=self._owner,
                lease_for=timedelta(minutes=1),
                wait=timedelta(seconds=10),
                sleep=self._sleep,
            )
        except LeaseHeld:
            log.info("registration %s is busy; its events wait for the next sweep", record.id)
            return
        try:
            for event in todo:
                if announced(keeper.current, event.id):
                    continue  # announced meanwhile by another instance
                await self._announcer.announce(keeper, event)
                if event.type == "credential.at_risk":
                    self._at_risk_logged(keeper.current, at_risk)
        except RegistrarError as err:
            log.warning("could not announce to %s's subscribers yet: %s", record.id, err)
        finally:
            await keeper.release()

    def _at_risk_logged(self, record: Registration, item: AtRisk | None) -> None:
        if item is None:
            return
        signal_event(
            Signal.CREDENTIAL_AT_RISK,
            f"credential at risk: {item.reason.value}",
            level=logging.WARNING,
            reason=item.reason.value,
            registration_id=record.id,
            tenant_id=record.tenant_id,
            app_id=record.app_id,
            profile=record.profile_id,
            key_id=item.key_id,
            generation=item.generation,
            expires_on=item.expires_on,
            days_to_expiry=item.days_to_expiry(self._clock.now()),
            failures_in_a_row=item.failures_in_a_row,
        )
