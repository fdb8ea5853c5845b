"""What a KQL query of infra/ names, checked against the telemetry schema (functions/signals.py).

Every query of the alert rules and the workbook reads the Log Analytics workspace behind the
workspace-based Application Insights, so it may name:
- the tables AppTraces, AppMetrics and AppExceptions, and only their documented columns
  (Azure Monitor Logs table reference); never the classic names (traces, customDimensions, ...),
  which exist only in a query of the Application Insights resource;
- in Properties, a log event's LOG_FIELDS (AppTraces) or the attributes of the metrics it reads
  (AppMetrics);
- as a value: a Signal (compared to Properties.signal, or any dotted name), a metric name
  (compared to Name), an outcome, an at-risk reason, a queue.

`problems(query)` lists every breach, so a test can both pass on the real queries and be shown to
fail on a broken one. `analyze(queries)` parses and binds each query with Kusto.Language, the
parser Log Analytics itself uses (tests/infra/kql_analyze.js): syntax, tables, columns, functions.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from functions.resources import QUEUES
from functions.signals import LOG_FIELDS, METRICS, OUTCOMES, AtRiskReason, Signal

WORKSPACE_TABLES = {"AppTraces", "AppMetrics", "AppExceptions"}
# The same data as seen from the Application Insights resource: not queried on the workspace.
CLASSIC_NAMES = {
    "traces",
    "customMetrics",
    "customDimensions",
    "customMeasurements",
    "exceptions",
    "requests",
    "dependencies",
    "timestamp",
}
# The columns of each table a query may name outside Properties, with their types (Azure Monitor
# Logs table reference for AppTraces, AppMetrics and AppExceptions; those these queries need and a
# few a runbook may).
_COMMON = {
    "TimeGenerated": "datetime",
    "Properties": "dynamic",
    "AppRoleName": "string",
    "AppRoleInstance": "string",
    "OperationId": "string",
    "OperationName": "string",
    "ItemCount": "int",
}
COLUMN_TYPES: dict[str, dict[str, str]] = {
    "AppTraces": {**_COMMON, "Message": "string", "SeverityLevel": "int"},
    "AppMetrics": {**_COMMON, "Name": "string", "Sum": "real", "Min": "real", "Max": "real"},
    "AppExceptions": {
        **_COMMON,
        "ExceptionType": "string",
        "OuterMessage": "string",
        "ProblemId": "string",
        "Message": "string",
        "SeverityLevel": "int",
    },
}
COLUMNS = {table: set(columns) for table, columns in COLUMN_TYPES.items()}

METRIC_ATTRIBUTES = {metric.name: set(metric.attributes) for metric in METRICS}
SIGNALS = {signal.value for signal in Signal}
ALLOWED_VALUES = {
    "signal": SIGNALS,
    "reason": {reason.value for reason in AtRiskReason},
    "outcome": {outcome for outcomes in OUTCOMES.values() for outcome in outcomes},
    "queue": {*QUEUES, *(f"{queue}-poison" for queue in QUEUES)},
}

STRING_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'')
WORKBOOK_PARAMETER = re.compile(r"\{[A-Za-z]+(?::[a-z]+)?\}")
PROPERTY_KEY = re.compile(r"\bProperties(?:\.([A-Za-z_]\w*)|\[\s*[\"']([^\"']+)[\"']\s*\])")
# tostring(Properties.x) == "v", Properties.x != "v", tostring(Properties.x) in ("v", "w")
COMPARISON = re.compile(r"Properties\.(\w+)\)?\s*(?:==|!=|=~|in~?|!in)\s*(\([^)]*\)|\"[^\"]*\"|'[^']*')")
NAME_COMPARISON = re.compile(r"\bName\s*(?:==|in)\s*(\([^)]*\)|\"[^\"]*\"|'[^']*')")
DOTTED_NAME = re.compile(r"^[a-z_]+(?:\.[a-z_]+)+$")
CAPITALISED_IDENTIFIER = re.compile(r"\b[A-Z]\w*\b")


def literals(text: str) -> list[str]:
    return [
        match.group(1) if match.group(1) is not None else match.group(2)
        for match in STRING_LITERAL.finditer(text)
    ]


def tables(query: str) -> set[str]:
    code = STRING_LITERAL.sub('""', query)
    return {table for table in WORKSPACE_TABLES if re.search(rf"\b{table}\b", code)}


def property_keys(query: str) -> set[str]:
    return {dotted or indexed for dotted, indexed in PROPERTY_KEY.findall(query)}


def metric_names(query: str) -> set[str]:
    return {name for match in NAME_COMPARISON.findall(query) for name in literals(match)}


def compared_values(query: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for field, values in COMPARISON.findall(query):
        found.setdefault(field, set()).update(literals(values))
    return found


def problems(query: str) -> list[str]:
    """Every name in query that the telemetry schema or the workspace does not define."""
    found: list[str] = []
    code = WORKBOOK_PARAMETER.sub("", STRING_LITERAL.sub('""', query))
    read = tables(query)
    if not read:
        found.append("reads none of the workspace tables " + ", ".join(sorted(WORKSPACE_TABLES)))
    for classic in sorted(CLASSIC_NAMES):
        if re.search(rf"\b{classic}\b", code):
            found.append(f"names {classic!r}, a classic Application Insights name, not the workspace's")

    named_metrics = metric_names(query)
    for name in sorted(named_metrics - set(METRIC_ATTRIBUTES)):
        found.append(f"metric {name!r} is not in functions/signals.py METRICS")
    if read == {"AppMetrics"}:
        allowed_keys = set().union(*(METRIC_ATTRIBUTES.get(name, set()) for name in named_metrics))
    elif "AppMetrics" in read:
        allowed_keys = set(LOG_FIELDS).union(*(METRIC_ATTRIBUTES.get(name, set()) for name in named_metrics))
    else:
        allowed_keys = set(LOG_FIELDS)
    for key in sorted(property_keys(query) - allowed_keys):
        found.append(f"Properties.{key} is not a field functions/signals.py defines for what it reads")

    for field, values in sorted(compared_values(query).items()):
        allowed = ALLOWED_VALUES.get(field)
        if allowed is None:
            continue
        for value in sorted(values - allowed):
            found.append(f"{field} {value!r} is not a value functions/signals.py (or resources.py) defines")
    for value in literals(query):
        if DOTTED_NAME.match(value) and value not in SIGNALS and value not in METRIC_ATTRIBUTES:
            found.append(f"{value!r} looks like a signal or metric name but is neither")

    columns = set().union(*(COLUMNS[table] for table in read)) if read else set()
    for identifier in sorted(set(CAPITALISED_IDENTIFIER.findall(code)) - WORKSPACE_TABLES - columns):
        found.append(f"column {identifier!r} is not one of {sorted(read)}'s")
    return found


ANALYZER = Path(__file__).with_name("kql_analyze.js")
# Workbook parameters that stand outside string literals, as the workbook fills them in.
WORKBOOK_SUBSTITUTIONS = {"{TimeRange:grain}": "1h"}


def analyze(queries: dict[str, str]) -> dict[str, list[str]]:
    """Kusto.Language's diagnostics for each query, bound to the workspace tables of COLUMN_TYPES."""
    node = shutil.which("node")
    assert node, "node is not on PATH (the devstack needs it too: `make setup`)"
    texts = {name: _fill_workbook_parameters(text) for name, text in queries.items()}
    tables = {
        table: "(" + ", ".join(f"{column}:{kind}" for column, kind in columns.items()) + ")"
        for table, columns in COLUMN_TYPES.items()
    }
    completed = subprocess.run(
        [node, str(ANALYZER)],
        input=json.dumps({"tables": tables, "queries": texts}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:] + (
        "\n(is @kusto/language-service-next installed? `npm ci`, or `make setup`)"
    )
    diagnostics: dict[str, list[str]] = json.loads(completed.stdout)
    return diagnostics


def _fill_workbook_parameters(text: str) -> str:
    for parameter, value in WORKBOOK_SUBSTITUTIONS.items():
        text = text.replace(parameter, value)
    return text
