"""`python -m devstack demo` completes its tour against a running stack and prints no secret."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

DEMO_TABLES = 7


def headers_of_tables(output: str) -> list[list[str]]:
    """The header row of every table in the demo's output (the row above a row of dashes), split
    into its columns at the dashes' positions."""
    lines = output.splitlines()
    found = []
    for above, line in itertools.pairwise(lines):
        if line.strip() and set(line.strip()) <= {"-", " "} and "--" in line:
            columns = [(m.start(), m.end()) for m in re.finditer(r"-+", line)]
            found.append([above[start:end].strip() for start, end in columns])
    return found


def test_demo_provisions_rotates_and_shows_the_signed_webhooks(stack: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_text(json.dumps(stack), encoding="utf-8")

    run = subprocess.run(
        [sys.executable, "-m", "devstack", "demo", "--state-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "The secret in Key Vault works" in output
    assert "credential.rotated" in output and "registration.active" in output
    assert "is active on generation 2" in output
    assert "credential.at_risk (signature verified)" in output and "near_expiry" in output
    assert stack["clientSecret"] not in output
    assert "whsec_" not in output  # the webhook signing secret is shown to the caller, not printed
    headers = headers_of_tables(run.stdout)
    # history, app registration, permissions, rotated credential, webhooks, the at-risk event, health
    assert len(headers) == DEMO_TABLES
    assert all(all(columns) for columns in headers), headers


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def test_make_runs_command_serves_the_demo_then_stops_everything_on_sigterm(tmp_path: Path) -> None:
    """What `make run` runs: the stack, the demo once, serving on; SIGTERM then stops every process
    (a signal handler that took a lock once deadlocked here after the demo)."""
    import signal
    import time

    state = tmp_path / "state"
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack",
                "up",
                "--port",
                "0",
                "--state-dir",
                str(state),
                "--settings",
                str(tmp_path / "local.settings.json"),
                "--demo",
                "--managed-identity",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 300
            while "keeps running" not in log.read_text() and time.monotonic() < deadline:
                assert up.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
            output = log.read_text()
            assert "is active on generation 2" in output, output[-3000:]
            assert "Signs in with    the function app's managed identity" in output
            # The console reads as a tour: the host's and the tenant's logs are in files it names.
            host_log = state / "logs" / "host.log"
            assert f"Logs             {state / 'logs'}/ (host.log, tenant.log)" in output
            assert (state / "logs" / "tenant.log").exists()
            assert "Executed 'Functions.create_registration' (Succeeded" in host_log.read_text()
            assert "Executed '" not in output and "HTTP Request" not in output
            headers = headers_of_tables(output)
            assert len(headers) == DEMO_TABLES and all(all(columns) for columns in headers), headers

            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=90) == 0
            # The app's HTTP clients end with the process, as in Azure, without an error per session.
            assert "Unclosed client session" not in log.read_text() + host_log.read_text()
        finally:
            if up.poll() is None:
                up.kill()
    assert _processes_mentioning(str(state)) == []
