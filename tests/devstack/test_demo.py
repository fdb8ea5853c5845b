"""`python -m devstack demo` completes its tour against a running stack and prints no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


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
    assert stack["clientSecret"] not in output
    assert "whsec_" not in output  # the webhook signing secret is shown to the caller, not printed
