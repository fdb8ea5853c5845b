"""Every KQL query of infra/ (alert rules and workbook) names only what the code emits.

The names come from functions/signals.py, the telemetry schema; tests/infra/kql_names.py says
what a query may name and finds every breach.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from functions.signals import METRICS, Signal
from tests.infra.bicep_tree import BICEP_DIR, REPO_ROOT, resolve, tree_of
from tests.infra.kql_names import analyze, compared_values, literals, metric_names, problems, property_keys

WORKBOOK_FILE = BICEP_DIR / "workbooks" / "registrar.workbook.json"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

EXPECTED_RULES = {
    "credential-at-risk",
    "rotation-failing",
    "registration-failed",
    "delivery-dead-lettered",
    "message-poisoned",
    "function-exceptions",
    "rotation-sweep-missed",
}


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = resolve(tree_of("modules/alerts.bicep"), "alertRules")
    return rules


def workbook() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(WORKBOOK_FILE.read_text(encoding="utf-8"))
    return document


def workbook_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item, groups (type 12) opened."""
    found = []
    for item in items:
        found.append(item)
        if item["type"] == 12:
            found.extend(workbook_items(item["content"]["items"]))
    return found


def workbook_queries() -> dict[str, str]:
    return {
        item["name"]: item["content"]["query"]
        for item in workbook_items(workbook()["items"])
        if item["type"] == 3
    }


def all_queries() -> dict[str, str]:
    queries = {f"alert {rule['name']}": rule["query"] for rule in alert_rules()}
    queries.update({f"workbook {name}": query for name, query in workbook_queries().items()})
    return queries


QUERIES = all_queries()
RUNBOOK_QUERIES = {
    f"docs/operations.md query {number}": block
    for number, block in enumerate(
        re.findall(r"```kusto\n(.*?)```", OPERATIONS_DOC.read_text(encoding="utf-8"), re.S), 1
    )
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_names_only_what_the_code_emits(name: str) -> None:
    assert problems(QUERIES[name]) == []


@pytest.fixture(scope="module")
def diagnostics() -> dict[str, list[str]]:
    return analyze({**QUERIES, **RUNBOOK_QUERIES})


@pytest.mark.parametrize("name", sorted({**QUERIES, **RUNBOOK_QUERIES}))
def test_query_parses_and_binds_against_the_workspace_tables(
    name: str, diagnostics: dict[str, list[str]]
) -> None:
    """Kusto.Language, as Log Analytics parses it: the rules skip the service's own validation."""
    assert diagnostics[name] == []


def test_the_analyzer_reports_syntax_and_binding_errors() -> None:
    found = analyze(
        {
            "syntax": "AppTraces | summarize c = count( by x",
            "column": "AppMetrics | where Value > 0",
            "table": "traces | take 1",
            "keyword": "AppTraces | summarize last = max(TimeGenerated)",
            "fine": 'AppTraces | where tostring(Properties.signal) == "rotation.failed" | summarize n = count()',
        }
    )
    assert any("KS005" in problem for problem in found["syntax"]), found["syntax"]
    assert any("'Value'" in problem for problem in found["column"]), found["column"]
    assert any("'traces'" in problem for problem in found["table"]), found["table"]
    assert found["keyword"], "`last` is a KQL keyword"
    assert found["fine"] == []


@pytest.mark.parametrize("name", sorted(RUNBOOK_QUERIES))
def test_runbook_queries_name_only_what_the_code_emits(name: str) -> None:
    """What the runbooks tell a person to run holds to the schema as well."""
    assert problems(RUNBOOK_QUERIES[name]) == []


def test_every_runbook_has_a_query_to_start_from() -> None:
    assert len(RUNBOOK_QUERIES) >= len(EXPECTED_RULES) - 1


def test_the_queries_cover_the_signals_the_alerts_need() -> None:
    """The extraction is not vacuous: together the queries name these signals, fields and metrics."""
    signals = set().union(*(compared_values(query).get("signal", set()) for query in QUERIES.values()))
    assert {
        Signal.ROTATION_FAILED,
        Signal.REGISTRATION_FAILED,
        Signal.DELIVERY_DEAD_LETTERED,
        Signal.MESSAGE_POISONED,
        Signal.ROTATION_SWEEP_COMPLETED,
        Signal.CREDENTIAL_AT_RISK,
    } <= signals
    keys = set().union(*(property_keys(query) for query in QUERIES.values()))
    assert {
        "signal",
        "reason",
        "outcome",
        "registration_id",
        "key_id",
        "expires_on",
        "failures_in_a_row",
        "queue",
    } <= keys
    metrics = set().union(*(metric_names(query) for query in QUERIES.values()))
    assert metrics == {metric.name for metric in METRICS}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            'AppTraces | where tostring(Properties.signal) == "rotation.failed" | extend x = Properties.secret_text',
            "Properties.secret_text",
        ),
        ('AppTraces | where tostring(Properties.signal) == "rotation.failure"', "signal 'rotation.failure'"),
        (
            'AppTraces | where tostring(Properties.signal) in ("rotation.failed", "credential.risk")',
            "signal 'credential.risk'",
        ),
        ('AppTraces | where tostring(Properties["registrationId"]) != ""', "Properties.registrationId"),
        (
            'AppMetrics | where Name == "registrar.rotation" | summarize sum(Sum)',
            "metric 'registrar.rotation'",
        ),
        (
            'AppMetrics | where Name == "registrar.rotations" | summarize sum(Sum) by tostring(Properties.queue)',
            "Properties.queue",
        ),
        (
            'AppMetrics | where Name == "registrar.rotations" and tostring(Properties.outcome) == "ok"',
            "outcome 'ok'",
        ),
        ('AppMetrics | where Name == "registrar.rotations" | summarize sum(Value)', "column 'Value'"),
        ('traces | where customDimensions.signal == "rotation.failed"', "classic Application Insights name"),
        ('AppTraces | where Message has "rotation.retried"', "'rotation.retried' looks like a signal"),
        ('AppTraces | where tostring(Properties.reason) == "near-expiry"', "reason 'near-expiry'"),
    ],
)
def test_a_query_naming_something_the_code_does_not_emit_is_caught(query: str, expected: str) -> None:
    found = problems(query)
    assert any(expected in problem for problem in found), found


