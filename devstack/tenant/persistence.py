"""Saves the tenant's state (directories, vault, bootstrap identities) to --state-dir and loads it back.

Writes are debounced: the first change after a save schedules one save a second later (longer when
snapshots are slow, see SNAPSHOT_BUDGET_FACTOR); shutdown saves whatever is pending. The file is replaced atomically, so a crash never leaves half a state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("devstack.tenant")
STATE_FILE = "state.json"
DEBOUNCE_S = 1.0
# A snapshot runs on the event loop; the next one waits at least this many times as long as the
# last took, so saving never costs more than ~5 % of the tenant's time however large the state.
SNAPSHOT_BUDGET_FACTOR = 20.0


def load(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else None


def _write(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
    temporary.chmod(0o600)  # holds the bootstrap secrets of a local tenant
    temporary.replace(path)


class Saver:
    """mark_dirty() is cheap and safe to call on every write; the snapshot runs on the event loop."""

    def __init__(self, state_dir: Path | None, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        self._snapshot = snapshot
        self._dirty = False
        self._handle: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None
        self._last_snapshot_s = 0.0

    def mark_dirty(self) -> None:
        if self._path is None:
            return
        self._dirty = True
        if self._handle is None:
            loop = asyncio.get_running_loop()
            delay = max(DEBOUNCE_S, SNAPSHOT_BUDGET_FACTOR * self._last_snapshot_s)
            self._handle = loop.call_later(delay, self._save_soon)

    def _save_soon(self) -> None:
        self._handle = None
        if self._writing is not None and not self._writing.done():
            self.mark_dirty()  # a write is under way: try again after the debounce
            return
        text = self._take()
        if text is not None and self._path is not None:
            self._writing = asyncio.get_running_loop().run_in_executor(None, _write, self._path, text)
            self._writing.add_done_callback(_log_failure)

    def _take(self) -> str | None:
        if not self._dirty:
            return None
        self._dirty = False
        started = time.process_time()
        text = json.dumps(self._snapshot(), separators=(",", ":"))
        self._last_snapshot_s = time.process_time() - started
        return text

    async def flush(self) -> None:
        """Save now if anything changed (at shutdown)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._writing is not None:
            await self._writing
        if self._path is not None:
            self._dirty = True  # always write at shutdown: cheap, and captures unmarked changes
            text = self._take()
            if text is not None:
                _write(self._path, text)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("saving the tenant state failed: %s", future.exception())
