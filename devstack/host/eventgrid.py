"""Event Grid deliveries to /runtime/webhooks/eventgrid, as the Event Grid extension handles them.

Event Grid schema: a JSON array of events, header aeg-event-type Notification (invoke once per
event), SubscriptionValidation (answer {"validationResponse": code}) or SubscriptionDeletion.
CloudEvents 1.0: one event or an array (structured mode); its abuse-protection handshake is an
OPTIONS request with WebHook-Request-Origin, answered with WebHook-Allowed-Origin.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from azure.functions import meta

from devstack.host.functions import EVENT_GRID_TRIGGER, FunctionInfo
from devstack.host.invoker import InvocationFailed, Invoker

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """The events of a delivery; raises ValueError when it is not JSON events."""
    document = json.loads(body or b"null")
    events = document if isinstance(document, list) else [document]
    if not events or not all(isinstance(event, dict) for event in events):
        raise ValueError("expected a JSON event or an array of events")
    return events


def event_datum(event: dict[str, Any]) -> meta.Datum:
    return meta.Datum(type="json", value=json.dumps(event))


class EventGridWebhook:
    def __init__(self, functions: dict[str, FunctionInfo], invoker: Invoker) -> None:
        self.functions = functions
        self.invoker = invoker

    def _function(self, request: web.Request) -> FunctionInfo | None:
        name = request.query.get("functionName", "")
        function = next((f for key, f in self.functions.items() if key.lower() == name.lower()), None)
        return function if function is not None and function.trigger_type == EVENT_GRID_TRIGGER else None

    async def options(self, request: web.Request) -> web.Response:
        origin = request.headers.get("WebHook-Request-Origin")
        if origin is None:
            return web.Response(status=400, text="missing WebHook-Request-Origin")
        return web.Response(
            status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}
        )

    async def post(self, request: web.Request) -> web.Response:  # noqa: PLR0911  (one answer per case)
        function = self._function(request)
        if function is None:
            name = request.query.get("functionName", "")
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        try:
            events = parse_events(await request.read())
        except ValueError as exc:
            return web.Response(status=400, text=f"invalid Event Grid payload: {exc}")
        kind = request.headers.get("aeg-event-type", "").lower()  # the extension ignores its case
        if kind == "subscriptionvalidation":
            data = events[0].get("data") or {}
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not code:
                return web.Response(status=400, text="validationCode missing")
            return web.json_response({"validationResponse": code})
        if kind == "subscriptiondeletion":
            return web.Response(status=202)
        if kind != "notification":
            return web.Response(
                status=400,
                text="aeg-event-type must be Notification, SubscriptionValidation or SubscriptionDeletion",
            )
        for event in events:
            try:
                await self.invoker.invoke(function, event_datum(event), reason="EventGrid trigger fired")
            except InvocationFailed:
                return web.Response(status=500)  # Event Grid retries the delivery
        return web.Response(status=202)
