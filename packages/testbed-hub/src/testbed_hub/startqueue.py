"""Servers start in turn: a first-come, first-served line of start slots.

Twenty servers started at once on a 2-core station share the cores, so each takes
as long as all of them: measured, nobody had JupyterLab before 4.9 s and the median
user waited 16.8 s (``make bench``, burst of 20). With at most as many servers
starting as the station has cores, the first users are served in about a second
each and the last about as late as before (measured in the same hour, burst of 20:
last 22.8 s with 2 slots, 25.9 s with none): the same work, done in order.

One :class:`StartQueue` is shared by every spawner of the hub (they run on the
hub's one event loop). A start holds a slot from ``docker create`` until its
server's port answers (``TestbedDockerSpawner.start``); the next in line gets the
slot the moment it is released. A start the hub gives up on while it waits
(``start_timeout``, the user pressing *Stop Server* on the spawn page) leaves the line
and takes no slot. A start holds its slot for at most ``start_slot_seconds``
(``TestbedDockerSpawner``): a server that never listens does not hold up the line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import AsyncIterator, Callable


class StartQueue:
    """At most ``slots`` holders at once (0: no limit); the others wait in arrival order.

    ``on_wait(ahead, starting)`` is called when a start has to wait and each time its
    place changes: ``ahead`` starts are in line before it, ``starting`` hold a slot.
    """

    def __init__(self, slots: int) -> None:
        if slots < 0:
            raise ValueError(f"slots must be 0 (no limit) or more, not {slots}")
        self.slots = slots
        self.starting = 0
        self._line: collections.deque[tuple[asyncio.Future[None], Callable[[int, int], None]]]
        self._line = collections.deque()

    @property
    def waiting(self) -> int:
        """Starts in line for a slot."""
        return len(self._line)

    def _tell(self, since: int = 0) -> None:
        for ahead, (_, on_wait) in enumerate(self._line):
            if ahead >= since:
                on_wait(ahead, self.starting)

    async def acquire(self, on_wait: Callable[[int, int], None] | None = None) -> None:
        """Take a slot, waiting in line when all are held."""
        if self.slots == 0 or (self.starting < self.slots and not self._line):
            self.starting += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append((future, on_wait or (lambda ahead, starting: None)))
        self._line[-1][1](len(self._line) - 1, self.starting)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as the wait was given up
            else:
                place = next(i for i, e in enumerate(self._line) if e[0] is future)
                del self._line[place]
                self._tell(since=place)  # those behind it moved up
            raise

    def release(self) -> None:
        """Give the slot back: to the first in line, if anyone waits."""
        while self._line:
            future, _ = self._line.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes on; ``starting`` is unchanged
                self._tell()
                return
        self.starting -= 1

    @contextlib.asynccontextmanager
    async def slot(self, on_wait: Callable[[int, int], None] | None = None) -> AsyncIterator[None]:
        """``async with queue.slot(on_wait):`` the slot is held inside the block."""
        await self.acquire(on_wait)
        try:
            yield
        finally:
            self.release()


def default_slots() -> int:
    """As many slots as this machine has CPU cores (``os.cpu_count()``, at least 1)."""
    return max(1, os.cpu_count() or 1)


_QUEUES: dict[int, StartQueue] = {}


def shared(slots: int) -> StartQueue:
    """The hub's queue for ``slots`` (one per value: every spawner of a hub is configured
    alike, so a hub has one)."""
    queue = _QUEUES.get(slots)
    if queue is None:
        queue = _QUEUES[slots] = StartQueue(slots)
    return queue
