"""When to send NearExpiry and Expired events: two heaps of pending expiry times.

Each version with an ``exp`` is pushed once per exp value (an update that changes exp pushes
again; the stale entry is recognised and ignored when it comes due). The near-expiry heap is
ordered by exp too: the window is the same for every object, so ``exp - window`` has the same
order, and a window changed at run time applies at once. A scan pops only what is due, so its
cost is O(due log n), never a walk over every object.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable

from devstack.tenant.context import SimulationConfig

log = logging.getLogger(__name__)

NEAR_EXPIRY = "near"
EXPIRED = "expired"
SCAN_INTERVAL_KEY = "keyvault_expiry_scan_interval_s"  # sim.extra override, seconds

# fire(kind, object_type, name, version, exp): the vault checks the object still deserves it.
FireCallback = Callable[[str, str, str, str, int], None]
_Entry = tuple[int, int, str, str, str]  # exp, sequence, object_type, name, version


class ExpiryScheduler:
    def __init__(self, sim: SimulationConfig, fire: FireCallback, *, scan_interval_s: float = 1.0) -> None:
        self._sim = sim
        self._fire = fire
        self._default_interval_s = scan_interval_s
        self._near: list[_Entry] = []
        self._expired: list[_Entry] = []
        self._sequence = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def watch(self, object_type: str, name: str, version: str, exp: int | None) -> None:
        if exp is None:
            return
        entry = (exp, next(self._sequence), object_type, name, version)
        heapq.heappush(self._near, entry)
        heapq.heappush(self._expired, entry)
        self._wake.set()  # the new entry may be due before the current sleep ends

    def poke(self) -> None:
        """Rescan now (the window or the interval changed)."""
        self._wake.set()

    def pending(self) -> int:
        return len(self._near) + len(self._expired)

    def scan(self, now: float) -> None:
        window = self._sim.near_expiry_window_s
        while self._near and self._near[0][0] - window <= now:
            exp, _, object_type, name, version = heapq.heappop(self._near)
            self._safe_fire(NEAR_EXPIRY, object_type, name, version, exp)
        while self._expired and self._expired[0][0] <= now:
            exp, _, object_type, name, version = heapq.heappop(self._expired)
            self._safe_fire(EXPIRED, object_type, name, version, exp)

    def _safe_fire(self, kind: str, object_type: str, name: str, version: str, exp: int) -> None:
        try:
            self._fire(kind, object_type, name, version, exp)
        except Exception:  # one bad object must not stop the scanner
            log.exception("expiry event for %s %s failed", object_type, name)

    def _next_sleep(self, now: float) -> float:
        interval = float(self._sim.extra.get(SCAN_INTERVAL_KEY, self._default_interval_s))
        due = []
        if self._near:
            due.append(self._near[0][0] - self._sim.near_expiry_window_s - now)
        if self._expired:
            due.append(self._expired[0][0] - now)
        return max(0.01, min([interval, *due]))

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="keyvault-expiry-scanner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self.scan(time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_sleep(time.time()))
