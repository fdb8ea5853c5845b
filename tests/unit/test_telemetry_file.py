"""The local telemetry file (REGISTRAR_TELEMETRY_FILE): signal log events and metric points as JSON
lines, written behind the redactor. In a child process: the meter provider is set once per process."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = textwrap.dedent(
    """
    import logging, os, sys
    from functions.telemetry import configure_telemetry, redactor
    from functions.bootstrap import instruments
    from functions.core.escalation.log_events import signal_event
    from functions.signals import ROTATIONS, Signal

    configure_telemetry(os.environ, stream=sys.stderr)
    secret = os.environ["PROBE_SECRET"]
    redactor.register(secret)
    counters = instruments()
    counters.count(ROTATIONS, "failed")
    counters.count(ROTATIONS, "failed")
    counters.count(ROTATIONS, "rotated")
    signal_event(Signal.ROTATION_FAILED, f"refused: {secret}", level=logging.ERROR,
                 reason="Authorization_RequestDenied", registration_id="reg-1", failures_in_a_row=2)
    logging.getLogger("functions.anything").warning("an ordinary line, not a signal")
    # The process ends here: the meter provider's last export runs at exit.
    """
)


def test_signal_events_and_metric_points_land_in_the_file_without_the_secret(tmp_path: Path) -> None:
    target = tmp_path / "telemetry.jsonl"
    secret = "probe-" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    env |= {
        "REGISTRAR_TELEMETRY_FILE": str(target),
        "REGISTRAR_TELEMETRY_INTERVAL": "PT60S",  # only the export at exit
        "PROBE_SECRET": secret,
        "PYTHONPATH": str(REPO_ROOT),
    }
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = target.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]

    (event,) = [line for line in lines if line["kind"] == "log"]  # the ordinary line is not written
    assert event["signal"] == "rotation.failed" and event["level"] == "ERROR"
    assert event["reason"] == "Authorization_RequestDenied" and event["failures_in_a_row"] == 2
    assert event["registration_id"] == "reg-1"
    assert event["message"] == "rotation.failed: refused: ***"
    rotations = {
        line["attributes"]["outcome"]: line["value"]
        for line in lines
        if line["kind"] == "metric" and line["name"] == "registrar.rotations"
    }
    assert rotations == {"failed": 2, "rotated": 1}
    assert secret not in text and secret not in completed.stderr
