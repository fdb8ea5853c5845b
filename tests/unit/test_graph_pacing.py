"""The Graph pacer (functions/adapters/graph_pacing.py) on a virtual clock: no time passes.

A fake Graph behind httpx.MockTransport keeps Graph's write bucket on the same virtual clock and
answers 429 with Retry-After when it is empty, as the local tenant and Graph do.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from functions.adapters.graph_pacing import GraphPacer, PacedTransport, batch_cost, paced, request_cost

TENANT_A = "aaaaaaaa-0000-0000-0000-000000000001"
TENANT_B = "bbbbbbbb-0000-0000-0000-000000000002"
GRAPH = "https://graph.test/v1.0"


class VirtualTime:
    """A clock that moves only when a sleeper wakes: sleep(s) returns at start + s of virtual time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


class FakeGraph:
    """Graph's write bucket per tenant (capacity per window), 429 + Retry-After when empty."""

    def __init__(self, clock: VirtualTime, *, capacity: float, window_s: float) -> None:
        self.clock = clock
        self.capacity = capacity
        self.rate = capacity / window_s
        self.levels: dict[str, tuple[float, float]] = {}
        self.answers: list[tuple[str, int]] = []  # (tenant, status)
        self.throttle_until: dict[str, float] = {}  # a forced 429 window per tenant

    def handler(self, request: httpx.Request) -> httpx.Response:
        tenant = request.headers["x-tenant"]
        now = self.clock()
        if now < self.throttle_until.get(tenant, 0.0):
            return self._throttled(tenant, self.throttle_until[tenant] - now)
        level, at = self.levels.get(tenant, (self.capacity, now))
        level = min(self.capacity, level + (now - at) * self.rate)
        if request.method != "GET":
            if level < 1:
                self.levels[tenant] = (level, now)
                return self._throttled(tenant, (1 - level) / self.rate)
            level -= 1
        self.levels[tenant] = (level, now)
        self.answers.append((tenant, 200))
        return httpx.Response(200, json={}, headers={"x-ms-resource-unit": "1"})

    def _throttled(self, tenant: str, wait: float) -> httpx.Response:
        self.answers.append((tenant, 429))
        headers = {
            "Retry-After": str(max(1, round(wait + 0.499))),
            "x-ms-throttle-information": "WriteLimitExceeded",
        }
        return httpx.Response(429, json={"error": {"code": "TooManyRequests"}}, headers=headers)

    def throttled(self, tenant: str | None = None) -> int:
        return sum(1 for t, status in self.answers if status == 429 and tenant in (None, t))


def paced_client(graph: FakeGraph, pacer: GraphPacer, tenant: str) -> httpx.AsyncClient:
    transport = PacedTransport(httpx.MockTransport(graph.handler), pacer, tenant)
    return httpx.AsyncClient(transport=transport, base_url=GRAPH, headers={"x-tenant": tenant})


def test_costs_follow_graphs_published_table() -> None:
    assert request_cost("GET", "/v1.0/applications", {}) == (2, 0)
    assert request_cost("GET", "/v1.0/applications(uniqueName='x')", {"$select": "id"}) == (1, 0)
    assert request_cost("GET", "/v1.0/servicePrincipals", {"$expand": "owners"}) == (2, 0)
    assert request_cost("POST", "/v1.0/applications/1/addPassword", {}) == (1, 1)
    body = {
        "requests": [
            {"id": str(i), "method": "POST", "url": "/servicePrincipals/x/appRoleAssignedTo"}
            for i in range(7)
        ]
    }
    assert batch_cost(json.dumps(body).encode()) == (7, 7)


