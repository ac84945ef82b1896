"""Server-side cursors: the first batch of a result, the rest kept for ``getMore``."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bson.int64 import Int64

DEFAULT_BATCH = 101
CURSOR_IDLE_S = 600.0
MAX_CURSORS = 10000


@dataclass
class Cursor:
    ns: str
    docs: list[dict[str, Any]]
    batch_size: int | None
    owner: Any
    touched: float = field(default_factory=time.monotonic)


class CursorStore:
    """Open cursors by id. Idle ones expire after :data:`CURSOR_IDLE_S`; at most
    :data:`MAX_CURSORS` are kept (the oldest go first).

    Not thread-safe on its own: the dispatcher calls it under its lock.
    """

    def __init__(self) -> None:
        self._cursors: dict[int, Cursor] = {}

    def __len__(self) -> int:
        return len(self._cursors)

    def reply(
        self, ns: str, docs: list[dict[str, Any]], batch: int | None, owner: Any, first: bool
    ) -> dict[str, Any]:
        """The ``cursor`` reply of find/aggregate (``first``) or getMore; keeps the rest."""
        size = DEFAULT_BATCH if batch is None else batch
        if batch is not None and batch == 0 and first:
            size = 0
        elif size <= 0:
            size = len(docs)
        out, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            self._expire()
            cursor_id = secrets.randbelow(2**62) + 1
            self._cursors[cursor_id] = Cursor(ns=ns, docs=rest, batch_size=batch, owner=owner)
        key = "firstBatch" if first else "nextBatch"
        return {"cursor": {"id": Int64(cursor_id), "ns": ns, key: out}}

    def take(self, cursor_id: int) -> Cursor | None:
        """Remove and return the cursor (getMore re-registers what is left)."""
        return self._cursors.pop(cursor_id, None)

    def kill(self, cursor_id: int) -> bool:
        """Close the cursor; False when there was none with that id."""
        return self._cursors.pop(cursor_id, None) is not None

    def _expire(self) -> None:
        now = time.monotonic()
        for cid in [c for c, cur in self._cursors.items() if now - cur.touched > CURSOR_IDLE_S]:
            del self._cursors[cid]
        if len(self._cursors) >= MAX_CURSORS:
            oldest = sorted(self._cursors, key=lambda c: self._cursors[c].touched)
            for cid in oldest[: len(self._cursors) - MAX_CURSORS + 1]:
                del self._cursors[cid]
