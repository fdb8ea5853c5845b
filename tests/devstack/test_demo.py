"""`python -m devstack demo` completes its tour against a running stack and prints no secret."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.stack import start_stack

REPO = Path(__file__).resolve().parents[2]

# The demo's tables, by their headers, in the order it prints them.
HISTORY = ["step", "outcome", "at (UTC)", "detail"]
APP = ["app registration", "value"]
PERMISSIONS = ["resource", "type", "permission (admin consent granted)"]
ROTATED = ["rotated credential", "value"]
WEBHOOKS = ["type", "webhook-id", "timestamp"]
AT_RISK = ["credential.at_risk (signature verified): reason", "keyId", "expires", "days left"]
HEALTH = ["registration", "reason", "days left"]
INVENTORY = ["app", "connector match", "credential", "expires in", "managed?"]
APP_CREDENTIALS = ["keyId", "credential", "ends", "whose"]
TOUR = [HISTORY, APP, PERMISSIONS, ROTATED, WEBHOOKS, AT_RISK, HEALTH, INVENTORY]
ADOPTED_APP = re.compile(
    r'Adopt "(?P<name>[^"]+)" \(appId (?P<app>[0-9a-f-]{36}), profile (?P<profile>[a-z0-9-]+)\)'
)


def tables(output: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table in the demo's output: its header (the row above a row of dashes) and its rows
    (the lines below, up to the first blank or unindented one), split at the dashes' columns."""
    lines = output.splitlines()
    found = []
    for index, (above, line) in enumerate(itertools.pairwise(lines)):
        if line.strip() and set(line.strip()) <= {"-", " "} and "--" in line:
            columns = [(m.start(), m.end()) for m in re.finditer(r"-+", line)]

            def cells(text: str, columns: list[tuple[int, int]] = columns) -> list[str]:
                # The last column runs to the end of the line (a wide value is not cut).
                bounds = [*columns[:-1], (columns[-1][0], len(text))]
                return [text[start:end].strip() for start, end in bounds]

            rows = []
            for below in lines[index + 2 :]:
                if not below.startswith("    ") or not below.strip() or below.lstrip().startswith("("):
                    break
                rows.append(cells(below))
            found.append((cells(above), rows))
    return found


def column(rows: list[list[str]], header: list[str], name: str) -> list[str]:
    return [row[header.index(name)] for row in rows]


def assert_tour(output: str) -> dict[str, Any]:
    """The demo's tables, by name and content; returns what step 8 showed of the adopted app."""
    found = tables(output)
    headers = [header for header, _ in found]
    assert headers[: len(TOUR)] == TOUR, headers
    by_header = {tuple(header): rows for header, rows in found[: len(TOUR)]}
    steps = column(by_header[tuple(HISTORY)], HISTORY, "step")
    assert {"accepted", "app", "credential", "verify", "consent", "active"} <= set(steps), steps
    assert any(
        row[0] == "new keyId" and re.fullmatch(r"[0-9a-f-]{36}", row[1]) for row in by_header[tuple(ROTATED)]
    )
    types = column(by_header[tuple(WEBHOOKS)], WEBHOOKS, "type")
    assert types == ["registration.active", "credential.rotated"], types
    assert column(by_header[tuple(AT_RISK)], AT_RISK, AT_RISK[0]) == ["near_expiry"]

    # Step 6: the inventory, hand-made apps beside the demo's own registrations.
    inventory = by_header[tuple(INVENTORY)]
    managed = column(inventory, INVENTORY, "managed?")
    assert "no" in managed and any(re.fullmatch(r"yes \(reg-[0-9a-f]{24}\)", m) for m in managed), inventory
    matches = column(inventory, INVENTORY, "connector match")
    assert any(m.startswith("codetwo-") for m in matches), matches
    assert all(re.fullmatch(r"[a-z0-9-]+ \((exact|superset \+\d+|subset -\d+)\)", m) for m in matches), (
        matches
    )
    assert all(
        re.fullmatch(r"expired (\d+ d ago|today)|in \d+ [hdy]|never \(2299\)", e)
        for e in column(inventory, INVENTORY, "expires in")
    ), inventory
    # Step 7: a hand-made CodeTwo app, whose row said it was not managed, adopted once owned.
    adopted = ADOPTED_APP.search(output)
    assert adopted is not None and adopted["profile"].startswith("codetwo-"), output[-3000:]
    unmanaged = [row for row in inventory if row[0] == adopted["name"][:44]]
    assert unmanaged and all(row[4] == "no" for row in unmanaged), inventory
    assert "az ad app owner add --id " + adopted["app"] in output
    assert "200: status adopting" in output or "200: status active" in output

    # Step 8: the app's credentials as Graph holds them, before and after the overlap.
    credentials = [rows for header, rows in found[len(TOUR) :] if header == APP_CREDENTIALS]
    whose = [column(rows, APP_CREDENTIALS, "whose") for rows in credentials]
    assert len(credentials) == 2, found[len(TOUR) :]
    before, after = whose
    assert any(w.startswith("Registrar's (generation 1)") for w in before), before
    assert any(w.startswith("the person's: kept until") for w in before), before
    # The retiring ones are gone; only a found certificate, which is never retired, may stay.
    assert not any(w.startswith("the person's: kept until") for w in after), after
    kept = [row for row in credentials[1] if row[3].startswith("the person's")]
    assert all(row[1].startswith("certificate") for row in kept), kept
    assert any(w.startswith("Registrar's (generation 1)") for w in after), after
    assert "the person's secret is gone from Graph" in output
    assert (
        "The connector was told (signatures verified): credential.rotated (adopted), credential.retired"
        in output
    )
    return {
        "appId": adopted["app"],
        "keyIds": [column(rows, APP_CREDENTIALS, "keyId") for rows in credentials],
    }


