"""Proof of use: a sign-in with the new keyId counts as the connector's confirmation.

Opt-in (REGISTRAR_SIGN_IN_PROOF, off by default): reading Graph's appCredentialSignInActivities
needs AuditLog.Read.All and a Microsoft Entra ID P1 or P2 licence (docs/security.md). Asked for
an after-confirm registration whose current credential is unconfirmed while an old one waits to
retire: when its retirement is kept back (the rotation worker) and, after that, at each sweep
while it is announced at risk (`unconfirmed`). So the cost is one Graph call per such credential
per sweep, never one per registration.

Registrar's own verification signs in with the new credential before recording it (verified_at),
so only a sign-in after verified_at is the connector's. A refusal (403: no permission, no
licence) degrades to "no proof": logged once per tenant and process, the rotation unaffected; the
connector can still confirm through the API. Throttling or an outage: no proof this time, the
next sweep asks again. Recording the confirmation is Confirmations.confirm (idempotent,
write-ahead), so a crash anywhere converges at the next ask.
"""

from __future__ import annotations

import logging

from functions.core.escalation.confirmation import SOURCE_SIGN_IN, Confirmations
from functions.core.escalation.ports import ProofUnavailable, SignInActivity
from functions.core.record.errors import TransientError
from functions.core.record.models import RETIRE_AFTER_CONFIRM
from functions.core.record.registration import Registration

log = logging.getLogger(__name__)

# Tenants whose refusal was logged by this process: a refusal is logged once, not every sweep.
_refusals_logged: set[str] = set()


class ProofOfUse:
    def __init__(self, *, activity: SignInActivity, confirmations: Confirmations) -> None:
        self._activity = activity
        self._confirmations = confirmations

    @staticmethod
    def wanted(record: Registration) -> bool:
        """Whether a sign-in could confirm anything: after-confirm, the current credential verified
        and unconfirmed, and an old credential waiting to retire."""
        current = record.credential
        return (
            record.retirement == RETIRE_AFTER_CONFIRM
            and record.app_id is not None
            and current is not None
            and current.verified_at is not None
            and current.confirmed_at is None
            and bool(record.retiring_credentials)
        )

    async def confirm_if_used(self, record: Registration) -> bool:
        """True when the new keyId has signed in since Registrar verified it, and that is now
        recorded as the confirmation (source sign-in), its old credentials released."""
        current = record.credential
        if not self.wanted(record) or current is None or current.verified_at is None or record.app_id is None:
            return False
        try:
            last = await self._activity.last_sign_in(record.tenant_id, record.app_id, current.key_id)
        except ProofUnavailable as err:
            if record.tenant_id not in _refusals_logged:
                _refusals_logged.add(record.tenant_id)
                log.warning(
                    "no proof of use in tenant %s (sign-in activity refused: %s); "
                    "connectors confirm through the API",
                    record.tenant_id,
                    err,
                )
            return False
        except TransientError as err:
            log.info("sign-in activity unavailable for now (%s); the next sweep asks again", err)
            return False
        if last is None or last <= current.verified_at:
            return False
        await self._confirmations.confirm(record.id, current.key_id, SOURCE_SIGN_IN)
        log.info("keyId %s signed in at %s: confirmed by its use", current.key_id, last.isoformat())
        return True
