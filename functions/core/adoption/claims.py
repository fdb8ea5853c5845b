"""One adoption per app: a claim per (tenant, appId), taken before the takeover touches the app.

Asking (asking.py) refuses an app another registration adopted, but the check and the create are
not one transaction: two adoptions of one app under different requestIds, sent at the same moment,
can both be accepted. So the takeover first inserts a claim entity keyed by (tenant, appId): an
insert-if-absent, which Table storage makes atomic. The registration whose insert won owns the app;
any other fails for good (`AppAlreadyAdopted`, naming the winner) and touches nothing.

A claim outlives its registration's interest in the app when that registration ended (failed,
decommissioned) or no longer exists: such a claim is stale and is taken over with its ETag, so
two takers of one stale claim still leave exactly one winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from functions.core.ports import RegistrationStore
from functions.core.record.errors import ConcurrencyConflict, NotFound, PermanentError, TransientError
from functions.core.record.models import RegistrationStatus

APP_ALREADY_ADOPTED = "AppAlreadyAdopted"
# A registration in one of these no longer holds its app: its claim may be taken over.
RELEASED_STATUSES = frozenset({RegistrationStatus.FAILED, RegistrationStatus.DECOMMISSIONED})
MAX_TAKEOVER_ATTEMPTS = 3  # each lost ETag race means another taker moved: re-read and judge again


@dataclass(frozen=True)
class AppClaim:
    tenant_id: str
    app_id: str
    registration_id: str
    claimed_at: datetime
    etag: str | None = None  # as read: the ETag a stale claim is taken over with


class AppClaims(Protocol):
    """Claims by (tenant, appId), case-insensitive; ids only."""

    async def insert(self, claim: AppClaim) -> AppClaim:
        """Insert the claim if there is none; return the stored claim, ours or the one already there."""
        ...

    async def replace(self, claim: AppClaim, etag: str) -> AppClaim:
        """Overwrite the claim stored with `etag`; ConcurrencyConflict if it changed, NotFound if gone."""
        ...


async def claim_app(claims: AppClaims, store: RegistrationStore, mine: AppClaim) -> AppClaim:
    """The app's claim for `mine.registration_id`: inserted, already ours, or taken over from a stale one.
    PermanentError(APP_ALREADY_ADOPTED) when a live registration holds it. Idempotent."""
    app_id, registration_id = mine.app_id, mine.registration_id
    for _ in range(MAX_TAKEOVER_ATTEMPTS):
        held = await claims.insert(mine)
        if held.registration_id == registration_id:
            return held
        if not await _stale(store, held.registration_id):
            raise PermanentError(
                f"application {app_id} is already adopted by registration {held.registration_id}",
                code=APP_ALREADY_ADOPTED,
            )
        if held.etag is None:
            raise TransientError(f"the claim of application {app_id} was read without an ETag")
        try:
            return await claims.replace(mine, held.etag)
        except (ConcurrencyConflict, NotFound):
            continue  # another taker moved first: judge the claim as it is now
    raise TransientError(f"the claim of application {app_id} kept changing; the takeover retries")


async def _stale(store: RegistrationStore, registration_id: str) -> bool:
    try:
        holder = await store.get(registration_id)
    except NotFound:
        return True
    return holder.status in RELEASED_STATUSES
