"""What Registrar does when Key Vault reports on a registration's secret or certificate.

- SecretNewVersionCreated (a rotation published): announce credential.rotated. The rotation job
  announces it too; both build the same event id, so subscribers hear it once. This path is the
  safety net for a worker that died between publishing and announcing.
- SecretNearExpiry (30 days before exp, for the current version): enqueue a rotation unless one
  is under way (the safety net for missed timers) and announce credential.expiring.
- SecretExpired for the current version: announce credential.expired and log an error (the
  connector is about to fail). An old, retired version expiring is expected and ignored.

Events about other objects (staging copies, webhook signing secrets, unknown names) are ignored.

After a crash no in-flight entry is needed: a reaction is re-driven by Event Grid, which delivers
the event again when its webhook fails or does not answer (retries for 24 hours, with backoff).
Each reaction is idempotent (the event ids; the rotate-now job indexed before it is enqueued), and
the lease it holds while it announces is a work lease (30 s), so the redelivery finds it free.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from functions.core.notification.announcer import Announcer, event_for
from functions.core.notification.events import WebhookEvent
from functions.core.ports import Clock, ExpiryIndex, MessageQueue, RegistrationStore
from functions.core.record.errors import NotFound
from functions.core.record.keeper import WORK_LEASE, RecordKeeper, Sleep
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration
from functions.core.rotation.keyvault_events import KeyVaultEvent, KeyVaultEventKind
from functions.core.rotation.rotator import (
    RotationSettings,
    enqueue,
    rotate_now_job,
    rotated_event,
    rotation_job,
)
from functions.logs import log_context

log = logging.getLogger(__name__)

REGISTRATION_PREFIX = "reg-"


class Reaction(StrEnum):
    IGNORED = "ignored"
    NOTIFIED = "notified"
    ROTATION_ENQUEUED = "rotation_enqueued"
    ALERTED = "alerted"


def registration_id_of(object_name: str) -> str | None:
    """The registration a vault object belongs to: its name IS the registration id."""
    if not object_name.startswith(REGISTRATION_PREFIX) or object_name.endswith("-staging"):
        return None
    return object_name


def _is_current(record: Registration, event: KeyVaultEvent) -> bool:
    credential = record.credential
    if credential is None or not event.version:
        return False
    return event.version in (credential.secret_version, credential.certificate_version)


def _expiry_event(
    event_type: str, generation: int, source: KeyVaultEvent, at: datetime
) -> Callable[[Registration], WebhookEvent]:
    """credential.expiring / credential.expired for a generation, built from the latest record."""

    def build(record: Registration) -> WebhookEvent:
        credential = record.credential
        return event_for(
            record,
            event_type,
            f"g{generation}",
            at,
            keyId=credential.key_id if credential else None,
            secretUri=credential.secret_uri if credential else None,
            expiresOn=source.expires_on,
        )

    return build


class KeyVaultReactions:
    def __init__(
        self,
        *,
        store: RegistrationStore,
        queue: MessageQueue,
        index: ExpiryIndex,
        clock: Clock,
        owner: str,
        lease_for: timedelta = WORK_LEASE,  # an announcement takes seconds; see the module docstring
        lease_wait: timedelta = timedelta(seconds=5),
        sleep: Sleep = asyncio.sleep,
        settings: RotationSettings | None = None,
    ) -> None:
        self._settings = settings or RotationSettings()
        self._store = store
        self._queue = queue
        self._index = index
        self._clock = clock
        self._owner = owner
        self._lease_for = lease_for
        self._lease_wait = lease_wait
        self._sleep = sleep
        self._announcer = Announcer(queue=queue, clock=clock)

    async def handle(self, event: KeyVaultEvent) -> Reaction:  # noqa: PLR0911  (one outcome per event kind)
        registration_id = registration_id_of(event.object_name)
        if registration_id is None:
            return Reaction.IGNORED
        try:
            record = await self._store.get(registration_id)
        except NotFound:
            return Reaction.IGNORED
        with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="keyvault-event"):
            if not _is_current(record, event) or record.credential is None:
                return Reaction.IGNORED
            if event.kind is KeyVaultEventKind.NEW_VERSION:
                if record.credential.generation < 2:
                    return Reaction.IGNORED  # the first credential: registration.active says it
                await self._announce(record, lambda r: rotated_event(r, self._clock.now()))
                return Reaction.NOTIFIED
            generation = record.credential.generation
            if event.kind is KeyVaultEventKind.NEAR_EXPIRY:
                # Key Vault says "near expiry" 30 days ahead, whatever the lifetime: a credential
                # living 30 days or less is "near expiry" the moment it is made. Rotating then would
                # loop (each new version near expiry at once); the timer owns rotation until it is
                # due, and this event is the safety net for a timer that missed it.
                scheduled = rotation_job(record, self._settings)
                if scheduled is not None and scheduled.due_at > self._clock.now():
                    log.info(
                        "near expiry of generation %d: not due yet, its rotation is scheduled for %s",
                        generation,
                        scheduled.due_at.isoformat(),
                    )
                    return Reaction.IGNORED
                # Announced before the rotation is enqueued: the rotation job holds the lease for
                # seconds (propagation), and an announcement waiting behind it could give up, be
                # retried by Event Grid after the version stopped being current, and be lost.
                await self._announce(
                    record, _expiry_event("credential.expiring", generation, event, self._clock.now())
                )
                if record.status is RegistrationStatus.ACTIVE and record.pending_credential is None:
                    job = rotate_now_job(record, self._clock.now(), "keyvault-event")
                    if job is not None:
                        # Indexed before it is enqueued, as POST .../rotate does: a lost message is
                        # found by the next sweep, and the job's scheduled entry moves, not doubles.
                        await self._index.put(job)
                        await enqueue(self._queue, job)
                        return Reaction.ROTATION_ENQUEUED
                return Reaction.NOTIFIED
            log.error(
                "the current credential (generation %d) of registration %s has expired", generation, record.id
            )
            await self._announce(
                record, _expiry_event("credential.expired", generation, event, self._clock.now())
            )
            return Reaction.ALERTED

    async def _announce(self, record: Registration, build: Callable[[Registration], WebhookEvent]) -> None:
        keeper = await RecordKeeper.claim(
            self._store,
            self._clock,
            record.id,
            owner=self._owner,
            lease_for=self._lease_for,
            wait=self._lease_wait,
            sleep=self._sleep,
        )
        try:
            await self._announcer.announce(keeper, build(keeper.current))
        finally:
            await keeper.release()
