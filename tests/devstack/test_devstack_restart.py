"""Stopping `python -m devstack up` and starting it again on the same port at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import REPO_ROOT, free_port
from tests.devstack.harness import SAMPLE_APP, http, wait_for
from tests.devstack.test_devstack_up import read_endpoints

TIME_WAIT = "06"  # the socket state in /proc/net/tcp


class Up:
    """One `python -m devstack up` on the sample app, its output in a file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.state_dir = tmp / "state"
        argv = [sys.executable, "-m", "devstack", "up", "--state-dir", str(self.state_dir)]
        argv += ["--app-dir", str(SAMPLE_APP), "--settings", str(tmp / "local.settings.json"), *args]
        self.output = tmp / "up.log"
        with self.output.open("a") as log:
            self.process = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def ready(self) -> dict[str, Any]:
        def endpoints() -> dict[str, Any] | None:
            assert self.process.poll() is None, self.output.read_text()[-3000:]
            return read_endpoints(self.state_dir / "endpoints.json")

        return wait_for(endpoints, timeout=120, interval=0.2)

    def stop(self, signum: signal.Signals = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


def time_wait_connections(port: int) -> int:
    """Connections in TIME_WAIT whose local end is 127.0.0.1:port (what a closing server leaves)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, local_port = fields[1].split(":")
        if int(local_port, 16) == port and address == "0100007F" and fields[3] == TIME_WAIT:
            count += 1
    return count


def test_a_restart_right_after_ctrl_c_comes_up_on_the_same_port(tmp_path: Path, ups: list[Up]) -> None:
    port = free_port()
    first = Up(tmp_path, "--port", str(port))
    ups.append(first)
    url = first.ready()["hostUrl"]
    assert url == f"http://127.0.0.1:{port}"
    for _ in range(3):  # each closed by the host after its response (the client asks Connection: close)
        assert http("GET", f"{url}/api/items/{uuid.uuid4()}")[0] == 200
    assert first.stop() == 0

    # A stopped server's connections linger in TIME_WAIT for a minute: they are no listener.
    assert time_wait_connections(port) > 0
    second = Up(tmp_path, "--port", str(port))
    ups.append(second)
    assert second.ready()["hostUrl"] == url
    assert http("GET", f"{url}/api/items/{uuid.uuid4()}")[0] == 200
    assert second.stop() == 0
    assert "in use" not in first.output.read_text()
