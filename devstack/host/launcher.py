"""Start `python -m devstack.host` as a child process (used by `devstack up` and the tests)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devstack import processes

STARTUP_TIMEOUT_S = 60.0


@dataclass
class HostProcess:
    process: subprocess.Popen[str]
    url: str
    functions: list[str]
    log_path: Path | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        processes.stop(self.process)

    def kill(self) -> None:
        """SIGKILL the host and its workers (a crash: no invocation finishes, no message is released)."""
        processes.kill(self.process)

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def first_line(stream: IO[str], timeout: float) -> str | None:
    """The next line of a child's stdout, or None after `timeout` seconds (never blocks forever)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def start_host(
    app_dir: Path,
    *,
    port: int = 0,
    settings_file: Path | None = None,
    state_dir: Path | None = None,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> HostProcess:
    """Run the host on app_dir; returns once it serves (its JSON ready line), else raises RuntimeError."""
    argv = [sys.executable, "-m", "devstack.host", "--app-dir", str(app_dir), "--port", str(port)]
    if settings_file is not None:
        argv += ["--settings", str(settings_file)]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    child_env = dict(os.environ if env is None else env)
    repo_root = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, child_env.get("PYTHONPATH", "")) if p)
    log_file: IO[str] | None = log_path.open("a", encoding="utf-8") if log_path else None
    try:
        proc = processes.spawn(argv, env=child_env, cwd=app_dir, stderr=log_file)  # as Azure: cwd = app root
    finally:
        if log_file is not None:
            log_file.close()  # the child holds its own descriptor
    assert proc.stdout is not None
    line = first_line(proc.stdout, timeout)
    if not line:
        processes.stop(proc)
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(f"devstack host did not start (exit code {proc.poll()}){where}")
    ready = json.loads(line)
    return HostProcess(
        process=proc, url=ready["hostUrl"], functions=list(ready["functions"]), log_path=log_path
    )
