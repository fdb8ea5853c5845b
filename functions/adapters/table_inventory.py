"""Table storage for the inventory (InventoryStore): summaries, credential rows, delta links.

- resources.INVENTORY_APPS_TABLE: PartitionKey = tenant id, RowKey = object id; the app's summary
  (Document, JSON, credentials included), AppId, and Scan (the full scan that last wrote it).
  PartitionKey "state", RowKey = tenant id: the tenant's deltaLinks (InventoryState), by ETag.
- resources.INVENTORY_CREDENTIALS_TABLE: PartitionKey = tenant id, RowKey = "<end>|<object id>|<keyId>"
  (end as ISO 8601 UTC with microseconds, "9999" when none): the partition is already in end-date order, expired
  first, so GET /api/inventory reads a range and pages with Table storage's own continuation.
  Each row repeats its app's facts (App) so a listing never reads the apps table.
A summary holds what Graph returns about a credential (keyId, hint, dates, thumbprint): never a value.
Writes are upserts (idempotent): a scan interrupted anywhere is simply run again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from functions.adapters.tables import TRANSACTION_LIMIT, query_page, table_call
from functions.core.inventory.models import AppSummary, CredentialRow, CredentialSummary, InventoryQuery
from functions.core.inventory.ports import InventoryState
from functions.core.record.errors import ConcurrencyConflict, NotFound, PermanentError
from functions.resources import INVENTORY_APPS_TABLE, INVENTORY_CREDENTIALS_TABLE

STATE_PARTITION = "state"
LISTED_APP_FACTS = (
    "tenantId", "objectId", "appId", "kind", "displayName", "ownerCount", "managed", "registrationId", "profileMatch",
)  # fmt: skip
NO_END = "9999"


def _partition(tenant_id: str) -> str:
    return tenant_id.lower()


def _moment(value: datetime | None) -> str:
    """Sortable as text: fixed width, microseconds included (two credentials made in the same
    second still list in end order)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else NO_END


def credential_row_key(app: AppSummary, credential: CredentialSummary) -> str:
    return f"{_moment(credential.end)}|{app.object_id}|{credential.key_id}"


