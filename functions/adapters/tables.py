"""Table storage (azure-data-tables aio): the connection, and the RegistrationStore port.

Connection (StorageConfig.from_env): the AzureWebJobsStorage connection string (Azurite locally),
or, in Azure, identity-based endpoints (AzureWebJobsStorage__tableServiceUri /
__queueServiceUri, or __accountName) with the registrar's managed identity.

Registrations entity: PartitionKey = a shard derived from the registration id ("r" + 2 hex
characters of its SHA-256: 256 partitions, so point reads need only the id and writes spread
across partitions), RowKey = the id. The record's document is JSON in Doc0..DocN (each under the
64 KiB property limit), next to plain columns Status, Profile, Tenant, Updated that list filters
use. Table storage has no secondary index, so a filtered list scans; the registrar's own volume
(thousands) makes that cheap, and the rotation sweep never lists registrations (expiry index).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar

from functions.adapters.transport import data_plane_options
from functions.core.record.errors import (
    ConcurrencyConflict,
    NotFound,
    PermanentError,
    RegistrarError,
    TransientError,
    ValidationFailed,
)
from functions.core.record.models import Problem, RegistrationStatus
from functions.core.record.registration import Registration, RegistrationPage
from functions.resources import REGISTRATIONS_TABLE, TABLES

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

T = TypeVar("T")

# A string property holds 64 KiB of UTF-16: 32,767 characters. Stay below it per chunk, and below
# the 1 MiB entity limit in total (the plain columns are tiny).
DOC_CHUNK_CHARS = 30_000
MAX_DOC_CHUNKS = 15


@dataclass(frozen=True)
class StorageConfig:
    """Where the registrar's tables and queues live."""

    connection_string: str | None = field(default=None, repr=False)  # may hold the account key
    table_endpoint: str | None = None  # identity-based (Azure): https://ACCOUNT.table.core.windows.net
    queue_endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "AzureWebJobsStorage") -> StorageConfig:
        connection = env.get(prefix)
        if connection:
            if connection.strip() == "UseDevelopmentStorage=true":
                connection = _DEVELOPMENT_STORAGE
            return cls(connection_string=connection)
        account = env.get(f"{prefix}__accountName")
        return cls(
            table_endpoint=env.get(f"{prefix}__tableServiceUri")
            or (f"https://{account}.table.core.windows.net" if account else None),
            queue_endpoint=env.get(f"{prefix}__queueServiceUri")
            or (f"https://{account}.queue.core.windows.net" if account else None),
        )


# The well-known Azurite account (public; what UseDevelopmentStorage=true means to every SDK).
_DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


# Operations per entity group transaction (all in one partition): Table storage's limit.
TRANSACTION_LIMIT = 100


def table_service(config: StorageConfig, credential: AsyncTokenCredential | None = None) -> Any:
    """An aio TableServiceClient for the configuration (credential: identity-based endpoints only)."""
    from azure.data.tables.aio import TableServiceClient

    if config.connection_string:
        return TableServiceClient.from_connection_string(config.connection_string, **data_plane_options())
    if not config.table_endpoint or credential is None:
        raise PermanentError("no table storage configured (AzureWebJobsStorage)", code="StorageNotConfigured")
    return TableServiceClient(endpoint=config.table_endpoint, credential=credential, **data_plane_options())


async def ensure_tables(service: Any, names: tuple[str, ...] = TABLES) -> None:
    """Create the registrar's tables; idempotent (run at startup)."""
    for name in names:
        await table_call("create table", name, functools.partial(service.create_table_if_not_exists, name))


def table_error(error: BaseException, operation: str, key: str) -> RegistrarError | None:
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    if isinstance(error, ResourceNotFoundError):
        return NotFound("table entity", key)
    if isinstance(error, ResourceModifiedError) or getattr(error, "status_code", None) == 412:
        return ConcurrencyConflict(f"{operation} {key}: changed since it was read (ETag)")
    if isinstance(error, ServiceRequestError):
        return TransientError(f"table storage unreachable during {operation} {key}")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status in (408, 429) or status >= 500:
            return TransientError(f"table storage {operation} {key}: {status}")
        return PermanentError(f"table storage {operation} {key}: {status}", code=f"HTTP{status}")
    return None


async def table_call(operation: str, key: str, attempt: Callable[[], Any]) -> Any:
    failure: RegistrarError | None
    try:
        return await attempt()
    except Exception as error:
        failure = table_error(error, operation, key)
        if failure is None:
            raise
    raise failure


def odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def encode_continuation(token: Mapping[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(dict(token)).encode()).decode() if token else None


CONTINUATION_KEYS = frozenset({"PartitionKey", "RowKey"})


def decode_continuation(token: str | None) -> dict[str, Any] | None:
    """The SDK's continuation token from the opaque string a caller passed back. Anything else (not
    base64 JSON, or not {PartitionKey, RowKey} strings) is the caller's mistake: ValidationFailed
    (400), never a query from the start."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        value = None
    if (
        not isinstance(value, dict)
        or not value
        or not set(value) <= CONTINUATION_KEYS
        or not all(isinstance(v, str | None) for v in value.values())
        or not any(isinstance(v, str) for v in value.values())
    ):
        raise ValidationFailed(
            [
                Problem(
                    "continuation",
                    "not a continuation token of this list",
                    "pass back the continuation of the previous page unchanged",
                )
            ]
        )
    return value


async def query_page(
    table: Any, query: str, parameters: Mapping[str, Any] | None, limit: int, continuation: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` matching entities and an opaque continuation (None at the end).

    The service may answer a filtered query with short (even empty) pages and a continuation;
    keep asking, each time for what is still missing, until `limit` or the end.
    """
    items: list[dict[str, Any]] = []
    token = decode_continuation(continuation)
    while True:
        pages = table.query_entities(
            query, parameters=dict(parameters or {}), results_per_page=limit - len(items)
        ).by_page(continuation_token=token)
        page: AsyncIterator[Any] = await pages.__anext__()
        items.extend([entity async for entity in page])
        token = pages.continuation_token
        if not token or len(items) >= limit:
            return items, encode_continuation(token)


def shard_of(registration_id: str) -> str:
    return "r" + hashlib.sha256(registration_id.encode()).hexdigest()[:2]


class TableRegistrationStore:
    """RegistrationStore port on one table (default: resources.REGISTRATIONS_TABLE)."""

    def __init__(self, service: Any, table_name: str = REGISTRATIONS_TABLE) -> None:
        self._table = service.get_table_client(table_name)

    async def close(self) -> None:
        await self._table.close()

    @staticmethod
    def _entity(registration: Registration) -> dict[str, Any]:
        document = json.dumps(registration.to_document(), separators=(",", ":"), default=str)
        chunks = [document[i : i + DOC_CHUNK_CHARS] for i in range(0, len(document), DOC_CHUNK_CHARS)]
        if len(chunks) > MAX_DOC_CHUNKS:
            raise PermanentError(
                f"registration {registration.id} is too large for a table entity", code="TooLarge"
            )
        entity: dict[str, Any] = {
            "PartitionKey": shard_of(registration.id),
            "RowKey": registration.id,
            "Status": registration.status.value,
            "Profile": registration.profile_id,
            "Tenant": registration.tenant_id.lower(),
            # The app it made or adopted (list(app_id=...): is an app already under management?)
            "App": (
                registration.adoption.app_id if registration.adoption else registration.app_id or ""
            ).lower(),
            "Updated": registration.updated_at.astimezone(UTC),
            "DocParts": len(chunks),
        }
        entity.update({f"Doc{i}": chunk for i, chunk in enumerate(chunks)})
        return entity

    @staticmethod
    def _record(entity: Mapping[str, Any]) -> Registration:
        parts = int(entity.get("DocParts", 0))
        document = json.loads("".join(entity[f"Doc{i}"] for i in range(parts)))
        return Registration.from_document(document, etag=entity.metadata["etag"])  # type: ignore[attr-defined]

    async def get(self, registration_id: str) -> Registration:
        try:
            entity = await table_call(
                "get registration",
                registration_id,
                lambda: self._table.get_entity(shard_of(registration_id), registration_id),
            )
        except NotFound:
            raise NotFound("registration", registration_id) from None
        return self._record(entity)

    async def create(self, registration: Registration) -> tuple[Registration, bool]:
        from azure.core.exceptions import ResourceExistsError

        entity = self._entity(registration)
        try:
            metadata = await self._table.create_entity(entity)
        except ResourceExistsError:
            return await self.get(registration.id), False
        except Exception as error:
            failure = table_error(error, "create registration", registration.id)
            if failure is None:
                raise
            raise failure from None
        return _with_etag(registration, metadata["etag"]), True

    async def replace(self, registration: Registration) -> Registration:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        if registration.etag is None:
            raise ConcurrencyConflict(f"registration {registration.id} was not read from the store (no ETag)")
        entity = self._entity(registration)
        try:
            metadata = await table_call(
                "replace registration",
                registration.id,
                lambda: self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=registration.etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except NotFound:
            raise NotFound("registration", registration.id) from None
        return _with_etag(registration, metadata["etag"])

    async def list(
        self,
        *,
        tenant_id: str | None = None,
        profile_id: str | None = None,
        status: RegistrationStatus | None = None,
        limit: int = 50,
        continuation: str | None = None,
        app_id: str | None = None,
    ) -> RegistrationPage:
        clauses, parameters = [], {}
        for column, value in (
            ("Tenant", tenant_id and tenant_id.lower()),
            ("Profile", profile_id),
            ("Status", status),
            ("App", app_id and app_id.lower()),
        ):
            if value is not None:
                clauses.append(f"{column} eq @{column.lower()}")
                parameters[column.lower()] = str(value)
        query = " and ".join(clauses) or "PartitionKey ge 'r'"
        entities, token = await table_call(
            "list",
            "registrations",
            lambda: query_page(self._table, query, parameters, max(1, min(limit, 1000)), continuation),
        )
        return RegistrationPage(items=[self._record(e) for e in entities], continuation=token)


def _with_etag(registration: Registration, etag: str) -> Registration:
    from dataclasses import replace

    return replace(registration, etag=etag)
