"""Per-connection state: the number ``hello`` reports and who is logged in."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any


@dataclass
class Connection:
    """One client connection (authentication conversation and user)."""

    number: int
    user: str | None = None
    scram: dict[str, Any] | None = None


class ConnectionTable:
    """Maps mockupdb's per-connection socket to its :class:`Connection`.

    Held weakly, so a closed connection's state goes with its socket. Not
    thread-safe on its own: the dispatcher calls it under its lock.
    """

    def __init__(self) -> None:
        self._conns: weakref.WeakKeyDictionary[Any, Connection] = weakref.WeakKeyDictionary()
        self._counter = 0

    def get(self, sock: Any) -> Connection:
        """The connection of ``sock``; a new, numbered one the first time (or for None)."""
        conn = self._conns.get(sock) if sock is not None else None
        if conn is None:
            self._counter += 1
            conn = Connection(number=self._counter)
            if sock is not None:
                self._conns[sock] = conn
        return conn
