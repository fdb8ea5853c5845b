"""Approving a held registration and decommissioning one. Both take the registration's lease.

approve: pending_approval -> accepted (an adoption: adopting), with who and when; the caller then
enqueues the id so the worker provisions it (or takes the adopted app over). Approving again
changes nothing, but while the registration is still `accepted` (`adopting`) it asks for the
enqueue again (the first send may have failed after the record was saved; the worker is
idempotent). Approving anything else is a Conflict.

decommission: remove every credential, delete the app (its service principal goes with it),
delete the Key Vault secret/certificate and the webhook secrets, keep the record as
`decommissioned`. Idempotent: a crash half-way is finished by calling it again. An adopted
registration releases the person's app instead, or deletes it when asked (`delete_app`):
provisioning/release.py.

After a crash (docs/rotation.md, "After a crash"): both hold the registration's lease for
WORK_LEASE (30 s), renewed in the background, and write the registration worker's in-flight entry
ahead (core/record/inflight.py), so the resume sweep sends the registration's envelope again once
the lease lapsed:
- approve: the entry is written before the approval is saved and handed to the worker (its run
  writes the same entry and removes it). A process that dies between saving the approval and the
  trigger's enqueue no longer strands the registration `accepted` until the stuck sweep fails it.
- decommission: once `decommissioning` is saved the entry is kept on any failure, and the
  registration worker finishes a `decommissioning` registration (`finish_decommission`, called by
  Provisioner), so a decommission half-done ends without anyone calling it again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta

from functions.core.credentials.issuer import CredentialIssuer
from functions.core.ports import Clock, Directory, InFlightIndex, RegistrationStore, Vault
from functions.core.provisioning.release import end_adoption
from functions.core.record.errors import Conflict, NotFound
from functions.core.record.inflight import provisioning_work, tracked
from functions.core.record.keeper import WORK_LEASE, RecordKeeper, Sleep
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Approval, Registration, is_registration_id
from functions.logs import log_context
from functions.resources import REGISTRATION_REQUESTS_QUEUE

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
        lease_for: timedelta = WORK_LEASE,  # renewed in the background while it is held
        lease_wait: timedelta = timedelta(seconds=10),
        sleep: Sleep = asyncio.sleep,
        in_flight: InFlightIndex | None = None,  # where the work is written ahead, for the resume sweep
    ) -> None:
        self._store = store
        self._directory = directory
        self._in_flight = in_flight
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
        earlier approval's enqueue may have been lost because the worker has not started on it).

        With True, the registration worker's in-flight entry stays behind (written before the
        approval was saved): if the caller dies before its enqueue, the resume sweep sends it."""
        if not is_registration_id(registration_id):  # before the in-flight entry is written
            raise NotFound("registration", registration_id)
        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, self._clock.now())
        async with tracked(self._in_flight, work) as entry:
            keeper = await self._claim(registration_id)
            record = keeper.current
            # An adoption held for a tier-0 change goes back to `adopting` (its takeover applies the
            # change, core/adoption/permissions.py), never to `accepted` (a new app would be built).
            resumes = RegistrationStatus.ADOPTING if record.adoption else RegistrationStatus.ACCEPTED
            if record.approval is not None and record.approval.granted:
                enqueue = record.status is resumes
                entry.handed_over = enqueue
                return await keeper.release(), enqueue
            if record.status is not RegistrationStatus.PENDING_APPROVAL:
                await keeper.release()
                raise Conflict(f"registration {record.id} is {record.status.value}, not pending_approval")
            now = self._clock.now()
            with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="approve"):
                async with keeper.renewing():
                    await keeper.update(
                        lambda r: replace(
                            r,
                            status=resumes,
                            approval=Approval(
                                reasons=r.approval.reasons if r.approval else r.plan.approval_reasons,
                                approved_by=approver,
                                approved_at=now,
                            ),
                        ).with_event("approval", "done", now, f"approved by {approver}")
                    )
                # Approved: its provisioning must start even if the release or the enqueue fails.
                entry.keep_on_failure = entry.handed_over = True
                log.info("registration approved by %s", approver)
            return await keeper.release(), True

    async def decommission(
        self, registration_id: str, requested_by: str, *, delete_app: bool = False
    ) -> Registration:
        """delete_app: an adopted app is deleted rather than released (ignored for an app Registrar
        made, which decommission always deletes). Once asked, a retry without it still deletes: the
        app may be half-way gone. Conflict while the adoption waits for ownership: Registrar owns
        nothing it could delete."""
        if not is_registration_id(registration_id):  # before the in-flight entry is written
            raise NotFound("registration", registration_id)
        work = provisioning_work(registration_id, REGISTRATION_REQUESTS_QUEUE, self._clock.now())
        async with tracked(self._in_flight, work) as entry:
            keeper = await self._claim(registration_id)
            record = keeper.current
            if record.status is RegistrationStatus.DECOMMISSIONED:
                return await keeper.release()
            adoption = record.adoption
            delete_app = delete_app and adoption is not None
            if delete_app and record.status is RegistrationStatus.PENDING_OWNERSHIP:
                await keeper.release()
                raise Conflict(
                    f"registration {record.id} waits for ownership of the app: Registrar cannot delete "
                    "an app it does not own; decommission it without deleteApp to release it"
                )
            asked = " (deleteApp=true)" if delete_app else ""
            with log_context(registration_id=record.id, tenant_id=record.tenant_id, operation="decommission"):
                async with keeper.renewing():
                    now = self._clock.now()
                    await keeper.update(
                        lambda r: replace(
                            r,
                            status=RegistrationStatus.DECOMMISSIONING,
                            adoption=replace(r.adoption, delete_app=True)
                            if r.adoption is not None and delete_app
                            else r.adoption,
                        ).with_event("decommission", "started", now, f"requested by {requested_by}{asked}")
                    )
                    # From here a failure leaves the entry: the registration worker finishes it.
                    entry.keep_on_failure = True
                    await finish_decommission(keeper, self._issuer, self._vault, self._clock, self._directory)
            return await keeper.release()


async def finish_decommission(
    keeper: RecordKeeper, issuer: CredentialIssuer, vault: Vault, clock: Clock, directory: Directory
) -> None:
    """Remove what a `decommissioning` registration has, then save it `decommissioned`. Idempotent:
    what is already gone is success, so a run that finishes a crashed one repeats nothing visible."""
    record = keeper.current
    if record.adoption is not None:  # a person's app: released (or deleted, if asked)
        summary = await end_adoption(keeper, issuer, directory, clock)
    else:
        await issuer.remove_everything(record)
        summary = "credentials removed, app deleted, vault objects deleted"
    for sub in record.webhooks:
        if sub.secret_name:
            await vault.delete_secret(sub.secret_name)
    done = clock.now()
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
        ).with_event("decommission", "done", done, summary)
    )
    log.info("registration decommissioned (app %s)", record.app_id)
