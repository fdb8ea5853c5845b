"""Shared helpers (response header names lowercased) for the host tests: run the sample app in the devstack host, read what it recorded."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from devstack.host.launcher import HostProcess, start_host

SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
T = TypeVar("T")


def write_settings(path: Path, values: Mapping[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": dict(values)}), encoding="utf-8")
    return path


def start_sample_host(tmp: Path, values: Mapping[str, str], state_dir: Path | None = None) -> HostProcess:
    settings = write_settings(tmp / "local.settings.json", values)
    return start_host(
        SAMPLE_APP, settings_file=settings, state_dir=state_dir or tmp / "state", log_path=tmp / "host.log"
    )


def sample_values(azurite: str, queue_name: str, record_dir: Path) -> dict[str, str]:
    """Settings for the sample app with only its queue function on `queue_name` running (timers off)."""
    return {
        "SampleStorage": azurite,
        "SAMPLE_QUEUE": queue_name,
        "SAMPLE_RECORD_DIR": str(record_dir),
        "SAMPLE_SCHEDULE": "0 0 0 1 1 *",
        "SAMPLE_SLOW_SCHEDULE": "0 0 0 1 1 *",
        "AzureWebJobs.every_second.Disabled": "true",
        "AzureWebJobs.slow_timer.Disabled": "true",
        "AzureWebJobs.plain_text.Disabled": "true",
    }


def records(folder: Path, kind: str) -> list[dict[str, Any]]:
    """What the sample app's functions recorded, oldest first."""
    if not folder.exists():
        return []
    files = sorted(folder.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def wait_for(probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll until probe() returns something truthy; fail (never hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
