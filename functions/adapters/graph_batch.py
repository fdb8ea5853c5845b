"""Admin consent for application permissions: appRoleAssignedTo in Graph $batch requests of <= 20.

Built with msgraph_core's BatchRequestContent (add_request accepts the 20th item; its `requests`
setter refuses exactly 20, so it is never used) and posted through the client's request adapter,
so authentication and the RetryHandler apply to the $batch call itself. The response is read as
raw JSON: msgraph_core's BatchResponseItem drops JSON bodies, and the error codes are needed here.

Per item: 201 (created) and "already exists" (409, or Graph's 400 "Permission being assigned
already exists") are success; 429/5xx are retried for those items only, after the longest
Retry-After they carried; a 404 or a 400 "does not reference a valid application object"
(NoBackingApplicationObject: principal or resource not replicated yet) is retried within the
replication window and is a TransientError past it (no SLA: a slow replica is no refusal);
anything else is a PermanentError.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from functions.adapters.graph_errors import LAG_RETRY_AFTER, GraphFailure, call, parse_retry_after
from functions.core.record.errors import PermanentError, TransientError

MAX_BATCH = 20
THROTTLE_ROUNDS = 4  # batch rounds in a row with no item through (429/5xx) before TransientError
CONCURRENT_BATCHES = 4  # $batch requests in flight at once (each is up to 20 writes)


def _already_exists(status: int, body: Any) -> bool:
    if status == 409:
        return True
    message = json.dumps(body) if status == 400 else ""
    return "already exists" in message


def _retry_after(headers: Any) -> timedelta | None:
    return parse_retry_after(headers) if isinstance(headers, dict) else None


def _lagging(status: int, body: Any) -> bool:
    """The item failed because the principal or the resource is not replicated yet."""
    code, message = _error(body)
    return status == 404 or GraphFailure(status, code, message).is_replication_lag


def _note_throttled(
    on_throttled: Callable[[Mapping[str, str]], None] | None, status: int, response: Any
) -> None:
    """An item's 429 holds the tenant's other callers too (the pacer hears of it)."""
    headers = response.get("headers") if response else None
    if status == 429 and on_throttled is not None and isinstance(headers, dict):
        on_throttled(headers)


def _error(body: Any) -> tuple[str | None, str]:
    """(code, message) of an item's Graph error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, ""
    return error.get("code"), str(error.get("message") or "")[:300]


async def _post_batch(client: Any, principal_id: str, items: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """POST one $batch; returns the responses by request id (raw JSON dicts)."""
    from msgraph.generated.models.app_role_assignment import AppRoleAssignment
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

    content = BatchRequestContent()
    for request_id, (resource_id, app_role_id) in items.items():
        body = AppRoleAssignment(
            principal_id=uuid.UUID(principal_id),
            resource_id=uuid.UUID(resource_id),
            app_role_id=uuid.UUID(app_role_id),
        )
        builder = client.service_principals.by_service_principal_id(resource_id).app_role_assigned_to
        item = BatchRequestItem(builder.to_post_request_information(body), id=request_id)
        # $batch wants URLs relative to the version root; BatchRequestItem keeps the absolute one.
        item.url = f"/servicePrincipals/{resource_id}/appRoleAssignedTo"
        content.add_request(request_id, item)
    error_map: dict[str, Any] = {"XXX": ODataError}
    request_info = await BatchRequestBuilder(client.request_adapter, error_map).to_post_request_information(
        content
    )
    raw = await client.request_adapter.send_primitive_async(request_info, "bytes", error_map)
    document = json.loads(raw or b"{}")
    return {str(r.get("id")): r for r in document.get("responses", []) if isinstance(r, dict)}


async def _assign_chunk(
    client: Any,
    principal_id: str,
    chunk: Sequence[tuple[str, str]],
    *,
    lag_timeout: float,
    on_throttled: Callable[[Mapping[str, str]], None] | None = None,
) -> None:
    pending = {str(index): pair for index, pair in enumerate(chunk)}
    rounds = 0
    lag_deadline = time.monotonic() + lag_timeout
    lag_delay = 0.2
    while pending:
        responses = await call(
            "POST",
            "$batch of appRoleAssignedTo for",
            principal_id,
            functools.partial(_post_batch, client, principal_id, pending),
        )
        retry: dict[str, tuple[str, str]] = {}
        outlasted: TransientError | None = None
        wait = timedelta(0)
        throttled = False
        for request_id, pair in pending.items():
            response = responses.get(request_id)
            status = int(response.get("status", 0)) if response else 0
            body = response.get("body") if response else None
            if 200 <= status < 300 or _already_exists(status, body):
                continue
            if status in {0, 424, 429} or status >= 500:
                throttled = True
                _note_throttled(on_throttled, status, response)
                retry[request_id] = pair
                wait = max(wait, _retry_after(response.get("headers") if response else None) or timedelta(0))
            elif _lagging(status, body):
                if time.monotonic() + lag_delay >= lag_deadline:
                    code, message = _error(body)
                    outlasted = TransientError(
                        f"Graph appRoleAssignedTo {pair[1]} on {pair[0]} for {principal_id}: still "
                        f"{status} {code} {message} after the replication window",
                        retry_after=LAG_RETRY_AFTER,
                    )
                retry[request_id] = pair  # the new principal is not visible to the resource yet
                wait = max(wait, timedelta(seconds=lag_delay))
            else:
                code, message = _error(body)
                raise PermanentError(
                    f"Graph refused appRoleAssignedTo {pair[1]} on {pair[0]} for {principal_id}: "
                    f"{status} {code} {message}",
                    code=code or f"HTTP{status}",
                )
        if outlasted is not None:
            raise outlasted  # after every item was looked at: a refusal of another item outranks it
        if not retry:
            return
        if throttled:
            # Rounds that made progress do not count: a drip of 429s (a nearly empty bucket) still
            # converges; only rounds where every remaining item was throttled use the budget up.
            rounds = 0 if len(retry) < len(pending) else rounds + 1
            if rounds >= THROTTLE_ROUNDS:
                raise TransientError(
                    f"Graph kept throttling appRoleAssignedTo for {principal_id} ({len(retry)} left)",
                    retry_after=wait or None,
                )
        else:
            lag_delay = min(lag_delay * 2, 3.0)
        await asyncio.sleep(max(wait.total_seconds(), 0.05))
        pending = retry


async def assign_app_roles(
    client: Any,
    principal_id: str,
    assignments: Sequence[tuple[str, str]],
    *,
    lag_timeout: float = 60.0,
    on_throttled: Callable[[Mapping[str, str]], None] | None = None,
) -> None:
    """Grant every (resource SP id, appRoleId) pair to principal_id; idempotent."""
    unique = sorted({(resource.lower(), role.lower()) for resource, role in assignments})
    chunks = [unique[i : i + MAX_BATCH] for i in range(0, len(unique), MAX_BATCH)]
    gate = asyncio.Semaphore(CONCURRENT_BATCHES)

    async def run(chunk: Sequence[tuple[str, str]]) -> None:
        async with gate:
            await _assign_chunk(
                client, principal_id, chunk, lag_timeout=lag_timeout, on_throttled=on_throttled
            )

    results = await asyncio.gather(*(run(chunk) for chunk in chunks), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        # A refusal outranks a transient failure: retrying the whole step cannot help then.
        raise next((e for e in errors if isinstance(e, PermanentError)), errors[0])
