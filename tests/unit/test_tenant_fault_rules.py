"""Fault rules of the local tenant: matching, counts, probability (devstack/tenant/faults.py)."""

from __future__ import annotations

import re

import pytest

from devstack.tenant.faults import FaultRule, FaultRules


def test_a_counted_rule_matches_method_and_path_then_disappears() -> None:
    rules = FaultRules()
    rules.rules.append(
        FaultRule.from_json({"status": 503, "method": "get", "pathRegex": "^/v1.0/app", "count": 2})
    )

    assert rules.take("POST", "/v1.0/applications") is None
    assert rules.take("GET", "/v1.0/servicePrincipals") is None
    assert [rules.take("GET", "/v1.0/applications") is not None for _ in range(3)] == [True, True, False]
    assert rules.rules == []
    assert rules.injected == 2


def test_probability_zero_never_fires_and_one_always_does() -> None:
    rules = FaultRules()
    rules.rules.append(FaultRule.from_json({"status": 500, "probability": 0.0}))
    assert all(rules.take("GET", "/x") is None for _ in range(50))
    rules.rules.append(FaultRule.from_json({"status": 502, "probability": 1.0, "retryAfter": 3}))
    rule = rules.take("GET", "/x")
    assert rule is not None and (rule.status, rule.retry_after) == (502, 3)


@pytest.mark.parametrize("data", [{}, {"status": "503"}, {"status": 503, "pathRegex": "("}, []])
def test_malformed_rules_are_refused(data: object) -> None:
    with pytest.raises((ValueError, TypeError, re.error)):
        FaultRule.from_json(data)  # type: ignore[arg-type]
