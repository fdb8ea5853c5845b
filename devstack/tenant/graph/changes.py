"""What delta queries read: per kind of object, the order in which objects last changed.

Each change takes the next sequence number and moves the object to the end of an insertion-ordered
dict, so the dict is always in sequence order: a delta round reads "everything changed after seq S,
up to seq U" by walking it, and a page resumes after the last sequence number it returned (keyset
paging: an object changed while a round pages moves past U and is read by the next round, never
skipped, never read twice in one round).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

# @removed reasons, as Graph's delta query documents them: "changed" for an object that went to
# deleted items (it can still be restored), "deleted" for one deleted for good.
SOFT_DELETED = "changed"
PURGED = "deleted"


@dataclass(frozen=True)
class Change:
    object_id: str
    seq: int
    removed: str | None  # None: the object exists; else the @removed reason


class ChangeLog:
    def __init__(self) -> None:
        self._latest: dict[str, Change] = {}
        self.seq = 0

    def touch(self, object_id: str) -> None:
        self._record(object_id, None)

    def remove(self, object_id: str, reason: str) -> None:
        self._record(object_id, reason)

    def _record(self, object_id: str, removed: str | None) -> None:
        self.seq += 1
        self._latest.pop(object_id, None)  # re-inserted at the end: the dict stays in seq order
        self._latest[object_id] = Change(object_id, self.seq, removed)

    def after(self, since: int, until: int) -> Iterator[Change]:
        """Changes with since < seq <= until, oldest first."""
        for change in self._latest.values():
            if change.seq > until:
                return
            if change.seq > since:
                yield change


def new_epoch() -> str:
    """Names one life of a directory in this process: delta tokens of another life are expired."""
    return secrets.token_hex(8)
