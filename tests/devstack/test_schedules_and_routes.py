"""NCRONTAB schedules and route templates as the Functions host interprets them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devstack.host.config import ConfigError, parse_timespan
from devstack.host.ncrontab import Schedule
from devstack.host.routes import RouteTemplate

SUNDAY_NOON = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * * *", datetime(2026, 11, 22, 12, 0, 1, tzinfo=UTC)),
        ("0 */15 * * * *", datetime(2026, 11, 22, 12, 15, 0, tzinfo=UTC)),
        ("30 5 9 * * *", datetime(2026, 11, 23, 9, 5, 30, tzinfo=UTC)),
        ("0 0 9 * * MON-FRI", datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)),
        ("0 0 9 * * 6", datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)),
        ("0 0 0 1 JAN *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("0 0 0 29 2 *", datetime(2028, 2, 29, 0, 0, 0, tzinfo=UTC)),
        ("0 0,30 8-10/2 * * *", datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)),
        ("0 0 12 * * *", datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)),  # strictly after
        ("5 4 * * *", datetime(2026, 11, 23, 4, 5, 0, tzinfo=UTC)),  # five fields: second 0
        # NCrontab ANDs day-of-month and day-of-week: the 13th that is a Friday.
        ("0 0 0 13 * FRI", datetime(2027, 8, 13, 0, 0, 0, tzinfo=UTC)),
        ("00:05:00", datetime(2026, 11, 22, 12, 5, 0, tzinfo=UTC)),
    ],
)
def test_next_occurrence(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(SUNDAY_NOON) == expected


@pytest.mark.parametrize(
    "expression", ["* * * *", "61 * * * * *", "* * * * 13 *", "*/0 * * * * *", "x * * * * *"]
)
def test_invalid_schedules_are_refused(expression: str) -> None:
    with pytest.raises(ConfigError):
        Schedule.parse(expression)


def test_timespans_as_host_json_writes_them() -> None:
    assert parse_timespan("00:00:02").total_seconds() == 2
    assert parse_timespan("00:00:00.500").total_seconds() == 0.5
    assert parse_timespan("1.02:00:00").total_seconds() == 26 * 3600
    with pytest.raises(ConfigError):
        parse_timespan("2s")


def test_route_parameters_constraints_optional_and_catch_all() -> None:
    guid = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert RouteTemplate("registrations/{id:guid}").match(f"Registrations/{guid}") == {"id": guid}
    assert RouteTemplate("registrations/{id:guid}").match("registrations/42") is None
    assert RouteTemplate("items/{n:int:min(2)}").match("items/1") is None
    assert RouteTemplate("items/{n:int:min(2)}").match("items/7") == {"n": "7"}
    assert RouteTemplate("items/{n:int}").match("items/7/extra") is None
    assert RouteTemplate("pages/{page?}").match("pages") == {}
    assert RouteTemplate("pages/{page=1}").match("pages/3") == {"page": "3"}
    assert RouteTemplate("pages/{page=1}").match("pages") == {"page": "1"}
    assert RouteTemplate("files/{*rest}").match("files/a/b%20c") == {"rest": "a/b c"}
    assert RouteTemplate("{name:regex(^v[0-9]+$)}/status").match("v2/status") == {"name": "v2"}


def test_more_specific_templates_take_precedence() -> None:
    literal = RouteTemplate("registrations/pending")
    parameter = RouteTemplate("registrations/{id}")
    catch_all = RouteTemplate("{*path}")
    ordered = sorted([catch_all, parameter, literal], key=lambda t: t.precedence)
    assert ordered == [literal, parameter, catch_all]