async def test_a_429_holds_every_caller_of_the_tenant_once_and_not_other_tenants() -> None:
    clock = VirtualTime()
    pacer = GraphPacer(clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    graph = FakeGraph(clock, capacity=100, window_s=10)
    graph.throttle_until[TENANT_A] = 10.0  # someone else spent A's budget: Graph says "10 s"
    async with paced_client(graph, pacer, TENANT_A) as a, paced_client(graph, pacer, TENANT_B) as b:
        first = await a.post("/applications/1/addPassword", json={})
        assert first.status_code == 429
        # Eight more callers in A and one in B, all after the first 429.
        answers = await asyncio.gather(
            *(a.post(f"/applications/{i}/addPassword", json={}) for i in range(8)),
            b.post("/applications/9/addPassword", json={}),
        )
    assert [r.status_code for r in answers] == [200] * 9
    # Graph saw one 429 in A: the others waited for the hold instead of finding out on their own.
    assert graph.throttled(TENANT_A) == 1 and graph.throttled(TENANT_B) == 0
    assert pacer.stats.throttled == 1
    # Each of the eight waited once: the hold, then its turn at the write budget's rate (3,000 per
    # 150 s: one every 0.05 s), so they do not all leave together when it ends. B never waited.
    assert pacer.stats.waits == 8
    assert sorted(clock.sleeps) == [pytest.approx(10.0 + 0.05 * k) for k in range(8)]
    assert pacer.predicted_wait(TENANT_B) == 0.0


async def test_the_hold_carries_jitter_so_processes_do_not_wake_together() -> None:
    clock = VirtualTime()
    pacer = GraphPacer(clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)
    pacer.throttled(TENANT_A, {"Retry-After": "20", "x-ms-throttle-information": "WriteLimitExceeded"})
    assert pacer.predicted_wait(TENANT_A) == pytest.approx(22.0)  # 20 s + 10 % jitter at most


async def test_writes_are_paced_to_the_budget_with_no_429() -> None:
    clock = VirtualTime()
    # Graph's app+tenant writes (3,000 per 150 s) at scale 0.01: 30 per 150 s, 0.2 per second.
    pacer = GraphPacer(scale=0.01, clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    graph = FakeGraph(clock, capacity=30, window_s=150)
    async with paced_client(graph, pacer, TENANT_A) as a:
        answers = await asyncio.gather(
            *(a.post(f"/applications/{i}/addPassword", json={}) for i in range(40))
        )
    assert all(r.status_code == 200 for r in answers)
    assert graph.throttled() == 0
    # The burst (30) at once, the other 10 at the refill rate: one every 5 s.
    assert clock.now == pytest.approx(50.0)


async def test_graphs_reported_use_is_learned() -> None:
    clock = VirtualTime()
    pacer = GraphPacer(scale=0.01, clock=clock, sleep=clock.sleep)
    assert pacer.predicted_wait(TENANT_A) == 0.0
    # Another instance spent most of the budget: Graph reports 100 % use on this write.
    pacer.settle(
        TENANT_A, writes=1, guessed_units=1, status=200, headers={"x-ms-throttle-limit-percentage": "1.0"}
    )
    assert pacer.predicted_wait(TENANT_A) == pytest.approx(5.0)  # one write's refill at 0.2/s
    # A request Graph charged 35 RU more than guessed: the RU bucket (35 at this scale) is charged
    # the difference, so it is now spent.
    pacer.settle(TENANT_A, writes=0, guessed_units=1, status=200, headers={"x-ms-resource-unit": "36"})
    assert pacer.budget(TENANT_A).units.used(clock()) == pytest.approx(1.0)
    assert pacer.predicted_wait(TENANT_A, units=1, writes=0) == pytest.approx(1 / 3.5)


async def test_under_msgraphs_retry_handler_the_wait_is_not_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's RetryHandler sleeps the Retry-After and retries; the retry passes the pacer, whose
    hold ends at the same moment: the caller waits 10 s once, not 10 s twice."""
    from kiota_http.middleware import retry_handler
    from kiota_http.middleware.middleware import REQUEST_OPTIONS_KEY
    from kiota_http.middleware.options import RetryHandlerOption
    from msgraph_core import GraphClientFactory

    clock = VirtualTime()
    monkeypatch.setattr(retry_handler, "asyncio", SimpleNamespace(sleep=clock.sleep))
    pacer = GraphPacer(clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    graph = FakeGraph(clock, capacity=100, window_s=10)
    graph.throttle_until[TENANT_A] = 10.0
    inner = httpx.AsyncClient(transport=httpx.MockTransport(graph.handler), base_url=GRAPH)
    client: Any = paced(GraphClientFactory.create_with_default_middleware(client=inner), pacer, TENANT_A)
    async with client:
        # As kiota sends it: its request options in the request's extensions switch the middleware on.
        options = {RetryHandlerOption.get_key(): RetryHandlerOption(delay=0.0, max_retries=3)}
        response = await client.post(
            "/applications/1/addPassword",
            json={},
            headers={"x-tenant": TENANT_A},
            extensions={REQUEST_OPTIONS_KEY: options},
        )
    assert response.status_code == 200
    assert graph.throttled() == 1  # the RetryHandler's retry found the hold over, not another 429
    assert clock.now == pytest.approx(10.0)


async def test_until_graph_has_answered_once_one_request_goes_first() -> None:
    """A new process does not know the bucket's level (another instance may have spent it): a
    burst at start sends one request, and the rest wait for its answer, here a 429."""
    clock = VirtualTime()
    pacer = GraphPacer(clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    graph = FakeGraph(clock, capacity=100, window_s=10)
    graph.throttle_until[TENANT_A] = 10.0
    async with paced_client(graph, pacer, TENANT_A) as a:
        answers = await asyncio.gather(*(a.post(f"/applications/{i}/addPassword", json={}) for i in range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [429]
    assert graph.throttled() == 1


async def test_what_was_heard_goes_stale() -> None:
    """After a quiet spell others may have spent the bucket: the next burst starts with one request."""
    clock = VirtualTime()
    pacer = GraphPacer(clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    graph = FakeGraph(clock, capacity=100, window_s=10)
    async with paced_client(graph, pacer, TENANT_A) as a:
        assert (await a.post("/applications/0/addPassword", json={})).status_code == 200
        clock.now += 40.0  # quiet; meanwhile another instance spends the budget
        graph.throttle_until[TENANT_A] = clock.now + 10.0
        answers = await asyncio.gather(*(a.post(f"/applications/{i}/addPassword", json={}) for i in range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [429]
    assert graph.throttled() == 1
