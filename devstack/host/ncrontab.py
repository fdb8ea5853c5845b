"""NCRONTAB schedules as the Functions timer trigger reads them (NCrontab with seconds), in UTC.

Six fields {second} {minute} {hour} {day} {month} {day-of-week} (five fields: second 0), each
'*', a value, a range 'a-b', a step '*/n' or 'a-b/n' or 'a/n', or a comma list of those; months
and days of the week also by name (JAN, Monday...). As in NCrontab, day-of-month and day-of-week
must BOTH match (classic cron ORs them). A TimeSpan 'hh:mm:ss' means a constant interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from devstack.host.config import ConfigError, parse_timespan

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (low, high, names) for second, minute, hour, day, month, day-of-week
_FIELDS: list[tuple[int, int, list[str] | None]] = [
    (0, 59, None),
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
]
_HORIZON = timedelta(days=366 * 5)  # a schedule like "0 0 0 30 2 *" never fires: stop looking


def _value(text: str, low: int, names: list[str] | None) -> int:
    if text.isdigit():
        return int(text)
    if names:
        prefix = text[:3].upper()
        if prefix in names:
            return names.index(prefix) + low
    raise ConfigError(f"bad NCRONTAB value {text!r}")


def _parse_field(text: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ConfigError(f"bad NCRONTAB step in {text!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _value(first, low, names), _value(last, low, names)
        else:
            start = _value(base, low, names)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ConfigError(f"NCRONTAB value out of range in {text!r} ({low}-{high})")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    interval: timedelta | None = None  # TimeSpan schedules

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        if ":" in text and " " not in text:
            interval = parse_timespan(text)
            if interval <= timedelta(0):
                raise ConfigError(f"timer interval must be positive: {expression!r}")
            return cls(expression=text, interval=interval)
        fields = text.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ConfigError(
                f"NCRONTAB needs six fields (second minute hour day month day-of-week): {text!r}"
            )
        parsed = [_parse_field(f, lo, hi, names) for f, (lo, hi, names) in zip(fields, _FIELDS, strict=True)]
        seconds, minutes, hours, days, months, weekdays = parsed
        return cls(text, seconds, minutes, hours, days, months, weekdays)

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (aware UTC datetimes in and out)."""
        if self.interval is not None:
            return moment + self.interval
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + _HORIZON
        while candidate <= limit:
            if candidate.month not in self.months:
                year, month = divmod(candidate.month, 12)
                candidate = candidate.replace(
                    year=candidate.year + year, month=month + 1, day=1, hour=0, minute=0, second=0
                )
            elif candidate.day not in self.days or _weekday(candidate) not in self.weekdays:
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
            elif candidate.minute not in self.minutes:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise ConfigError(f"schedule {self.expression!r} has no occurrence in five years")

    def shortest_interval(self, moment: datetime) -> timedelta:
        """Gap between the next two occurrences: decides whether the schedule is monitored by default."""
        first = self.next_after(moment)
        return self.next_after(first) - first


def _weekday(moment: datetime) -> int:
    return (moment.weekday() + 1) % 7  # Python: Monday 0; NCRONTAB: Sunday 0
