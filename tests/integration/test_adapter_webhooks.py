"""The webhook sender against a real HTTP receiver on loopback, and its address guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from functions.adapters.webhooks import WebhookSender, WebhookUrlRefused, address_allowed
from functions.core.notification.events import new_signing_secret, signed_headers

TOKEN = "tok-very-private-0123456789"  # a token in the query string must never be echoed in errors


class Receiver:
    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 204
        self.delay_s = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((request.path, dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.path == "/redirect":
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    state = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, port
    await runner.cleanup()


def _signed(body: bytes) -> tuple[str, dict[str, str]]:
    secret = new_signing_secret()
    return secret.reveal(), signed_headers(secret, "msg_abc", int(time.time()), body)


async def test_local_development_delivers_signed_body_the_reference_verifies(
    receiver: tuple[Receiver, int],
) -> None:
    state, port = receiver
    sender = WebhookSender(allow_insecure_local=True)
    body = b'{"type":"credential.rotated","data":{"registrationId":"reg-1"}}'
    secret_text, headers = _signed(body)
    try:
        outcome = await sender.send(f"http://127.0.0.1:{port}/hook?token={TOKEN}", headers, body)
    finally:
        await sender.close()

    assert outcome.delivered
    path, received_headers, received_body = state.hits[0]
    assert (path, received_body) == ("/hook", body)
    assert Webhook(secret_text).verify(received_body, received_headers)["data"]["registrationId"] == "reg-1"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}/hook?token=" + TOKEN,
        "https://localhost:{port}/hook?token=" + TOKEN,
        "https://[::1]:{port}/hook?token=" + TOKEN,
        "http://127.0.0.1:{port}/hook?token=" + TOKEN,
    ],
)
async def test_outside_local_development_loopback_and_http_are_refused(
    receiver: tuple[Receiver, int], url: str
) -> None:
    state, port = receiver
    target = url.format(port=port)
    sender = WebhookSender(allow_insecure_local=False)
    try:
        with pytest.raises(WebhookUrlRefused) as refused:
            await sender.check(target)
        outcome = await sender.send(target, {"content-type": "application/json"}, b"{}")
    finally:
        await sender.close()

    assert not outcome.delivered and outcome.error
    assert state.hits == []  # nothing reached the receiver
    assert TOKEN not in str(refused.value) and TOKEN not in outcome.describe()


async def test_redirects_are_not_followed(receiver: tuple[Receiver, int]) -> None:
    state, port = receiver
    sender = WebhookSender(allow_insecure_local=True)
    try:
        outcome = await sender.send(f"http://127.0.0.1:{port}/redirect", {}, b"{}")
    finally:
        await sender.close()

    assert outcome.status == 302 and not outcome.delivered
    assert [hit[0] for hit in state.hits] == ["/redirect"]


async def test_receiver_errors_and_timeouts_become_outcomes_without_the_url(
    receiver: tuple[Receiver, int],
) -> None:
    state, port = receiver
    sender = WebhookSender(allow_insecure_local=True, timeout_s=0.3)
    try:
        state.status = 503
        failed = await sender.send(f"http://127.0.0.1:{port}/hook?token={TOKEN}", {}, b"{}")
        state.status, state.delay_s = 204, 2.0
        slow = await sender.send(f"http://127.0.0.1:{port}/hook?token={TOKEN}", {}, b"{}")
        refused_port = await sender.send(f"http://127.0.0.1:1/hook?token={TOKEN}", {}, b"{}")
    finally:
        await sender.close()

    assert (failed.status, failed.delivered) == (503, False)
    assert slow.status is None and "timed out" in slow.describe()
    assert refused_port.status is None and refused_port.error
    for outcome in (failed, slow, refused_port):
        assert TOKEN not in outcome.describe()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # the cloud metadata endpoint
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("100.64.0.1", False),  # shared address space (CGNAT), used inside VNets and peered networks
        ("100.100.100.200", False),
        ("::ffff:100.64.0.1", False),
        ("192.0.0.8", False),  # IETF protocol assignments
        ("2002:a9fe:a9fe::1", False),  # 6to4 wrapping of 169.254.169.254
        ("2002:7f00:1::1", False),  # 6to4 wrapping of 127.0.0.1
        ("2002:5db8:d70e::1", True),  # 6to4 wrapping of a public address
        ("64:ff9b::a00:5", False),  # NAT64 of 10.0.0.5
        ("2001:db8::1", False),  # documentation
        ("ff0e::1", False),  # global-scope multicast
    ],
)
def test_address_guard(address: str, allowed: bool) -> None:
    assert address_allowed(address, allow_loopback=False) is allowed


class TcpListener(asyncio.Protocol):
    """A bare TCP listener on loopback: every connection is recorded (its client port) the moment
    it is accepted, before any byte is read, then closed."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accepted.append(transport.get_extra_info("peername")[1])
        transport.close()


@pytest.fixture
async def tcp_listener() -> AsyncIterator[tuple[TcpListener, asyncio.Server]]:
    listener = TcpListener()
    server = await asyncio.get_running_loop().create_server(lambda: listener, "127.0.0.1", 0)
    try:
        yield listener, server
    finally:
        server.close()
        await server.wait_closed()


async def _connect_and_close(port: int) -> int:
    """A connection of our own to the listener; its client port."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    own = int(writer.get_extra_info("sockname")[1])
    writer.close()
    await writer.wait_closed()
    return own


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_an_address_literal_is_refused_before_any_connection(
    tcp_listener: tuple[TcpListener, asyncio.Server], host: str
) -> None:
    listener, server = tcp_listener
    port = server.sockets[0].getsockname()[1]
    sender = WebhookSender(allow_insecure_local=False)
    try:
        outcome = await sender.send(f"https://{host}:{port}/hook?token={TOKEN}", {}, b"{}")
    finally:
        await sender.close()
    # A barrier, not a wait: the kernel hands out queued connections in order, so once a connection
    # opened after send returned is accepted, any the sender opened before has been accepted too.
    own = await _connect_and_close(port)
    deadline = asyncio.get_running_loop().time() + 30.0
    while own not in listener.accepted:
        assert asyncio.get_running_loop().time() < deadline, "the listener never accepted our connection"
        await asyncio.sleep(0.01)
    server.close()
    await server.wait_closed()

    assert listener.accepted == [own]  # the sender's URL never opened a connection to the address
    assert outcome.status is None and "public address" in (outcome.error or "")


@pytest.mark.parametrize("host", ["a" * 64 + ".example.com", "exa_mple..example.com"])
async def test_a_host_name_no_resolver_accepts_is_refused_or_an_outcome(host: str) -> None:
    sender = WebhookSender(allow_insecure_local=False)
    try:
        with pytest.raises(WebhookUrlRefused):
            await sender.check(f"https://{host}/hook")
        outcome = await sender.send(f"https://{host}/hook", {}, b"{}")
    finally:
        await sender.close()

    assert outcome.status is None and outcome.error