def test_string_literals_are_read_whole() -> None:
    assert literals('x == "a.b" and y in (\'c\', "d")') == ["a.b", "c", "d"]


# --- the alert rules ------------------------------------------------------------------------------


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_there_is_one_rule_per_failure_each_with_a_severity_and_a_runbook() -> None:
    rules = alert_rules()
    assert {rule["name"] for rule in rules} == EXPECTED_RULES
    headings = {
        _github_anchor(line.lstrip("#"))
        for line in OPERATIONS_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith(("## ", "### "))
    }
    for rule in rules:
        assert rule["severity"] in range(5), rule["name"]
        assert rule["description"].endswith(f" Runbook: ${{runbookUrl}}#{rule['name']}"), rule["name"]
        assert rule["name"] in headings, f"docs/operations.md has no section #{rule['name']}"
        # says what to do, not only what happened: a sentence with an instruction before the link
        assert re.search(r"\b(Read|Open|Tell|Peek|Check|Group|fix|rotate)\b", rule["description"]), rule[
            "name"
        ]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["name"])
def test_measure_and_dimensions_are_columns_the_query_returns(rule: dict[str, Any]) -> None:
    query = rule["query"]
    last_summarize = query[query.rindex("| summarize") :]
    assert re.search(rf"\b{rule['measure']}\s*=", last_summarize), (
        f"{rule['name']}: no column {rule['measure']}"
    )
    for dimension in rule["dimensions"]:
        assert re.search(rf"\bby\b.*\b{dimension}\b", last_summarize), (
            f"{rule['name']}: no dimension {dimension}"
        )
    assert rule["operator"] in {"GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual", "Equals"}


def test_rule_specifics() -> None:
    rules = {rule["name"]: rule for rule in alert_rules()}
    failing = rules["rotation-failing"]
    assert (failing["operator"], failing["threshold"]) == (
        "GreaterThanOrEqual",
        "rotationFailuresBeforeAlert",
    )
    assert "failures_in_a_row" in property_keys(failing["query"])
    # Silence is the failure: the query answers a zero row when no sweep completed.
    missed = rules["rotation-sweep-missed"]
    assert (missed["operator"], missed["threshold"]) == ("LessThan", 1)
    assert missed["windowSize"] == "missedSweepWindow"
    assert " by " not in missed["query"][missed["query"].rindex("| summarize") :]
    assert metric_names(rules["credential-at-risk"]["query"]) == {"registrar.credentials.at_risk"}
    assert compared_values(rules["credential-at-risk"]["query"])["signal"] == {Signal.CREDENTIAL_AT_RISK}
    assert "AppExceptions" in rules["function-exceptions"]["query"]


# --- the workbook ---------------------------------------------------------------------------------


def test_workbook_shows_what_the_issue_asks() -> None:
    items = {item["name"]: item for item in workbook_items(workbook()["items"])}
    visualizations = {
        name: item["content"].get("visualization") for name, item in items.items() if item["type"] == 3
    }
    assert visualizations["credentials-by-days-to-expiry"] == "barchart"
    assert visualizations["rotations-by-outcome"] == "timechart"
    assert visualizations["registrations-by-status"] in {"piechart", "barchart", "table"}
    assert visualizations["deliveries-by-outcome"] in {"piechart", "barchart", "timechart", "table"}
    assert visualizations["at-risk"] == "table"
    queries = workbook_queries()
    assert "days_to_expiry" in property_keys(queries["at-risk"]) or "expires_on" in property_keys(
        queries["at-risk"]
    )
    assert metric_names(queries["rotations-by-outcome"]) == {"registrar.rotations"}
    assert metric_names(queries["registrations-by-status"]) == {"registrar.provisionings"}
    assert metric_names(queries["deliveries-by-outcome"]) == {"registrar.deliveries"}
    for item in items.values():
        if item["type"] == 3:
            assert item["content"]["resourceType"] == "microsoft.operationalinsights/workspaces"


def test_at_risk_table_links_to_the_registration_api() -> None:
    at_risk = {item["name"]: item for item in workbook_items(workbook()["items"])}["at-risk"]
    assert '"{RegistrarApiUrl}/api/registrations/"' in at_risk["content"]["query"]
    (formatter,) = at_risk["content"]["gridSettings"]["formatters"]
    assert formatter["columnMatch"] == "registration"
    assert formatter["formatter"] == 7 and formatter["formatOptions"]["linkTarget"] == "Url"
    openapi = json.loads((REPO_ROOT / "functions/openapi.json").read_text(encoding="utf-8"))
    assert openapi["servers"] == [{"url": "/api"}]
    assert "get" in openapi["paths"]["/registrations/{id}"]
    parameters = {
        parameter["name"]: parameter
        for item in workbook_items(workbook()["items"])
        if item["type"] == 9
        for parameter in item["content"]["parameters"]
    }
    assert parameters["RegistrarApiUrl"]["value"] == "__REGISTRAR_API_URL__"
    assert WORKBOOK_FILE.read_text(encoding="utf-8").count("__REGISTRAR_API_URL__") == 1
    assert {"TimeRange", "RegistrarApiUrl"} <= set(parameters)
