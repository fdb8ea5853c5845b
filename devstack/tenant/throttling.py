"""Graph's identity-and-access throttling: token buckets on resource units and writes (REFERENCE.md).

Budgets: per app+tenant 3,500 / 5,000 / 8,000 RU per 10 s by tenant size and 3,000 writes per 150 s;
per tenant (all apps) 18,000 writes per 5 min; per app (all tenants) 150,000 RU per 20 s.
Costs: GET 1 RU (applications, users, oauth2PermissionGrants, appRoleAssignments: 2); a write 1 RU
+ 1 write; $select -1, $expand +1, $top < 20 -1, minimum 1. `scale` multiplies every budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from devstack.tenant.context import SimulationConfig

RU_PER_10S = {"small": 3500.0, "medium": 5000.0, "large": 8000.0}
APP_TENANT_WRITES, APP_TENANT_WRITES_WINDOW_S = 3000.0, 150.0
TENANT_WRITES, TENANT_WRITES_WINDOW_S = 18000.0, 300.0
APP_RU, APP_RU_WINDOW_S = 150000.0, 20.0
_COSTLY_COLLECTIONS = (
    "applications",
    "users",
    "oauth2PermissionGrants",
    "appRoleAssignments",
    "appRoleAssignedTo",
)
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def request_cost(method: str, path: str, query: Mapping[str, str]) -> tuple[int, int]:
    """(resource units, writes) that one Graph request costs."""
    writes = 1 if method in _WRITE_METHODS else 0
    if writes:
        units = 1
    else:
        segments = path.split("/")
        costly = any(segment.split("(", 1)[0] in _COSTLY_COLLECTIONS for segment in segments)
        units = 2 if costly else 1
    if "$select" in query:
        units -= 1
    if "$expand" in query:
        units += 1
    top = query.get("$top")
    if top is not None and top.isdigit() and int(top) < 20:
        units -= 1
    return max(units, 1), writes


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, window_s: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window_s
        self.level = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def used_fraction(self) -> float:
        return 1.0 - self.level / self.capacity


@dataclass(frozen=True)
class Verdict:
    units: int
    retry_after_s: int = 0  # > 0: throttled
    scope: str = ""
    information: str = ""
    used_fraction: float = 0.0

    @property
    def throttled(self) -> bool:
        return self.retry_after_s > 0

    def headers(self) -> dict[str, str]:
        if self.throttled:
            return {
                "Retry-After": str(self.retry_after_s),
                "x-ms-throttle-scope": self.scope,
                "x-ms-throttle-information": self.information,
            }
        headers = {"x-ms-resource-unit": str(self.units)}
        if self.used_fraction > 0.8:
            headers["x-ms-throttle-limit-percentage"] = f"{self.used_fraction:.1f}"
        return headers


class Throttler:
    """Charges Graph requests against the buckets of their app+tenant; graph/ may call charge() per $batch item."""

    def __init__(self, sim: SimulationConfig) -> None:
        self._sim = sim
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self.throttled_count = 0

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: tuple[str, ...], capacity: float, window_s: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        capacity = max(capacity * self._sim.throttle_scale, 1.0)
        if bucket is None or bucket.capacity != capacity:
            bucket = _Bucket(capacity, window_s, now)
            self._buckets[key] = bucket
        else:
            bucket.refill(now)
        return bucket

    def charge(
        self, tenant_id: str, app_id: str, method: str, path: str, query: Mapping[str, str]
    ) -> Verdict:
        units, writes = request_cost(method, path, query)
        if not self._sim.throttling_enabled:
            return Verdict(units)
        now = time.monotonic()
        ru = self._bucket(
            ("ru", tenant_id, app_id), RU_PER_10S.get(self._sim.tenant_size, RU_PER_10S["small"]), 10.0, now
        )
        app_ru = self._bucket(("app-ru", app_id), APP_RU, APP_RU_WINDOW_S, now)
        checks = [
            (ru, units, f"Tenant_Application/ReadWrite/{tenant_id}/{app_id}", "ResourceUnitLimitExceeded"),
            (app_ru, units, f"Application/ReadWrite/{app_id}", "ResourceUnitLimitExceeded"),
        ]
        if writes:
            app_writes = self._bucket(
                ("writes", tenant_id, app_id), APP_TENANT_WRITES, APP_TENANT_WRITES_WINDOW_S, now
            )
            tenant_writes = self._bucket(
                ("tenant-writes", tenant_id), TENANT_WRITES, TENANT_WRITES_WINDOW_S, now
            )
            checks += [
                (
                    app_writes,
                    writes,
                    f"Tenant_Application/ReadWrite/{tenant_id}/{app_id}",
                    "WriteLimitExceeded",
                ),
                (tenant_writes, writes, f"Tenant/ReadWrite/{tenant_id}", "WriteLimitExceeded"),
            ]
        for bucket, amount, scope, information in checks:
            wait = bucket.wait_for(amount)
            if wait > 0:
                self.throttled_count += 1
                return Verdict(units, max(1, math.ceil(wait)), scope, information)
        for bucket, amount, _, _ in checks:
            bucket.level -= amount
        return Verdict(units, used_fraction=max(bucket.used_fraction() for bucket, *_ in checks))


THROTTLER: web.AppKey[Throttler] = web.AppKey("throttler", Throttler)
