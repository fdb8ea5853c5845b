"""What follows a provisioning run: schedule the first rotation and tell the connector.

Called after every run of the workflow (both idempotent): an active registration gets its
credential's rotation job in the expiry index and a registration.active announcement; a failed
one gets registration.failed with the reason (ids and messages only, never a secret).

Runs inside the registration worker's in-flight entry (Provisioner.run/give_up `then`): a process
that dies here, or a settling that fails, leaves the entry, and the resume sweep sends the
registration's envelope again; that run finds the registration active or failed and settles it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from functions.core.notification.announcer import Announcer, announced, event_for
from functions.core.notification.tenant_wide import current_tenant_wide
from functions.core.ports import Clock, ExpiryIndex, MessageQueue, RegistrationStore
from functions.core.record.keeper import WORK_LEASE, RecordKeeper, Sleep
from functions.core.record.models import RegistrationStatus
from functions.core.record.registration import Registration
from functions.core.rotation.rotator import RotationSettings, jobs_for


async def settle_provisioned(
    record: Registration,
    *,
    store: RegistrationStore,
    index: ExpiryIndex,
    queue: MessageQueue,
    clock: Clock,
    owner: str,
    settings: RotationSettings,
    sleep: Sleep = asyncio.sleep,
) -> None:
    if record.status is RegistrationStatus.ACTIVE:
        for job in jobs_for(record, settings):
            await index.put(job)
        credential = record.credential
        event = event_for(
            record,
            "registration.active",
            "active",
            clock.now(),
            servicePrincipalId=record.service_principal_id,
            profileId=record.profile_id,
            keyId=credential.key_id if credential else None,
            credentialType=credential.type.value if credential else None,
            secretUri=credential.secret_uri if credential else None,
            certificateUri=credential.certificate_uri if credential else None,
            thumbprint=credential.thumbprint if credential else None,
            expiresOn=credential.expires_on if credential else None,
        )
    elif record.status is RegistrationStatus.FAILED:
        error = record.last_error
        event = event_for(
            record,
            "registration.failed",
            "failed",
            clock.now(),
            profileId=record.profile_id,
            step=error.step if error else None,
            reason=error.message if error else None,
            code=error.code if error else None,
        )
    else:
        return
    tenant_wide = current_tenant_wide()
    has_subscribers = bool(record.webhooks) or (tenant_wide is not None and bool(await tenant_wide.records()))
    if announced(record, event.id) or not has_subscribers:
        return
    keeper = await RecordKeeper.claim(
        store,
        clock,
        record.id,
        owner=owner,
        lease_for=WORK_LEASE,  # one announcement: seconds; a dead process holds it 30 s at most
        wait=timedelta(seconds=10),
        sleep=sleep,
    )
    try:
        await Announcer(queue=queue, clock=clock).announce(keeper, event)
    finally:
        await keeper.release()
