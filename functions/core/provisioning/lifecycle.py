"""Approving a held registration and decommissioning one. Both take the registration's lease.

approve: pending_approval -> accepted (with who and when); the caller then enqueues the id so
the worker provisions it. Approving again changes nothing, but while the registration is still
`accepted` it asks for the enqueue again (the first send may have failed after the record was
saved; the worker is idempotent). Approving anything else is a Conflict.

decommission: remove every credential, delete the app (its service principal goes with it),
delete the Key Vault secret/certificate and the webhook secrets, keep the record as
`decommissioned`. Idempotent: a crash half-way is finished by calling it again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta

from functions.core.credentials.issuer import CredentialIssuer
from functions.core.ports import Clock, Directory, RegistrationStore, Vault
from functions.core.record.errors import Conflict
from functions.core.record.keeper import RecordKeeper, Sleep
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Approval, Registration
from functions.logs import log_context

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        *,
        store: RegistrationStore,
        directory: Directory,
        vault: Vault,
        clock: Clock,
        owner: str,
        lease_for: timedelta = timedelta(minutes=5),
        lease_wait: timedelta = timedelta(seconds=10),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._vault = vault
        self._clock = clock
        self._owner = owner
        self._lease_for = lease_for
        self._lease_wait = lease_wait
        self._sleep = sleep
        self._issuer = CredentialIssuer(directory=directory, vault=vault, clock=clock)

    async def _claim(self, registration_id: str) -> RecordKeeper:
        return await RecordKeeper.claim(
            self._store,
            self._clock,
            registration_id,
            owner=self._owner,
            lease_for=self._lease_for,
            wait=self._lease_wait,
            sleep=self._sleep,
        )

    async def approve(self, registration_id: str, approver: str) -> tuple[Registration, bool]:
        """Returns (record, True when the worker must be enqueued: this call approved it, or an
        earlier approval's enqueue may have been lost because the worker has not started on it)."""
        keeper = await self._claim(registration_id)
        record = keeper.current
        if record.approval is not None and record.approval.granted:
            return await keeper.release(), record.status is RegistrationStatus.ACCEPTED
        if record.status is not RegistrationStatus.PENDING_APPROVAL:
            await keeper.release()
            raise Conflict(f"registration {record.id} is {record.status.value}, not pending_approval")
        now = self._clock.now()
        with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="approve"):
            await keeper.update(
                lambda r: replace(
                    r,
                    status=RegistrationStatus.ACCEPTED,
                    approval=Approval(
                        reasons=r.approval.reasons if r.approval else r.plan.approval_reasons,
                        approved_by=approver,
                        approved_at=now,
                    ),
                ).with_event("approval", "done", now, f"approved by {approver}")
            )
            log.info("registration approved by %s", approver)
        return await keeper.release(), True

    async def decommission(self, registration_id: str, requested_by: str) -> Registration:
        keeper = await self._claim(registration_id)
        record = keeper.current
        if record.status is RegistrationStatus.DECOMMISSIONED:
            return await keeper.release()
        with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="decommission"):
            now = self._clock.now()
            await keeper.update(
                lambda r: replace(r, status=RegistrationStatus.DECOMMISSIONING).with_event(
                    "decommission", "started", now, f"requested by {requested_by}"
                )
            )
            await self._issuer.remove_everything(keeper.current)
            for sub in keeper.current.webhooks:
                if sub.secret_name:
                    await self._vault.delete_secret(sub.secret_name)
            done = self._clock.now()
            await keeper.update(
                lambda r: replace(
                    r,
                    status=RegistrationStatus.DECOMMISSIONED,
                    credential=None,
                    pending_credential=None,
                    retiring_credentials=(),
                    service_principal_id=None,
                    granted_permissions=(),
                    owners_added=(),  # the app is deleted: nobody owns it, and no manual step is left
                    owners_refused=None,
                ).with_event("decommission", "done", done, _decommissioned(record))
            )
            log.info("registration decommissioned (app %s)", record.app_id)
        return await keeper.release()


def _decommissioned(record: Registration) -> str:
    if record.adoption is not None:  # only what Registrar added goes; the person's app stays
        return f"vault objects deleted; the adopted app {record.adoption.app_id} left as it was"
    return "credentials removed, app deleted, vault objects deleted"
