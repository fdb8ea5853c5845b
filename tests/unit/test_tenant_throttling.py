"""Graph throttling costs and budgets of the local tenant (REFERENCE.md, "Graph throttling")."""

from __future__ import annotations

from devstack.tenant.context import SimulationConfig
from devstack.tenant.throttling import Throttler, request_cost


def test_costs_follow_the_published_rules() -> None:
    assert request_cost("GET", "/v1.0/servicePrincipals/abc", {}) == (1, 0)
    assert request_cost("GET", "/v1.0/applications", {}) == (2, 0)
    assert request_cost("GET", "/v1.0/applications(appId='x')", {}) == (2, 0)
    assert request_cost("GET", "/v1.0/applications", {"$select": "id"}) == (1, 0)
    assert request_cost("GET", "/v1.0/applications", {"$expand": "owners"}) == (3, 0)
    assert request_cost("GET", "/v1.0/applications", {"$top": "5"}) == (1, 0)
    assert request_cost("GET", "/v1.0/servicePrincipals", {"$select": "id", "$top": "5"}) == (1, 0)
    assert request_cost("PATCH", "/v1.0/applications/abc", {}) == (1, 1)
    assert request_cost("POST", "/v1.0/servicePrincipals/x/appRoleAssignedTo", {}) == (1, 1)


def test_resource_units_run_out_per_app_and_tenant() -> None:
    throttler = Throttler(SimulationConfig(throttle_scale=10 / 3500))  # 10 RU per 10 s
    verdicts = [throttler.charge("t1", "app", "GET", "/v1.0/servicePrincipals/x", {}) for _ in range(11)]

    assert not any(v.throttled for v in verdicts[:10])
    assert verdicts[9].headers()["x-ms-resource-unit"] == "1"
    assert "x-ms-throttle-limit-percentage" in verdicts[9].headers()
    last = verdicts[10].headers()
    assert last["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert int(last["Retry-After"]) >= 1
    # Another app, or the same app in another tenant, has its own bucket.
    assert not throttler.charge("t1", "other", "GET", "/v1.0/servicePrincipals/x", {}).throttled
    assert not throttler.charge("t2", "app", "GET", "/v1.0/servicePrincipals/x", {}).throttled


def test_writes_have_their_own_budget_and_throttling_can_be_switched_off() -> None:
    sim = SimulationConfig(throttle_scale=2 / 3000, tenant_size="large")  # 2 writes per 150 s, ~5 RU
    throttler = Throttler(sim)
    results = [throttler.charge("t", "app", "PATCH", "/v1.0/applications/x", {}) for _ in range(3)]

    assert [r.throttled for r in results] == [False, False, True]
    assert results[2].information == "WriteLimitExceeded"
    sim.throttling_enabled = False
    assert not throttler.charge("t", "app", "PATCH", "/v1.0/applications/x", {}).throttled
