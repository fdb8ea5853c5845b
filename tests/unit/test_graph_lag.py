"""Replication lag in the Graph adapter (graph_errors.call, graph_batch, graph_consent), with the wire
stubbed: lag still there when the window is over is TransientError, refusals stay PermanentError."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kiota_abstractions.api_error import APIError

from functions.adapters import graph_batch, graph_errors
from functions.adapters.graph_consent import GraphConsent
from functions.core.ports import DelegatedGrant
from functions.core.record.errors import NotFound, PermanentError, TransientError

NO_BACKING = "The appId 'x' of the service principal does not reference a valid application object."
P = "11111111-1111-1111-1111-111111111111"
R = "22222222-2222-2222-2222-222222222222"
ROLE = "33333333-3333-3333-3333-333333333333"


class _Main:
    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message


def _odata(status: int, code: str, message: str) -> APIError:
    error = APIError(message, status)
    error.error = _Main(code, message)  # type: ignore[attr-defined]
    return error


def _always(error: APIError) -> Callable[[], Any]:
    async def attempt() -> Any:
        raise error

    return attempt


async def test_no_backing_application_object_past_the_window_is_transient() -> None:
    with pytest.raises(TransientError, match="replication window") as raised:
        await graph_errors.call(
            "POST",
            "servicePrincipal for",
            "x",
            _always(_odata(400, "Request_BadRequest", NO_BACKING)),
            lag=graph_errors.replication_lag,
            lag_timeout=0.3,
        )
    assert raised.value.retry_after == graph_errors.LAG_RETRY_AFTER


async def test_a_404_of_an_object_known_to_exist_past_the_window_is_transient() -> None:
    missing = _odata(404, "Request_ResourceNotFound", "Resource 'x' does not exist")
    for lag in (graph_errors.exists_lag, graph_errors.replication_lag):
        with pytest.raises(TransientError):
            await graph_errors.call(
                "GET", "servicePrincipal", "x", _always(missing), lag=lag, lag_timeout=0.3
            )
    # An object that may be gone (read by rotation or decommission): a 404 past the window is NotFound.
    with pytest.raises(NotFound):
        await graph_errors.call(
            "GET", "application", "x", _always(missing), lag=graph_errors.not_found_lag, lag_timeout=0.3
        )


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
        (400, "Request_BadRequest", "Invalid value specified for property 'scope'."),
    ],
)
async def test_refusals_are_permanent_at_once_under_any_lag_rule(
    status: int, code: str, message: str
) -> None:
    calls = 0

    async def attempt() -> Any:
        nonlocal calls
        calls += 1
        raise _odata(status, code, message)

    with pytest.raises(PermanentError):
        await graph_errors.call("POST", "x", "y", attempt, lag=graph_errors.replication_lag, lag_timeout=5.0)
    assert calls == 1


def _item(status: int, code: str = "", message: str = "") -> dict[str, Any]:
    body = {"error": {"code": code, "message": message}} if code else {}
    return {"status": status, "body": body}


def _script_batch(monkeypatch: pytest.MonkeyPatch, rounds: Iterator[list[dict[str, Any]]]) -> list[int]:
    """graph_batch._post_batch answers each round's items in order; returns the items sent per round."""
    sizes: list[int] = []

    async def post(client: Any, principal_id: str, items: dict[str, tuple[str, str]]) -> dict[str, Any]:
        answers = next(rounds)
        sizes.append(len(items))
        return {rid: {"id": rid, **answers[i % len(answers)]} for i, rid in enumerate(items)}

    monkeypatch.setattr(graph_batch, "_post_batch", post)
    return sizes


async def test_batch_items_not_replicated_yet_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    lagging = _item(400, "Request_BadRequest", NO_BACKING)
    sizes = _script_batch(monkeypatch, iter([[lagging, _item(201)], [lagging], [_item(201)]]))
    await graph_batch.assign_app_roles(object(), P, [(R, ROLE), (R, P)], lag_timeout=10.0)
    assert sizes == [2, 1, 1]  # the created item is not sent again


async def test_batch_items_lagging_past_the_window_are_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    for lagging in (
        _item(400, "Request_BadRequest", NO_BACKING),
        _item(404, "Request_ResourceNotFound", "x"),
    ):
        _script_batch(monkeypatch, itertools.repeat([lagging]))
        with pytest.raises(TransientError, match="replication window"):
            await graph_batch.assign_app_roles(object(), P, [(R, ROLE)], lag_timeout=0.5)


async def test_a_refused_batch_item_outranks_a_lagging_one(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = _item(400, "Request_BadRequest", "Permission being assigned was not found on application 'x'.")
    _script_batch(monkeypatch, itertools.repeat([_item(404, "Request_ResourceNotFound", "x"), refused]))
    with pytest.raises(PermanentError, match="was not found"):
        await graph_batch.assign_app_roles(object(), P, [(R, ROLE), (R, P)], lag_timeout=0.0)


class _Grants(GraphConsent):
    """The grant POST answers 409 (the SDK's resend of a committed POST, or a re-run) and the grant
    list shows the grant only after `listed_after` reads (Graph's lists lag 30-60 s)."""

    def __init__(self, listed_after: int, lag_timeout: float = 10.0) -> None:
        self._lag_timeout = lag_timeout
        self.listed_after = listed_after
        self.reads = 0
        self.sent: list[tuple[str, str]] = []

    def client(self, tenant_id: str) -> Any:
        class Request:
            def __init__(self, method: str, body: Any) -> None:
                self.http_method = type("M", (), {"name": method})
                self.body = body

        class Item:
            def to_patch_request_information(self, body: Any) -> Request:
                return Request("PATCH", body)

        class Grants:
            def by_o_auth2_permission_grant_id(self, grant_id: str) -> Item:
                return Item()

            def to_post_request_information(self, body: Any) -> Request:
                return Request("POST", body)

        return type("Client", (), {"oauth2_permission_grants": Grants()})()

    async def _send(  # noqa: PLR0917
        self, client: Any, operation: str, what: str, key: str, request: Any, lag: Any = None
    ) -> Any:
        self.sent.append((operation, key))
        if operation == "POST":
            raise PermanentError(
                f"Graph POST {what} {key}: 409 Request_MultipleObjectsWithSameKeyValue Permission entry already exists.",
                code="Request_MultipleObjectsWithSameKeyValue",
            )
        assert request.body.scope == "Mail.Read User.Read"

    async def delegated_grants(self, tenant_id: str, client_id: str) -> dict[str, DelegatedGrant]:
        self.reads += 1
        if self.reads <= self.listed_after:
            return {}
        return {R: DelegatedGrant("grant-1", R, frozenset({"User.Read"}))}


async def test_a_grant_conflict_waits_for_the_lagging_list_then_sets_the_scopes() -> None:
    grants = _Grants(listed_after=2)
    await grants.grant_delegated("t", P, R, frozenset({"User.Read", "Mail.Read"}), None)
    assert grants.sent == [("POST", P), ("PATCH", "grant-1")]
    assert grants.reads == 3


async def test_a_grant_conflict_never_listed_is_transient_not_permanent() -> None:
    grants = _Grants(listed_after=10**6, lag_timeout=0.6)
    with pytest.raises(TransientError, match="not listed"):
        await grants.grant_delegated("t", P, R, frozenset({"User.Read", "Mail.Read"}), None)
    assert grants.sent == [("POST", P)]
