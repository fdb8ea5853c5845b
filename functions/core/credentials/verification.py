"""Prove a new credential works by acquiring a token with it, through Entra's propagation delay.

Entra accepts a new secret or certificate only after a while (observed: seconds to minutes), so
the probe's TransientError is retried with exponential backoff (honouring a Retry-After) within
a budget; past the budget the caller's queue retry takes over. PermanentError (refused for good)
propagates at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from functions.core.ports import TokenProbe
from functions.core.record.errors import RecordInconsistent, TransientError
from functions.core.record.keeper import RecordKeeper
from functions.core.record.models import CredentialType, SecretValue

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class VerifyPolicy:
    timeout: timedelta = timedelta(minutes=3)  # per attempt of the workflow; the queue retries after
    first_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(seconds=20)


async def until_accepted(
    probe: TokenProbe,
    *,
    tenant_id: str,
    client_id: str,
    kind: CredentialType,
    secret: SecretValue,
    policy: VerifyPolicy,
    sleep: Sleep = asyncio.sleep,
) -> None:
    delay = policy.first_delay.total_seconds()
    budget = policy.timeout.total_seconds()
    waited = 0.0
    while True:
        try:
            if kind is CredentialType.CERTIFICATE:
                await probe.try_certificate(tenant_id, client_id, secret)
            else:
                await probe.try_secret(tenant_id, client_id, secret)
            return
        except TransientError as err:
            wait = max(delay, err.retry_after.total_seconds() if err.retry_after else 0.0)
            if waited + wait > budget:
                raise TransientError(
                    f"the new credential of app {client_id} was not accepted within {budget:.0f} s; retrying later"
                ) from None
            await sleep(wait)
            waited += wait
            delay = min(delay * 2, policy.max_delay.total_seconds())


async def accepted_holding_the_lease(
    keeper: RecordKeeper,
    probe: TokenProbe,
    *,
    kind: CredentialType,
    secret: SecretValue,
    policy: VerifyPolicy,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """until_accepted for the app of the record `keeper` holds: Entra takes a while to accept a new
    credential, so every wait renews the lease (LeaseHeld if another worker took it over meanwhile)
    and a verification as long as the policy's budget never outlives it."""
    record = keeper.current
    if record.app_id is None:
        raise RecordInconsistent(record.id, "app_id", "verify")

    async def sleep_holding_the_lease(seconds: float) -> None:
        await sleep(seconds)
        await keeper.renew()

    await until_accepted(
        probe,
        tenant_id=record.tenant_id,
        client_id=record.app_id,
        kind=kind,
        secret=secret,
        policy=policy,
        sleep=sleep_holding_the_lease,
    )
