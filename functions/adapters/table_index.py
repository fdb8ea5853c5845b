"""Table storage for rotation: the credential expiry index (a sweep reads O(due)) and named leases.

Expiry index (resources.CREDENTIAL_EXPIRY_TABLE), keyed as core/record/schedule.py says:
PartitionKey = the job's due bucket ("due-YYYYMMDDHH", sortable), RowKey = the job id, with DueAt
and the job message. `due(now)` asks for PartitionKey in ["due-", bucket(now)] and DueAt <= now:
Table storage serves a PartitionKey range from its primary index, so the sweep touches the due
buckets (plus the rest of the current hour) and never the credentials due later.

A job's due time can move while its id stays (POST .../rotate makes the scheduled job due now; a
failed job comes back after a backoff), so put/remove must find its entity whatever bucket the
caller's copy names. A pointer entity per job (PartitionKey "job-" + a hash bucket of the id,
outside the sweep's "due-" range; RowKey the job id; Partitions = every bucket that may hold it)
says where. The pointer is written (widened) before a due entity and narrowed after the old ones
are deleted, so a crash between two calls leaves it naming a superset: the next put or remove
deletes the strays. Entities written before pointers existed are found by their bucket.

In-flight index (resources.IN_FLIGHT_TABLE, core/record/inflight.py): one entity per piece of
work a worker started and has not ended, PartitionKey "inflight-" + one hex digit of the key's
hash (16 partitions, so a burst of starts spreads), RowKey the key. The table holds nothing else,
so `all()` (the resume sweep) reads exactly the work in flight.

Leases (resources.LEASES_TABLE): one entity per name; acquire/renew/release by ETag, so exactly
one owner holds a live lease; an expired lease is taken over by ETag too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.tables import TRANSACTION_LIMIT, table_call
from functions.core.record.errors import ConcurrencyConflict, NotFound
from functions.core.record.inflight import InFlightWork
from functions.core.record.schedule import INDEX_PARTITION_PREFIX, RotationJob, index_partition
from functions.resources import CREDENTIAL_EXPIRY_TABLE, IN_FLIGHT_TABLE, LEASES_TABLE

# Where a job's entity is (see above); sorts after every "due-" bucket, so no sweep reads it.
POINTER_PARTITION_PREFIX = "job-"


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

    @staticmethod
    def _pointer_partition(job_id: str) -> str:
        return POINTER_PARTITION_PREFIX + hashlib.sha256(job_id.encode()).hexdigest()[:2]

    def _pointer(self, job_id: str, partitions: Iterable[str]) -> dict[str, Any]:
        return {
            "PartitionKey": self._pointer_partition(job_id),
            "RowKey": job_id,
            "Partitions": json.dumps(sorted(set(partitions))),
        }

    async def _pointed(self, job_id: str) -> set[str] | None:
        """The buckets the job's pointer names, or None without a pointer."""
        try:
            pointer = await table_call(
                "index pointer",
                job_id,
                lambda: self._table.get_entity(self._pointer_partition(job_id), job_id),
            )
        except NotFound:
            return None
        return set(json.loads(pointer["Partitions"]))

    async def _upsert(self, operation: str, entity: dict[str, Any]) -> None:
        await table_call(operation, entity["RowKey"], lambda: self._table.upsert_entity(entity))

    async def _delete(self, operation: str, partition: str, job_id: str) -> None:
        with contextlib.suppress(NotFound):  # already removed
            await table_call(operation, job_id, lambda: self._table.delete_entity(partition, job_id))

    async def put(self, job: RotationJob) -> None:
        """Index the job at its due time; an entry of the same job elsewhere moves here."""
        here = job.index_partition
        pointed = await self._pointed(job.job_id)
        elsewhere = (pointed or set()) - {here}
        if pointed != {here}:  # first the pointer names every bucket that may hold the job
            await self._upsert("index pointer", self._pointer(job.job_id, {*elsewhere, here}))
        await self._upsert("index", self._entity(job))
        for partition in elsewhere:
            await self._delete("unindex moved", partition, job.job_id)
        if elsewhere:
            await self._upsert("index pointer", self._pointer(job.job_id, [here]))

    async def put_many(self, jobs: Iterable[RotationJob]) -> None:
        """Upsert many new jobs (a backfill): one transaction per partition and 100 entities.
        Unlike put, it does not look for an entry of the same job in another bucket."""
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            by_partition.setdefault(job.index_partition, []).append(self._entity(job))
            pointer = self._pointer(job.job_id, [job.index_partition])
            by_partition.setdefault(pointer["PartitionKey"], []).append(pointer)
        for partition, entities in by_partition.items():
            for i in range(0, len(entities), TRANSACTION_LIMIT):
                operations = [("upsert", e) for e in entities[i : i + TRANSACTION_LIMIT]]
                submit = functools.partial(self._table.submit_transaction, operations)
                await table_call("index batch", partition, submit)

    async def remove(self, job: RotationJob) -> None:
        """Delete the job's entry wherever it is (its due time may have moved); idempotent."""
        # Without a pointer: never moved, or indexed before pointers existed.
        for partition in (await self._pointed(job.job_id) or set()) | {job.index_partition}:
            await self._delete("unindex", partition, job.job_id)
        await self._delete("unindex pointer", self._pointer_partition(job.job_id), job.job_id)

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


IN_FLIGHT_PARTITION_PREFIX = "inflight-"


class TableInFlightIndex:
    """Work in flight, for the resume sweep: put at start, remove at the end, all() = O(in flight)."""

    def __init__(self, service: Any, table_name: str = IN_FLIGHT_TABLE) -> None:
        self._table = service.get_table_client(table_name)

    async def close(self) -> None:
        await self._table.close()

    @staticmethod
    def _partition(key: str) -> str:
        return IN_FLIGHT_PARTITION_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:1]

    async def put(self, work: InFlightWork) -> str:
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": self._partition(work.key),
            "RowKey": work.key,
            "RegistrationId": work.registration_id,
            "Queue": work.queue,
            "Message": work.message,
            "TouchedAt": work.touched_at.astimezone(UTC),
        }
        # MERGE: a redelivered message's worker keeps the count of resumes the sweep made.
        metadata = await table_call(
            "in-flight put", work.key, lambda: self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
        )
        return str(metadata["etag"])

    async def remove(self, key: str, etag: str | None = None) -> None:
        from azure.core import MatchConditions

        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        with contextlib.suppress(NotFound, ConcurrencyConflict):  # already removed, or written again
            await table_call(
                "in-flight remove",
                key,
                lambda: self._table.delete_entity(self._partition(key), key, **condition),
            )

    async def all(self) -> list[InFlightWork]:
        async def read() -> list[InFlightWork]:
            return [
                InFlightWork(
                    key=entity["RowKey"],
                    registration_id=entity["RegistrationId"],
                    queue=entity["Queue"],
                    message=entity["Message"],
                    touched_at=entity["TouchedAt"],
                    resumes=int(entity.get("Resumes") or 0),
                    etag=entity.metadata["etag"],
                )
                async for entity in self._table.list_entities(results_per_page=1000)
            ]

        return list(await table_call("in-flight sweep", "in-flight index", read))

    async def mark_resumed(self, work: InFlightWork, at: datetime) -> bool:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": self._partition(work.key),
            "RowKey": work.key,
            "TouchedAt": at.astimezone(UTC),
            "Resumes": work.resumes + 1,
        }
        try:
            await table_call(
                "in-flight resume",
                work.key,
                lambda: self._table.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=work.etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except (ConcurrencyConflict, NotFound):
            return False
        return True


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
