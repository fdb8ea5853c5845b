"""Table storage for rotation: the credential expiry index (a sweep reads O(due)) and named leases.

Expiry index (resources.CREDENTIAL_EXPIRY_TABLE), keyed as core/rotation_schedule.py says:
PartitionKey = the job's due bucket ("due-YYYYMMDDHH", sortable), RowKey = the job id, with DueAt
and the job message. `due(now)` asks for PartitionKey in ["due-", bucket(now)] and DueAt <= now:
Table storage serves a PartitionKey range from its primary index, so the sweep touches the due
buckets (plus the rest of the current hour) and never the credentials due later.

Leases (resources.LEASES_TABLE): one entity per name; acquire/renew/release by ETag, so exactly
one owner holds a live lease; an expired lease is taken over by ETag too.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.tables import TRANSACTION_LIMIT, table_call
from functions.core.errors import ConcurrencyConflict, NotFound
from functions.core.rotation_schedule import INDEX_PARTITION_PREFIX, RotationJob, index_partition
from functions.resources import CREDENTIAL_EXPIRY_TABLE, LEASES_TABLE


class CredentialExpiryIndex:
    """Rotation jobs by due time. put/remove are idempotent; due() reads only due buckets."""

    def __init__(self, service: Any, table_name: str = CREDENTIAL_EXPIRY_TABLE) -> None:
        self._table = service.get_table_client(table_name)

    async def close(self) -> None:
        await self._table.close()

    @staticmethod
    def _entity(job: RotationJob) -> dict[str, Any]:
        return {
            "PartitionKey": job.index_partition,
            "RowKey": job.job_id,
            "DueAt": job.due_at.astimezone(UTC),
            "RegistrationId": job.registration_id,
            "Job": json.dumps(job.to_message(), separators=(",", ":")),
        }

    async def put(self, job: RotationJob) -> None:
        entity = self._entity(job)
        await table_call("index", job.job_id, lambda: self._table.upsert_entity(entity))

    async def put_many(self, jobs: Iterable[RotationJob]) -> None:
        """Upsert many jobs: one transaction per partition and 100 entities."""
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            by_partition.setdefault(job.index_partition, []).append(self._entity(job))
        for partition, entities in by_partition.items():
            for i in range(0, len(entities), TRANSACTION_LIMIT):
                operations = [("upsert", e) for e in entities[i : i + TRANSACTION_LIMIT]]
                submit = functools.partial(self._table.submit_transaction, operations)
                await table_call("index batch", partition, submit)

    async def remove(self, job: RotationJob) -> None:
        with contextlib.suppress(NotFound):  # already removed
            await table_call(
                "unindex", job.job_id, lambda: self._table.delete_entity(job.index_partition, job.job_id)
            )

    async def due(self, now: datetime, *, limit: int | None = None) -> list[RotationJob]:
        """Jobs whose DueAt <= now, oldest buckets first (at most `limit`)."""
        query = "PartitionKey ge @low and PartitionKey le @high and DueAt le @now"
        parameters = {"low": INDEX_PARTITION_PREFIX, "high": index_partition(now), "now": now.astimezone(UTC)}

        async def read() -> list[RotationJob]:
            jobs: list[RotationJob] = []
            async for entity in self._table.query_entities(
                query, parameters=parameters, results_per_page=1000
            ):
                jobs.append(RotationJob.from_message(json.loads(entity["Job"])))
                if limit is not None and len(jobs) >= limit:
                    break
            return jobs

        return list(await table_call("sweep", "expiry index", read))


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    expires_at: datetime
    etag: str


class TableLeases:
    """Named leases with expiry, held by ETag (a generic helper: the rotation sweep, singletons)."""

    def __init__(self, service: Any, table_name: str = LEASES_TABLE, *, partition: str = "lease") -> None:
        self._table = service.get_table_client(table_name)
        self._partition = partition

    async def close(self) -> None:
        await self._table.close()

    def _entity(self, name: str, owner: str, expires_at: datetime) -> dict[str, Any]:
        return {"PartitionKey": self._partition, "RowKey": name, "Owner": owner, "ExpiresAt": expires_at}

    async def acquire(
        self, name: str, owner: str, duration: timedelta, *, now: datetime | None = None
    ) -> Lease | None:
        """The lease, or None while another owner holds it unexpired. Re-acquiring one's own renews it."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import UpdateMode

        now = now or datetime.now(UTC)
        expires = now + duration
        entity = self._entity(name, owner, expires)
        try:
            metadata = await self._table.create_entity(entity)
            return Lease(name, owner, expires, metadata["etag"])
        except ResourceExistsError:
            pass
        try:
            current = await table_call(
                "read lease", name, lambda: self._table.get_entity(self._partition, name)
            )
        except NotFound:
            return None  # released between our two calls: the caller may simply try again
        if current["Owner"] != owner and current["ExpiresAt"] > now:
            return None
        try:
            metadata = await table_call(
                "take lease",
                name,
                lambda: self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except (ConcurrencyConflict, NotFound):
            return None  # someone else took or released it first
        return Lease(name, owner, expires, metadata["etag"])

    async def renew(self, lease: Lease, duration: timedelta, *, now: datetime | None = None) -> Lease:
        """Extend a lease still held; ConcurrencyConflict when it was lost (taken over or released)."""
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        expires = (now or datetime.now(UTC)) + duration
        entity = self._entity(lease.name, lease.owner, expires)
        try:
            metadata = await table_call(
                "renew lease",
                lease.name,
                lambda: self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=lease.etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except NotFound:
            raise ConcurrencyConflict(f"lease {lease.name} was released") from None
        return Lease(lease.name, lease.owner, expires, metadata["etag"])

    async def release(self, lease: Lease) -> None:
        """Give the lease up if still ours; a lease already lost or gone is fine."""
        from azure.core import MatchConditions

        with contextlib.suppress(ConcurrencyConflict, NotFound):
            await table_call(
                "release lease",
                lease.name,
                lambda: self._table.delete_entity(
                    self._partition,
                    lease.name,
                    etag=lease.etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
