"""Sends signed webhook deliveries to connectors, refusing addresses a webhook must not reach.

SSRF guard: the URL must be https and every address its host resolves to must be public
(functions.core.catalogue.webhook_hosts: not private, shared, loopback, link-local, multicast, reserved or
unspecified, nor an IPv6 address embedding such an IPv4 one). For a host name the check runs
inside aiohttp's resolver, at connect time, so a DNS answer that changes between the subscription
check and the delivery (rebinding) is caught too; an address literal is checked before connecting. Redirects
are not followed (a redirect is another way to reach an internal address). Local development
may allow http and loopback, nothing else.

Errors and outcomes never quote the URL (webhook URLs often carry a token in their query) nor
the response body.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from functions.core.catalogue.webhook_hosts import address_allowed, host_problem
from functions.core.notification.events import DeliveryOutcome
from functions.core.record.errors import PermanentError

__all__ = ["WebhookSender", "WebhookUrlRefused", "address_allowed", "check_url_syntax"]

if TYPE_CHECKING:
    import aiohttp

DEFAULT_TIMEOUT_S = 10.0


class WebhookUrlRefused(PermanentError):  # noqa: N818  (an outcome, like the other core errors)
    """The URL is not acceptable as a webhook target (scheme or resolved address)."""


class _Unsent(Exception):  # noqa: N818
    """Why an attempt got no answer (timeout, connection, name); never quotes the URL."""


def check_url_syntax(url: str, *, allow_insecure_local: bool) -> None:
    """Raises WebhookUrlRefused naming what is wrong (without quoting the URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("webhook URL is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookUrlRefused("webhook URL must be an absolute https URL")
    if parts.username or parts.password:
        raise WebhookUrlRefused("webhook URL must not embed credentials (user:password@)")
    if parts.scheme == "http" and not allow_insecure_local:
        raise WebhookUrlRefused("webhook URL must use https")
    if port == 0:
        raise WebhookUrlRefused("webhook URL has an invalid port")
    # An address literal never reaches the resolver below (aiohttp connects to it directly).
    problem = host_problem(parts.hostname, allow_loopback=allow_insecure_local)
    if problem:
        raise WebhookUrlRefused(problem)


def _host_label(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class _GuardedResolver:
    """aiohttp resolver that refuses hosts resolving to addresses a webhook must not reach."""

    def __init__(self, *, allow_loopback: bool) -> None:
        import aiohttp

        self._inner = aiohttp.ThreadedResolver()
        self._allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        infos = await self._inner.resolve(host, port, family)
        refused = [
            info for info in infos if not address_allowed(info["host"], allow_loopback=self._allow_loopback)
        ]
        if refused or not infos:
            raise WebhookUrlRefused(f"webhook host {host} resolves to an address that is not public")
        return infos

    async def close(self) -> None:
        await self._inner.close()


class WebhookSender:
    """Posts deliveries; one aiohttp session per event loop, created on first use."""

    def __init__(self, *, allow_insecure_local: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._allow_insecure_local = allow_insecure_local
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def check(self, url: str) -> None:
        """Validate a subscription URL now: syntax and where its host resolves."""
        check_url_syntax(url, allow_insecure_local=self._allow_insecure_local)
        host = urlsplit(url).hostname or ""
        resolver = _GuardedResolver(allow_loopback=self._allow_insecure_local)
        try:
            await resolver.resolve(host, 0, socket.AF_UNSPEC)
        except WebhookUrlRefused:
            raise
        except (OSError, UnicodeError, ValueError):
            raise WebhookUrlRefused(f"webhook host {host} does not resolve") from None
        finally:
            await resolver.close()

    async def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver(allow_loopback=self._allow_insecure_local),  # type: ignore[arg-type]
                limit=100,
                family=socket.AF_UNSPEC,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                headers={"user-agent": "Registrar-Webhooks/1.0"},
            )
            self._loop = loop
        return self._session

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> DeliveryOutcome:
        """One attempt. Never raises for the receiver's failures: they become the outcome."""
        try:
            check_url_syntax(url, allow_insecure_local=self._allow_insecure_local)
            return DeliveryOutcome(status=await self._post(url, headers, body))
        except (WebhookUrlRefused, _Unsent) as failed:
            return DeliveryOutcome(status=None, error=str(failed))

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        """The receiver's status, or _Unsent/WebhookUrlRefused saying why there is none."""
        import aiohttp

        session = await self._client()
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status
        except TimeoutError:
            raise _Unsent(f"timed out after {self._timeout_s:g} s ({_host_label(url)})") from None
        except (UnicodeError, ValueError):  # a host name no resolver accepts (kept by an older record)
            raise _Unsent(f"webhook host is not a valid name ({_host_label(url)})") from None
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, WebhookUrlRefused):
                raise exc.__cause__ from None
            raise _Unsent(f"{type(exc).__name__} ({_host_label(url)})") from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
