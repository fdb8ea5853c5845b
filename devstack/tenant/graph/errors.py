"""Graph-shaped errors: {"error": {"code", "message", "innerError": {...}}} with Graph's status codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

INSUFFICIENT_PRIVILEGES = "Insufficient privileges to complete the operation."


class GraphError(Exception):
    """Raised by handlers; the dispatcher turns it into Graph's error body and status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self, request_id: str, client_request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        error["innerError"] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id,
        }
        return {"error": error}


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(object_id: str = "") -> GraphError:
    suffix = f"'{object_id}' " if object_id else ""
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource {suffix}does not exist or one of its queried reference-property objects are not present.",
    )


def forbidden() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", INSUFFICIENT_PRIVILEGES)


def unsupported_query(message: str = "Unsupported query.") -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def conflict(message: str, code: str = "Request_MultipleObjectsWithSameKeyValue") -> GraphError:
    return GraphError(409, code, message)


def unknown_property(name: str, type_name: str) -> GraphError:
    return GraphError(
        400,
        "Request_BadRequest",
        f"Property '{name}' does not exist on type 'microsoft.graph.{type_name}'. "
        "Make sure to only use property names that are defined by the type.",
    )


def unknown_segment(segment: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def invalid_id(value: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", f"Invalid object identifier '{value}'.")