async def graph_key_ids(endpoints: dict[str, Any], app_id: str) -> list[str]:
    """The app's credentials, read by an independent client (msgraph-sdk as the administrator)."""
    from tests.e2e.test_inventory import admin_graph, close

    client = admin_graph(endpoints)
    found = await client.applications_with_app_id(app_id).get()
    await close(client)
    return sorted(
        str(c.key_id) for c in [*(found.password_credentials or []), *(found.key_credentials or [])]
    )


def test_demo_provisions_rotates_adopts_and_shows_its_tables(tmp_path: Path, tenant_ca_dir: Path) -> None:
    """`python -m devstack demo` against a stack configured as `up --demo` configures it (its short
    overlap), whose tenant starts without hand-made apps: the demo makes its handful first."""
    from devstack.demo import DEMO_HOST_SETTINGS

    running = start_stack(
        tmp_path / "stack", ca_dir=tenant_ca_dir, settings=DEMO_HOST_SETTINGS, managed_identity=True
    )
    try:
        stack = running.endpoints
        (tmp_path / "endpoints.json").write_text(json.dumps(stack), encoding="utf-8")
        run = subprocess.run(
            [sys.executable, "-m", "devstack", "demo", "--state-dir", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-4000:]
        assert "The secret in Key Vault works" in output
        assert "is active on generation 2" in output
        assert "the administrator makes a handful, as people do in the portal" in output
        shown = assert_tour(run.stdout)
        # What the last table showed is what Graph holds.
        assert sorted(shown["keyIds"][-1]) == asyncio.run(graph_key_ids(stack, shown["appId"]))
        for secret in (stack["clientSecret"], stack["adminClientSecret"]):
            assert secret not in output
        assert "whsec_" not in output  # the webhook signing secret is shown to the caller, not printed
    finally:
        running.stop()


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
            deadline = time.monotonic() + 540
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
            assert "REGISTRAR_ROTATION_OVERLAP=PT30S (this run only)" in output
            # The demo's overlap is the host's for that run only, not the developer's settings file.
            written = json.loads((tmp_path / "local.settings.json").read_text(encoding="utf-8"))["Values"]
            assert written["REGISTRAR_ROTATION_OVERLAP"] == "P1D"
            endpoints = json.loads((state / "endpoints.json").read_text(encoding="utf-8"))
            assert endpoints["adminClientSecret"] not in output and endpoints["clientSecret"] not in output
            assert_tour(output)

            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=90) == 0
            # The app's HTTP clients end with the process, as in Azure, without an error per session.
            assert "Unclosed client session" not in log.read_text() + host_log.read_text()
        finally:
            if up.poll() is None:
                up.kill()
    assert _processes_mentioning(str(state)) == []
