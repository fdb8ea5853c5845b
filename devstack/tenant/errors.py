"""Error bodies as Graph, Key Vault and Entra shape them. graph/ and keyvault/ may use these too."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

JSON = "application/json"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A compact JSON response (json.dumps is the cheapest encoder available here)."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def graph_error(
    status: int,
    code: str,
    message: str,
    request: web.Request | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}."""
    request_id = str(uuid.uuid4())
    client_request_id = (request.headers.get("client-request-id") if request is not None else None) or (
        request_id
    )
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": _utc_now(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    merged = {"request-id": request_id, "client-request-id": client_request_id, **(headers or {})}
    return json_response(body, status, merged)


def vault_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Key Vault's {"error": {"code", "message"}}."""
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def entra_error(
    status: int, error: str, code: int | None, description: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Entra's OAuth error: {error, error_description "AADSTSnnn: ...", error_codes, timestamp, ...}."""
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    timestamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    prefix = f"AADSTS{code}: " if code is not None else ""
    body: dict[str, Any] = {
        "error": error,
        "error_description": (
            f"{prefix}{description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {timestamp}"
        ),
        "error_codes": [code] if code is not None else [],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    if code is not None:
        body["error_uri"] = f"https://login.microsoftonline.com/error?code={code}"
    return json_response(body, status, headers)


def msi_error(status: int, message: str) -> web.Response:
    """The managed identity endpoint's error (App Service, as observed):
    {"statusCode", "message", "correlationId"}, application/json; charset=utf-8, X-CORRELATION-ID."""
    correlation_id = str(uuid.uuid4())
    body = {"statusCode": status, "message": message, "correlationId": correlation_id}
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type=JSON,
        charset="utf-8",
        headers={"X-CORRELATION-ID": correlation_id},
    )


# Which of the APIs a path belongs to, so injected faults and 404s take the right shape.
GRAPH, VAULT, ENTRA, MSI, ADMIN, OTHER = "graph", "vault", "entra", "msi", "admin", "other"
_VAULT_PREFIXES = ("/secrets", "/certificates", "/deletedsecrets", "/deletedcertificates", "/keys")
MSI_PREFIX = "/msi/"  # the managed identity endpoint (managed_identity.py)


def api_of(path: str) -> str:
    if path.startswith("/v1.0"):
        return GRAPH
    if path.startswith("/_sim"):
        return ADMIN
    if path.startswith(MSI_PREFIX):
        return MSI
    if path.startswith(_VAULT_PREFIXES):
        return VAULT
    if "/oauth2/" in path or "/v2.0/" in path or path.endswith("/discovery/keys"):
        return ENTRA
    return OTHER


def error_for(
    api: str, status: int, request: web.Request, message: str, code: str | None = None
) -> web.Response:
    """An error of the given status in the shape of the API the request addressed."""
    if api == VAULT:
        return vault_error(status, code or _vault_code(status), message)
    if api == MSI:
        return msi_error(status, message)
    if api == ENTRA:
        error = code or ("temporarily_unavailable" if status >= 500 else "invalid_request")
        return entra_error(status, error, None, message)
    return graph_error(status, code or _graph_code(status), message, request)


def _graph_code(status: int) -> str:
    return {
        400: "Request_BadRequest",
        401: "InvalidAuthenticationToken",
        403: "Authorization_RequestDenied",
        404: "Request_ResourceNotFound",
        405: "Request_BadRequest",
        409: "Request_MultipleObjectsWithSameKeyValue",
        429: "Request_ThrottledTemporarily",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "UnknownError" if status >= 500 else "Request_BadRequest")


def _vault_code(status: int) -> str:
    return {
        400: "BadParameter",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        429: "Throttled",
    }.get(status, "ServiceUnavailable" if status >= 500 else "BadParameter")
