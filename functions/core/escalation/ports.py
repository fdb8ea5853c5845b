"""What escalation needs from outside beyond core.ports: the tenant's sign-in activity, read as
proof that a connector uses its new credential. Speaks credential ids and times only, so it
lives here, not in core.ports (which speaks the record's vocabulary)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from functions.core.record.errors import RegistrarError


class ProofUnavailable(RegistrarError):  # noqa: N818  (names the outcome: no proof can be had)
    """The tenant does not let Registrar read sign-in activity: Graph answered 403 (no
    AuditLog.Read.All consented, or no Microsoft Entra ID P1/P2 licence). Not a failure of the
    rotation: the connector can still confirm through the API."""


class SignInActivity(Protocol):
    """Graph's appCredentialSignInActivities report (beta): when a credential last signed in."""

    async def last_sign_in(self, tenant_id: str, app_id: str, key_id: str) -> datetime | None:
        """When the credential `key_id` of the app `app_id` last acquired a token (None: the
        report has no sign-in for it). Raises ProofUnavailable on a refusal, TransientError
        when Graph is throttling or down."""
        ...
