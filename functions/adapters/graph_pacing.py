"""Pacing to Graph's throttling budgets: every Graph request of this process waits its turn here.

Graph meters identity-and-access requests per (tenant, app) in token buckets (REFERENCE.md,
"Graph throttling"): 3,500 resource units per 10 s (the smallest tenants; 5,000 and 8,000 for
larger ones) and 3,000 writes per 150 s per app and tenant, 18,000 writes per 5 min per tenant, and
150,000 RU per 20 s per app across tenants. A GET costs 1 RU (2 on applications, users,
oauth2PermissionGrants, appRoleAssignments), a write 1 RU + 1 write; $select -1, $expand +1,
$top < 20 -1, at least 1; a $batch costs what its items cost.

GraphPacer keeps the same buckets for the registrar's app in each tenant, as a "full again at"
time per bucket (a token bucket as GCRA: reserving a request moves that time on by cost / rate,
so callers queue in order without a lock). Budgets are the published ones times `scale` (the
devstack's throttleScale when it is scaled down). What Graph answers corrects the model:
- `x-ms-resource-unit` is the request's real cost (our guess is corrected by the difference);
- `x-ms-throttle-limit-percentage` (sent above 80 % use) is the bucket's real level: when Graph
  sees more use than this process does (other instances, other tools), the model takes Graph's;
- a 429 empties the bucket until its Retry-After and holds every caller for the tenant until then,
  plus jitter: the first caller to see a 429 finds it out for all of them.

PacedTransport puts the pacer under msgraph-sdk's middleware (innermost, just above the network),
so every attempt passes it, the RetryHandler's retries included. The RetryHandler sleeps the
Retry-After it read; the pacer's hold ends at the same time plus the jitter, so the wait is not
doubled, and a caller that had not sent yet waits for the same hold instead of drawing its own 429.

predicted_wait() tells the core how long a new job would wait: the core decides whether to take
it now or defer it through its queue (core/record/deferral.py). Clock and sleep are injected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from functions.adapters.graph_errors import parse_retry_after

log = logging.getLogger(__name__)

RU_PER_10S = 3500.0  # the smallest tenants' budget: Graph's answers correct it upwards, never down
APP_TENANT_WRITES, APP_TENANT_WRITES_WINDOW_S = 3000.0, 150.0
TENANT_WRITES, TENANT_WRITES_WINDOW_S = 18000.0, 300.0
APP_RU, APP_RU_WINDOW_S = 150000.0, 20.0
_COSTLY_COLLECTIONS = frozenset(
    {"applications", "users", "oauth2PermissionGrants", "appRoleAssignments", "appRoleAssignedTo"}
)
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
STALE_AFTER_S = 30.0
JITTER_FRACTION = 0.1  # a hold lasts Retry-After x (1 + up to this): processes do not wake together


def request_cost(method: str, path: str, query: Mapping[str, str]) -> tuple[int, int]:
    """(resource units, writes) Graph charges one request (REFERENCE.md's published costs)."""
    method = method.upper()
    writes = 1 if method in _WRITE_METHODS else 0
    if writes:
        units = 1
    else:
        costly = any(segment.split("(", 1)[0] in _COSTLY_COLLECTIONS for segment in path.split("/"))
        units = 2 if costly else 1
    if "$select" in query:
        units -= 1
    if "$expand" in query:
        units += 1
    top = query.get("$top")
    if top is not None and top.isdigit() and int(top) < 20:
        units -= 1
    return max(units, 1), writes


def batch_cost(body: bytes) -> tuple[int, int]:
    """What a $batch costs: the sum of its items (Graph throttles them one by one)."""
    try:
        items = json.loads(body or b"{}").get("requests") or []
    except (ValueError, AttributeError):
        return 1, 1
    units = writes = 0
    for item in items:
        url = urlsplit(str(item.get("url", "")))
        u, w = request_cost(str(item.get("method", "GET")), unquote(url.path), dict(parse_qsl(url.query)))
        units, writes = units + u, writes + w
    return max(units, 1), writes


@dataclass
class Bucket:
    """A token bucket kept as the time it is full again (GCRA): level = capacity - (full_at - now) x rate."""

    capacity: float
    window_s: float
    full_at: float = 0.0

    @property
    def rate(self) -> float:
        return self.capacity / self.window_s

    def wait(self, cost: float, now: float) -> float:
        """Seconds until `cost` fits (0: now)."""
        return max(0.0, self.full_at - now - (self.capacity - min(cost, self.capacity)) / self.rate)

    def take(self, cost: float, now: float) -> None:
        self.full_at = max(self.full_at, now) + cost / self.rate

    def used(self, now: float) -> float:
        return max(0.0, self.full_at - now) * self.rate / self.capacity

    def at_least_used(self, fraction: float, now: float) -> None:
        """Graph reports more use than this model holds (another process, another tool): take Graph's."""
        self.full_at = max(self.full_at, now + fraction * self.window_s)

    def empty_until(self, when: float) -> None:
        """A 429: the next request fits at `when` (Retry-After), none before."""
        self.full_at = max(self.full_at, when + (self.capacity - 1) / self.rate)


@dataclass
class Probe:
    """Whether Graph has answered a request of one kind lately, and the first answer awaited."""

    heard: bool = False
    heard_at: float = 0.0
    first_answer: asyncio.Future[None] | None = None


@dataclass
class TenantBudget:
    """The registrar's buckets in one tenant, and the hold a 429 puts on all its callers."""

    units: Bucket
    writes: Bucket
    tenant_writes: Bucket
    hold_until: float = 0.0
    holds: int = 0  # 429s that set a hold (each makes every caller wait once)
    throttled: int = 0  # 429s seen, whether or not they extended the hold
    # Until Graph has answered once, this process does not know the buckets' level (another
    # instance, or a process before a restart, may have spent them): one request goes first, and
    # the others wait for its answer (a 429, or the level in x-ms-throttle-limit-percentage). Reads
    # and writes are learned apart: a read's answer says nothing of the write bucket. What was
    # heard goes stale: after STALE_AFTER_S without an answer, others may have spent the buckets
    # meanwhile, and the next burst starts with one request again.
    reads: Probe = field(default_factory=Probe)
    writes_probe: Probe = field(default_factory=Probe)

    def probe(self, writes: float) -> Probe:
        return self.writes_probe if writes else self.reads


@dataclass
class PacingStats:
    waited_s: float = 0.0
    waits: int = 0
    throttled: int = 0
    by_tenant: dict[str, int] = field(default_factory=dict)  # 429s per tenant
    writes: dict[str, int] = field(default_factory=dict)  # writes Graph took (not 429) per tenant


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class GraphPacer:
    """Per (tenant, the registrar's app) budgets of one process. `scale` multiplies every budget."""

    def __init__(
        self,
        *,
        scale: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._scale = scale
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._tenants: dict[str, TenantBudget] = {}
        self._app_units = Bucket(max(APP_RU * scale, 1.0), APP_RU_WINDOW_S)
        self.stats = PacingStats()

    def budget(self, tenant_id: str) -> TenantBudget:
        key = tenant_id.lower()
        budget = self._tenants.get(key)
        if budget is None:
            s = self._scale
            budget = self._tenants[key] = TenantBudget(
                units=Bucket(max(RU_PER_10S * s, 1.0), 10.0),
                writes=Bucket(max(APP_TENANT_WRITES * s, 1.0), APP_TENANT_WRITES_WINDOW_S),
                tenant_writes=Bucket(max(TENANT_WRITES * s, 1.0), TENANT_WRITES_WINDOW_S),
            )
        return budget

    def _charges(self, budget: TenantBudget, units: float, writes: float) -> list[tuple[Bucket, float]]:
        charges = [(budget.units, units), (self._app_units, units)]
        if writes:
            charges += [(budget.writes, writes), (budget.tenant_writes, writes)]
        return charges

    def predicted_wait(self, tenant_id: str, *, units: float = 1, writes: float = 1) -> float:
        """Seconds a request of this cost would wait now, behind the calls already queued (no reservation)."""
        budget = self.budget(tenant_id)
        now = self._clock()
        waits = [bucket.wait(cost, now) for bucket, cost in self._charges(budget, units, writes)]
        return max([budget.hold_until - now, *waits, 0.0])

    async def acquire(self, tenant_id: str, units: float, writes: float) -> None:
        """Wait for this request's turn and reserve its cost. A 429 arriving meanwhile (a new hold)
        makes the caller queue again behind it, so the callers after a hold are spaced at the
        bucket's rate instead of all leaving together when it ends."""
        budget = self.budget(tenant_id)
        probe = budget.probe(writes)
        if probe.heard and self._clock() - probe.heard_at > STALE_AFTER_S:
            probe.heard = False
        while not probe.heard:
            if probe.first_answer is None or probe.first_answer.done():
                probe.first_answer = asyncio.get_running_loop().create_future()
                break  # this caller's request goes first
            await asyncio.shield(probe.first_answer)
        while True:
            now = self._clock()
            charges = self._charges(budget, units, writes)
            send_at = max([now, budget.hold_until, *(now + b.wait(c, now) for b, c in charges)])
            for bucket, cost in charges:
                bucket.take(cost, send_at)
            holds = budget.holds
            if send_at <= now:
                return
            self.stats.waits += 1
            self.stats.waited_s += send_at - now
            await self._sleep(send_at - now)
            if budget.holds == holds:
                return
            # A 429 came while this caller waited: its reservation was made against a bucket
            # that was emptier than the model thought. Queue again, behind the hold.

    def settle(
        self,
        tenant_id: str,
        *,
        writes: float,
        guessed_units: float,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        """Learn from Graph's answer to one request (or one $batch)."""
        budget = self.budget(tenant_id)
        self.answered(tenant_id, writes=writes, heard=True)
        now = self._clock()
        charged = _float(headers.get("x-ms-resource-unit"))
        if charged is not None and charged != guessed_units:
            for bucket in (budget.units, self._app_units):
                bucket.full_at += (charged - guessed_units) / bucket.rate
        used = _float(headers.get("x-ms-throttle-limit-percentage"))
        if used is not None:
            for bucket in (budget.writes, budget.tenant_writes) if writes else (budget.units,):
                bucket.at_least_used(min(used, 1.0), now)
        if status == 429:
            self.throttled(tenant_id, headers, writes=writes)
        elif writes:
            key = tenant_id.lower()
            self.stats.writes[key] = self.stats.writes.get(key, 0) + int(writes)

    def answered(self, tenant_id: str, *, writes: float, heard: bool) -> None:
        """A request of a tenant ended: with an answer from Graph (heard), or without one (a
        transport error: if it went first, the next caller goes first instead)."""
        probe = self.budget(tenant_id).probe(writes)
        probe.heard = probe.heard or heard
        if heard:
            probe.heard_at = self._clock()
        if probe.first_answer is not None and not probe.first_answer.done():
            probe.first_answer.set_result(None)

    def item_throttled(self, tenant_id: str, headers: Mapping[str, str]) -> None:
        """A $batch item's 429: the $batch was counted with all its items; this one was refused."""
        key = tenant_id.lower()
        self.stats.writes[key] = self.stats.writes.get(key, 0) - 1
        self.throttled(tenant_id, headers)

    def throttled(self, tenant_id: str, headers: Mapping[str, str], *, writes: float = 1) -> None:
        """A 429 (of a request or of a $batch item): hold the tenant's callers until Retry-After + jitter."""
        budget = self.budget(tenant_id)
        now = self._clock()
        retry_after = parse_retry_after(dict(headers))
        wait = retry_after.total_seconds() if retry_after else 1.0
        info = str(headers.get("x-ms-throttle-information", ""))
        empty = [budget.writes] if writes and "Write" in info else [budget.units] if info else []
        for bucket in empty or ([budget.writes] if writes else [budget.units]):
            bucket.empty_until(now + wait)
        budget.throttled += 1
        self.stats.throttled += 1
        self.stats.by_tenant[tenant_id.lower()] = self.stats.by_tenant.get(tenant_id.lower(), 0) + 1
        until = now + wait * (1.0 + JITTER_FRACTION * self._jitter())
        if until > budget.hold_until:
            budget.hold_until = until
            budget.holds += 1
            log.warning("Graph throttled tenant %s: its calls wait %.1f s (%s)", tenant_id, until - now, info)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class PacedTransport(httpx.AsyncBaseTransport):
    """The network end of one tenant's Graph client: each attempt waits its turn in the pacer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, pacer: GraphPacer, tenant_id: str) -> None:
        self._inner = inner
        self._pacer = pacer
        self._tenant_id = tenant_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/$batch"):
            units, writes = batch_cost(await request.aread())
        else:
            query = {unquote(k): v for k, v in request.url.params.multi_items()}
            units, writes = request_cost(request.method, path, query)
        await self._pacer.acquire(self._tenant_id, units, writes)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._pacer.answered(self._tenant_id, writes=writes, heard=False)
            raise
        self._pacer.settle(
            self._tenant_id,
            writes=writes,
            guessed_units=units,
            status=response.status_code,
            headers=response.headers,
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def paced(client: Any, pacer: GraphPacer, tenant_id: str) -> Any:
    """Put the pacer under msgraph-sdk's middleware of `client` (an httpx.AsyncClient from
    GraphClientFactory): its transport (the middleware pipeline) sends through PacedTransport."""
    transport = client._transport  # msgraph_core's AsyncGraphTransport: middleware over `transport`
    transport.transport = PacedTransport(transport.transport, pacer, tenant_id)
    pipeline = getattr(transport, "pipeline", None)
    if pipeline is not None and hasattr(pipeline, "_transport"):
        pipeline._transport = transport.transport
    return client
