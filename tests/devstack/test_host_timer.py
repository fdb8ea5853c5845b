"""Timers fire on their NCRONTAB schedule; a restart after a missed occurrence runs them past due."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.devstack.harness import records, start_sample_host, wait_for


def timer_runs(
    record_dir: Path, skip: int, at_least: int, kind: str = "timer"
) -> list[dict[str, Any]] | None:
    """A timer's records after the first `skip`, once there are at least `at_least` of them."""
    runs = records(record_dir, kind)[skip:]
    return runs if len(runs) >= at_least else None


def test_timer_fires_every_second_and_runs_past_due_after_a_missed_occurrence(
    azurite: str, tmp_path: Path
) -> None:
    record_dir = tmp_path / "records"
    state_dir = tmp_path / "state"
    values = {
        "SampleStorage": azurite,
        "SAMPLE_QUEUE": "timer-test-unused",
        "SAMPLE_SCHEDULE": "* * * * * *",  # resolved from the %SAMPLE_SCHEDULE% binding expression
        "SAMPLE_RECORD_DIR": str(record_dir),
        "SAMPLE_SLOW_SCHEDULE": "0 0 0 1 1 *",
        "AzureWebJobs.slow_timer.Disabled": "true",
    }
    with start_sample_host(tmp_path, values, state_dir=state_dir):
        fired = wait_for(lambda: timer_runs(record_dir, 0, 2), timeout=15)
        assert not any(r["past_due"] for r in fired)  # the host kept up with its schedule

    status = json.loads((state_dir / "timers" / "every_second.json").read_text())
    recorded_next = datetime.fromisoformat(status["Next"])
    # The host is down while that occurrence passes: wait (bounded) until it is in the past.
    wait_for(lambda: datetime.now(UTC) > recorded_next, timeout=5)
    time.sleep(0.2)

    before = len(records(record_dir, "timer"))
    with start_sample_host(tmp_path, values, state_dir=state_dir):
        after_restart = wait_for(lambda: timer_runs(record_dir, before, 2), timeout=15)
    assert after_restart[0]["past_due"] is True
    assert after_restart[1]["past_due"] is False


def test_timer_runs_on_startup_and_never_overlaps_a_run_still_in_progress(
    azurite: str, tmp_path: Path
) -> None:
    record_dir = tmp_path / "records"
    values = {
        "SampleStorage": azurite,
        "SAMPLE_QUEUE": "timer-test-unused",
        "SAMPLE_SCHEDULE": "* * * * * *",
        "SAMPLE_SLOW_SCHEDULE": "* * * * * *",  # every second, while each run takes 1.2 s
        "SAMPLE_SLOW_SECONDS": "1.2",
        "SAMPLE_RECORD_DIR": str(record_dir),
        "AzureWebJobs.every_second.Disabled": "true",
    }
    with start_sample_host(tmp_path, values):
        runs = wait_for(lambda: timer_runs(record_dir, 0, 2, kind="slow"), timeout=20)
    ordered = sorted(runs, key=lambda r: r["started"])
    for previous, following in itertools.pairwise(ordered):
        assert following["started"] >= previous["ended"]  # one run at a time
    log = (tmp_path / "host.log").read_text()
    assert "Functions.slow_timer' (Succeeded" in log
    assert "Reason='RunOnStartup'" in log
