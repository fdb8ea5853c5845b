"""Child processes the devstack starts: each in its own process group, stopped as a group.

Every child runs in a new session (its own process group) so that stopping it also stops whatever
it started (node's workers, a worker the host spawns), and gets SIGTERM when its parent dies
(Linux PR_SET_PDEATHSIG) so a killed `devstack up` or test run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | IO[Any] | None = subprocess.PIPE,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[str]:
    """Start argv in its own process group, text mode, line-buffered stdout."""
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=True,
        bufsize=1,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509  (only calls prctl; no locks taken)
    )


def stop(proc: subprocess.Popen[Any], *, timeout: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is still there after `timeout`."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    # The leader may exit before the rest of its group: give stragglers a moment, then kill them.
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def kill(proc: subprocess.Popen[Any], *, timeout: float = 10.0) -> None:
    """SIGKILL the child's whole process group at once, as a crashed machine or an OOM kill ends it:
    no shutdown code runs, nothing is flushed, in-flight work is simply gone."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    _signal_group(pgid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies excluded)."""
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes whose process group is pgid (read from /proc)."""
    members: list[int] = []
    for pid in _pids():
        stat = _read_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def descendants(pid: int) -> list[int]:
    """Pids of the live (non-zombie) descendants of pid, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        stat = _read_stat_full(child)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _read_stat_full(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of pid, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _read_stat(pid: int) -> tuple[str, int] | None:
    stat = _read_stat_full(pid)
    return None if stat is None else (stat[0], stat[2])
