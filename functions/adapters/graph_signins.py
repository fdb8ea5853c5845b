"""Sign-in activity (escalation's SignInActivity port): Graph's appCredentialSignInActivities.

GET /beta/reports/appCredentialSignInActivities?$filter=keyId eq '{keyId}' (beta only; Microsoft
Graph documents AuditLog.Read.All as its least privileged application permission, and the usage
and insights reports need a Microsoft Entra ID P1 or P2 licence: docs/security.md). Each item
names one credential (keyId, appId) and its lastSignInActivity.lastSignInDateTime.

The msgraph-sdk has no v1.0 builder for a beta path, so the request goes raw through the SDK's
request adapter (its auth, RetryHandler and error mapping, as graph_inventory.py does), at the
configured base URL with /v1.0 swapped for /beta. A 403 becomes ProofUnavailable.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from functions.adapters.graph import GraphDirectory
from functions.adapters.graph_errors import call
from functions.core.escalation.ports import ProofUnavailable

REPORT = "reports/appCredentialSignInActivities"


def beta_base(base_url: str) -> str:
    """https://graph.microsoft.com/v1.0 -> https://graph.microsoft.com/beta (and locally alike)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1.0")] + "/beta" if base.endswith("/v1.0") else base


class GraphSignInActivity:
    def __init__(self, graph: GraphDirectory) -> None:
        self._graph = graph

    async def last_sign_in(self, tenant_id: str, app_id: str, key_id: str) -> datetime | None:
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        client = self._graph.client(tenant_id)
        # keyId is a GUID (the record's); quoted all the same, as an OData string literal.
        odata_filter = quote(f"keyId eq '{key_id.replace(chr(39), chr(39) * 2)}'", safe="")
        url = f"{beta_base(self._graph.base_url)}/{REPORT}?$filter={odata_filter}"
        request = client.reports.with_url(url).to_get_request_information()

        async def attempt() -> Any:
            try:
                return await client.request_adapter.send_primitive_async(
                    request, "bytes", {"XXX": ODataError}
                )
            except ODataError as error:
                if error.response_status_code == 403:  # no AuditLog.Read.All, or no P1/P2 licence
                    code = error.error.code if error.error is not None else None
                    raise ProofUnavailable(f"Graph GET {REPORT}: 403 {code or 'Forbidden'}") from None
                raise

        raw = await call("GET", REPORT, key_id, attempt)
        page = json.loads(raw) if raw else {}
        latest: datetime | None = None
        for item in page.get("value") or []:
            if str(item.get("keyId")) != key_id or str(item.get("appId")) != app_id:
                continue
            at = parse_when((item.get("signInActivity") or {}).get("lastSignInDateTime"))
            if at is not None:
                latest = at if latest is None or at > latest else latest
        return latest


_SHORT_OFFSET = re.compile(r"([+-])(\d):(\d\d)$")


def parse_when(value: Any) -> datetime | None:
    """A DateTimeOffset as the report gives it: Z, +hh:mm, or (in Graph's own examples) -8:00.
    Unreadable: None (no proof), never an error that would fail the caller's sweep."""
    if not value:
        return None
    text = _SHORT_OFFSET.sub(r"\g<1>0\2:\3", str(value).replace("Z", "+00:00"))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
