"""ISO 8601 durations (P90D, PT5M, P1W) as Registrar's settings, profiles and requests write them.

Years and months have no fixed length; Registrar counts a year as 365 days and a month as 30
days so that "P1Y" from a ticket means what a person expects, and says so in the docs.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_MAX_DURATION = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration like P90D, PT5M, P1DT12H, P2W; raise ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().upper())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration like P90D or PT5M")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    days = parts["years"] * 365 + parts["months"] * 30 + parts["weeks"] * 7 + parts["days"]
    if days > _MAX_DURATION.days:
        raise ValueError(f"{text!r} is longer than 100 years")
    return timedelta(days=days, hours=parts["hours"], minutes=parts["minutes"], seconds=parts["seconds"])


def format_duration(value: timedelta) -> str:
    """The shortest ISO 8601 form of a duration: P180D, PT5M, P1DT2H."""
    total = int(value.total_seconds())
    if total <= 0:
        return "PT0S"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{days}D" if days else ""
    time_part = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return "P" + date_part + (f"T{time_part}" if time_part else "")