class TableInventoryStore:
    def __init__(self, service: Any) -> None:
        self._apps = service.get_table_client(INVENTORY_APPS_TABLE)
        self._credentials = service.get_table_client(INVENTORY_CREDENTIALS_TABLE)

    async def close(self) -> None:
        await self._apps.close()
        await self._credentials.close()

    # ---------------------------------------------------------------- state

    async def state(self, tenant_id: str) -> InventoryState | None:
        try:
            entity = await table_call(
                "read inventory state",
                tenant_id,
                functools.partial(self._apps.get_entity, STATE_PARTITION, _partition(tenant_id)),
            )
        except NotFound:
            return None
        scanned = entity.get("ScannedAt")
        return InventoryState(
            tenant_id=tenant_id,
            applications_link=entity.get("ApplicationsLink") or None,
            service_principals_link=entity.get("ServicePrincipalsLink") or None,
            scanned_at=datetime.fromisoformat(scanned) if scanned else None,
            etag=entity.metadata.get("etag"),
        )

    async def save_state(self, state: InventoryState) -> InventoryState:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": STATE_PARTITION,
            "RowKey": _partition(state.tenant_id),
            "ApplicationsLink": state.applications_link or "",
            "ServicePrincipalsLink": state.service_principals_link or "",
            "ScannedAt": state.scanned_at.isoformat() if state.scanned_at else "",
        }
        if state.etag is None:
            try:
                meta = await table_call(
                    "create inventory state",
                    state.tenant_id,
                    functools.partial(self._apps.create_entity, entity),
                )
            except PermanentError as error:
                if error.code != "HTTP409":
                    raise
                # Another scan of the tenant saved first: this one's links are as good, but the
                # other's stand; the caller's next scan continues from them.
                raise ConcurrencyConflict(f"inventory state of {state.tenant_id} created meanwhile") from None
        else:
            meta = await table_call(
                "replace inventory state",
                state.tenant_id,
                functools.partial(
                    self._apps.update_entity,
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=state.etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        state.etag = (meta or {}).get("etag")
        return state

    # ---------------------------------------------------------------- summaries

    @staticmethod
    def _app_entity(app: AppSummary, scan_id: str) -> dict[str, Any]:
        return {
            "PartitionKey": _partition(app.tenant_id),
            "RowKey": app.object_id,
            "AppId": app.app_id.lower(),
            "Scan": scan_id,
            "Document": json.dumps(app.to_json(), separators=(",", ":")),
        }

    @staticmethod
    def _credential_entities(app: AppSummary, scan_id: str) -> list[dict[str, Any]]:
        # What a listed credential shows of its app (CredentialRow), not the whole summary.
        everything = app.to_json()
        facts = {k: everything[k] for k in LISTED_APP_FACTS}
        shared = json.dumps(facts, separators=(",", ":"))
        return [
            {
                "PartitionKey": _partition(app.tenant_id),
                "RowKey": credential_row_key(app, credential),
                "AppObjectId": app.object_id,
                "Managed": app.managed,
                "Profile": app.match.profile if app.match else "",
                "Scan": scan_id,
                "Credential": json.dumps(credential.to_json(), separators=(",", ":")),
                "App": shared,
            }
            for credential in app.credentials
        ]

    async def _batch(
        self, table: Any, partition: str, operations: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        for i in range(0, len(operations), TRANSACTION_LIMIT):
            chunk = list(operations[i : i + TRANSACTION_LIMIT])
            await table_call("inventory batch", partition, functools.partial(table.submit_transaction, chunk))

    async def put(self, apps: Sequence[AppSummary], scan_id: str) -> None:
        by_tenant: dict[str, list[AppSummary]] = {}
        for app in apps:
            by_tenant.setdefault(_partition(app.tenant_id), []).append(app)
        for partition, group in by_tenant.items():
            rows = [("upsert", e) for a in group for e in self._credential_entities(a, scan_id)]
            await asyncio.gather(  # the two tables' transactions in flight together
                self._batch(self._apps, partition, [("upsert", self._app_entity(a, scan_id)) for a in group]),
                self._batch(self._credentials, partition, _unique(rows)),
            )

    async def _existing(self, tenant_id: str, object_id: str) -> AppSummary | None:
        try:
            entity = await table_call(
                "read inventory app",
                object_id,
                functools.partial(self._apps.get_entity, _partition(tenant_id), object_id),
            )
        except NotFound:
            return None
        return AppSummary.from_json(json.loads(entity["Document"]))

    async def replace(self, app: AppSummary, scan_id: str) -> None:
        old = await self._existing(app.tenant_id, app.object_id)
        await self.put([app], scan_id)
        if old is not None:
            kept = {credential_row_key(app, c) for c in app.credentials}
            stale = [credential_row_key(old, c) for c in old.credentials]
            await self._delete_credentials(app.tenant_id, [key for key in stale if key not in kept])

    async def _delete_credentials(self, tenant_id: str, row_keys: Iterable[str]) -> None:
        partition = _partition(tenant_id)
        operations = [
            ("delete", {"PartitionKey": partition, "RowKey": key}) for key in dict.fromkeys(row_keys)
        ]
        for operation in operations:  # one by one: a row already gone must not fail the others
            try:
                await table_call(
                    "delete inventory credential",
                    operation[1]["RowKey"],
                    functools.partial(self._credentials.delete_entity, partition, operation[1]["RowKey"]),
                )
            except NotFound:
                continue

    async def remove(self, tenant_id: str, object_ids: Sequence[str]) -> None:
        for object_id in object_ids:
            old = await self._existing(tenant_id, object_id)
            if old is None:
                continue
            await self._delete_credentials(tenant_id, [credential_row_key(old, c) for c in old.credentials])
            try:
                await table_call(
                    "delete inventory app",
                    object_id,
                    functools.partial(self._apps.delete_entity, _partition(tenant_id), object_id),
                )
            except NotFound:
                continue

    async def sweep(self, tenant_id: str, scan_id: str) -> int:
        """Rows a full scan did not write: apps gone, and credentials gone from apps that stayed."""
        partition = _partition(tenant_id)
        removed = 0
        for table in (self._apps, self._credentials):
            stale = []
            pages = table.query_entities(
                "PartitionKey eq @p and Scan ne @scan",
                parameters={"p": partition, "scan": scan_id},
                select=["PartitionKey", "RowKey"],
            )
            async for entity in pages:
                stale.append(("delete", {"PartitionKey": partition, "RowKey": entity["RowKey"]}))
            await self._batch(table, partition, stale)
            if table is self._apps:
                removed = len(stale)
        return removed

    async def set_managed_by(self, tenant_id: str, object_id: str, registration_id: str | None) -> bool:
        # MERGE of the changed columns only: Scan stays as the last scan wrote it. The summary is
        # written under the ETag it was read with; the credential rows follow it (a row gone
        # meanwhile went with its credential, and MERGE never brings it back).
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        partition = _partition(tenant_id)
        try:
            entity = await table_call(
                "read inventory app",
                object_id,
                functools.partial(self._apps.get_entity, partition, object_id),
            )
        except NotFound:
            return False
        stored = AppSummary.from_json(json.loads(entity["Document"]))
        app = dataclasses.replace(stored, managed_by=registration_id)
        document = self._app_entity(app, "")["Document"]
        changed = {"PartitionKey": partition, "RowKey": object_id, "Document": document}
        try:
            await table_call(
                "mark inventory app managed",
                object_id,
                functools.partial(
                    self._apps.update_entity,
                    changed,
                    mode=UpdateMode.MERGE,
                    etag=entity.metadata.get("etag"),
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
        except (NotFound, ConcurrencyConflict):
            return False
        for row in self._credential_entities(app, ""):
            try:
                await table_call(
                    "mark inventory credential managed",
                    row["RowKey"],
                    functools.partial(
                        self._credentials.update_entity,
                        {k: row[k] for k in ("PartitionKey", "RowKey", "Managed", "App")},
                        mode=UpdateMode.MERGE,
                    ),
                )
            except NotFound:
                continue
        return True

    async def by_app_id(self, tenant_id: str, app_id: str) -> list[AppSummary]:
        entities, _ = await table_call(
            "read inventory app",
            app_id,
            lambda: query_page(
                self._apps,
                "PartitionKey eq @p and AppId eq @a",
                {"p": _partition(tenant_id), "a": app_id.lower()},
                10,
                None,
            ),
        )
        return [AppSummary.from_json(json.loads(e["Document"])) for e in entities]

    async def credentials(
        self, query: InventoryQuery, now: datetime
    ) -> tuple[list[CredentialRow], str | None]:
        clauses, parameters = ["PartitionKey eq @p"], {"p": _partition(query.tenant_id)}
        if query.ends_before is not None:
            clauses.append("RowKey lt @end")
            parameters["end"] = _moment(query.ends_before)
        if query.managed is not None:
            clauses.append("Managed eq @managed")
            parameters["managed"] = query.managed  # type: ignore[assignment]
        if query.profile is not None:
            clauses.append("Profile eq @profile")
            parameters["profile"] = query.profile
        entities, token = await table_call(
            "list inventory",
            query.tenant_id,
            lambda: query_page(
                self._credentials, " and ".join(clauses), parameters, query.limit, query.continuation
            ),
        )
        rows = [
            CredentialRow(
                CredentialSummary.from_json(json.loads(e["Credential"])),
                AppSummary.from_json(json.loads(e["App"])),
            )
            for e in entities
        ]
        return rows, token


def _unique(operations: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """A transaction may name each row once (two credentials with one keyId would)."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for operation in operations:
        seen[operation[1]["RowKey"]] = operation
    return list(seen.values())
