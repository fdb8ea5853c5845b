"""Graph failures as core errors, and the bounded retry of what Entra's replication delay causes.

msgraph-sdk raises ODataError (a kiota APIError) with the status, headers and Graph's error body;
azure-identity raises ClientAuthenticationError when the registrar's own token cannot be had; httpx
raises TransportError when the connection fails. Everything leaves this module as TransientError,
PermanentError or NotFound, with messages built from ids, status and Graph's error code/message
(Graph never echoes a secret in an error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar

from functions.core.record.errors import NotFound, PermanentError, RegistrarError, TransientError

T = TypeVar("T")

REPLICATION_MARKERS = ("NoBackingApplicationObject", "does not reference a valid application object")
# The wait suggested to the queue when replication outlasts the window (Graph's lists lag 30-60 s).
LAG_RETRY_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class GraphFailure:
    """What is known about a failed Graph call, before it becomes a core error."""

    status: int | None
    code: str | None
    message: str
    retry_after: timedelta | None = None

    @property
    def is_replication_lag(self) -> bool:
        return self.status == 400 and any(
            marker in f"{self.code} {self.message}" for marker in REPLICATION_MARKERS
        )


def parse_retry_after(headers: Mapping[str, str] | None) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (case-insensitive header lookup)."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = str(value).strip()
    try:
        return timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(timedelta(0), when - datetime.now(UTC))


def describe(error: BaseException) -> GraphFailure | None:
    """A GraphFailure for SDK/transport errors; None for anything else (a bug: let it propagate)."""
    import httpx
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from kiota_abstractions.api_error import APIError

    if isinstance(error, APIError):
        main = getattr(error, "error", None)  # ODataError.error: MainError(code, message)
        return GraphFailure(
            status=error.response_status_code,
            code=getattr(main, "code", None),
            message=(getattr(main, "message", None) or error.message or "")[:300],
            retry_after=parse_retry_after(error.response_headers),
        )
    if isinstance(error, httpx.TransportError | ServiceRequestError | asyncio.TimeoutError):
        return GraphFailure(status=None, code="TransportError", message=type(error).__name__)
    if isinstance(error, ClientAuthenticationError):
        from functions.adapters.identity import aadsts_code

        status = error.status_code
        # The registrar's own token: Entra 5xx is transient, a refusal is a configuration problem,
        # which Entra's code names (e.g. AADSTS700213: no federated credential for this subject).
        # Only the number is kept: the description may quote the request. No status and no code:
        # nobody answered (a managed identity endpoint hiccup, CredentialUnavailableError), so
        # status None, which is transient.
        code = aadsts_code(error)
        if status is None and code is None:
            return GraphFailure(status=None, code="RegistrarTokenUnavailable", message=type(error).__name__)
        return GraphFailure(
            status=503 if status and status >= 500 else 401,
            code="RegistrarTokenRefused",
            message=f"(Entra AADSTS{code})" if code else "",
        )
    return None


def to_core_error(failure: GraphFailure, operation: str, what: str, key: str) -> RegistrarError:
    status = failure.status
    text = f"Graph {operation} {what} {key}: {status or 'no response'} {failure.code or ''} {failure.message}".strip()
    if status == 404:
        return NotFound(what, key)
    if status is None or status == 429 or status >= 500:
        return TransientError(text, retry_after=failure.retry_after)
    if status == 403:
        return PermanentError(text, code=failure.code or "Authorization_RequestDenied")
    return PermanentError(text, code=failure.code or f"HTTP{status}")


async def call(
    operation: str,
    what: str,
    key: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    lag: Callable[[GraphFailure], bool] | None = None,
    lag_timeout: float = 60.0,
) -> T:
    """Run one Graph call; map its failure; retry while `lag` says Entra has not replicated yet.

    The SDK's RetryHandler has already retried 429/503/504 (honouring Retry-After) before a
    failure reaches here, so throttling surfaces as TransientError(retry_after) for the caller.
    Replication lag is retried with capped exponential backoff for at most `lag_timeout` seconds;
    what is still lag after that is decided by outlasted().
    """
    delay = 0.2
    deadline = time.monotonic() + lag_timeout
    while True:
        failure: GraphFailure | None
        try:
            return await attempt()
        except RegistrarError:
            raise
        except Exception as error:
            failure = describe(error)
            if failure is None:
                raise
        if lag is None or not lag(failure):
            raise to_core_error(failure, operation, what, key)
        if time.monotonic() + delay > deadline:
            raise outlasted(failure, operation, what, key, lag)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


@dataclass(frozen=True)
class Lag:
    """Which failures of a call are Entra still replicating, and what one still there once the
    window is over means. No SLA is documented for replication (REFERENCE.md), so a slow replica
    is not proof that an object is missing: a failure the call knows to be lag stays transient.

    not_found: a 404 counts as lag. replication: Graph's 400 "does not reference a valid
    application object" (NoBackingApplicationObject) counts as lag. exists: the object is known to
    exist (this workflow made it, or a 409 said so), so a 404 past the window is TransientError
    (the queue retries later); otherwise it is NotFound (the object may well be gone).
    """

    not_found: bool = True
    replication: bool = False
    exists: bool = False

    def __call__(self, failure: GraphFailure) -> bool:
        return (self.not_found and failure.status == 404) or (self.replication and failure.is_replication_lag)


def outlasted(
    failure: GraphFailure, operation: str, what: str, key: str, lag: Callable[[GraphFailure], bool]
) -> RegistrarError:
    """The core error for a lag-type failure still answered when the replication window is over:
    TransientError for NoBackingApplicationObject and for a 404 of an object known to exist, the
    usual mapping (NotFound for a 404) otherwise."""
    if failure.is_replication_lag or (isinstance(lag, Lag) and lag.exists):
        return TransientError(
            f"Graph {operation} {what} {key}: still {failure.status} {failure.code or ''} after the "
            f"replication window (Entra has not replicated it yet) {failure.message}",
            retry_after=LAG_RETRY_AFTER,
        )
    return to_core_error(failure, operation, what, key)


# A 404 right after the object was created (reads and writes can lag its creation); the object may
# also be gone (an app deleted outside Registrar), so a 404 past the window is NotFound.
not_found_lag = Lag()
# A 404 of an object known to exist: made by this workflow moments ago, or named by a 409.
exists_lag = Lag(exists=True)
# POST /servicePrincipals, consent writes: 400 NoBackingApplicationObject or a 404 right after a create.
replication_lag = Lag(replication=True, exists=True)
