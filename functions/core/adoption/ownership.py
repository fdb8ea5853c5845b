"""Ownership of an adopted app: pending_ownership -> adopting, once Registrar's service principal
is among the app's owners.

Registrar acts with Application.ReadWrite.OwnedBy, which lets it change only the apps it owns. A
hand-made app is owned by a person (or nobody), so an accepted adoption waits in
`pending_ownership`, with a manual step giving the exact command (Adoption.ownership_step). The
check runs at acceptance, on a timer and on `POST /registrations/{id}/recheck`; it reads the app's
owners (Application.Read.All) and Registrar's own object id (its token's `oid`).

A deployment that granted Application.ReadWrite.All (the Bicep parameter
`adoptionTakesOwnership`, REGISTRAR_ADOPTION_TAKES_OWNERSHIP; docs/security.md) lets Registrar
add itself as an owner. That is written ahead (`owner_added_by_registrar`, saved before the
POST owners/$ref), so a crash between the two is finished by the next check and a release knows
to remove the ownership Registrar gave itself. Graph refusing it (403) leaves the manual step.

Every run holds the record's lease and writes with its ETag; the Graph calls are reads, or an
owners/$ref that is idempotent, so a check killed after any call converges on the next one.

A check that writes the record (the first, at acceptance, and the one that finds Registrar an
owner) also marks the app `managed` by the registration in the inventory (inventory/marking.py),
so GET /api/inventory says so at once instead of from the next scan; a failure there is only
logged (the next scan marks it).

Reaching `adopting` hands the registration to the takeover (takeover.py): its envelope goes on
registration-requests, as an approval's does. The registration worker's in-flight entry is written
before the check claims the lease and handed over once `adopting` is saved, so a process that dies
between that save and the enqueue is resumed by the sweep (core/record/inflight.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from functions.core.inventory.marking import reflect
from functions.core.inventory.ports import InventoryStore
from functions.core.ports import Clock, Directory, InFlightIndex, MessageQueue, RegistrationStore
from functions.core.record.errors import Conflict, NotFound, PermanentError, RegistrarError
from functions.core.record.inflight import provisioning_work, tracked
from functions.core.record.keeper import RecordKeeper, Sleep
from functions.core.record.models import CredentialType, RegistrationStatus
from functions.core.record.registration import (
    Adoption,
    ErrorInfo,
    FoundCredential,
    Registration,
    is_registration_id,
)
from functions.resources import REGISTRATION_REQUESTS_QUEUE

log = logging.getLogger(__name__)

DENIED = "Authorization_RequestDenied"
STEP = "ownership"


@dataclass(frozen=True)
class OwnershipSettings:
    take_ownership: bool = False  # the deployment granted Application.ReadWrite.All
    lease_for: timedelta = timedelta(minutes=2)  # a check is a few reads: short
    lease_wait: timedelta = timedelta(seconds=10)


class OwnershipCheck:
    def __init__(  # noqa: PLR0917  (the check's collaborators)
        self,
        store: RegistrationStore,
        directory: Directory,
        clock: Clock,
        settings: OwnershipSettings | None = None,
        owner: str = "ownership",
        sleep: Sleep = asyncio.sleep,
        queue: MessageQueue | None = None,  # where an adopting registration's envelope goes (the takeover)
        in_flight: InFlightIndex | None = None,
        inventory: InventoryStore | None = None,  # where the adopted app is marked managed at once
    ) -> None:
        self._inventory = inventory
        self._queue = queue
        self._in_flight = in_flight
        self._store = store
        self._directory = directory
        self._clock = clock
        self._settings = settings or OwnershipSettings()
        self._owner = owner
        self._sleep = sleep

    async def check(self, registration_id: str) -> Registration:
        """Conflict for a registration that is not an adoption; past pending_ownership, a no-op.
        Once it turns `adopting`, its envelope is sent to the registration worker (the takeover)."""
        if not is_registration_id(registration_id):  # before the in-flight entry is written
            raise NotFound("registration", registration_id)
        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, self._clock.now())
        in_flight = self._in_flight if self._queue is not None else None
        async with tracked(in_flight, work) as entry:
            keeper = await RecordKeeper.claim(
                self._store,
                self._clock,
                registration_id,
                owner=self._owner,
                lease_for=self._settings.lease_for,
                wait=self._settings.lease_wait,
                sleep=self._sleep,
            )
            record = keeper.current
            if record.adoption is None:
                await keeper.release()
                raise Conflict(
                    f"registration {record.id} did not adopt an app: there is no ownership to check"
                )
            moved = wrote = False
            if record.status is RegistrationStatus.PENDING_OWNERSHIP:
                await self._check(keeper, record.adoption)
                moved = keeper.current.status is RegistrationStatus.ADOPTING
                wrote = keeper.current != record
                # The takeover must start even if the release or the send fails: the entry stays.
                entry.keep_on_failure = entry.handed_over = moved
            ended = await keeper.release()
            if moved and self._queue is not None:
                await self._queue.send(REGISTRATION_REQUESTS_QUEUE, work.message)
            if wrote:
                await self._tell_inventory(ended)
            return ended

    async def _tell_inventory(self, record: Registration) -> None:
        """The adopted app managed in the inventory now, not from the next scan (inventory/marking.py);
        not managed at once if the app was gone (the registration failed). Only a view: a failure
        here must not fail the check, and the next scan marks it anyway."""
        if self._inventory is None:
            return
        try:
            await reflect(self._inventory, record)
        except RegistrarError as err:
            log.warning("adopted app %s not marked managed in the inventory yet: %s", record.id, err)

    async def _check(self, keeper: RecordKeeper, adoption: Adoption) -> None:
        tenant = keeper.current.tenant_id
        principal = adoption.registrar_principal_id or await self._directory.registrar_principal_id(tenant)
        try:
            owners = await self._directory.application_owner_ids(tenant, adoption.app_object_id)
        except NotFound:
            await self._app_gone(keeper, adoption)
            return
        wanted = principal not in owners and self._settings.take_ownership
        if wanted and await self._add_self(keeper, adoption, principal):
            owners = {*owners, principal}
        now = self._clock.now()
        if principal in owners:
            found = await self._found_credentials(tenant, adoption)
            how = (
                "Registrar added itself as an owner (Application.ReadWrite.All)"
                if keeper.current.adoption and keeper.current.adoption.owner_added_by_registrar
                else "Registrar's service principal is an owner"
            )
            await keeper.update(
                lambda r: replace(
                    r,
                    status=RegistrationStatus.ADOPTING,
                    adoption=replace(
                        r.adoption or adoption,
                        registrar_principal_id=principal,
                        owned_at=now,
                        found_credentials=found,
                    ),
                ).with_event(STEP, "done", now, f"{how}; {len(found)} credential(s) found on the app")
            )
            log.info("adopted app %s: %s", adoption.app_id, how)
            return
        waiting = f"Registrar ({principal}) is not an owner of application {adoption.app_id} yet"
        if keeper.current.adoption == replace(adoption, registrar_principal_id=principal) and any(
            e.step == STEP and e.outcome == "waiting" for e in keeper.current.history
        ):
            return  # nothing new to say: a timer's every check must not grow the history
        await keeper.update(
            lambda r: replace(
                r, adoption=replace(r.adoption or adoption, registrar_principal_id=principal)
            ).with_event(STEP, "waiting", now, waiting)
        )

    async def _found_credentials(self, tenant: str, adoption: Adoption) -> tuple[FoundCredential, ...]:
        """The app's secrets and certificates as Graph lists them now (read before the record is
        written, so a crash in between reads them again)."""
        kinds = {"password": CredentialType.SECRET, "key": CredentialType.CERTIFICATE}
        listed = await self._directory.list_credentials(tenant, adoption.app_object_id)
        return tuple(
            FoundCredential(c.key_id, kinds[c.kind], c.display_name, c.end) for c in listed if c.kind in kinds
        )

    async def _add_self(self, keeper: RecordKeeper, adoption: Adoption, principal: str) -> bool:
        """POST owners/$ref for Registrar itself, written ahead. False when Graph refuses (403)."""
        if not adoption.owner_added_by_registrar:
            await keeper.update(
                lambda r: replace(
                    r, adoption=replace(r.adoption or adoption, owner_added_by_registrar=True)
                ).with_event(STEP, "started", self._clock.now(), "Registrar adds itself as an owner")
            )
        try:
            await self._directory.add_owner(keeper.current.tenant_id, adoption.app_object_id, principal)
        except PermanentError as error:
            if error.code != DENIED:
                raise
            refused = (
                "Graph refused: Registrar's identity lacks Application.ReadWrite.All; a person adds the owner"
            )
            await keeper.update(
                lambda r: replace(
                    r, adoption=replace(r.adoption or adoption, owner_added_by_registrar=False)
                ).with_event(STEP, "skipped", self._clock.now(), refused)
            )
            return False
        return True

    async def _app_gone(self, keeper: RecordKeeper, adoption: Adoption) -> None:
        """The app was deleted while the adoption waited: nothing of Registrar's is on it, so the
        registration simply fails (its webhook secrets stay until it is decommissioned)."""
        now = self._clock.now()
        message = (
            f"the adopted application {adoption.app_id} no longer exists in tenant {keeper.current.tenant_id}"
        )
        await keeper.update(
            lambda r: replace(
                r,
                status=RegistrationStatus.FAILED,
                last_error=ErrorInfo(step=STEP, kind="permanent", message=message, at=now, code="AppGone"),
            ).with_event(STEP, "failed", now, message)
        )
