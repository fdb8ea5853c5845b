"""Table storage for adoption claims (core/adoption/claims.py): one entity per (tenant, appId).

Kept in the Leases table (resources.LEASES_TABLE), which Bicep already creates, in partitions of
their own: PartitionKey "claim-" + the tenant id, RowKey the appId (both lower-case, as Graph
compares GUIDs). `insert` is Table storage's insert (409 when the entity exists, so exactly one
concurrent insert wins); `replace` is an update with If-Match, so exactly one taker of a stale
claim wins. Nothing lists these partitions: TableLeases reads only its own.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from functions.adapters.tables import table_call
from functions.core.adoption.claims import AppClaim
from functions.resources import LEASES_TABLE

CLAIM_PARTITION_PREFIX = "claim-"


class TableAppClaims:
    def __init__(self, service: Any, table_name: str = LEASES_TABLE) -> None:
        self._table = service.get_table_client(table_name)

    async def close(self) -> None:
        await self._table.close()

    @staticmethod
    def _keys(tenant_id: str, app_id: str) -> tuple[str, str]:
        return CLAIM_PARTITION_PREFIX + tenant_id.lower(), app_id.lower()

    def _entity(self, claim: AppClaim) -> dict[str, Any]:
        partition, row = self._keys(claim.tenant_id, claim.app_id)
        return {
            "PartitionKey": partition,
            "RowKey": row,
            "RegistrationId": claim.registration_id,
            "ClaimedAt": claim.claimed_at.astimezone(UTC),
        }

    async def insert(self, claim: AppClaim) -> AppClaim:
        from azure.core.exceptions import ResourceExistsError

        partition, row = self._keys(claim.tenant_id, claim.app_id)

        async def insert_or_read() -> AppClaim:
            try:
                metadata = await self._table.create_entity(self._entity(claim))
                return AppClaim(
                    claim.tenant_id, claim.app_id, claim.registration_id, claim.claimed_at, metadata["etag"]
                )
            except ResourceExistsError:
                entity = await self._table.get_entity(partition, row)
                return AppClaim(
                    claim.tenant_id,
                    claim.app_id,
                    entity["RegistrationId"],
                    entity["ClaimedAt"],
                    entity.metadata["etag"],
                )

        result: AppClaim = await table_call("claim app", f"{partition}/{row}", insert_or_read)
        return result

    async def replace(self, claim: AppClaim, etag: str) -> AppClaim:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        partition, row = self._keys(claim.tenant_id, claim.app_id)
        metadata = await table_call(
            "take over app claim",
            f"{partition}/{row}",
            lambda: self._table.update_entity(
                self._entity(claim),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            ),
        )
        return AppClaim(
            claim.tenant_id, claim.app_id, claim.registration_id, claim.claimed_at, metadata["etag"]
        )
