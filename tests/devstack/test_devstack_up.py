"""`python -m devstack up` brings the stack up, serves the app, and leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack import processes
from devstack.stack import REPO_ROOT
from tests.devstack.harness import SAMPLE_APP, http, wait_for


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_endpoints(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def test_devstack_up_serves_the_app_and_sigterm_stops_every_child(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    settings = tmp_path / "local.settings.json"
    argv = [sys.executable, "-m", "devstack", "up", "--port", "0", "--state-dir", str(state_dir)]
    argv += ["--app-dir", str(SAMPLE_APP), "--settings", str(settings), "--verbose"]
    with (tmp_path / "up.log").open("w") as log:
        up = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        endpoints = wait_for(lambda: read_endpoints(state_dir / "endpoints.json"), timeout=90, interval=0.2)
        children = processes.descendants(up.pid)
        assert len(children) >= 3  # Azurite, the tenant and the host, at least

        item = str(uuid.uuid4())
        status, _, body = http("GET", f"{endpoints['hostUrl']}/api/items/{item}")
        assert status == 200
        assert json.loads(body)["id"] == item
        assert json.loads(body)["greeting"] == "hello from the sample settings"  # from the sample settings

        values = json.loads(settings.read_text())["Values"]
        assert values["AzureWebJobsStorage"] == endpoints["storageConnectionString"]
        assert values["REGISTRAR_CLIENT_ID"] == endpoints["clientId"]
        assert values["SSL_CERT_FILE"] == endpoints["caFile"]
        assert oct(settings.stat().st_mode & 0o777) == "0o600"

        # A second stack on the same state dir refuses to start and leaves the running one alone.
        second = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert "already runs" in second.stderr
        assert read_endpoints(state_dir / "endpoints.json") == endpoints

        # --verbose: the host logs to the console (the file behind up's stderr), not to logs/host.log.
        assert "Executed 'Functions.get_item' (Succeeded" in (tmp_path / "up.log").read_text()
        assert not (state_dir / "logs" / "host.log").exists()

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        assert [pid for pid in children if alive(pid)] == []
        assert not (state_dir / "endpoints.json").exists()
    finally:
        if up.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=10)


def test_stack_fixture_serves_the_repository_app(stack: dict[str, Any]) -> None:
    status, _, body = http("GET", f"{stack['hostUrl']}/admin/host/status")
    assert status == 200
    assert json.loads(body)["state"] == "Running"
    status, _, body = http("GET", f"{stack['hostUrl']}/admin/functions")
    assert status == 200
    assert sorted(f["name"] for f in json.loads(body)) == sorted(stack["functions"])
    # The test process trusts the stack's tenant: the official SDK reaches its Key Vault unchanged.
    credential = ClientSecretCredential(
        stack["tenantId"],
        stack["clientId"],
        stack["clientSecret"],
        authority=stack["authority"],
        disable_instance_discovery=True,
    )
    secrets = SecretClient(stack["vaultUrl"], credential, verify_challenge_resource=False)
    name = f"stack-check-{uuid.uuid4().hex[:8]}"
    secrets.set_secret(name, "value-1")
    assert secrets.get_secret(name).value == "value-1"
