"""Adoption claims (functions/adapters/table_claims.py) against Azurite: of concurrent inserts exactly
one wins and every caller reads the winner; a stale claim is taken over by its ETag, once; ids compare
case-insensitively; and the claims do not disturb the Leases table's own leases."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.table_claims import TableAppClaims
from functions.adapters.table_index import TableLeases
from functions.adapters.tables import StorageConfig, ensure_tables, table_service
from functions.core.adoption.claims import AppClaim
from functions.core.record.errors import ConcurrencyConflict

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
TENANT = "6F1C0000-0000-4000-8000-000000000001"
APP = "3F0C9A1E-6B2D-4E8F-9A7C-1D2E3F4A5B6C"


def run(connection: str, body: Any) -> None:
    table = "Leases" + uuid.uuid4().hex[:12]

    async def main() -> None:
        async with table_service(StorageConfig(connection_string=connection)) as service:
            await ensure_tables(service, (table,))
            claims = TableAppClaims(service, table)
            leases = TableLeases(service, table)
            try:
                await body(claims, leases)
            finally:
                await claims.close()
                await leases.close()

    asyncio.run(main())


def test_one_insert_wins_and_a_stale_claim_is_taken_over_once(azurite: str) -> None:
    async def body(claims: TableAppClaims, leases: TableLeases) -> None:
        lease = await leases.acquire("rotation-sweep", "worker-1", timedelta(seconds=30), now=NOW)
        tries = [AppClaim(TENANT, APP, f"reg-{n}", NOW) for n in range(8)]
        held = await asyncio.gather(*(claims.insert(c) for c in tries))
        assert len({h.registration_id for h in held}) == 1 and all(h.etag for h in held)
        winner = held[0].registration_id
        again = await claims.insert(AppClaim(TENANT.lower(), APP.lower(), "reg-late", NOW))
        assert again.registration_id == winner and again.claimed_at == NOW  # the same claim, any case

        stale_etag = again.etag or ""
        takers = [AppClaim(TENANT, APP, f"reg-new-{n}", NOW + timedelta(hours=1)) for n in range(2)]
        results = await asyncio.gather(
            *(claims.replace(t, stale_etag) for t in takers), return_exceptions=True
        )
        won = [r for r in results if isinstance(r, AppClaim)]
        assert len(won) == 1 and sum(isinstance(r, ConcurrencyConflict) for r in results) == 1
        now_held = await claims.insert(AppClaim(TENANT, APP, "reg-later", NOW))
        assert now_held.registration_id == won[0].registration_id
        with pytest.raises(ConcurrencyConflict):
            await claims.replace(AppClaim(TENANT, APP, "reg-x", NOW), stale_etag)

        assert lease is not None  # the table's own lease is untouched by the claims beside it
        assert await leases.renew(lease, timedelta(seconds=30), now=NOW)

    run(azurite, body)
