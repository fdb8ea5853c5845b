"""HTTP triggers on /<routePrefix>/<route>: requests and responses through azure-functions' converters."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from azure.functions import meta

from devstack.host.functions import HTTP_TRIGGER, FunctionInfo
from devstack.host.invoker import InvocationFailed, Invoker
from devstack.host.routes import RouteTemplate

log = logging.getLogger("devstack.host")


@dataclass(frozen=True)
class HttpRoute:
    function: FunctionInfo
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method

    def accepts(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


def build_routes(functions: list[FunctionInfo]) -> list[HttpRoute]:
    routes = []
    for function in functions:
        if function.trigger_type != HTTP_TRIGGER:
            continue
        template = RouteTemplate(str(function.trigger.get("route") or function.name))
        methods = function.trigger.get("methods")
        routes.append(
            HttpRoute(function, template, frozenset(m.upper() for m in methods) if methods else None)
        )
    # Stable sort: the more specific template first, then declaration order.
    return sorted(routes, key=lambda r: r.template.precedence)


def request_datum(request: web.Request, body: bytes, route_params: dict[str, str]) -> meta.Datum:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    # As the host's ToRpcHttp: a repeated key's values joined with commas, empty values dropped.
    # Keys are case-insensitive there, the first spelling kept.
    grouped: dict[str, tuple[str, list[str]]] = {}
    for name, value in request.query.items():
        grouped.setdefault(name.lower(), (name, []))[1].append(value)
    query = {name: ",".join(v for v in values if v) for name, values in grouped.values() if any(values)}
    string = "string"
    return meta.Datum(
        type="http",
        value={
            "method": meta.Datum(type=string, value=request.method),
            "url": meta.Datum(type=string, value=str(request.url)),
            "headers": {k: meta.Datum(type=string, value=v) for k, v in headers.items()},
            "query": {k: meta.Datum(type=string, value=v) for k, v in query.items()},
            "params": {k: meta.Datum(type=string, value=v) for k, v in route_params.items()},
            "body": meta.Datum(type="bytes", value=body),
        },
    )


def to_response(result: object) -> web.Response:
    """The $return value as the host answers it (HttpResponse as is; a str is a 200 text body)."""
    if result is None:
        return web.Response(status=204)
    converter = meta.get_binding_registry().get("http")
    datum = converter.encode(result, expected_type=None)
    if datum.type == "string":
        return web.Response(status=200, text=datum.value, content_type="text/plain")
    value = datum.value
    response = web.Response(status=int(value["status_code"].value), body=value["body"].value)
    for name, header in value["headers"].items():
        response.headers[name] = header.value
    for cookie in value.get("cookies") or []:
        for morsel in cookie.values():
            response.headers.add("Set-Cookie", morsel.OutputString())
    return response


class HttpTriggers:
    def __init__(self, functions: list[FunctionInfo], invoker: Invoker, route_prefix: str) -> None:
        self.routes = build_routes(functions)
        self.invoker = invoker
        self.prefix = f"/{route_prefix}" if route_prefix else ""

    def describe(self) -> list[str]:
        methods = lambda r: ",".join(sorted(r.methods)) if r.methods else "ALL"  # noqa: E731
        return [f"{r.function.name}: [{methods(r)}] {self.prefix}/{r.template.template}" for r in self.routes]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # The raw path: the template splits it into segments before decoding each, and keeps an encoded
        # slash (%2F) inside its segment, as Kestrel does in Azure (request.path has decoded it).
        path = request.rel_url.raw_path
        if self.prefix:
            if not (path.lower() == self.prefix or path.lower().startswith(self.prefix + "/")):
                return web.Response(status=404)
            path = path[len(self.prefix) :]
        for route in self.routes:
            values = route.template.match(path)
            if values is None or not route.accepts(request.method):
                continue
            datum = request_datum(request, await request.read(), values)
            try:
                result = await self.invoker.invoke(
                    route.function,
                    datum,
                    reason="This function was programmatically called via the host APIs.",
                )
            except InvocationFailed:
                return web.Response(status=500)
            try:
                return to_response(result)
            except (NotImplementedError, TypeError, ValueError):
                log.error(
                    "Function '%s' returned a %s, not an HttpResponse",
                    route.function.name,
                    type(result).__name__,
                )
                return web.Response(status=500)
        return web.Response(status=404)
