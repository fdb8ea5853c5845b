"""Connector-confirmed retirement: POST /api/registrations/{id}/credentials/{keyId}/confirm.

A connector (or its operator) says it now uses the registration's current credential. The
confirmation is kept on the credential (`confirmed_at`) and in the history; confirming again
changes nothing. With `"retirement": "after-confirm"`, an old credential kept past its overlap
for want of this confirmation is retired now: its retirement job is put back to now in the expiry
index, and the next sweep runs it (the rotation worker removes it, never the last valid one).

A confirmation comes from the connector (the API: source "connector") or from the tenant's
sign-in activity (core/escalation/proof_of_use.py: source "sign-in"); the history says which.

A keyId that is not the current credential: 409 when it is an earlier one of this registration
(retiring, or named in its history), 404 when the registration never had it.
Crash-safe, write-ahead: the retirement jobs are put back to now BEFORE the confirmation is
recorded (one conditional write: lease + ETag). A crash between the two leaves a job due now on an
unconfirmed record: the rotator keeps the old credential back again (and announces it at risk),
so nothing retires early, and confirming again (or the next proof of use) completes it. The other
order could record a confirmation whose release was lost: the old credential would then linger,
unannounced, until its own end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from functions.core.ports import Clock, ExpiryIndex, RegistrationStore
from functions.core.record.errors import Conflict, NotFound, RecordInconsistent
from functions.core.record.keeper import RecordKeeper, Sleep
from functions.core.record.registration import Registration
from functions.core.rotation.jobs import retire_job

CONFIRM_STEP = "confirm"
SOURCE_CONNECTOR = "connector"  # POST .../confirm
SOURCE_SIGN_IN = "sign-in"  # the tenant's sign-in activity showed the new keyId in use


def confirmation_detail(key_id: str, source: str) -> str:
    """The history's detail of a confirmation (the connector's keeps its earlier form)."""
    return f"keyId {key_id}" if source == SOURCE_CONNECTOR else f"keyId {key_id} ({source})"


@dataclass(frozen=True)
class Confirmed:
    record: Registration
    key_id: str
    confirmed_at: datetime
    retiring_now: tuple[str, ...]  # keyIds whose retirement this confirmation released


def _known_before(record: Registration, key_id: str) -> bool:
    return any(c.key_id == key_id for c in record.retiring_credentials) or any(
        e.detail is not None and key_id in e.detail for e in record.history
    )


class Confirmations:
    def __init__(
        self,
        *,
        store: RegistrationStore,
        index: ExpiryIndex,
        clock: Clock,
        owner: str,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._index = index
        self._clock = clock
        self._owner = owner
        self._sleep = sleep

    async def confirm(self, registration_id: str, key_id: str, source: str = SOURCE_CONNECTOR) -> Confirmed:
        keeper = await RecordKeeper.claim(
            self._store,
            self._clock,
            registration_id,
            owner=self._owner,
            lease_for=timedelta(minutes=1),
            wait=timedelta(seconds=10),
            sleep=self._sleep,
        )
        try:
            record = keeper.current
            current = record.credential
            if current is None or current.key_id != key_id:
                if _known_before(record, key_id):
                    raise Conflict(
                        f"keyId {key_id} is not the current credential of {registration_id}"
                        + (f" (that is {current.key_id})" if current else "")
                    )
                raise NotFound("credential", key_id)
            now = self._clock.now()
            # Released: every old credential whose overlap has ended retires at the next sweep.
            # Written ahead of the confirmation (see the module's docstring).
            released = [
                old for old in record.retiring_credentials if old.retire_after and old.retire_after <= now
            ]
            for old in released:
                await self._index.put(replace(retire_job(record, old), due_at=now))
            if current.confirmed_at is None:
                detail = confirmation_detail(key_id, source)

                def confirmed(r: Registration) -> Registration:
                    if r.credential is None or r.credential.key_id != key_id or r.credential.confirmed_at:
                        return r
                    return replace(r, credential=replace(r.credential, confirmed_at=now)).with_event(
                        CONFIRM_STEP, "done", now, detail
                    )

                record = await keeper.update(confirmed)
            credential = record.credential
            if credential is None or credential.confirmed_at is None:  # changed under us: the lease says no
                raise RecordInconsistent(registration_id, "a confirmed current credential", "confirm")
            return Confirmed(record, key_id, credential.confirmed_at, tuple(o.key_id for o in released))
        finally:
            await keeper.release()
