"""Timer triggers: fire on the NCRONTAB schedule, one run at a time, with the host's past-due rule.

As the WebJobs TimerListener does: the schedule status (Last, Next, LastUpdated) is kept per
function (here a JSON file in the state dir, in Azure a blob); at start, if the recorded Next
has passed, the function runs at once with past_due=True; otherwise runOnStartup runs it once.
The next occurrence is computed after each run finishes, so runs never overlap and occurrences
missed during a long run are skipped. Failures are logged, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions import meta

from devstack.host.config import resolve
from devstack.host.functions import FunctionInfo
from devstack.host.invoker import InvocationFailed, Invoker
from devstack.host.ncrontab import Schedule

log = logging.getLogger("devstack.host")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScheduleStatus:
    last: datetime | None
    next: datetime
    last_updated: datetime
    schedule: str

    def to_json(self) -> dict[str, Any]:
        return {
            "Last": self.last.isoformat() if self.last else None,
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
            "Schedule": self.schedule,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleStatus:
        return cls(
            last=datetime.fromisoformat(data["Last"]) if data.get("Last") else None,
            next=datetime.fromisoformat(data["Next"]),
            last_updated=datetime.fromisoformat(data["LastUpdated"]),
            schedule=str(data.get("Schedule", "")),
        )


def timer_datum(past_due: bool, status: ScheduleStatus | None) -> meta.Datum:
    """The JSON the host sends the worker for a TimerInfo (decoded by azure-functions' converter)."""
    schedule_status = status.to_json() if status else None
    if schedule_status:
        schedule_status.pop("Schedule")
    body = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": schedule_status, "IsPastDue": past_due}
    return meta.Datum(type="json", value=json.dumps(body))


class TimerListener:
    def __init__(self, function: FunctionInfo, invoker: Invoker, state_dir: Path) -> None:
        self.function = function
        self.invoker = invoker
        self.schedule = Schedule.parse(resolve(str(function.trigger["schedule"])))
        self.run_on_startup = bool(function.trigger.get("runOnStartup", False))
        monitor = function.trigger.get("useMonitor")
        # The extension monitors by default only schedules that fire at most once a minute.
        self.use_monitor = (
            bool(monitor)
            if monitor is not None
            else self.schedule.shortest_interval(utcnow()) >= timedelta(minutes=1)
        )
        self.status_file = state_dir / "timers" / f"{function.name}.json"
        self.status: ScheduleStatus | None = None
        self._lock = asyncio.Lock()  # one run at a time, whether scheduled or run by hand

    def _load_status(self) -> ScheduleStatus | None:
        if not self.use_monitor or not self.status_file.exists():
            return None
        try:
            return ScheduleStatus.from_json(json.loads(self.status_file.read_text(encoding="utf-8")))
        except (ValueError, KeyError):
            log.warning("Timer '%s': unreadable schedule status, starting afresh", self.function.name)
            return None

    def _save_status(self, status: ScheduleStatus) -> None:
        self.status = status
        if not self.use_monitor:
            return
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.status_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(status.to_json()), encoding="utf-8")
        temporary.replace(self.status_file)

    def _past_due(self, now: datetime) -> bool:
        status = self._load_status()
        if status is None:
            self._save_status(
                ScheduleStatus(None, self.schedule.next_after(now), now, self.schedule.expression)
            )
            return False
        self.status = status
        expected = status.next
        if status.schedule != self.schedule.expression and status.last is not None:
            expected = self.schedule.next_after(status.last)  # schedule changed: judge by the new one
        return now > expected

    async def run(self) -> None:
        log.info(
            "Timer '%s': schedule %r (monitored: %s)",
            self.function.name,
            self.schedule.expression,
            self.use_monitor,
        )
        now = utcnow()
        if self._past_due(now):
            await self.fire(now, past_due=True, reason="PastDue")
        elif self.run_on_startup:
            await self.fire(now, past_due=False, reason="RunOnStartup")
        while True:
            occurrence = self.schedule.next_after(utcnow())
            await _sleep_until(occurrence)
            await self.fire(occurrence, past_due=False, reason="Timer")

    async def fire(self, occurrence: datetime, *, past_due: bool, reason: str) -> None:
        async with self._lock:
            with contextlib.suppress(InvocationFailed):  # logged by the invoker; timers are not retried
                await self.invoker.invoke(self.function, timer_datum(past_due, self.status), reason=reason)
            now = utcnow()
            self._save_status(
                ScheduleStatus(occurrence, self.schedule.next_after(now), now, self.schedule.expression)
            )


async def _sleep_until(moment: datetime) -> None:
    while (remaining := (moment - utcnow()).total_seconds()) > 0:
        await asyncio.sleep(remaining)
