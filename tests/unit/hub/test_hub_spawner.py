"""The spawner returns as soon as the server's port answers, not a backoff later.

``wait_for_port`` runs on a fake clock here: every ``sleep`` advances it by
exactly the requested seconds, so the tests check the polling schedule
(attempts, deadline, liveness checks) without real waiting and without time
windows that a busy machine could miss. The connection attempts are real.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from jupyterhub.utils import random_port
from traitlets.config import Config

from testbed_hub.spawner import TestbedDockerSpawner, wait_for_port


class FakeClock:
    """``clock``/``sleep`` for ``wait_for_port``; optionally opens the port at ``open_at``."""

    def __init__(self, port: int, open_at: float | None = None):
        self.now = 0.0
        self.port = port
        self.open_at = open_at
        self.sleeps: list[float] = []
        self.server: asyncio.AbstractServer | None = None
        self.opened_at: float | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.open_at is not None and self.server is None and self.now >= self.open_at:
            self.server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", self.port)
            self.opened_at = self.now

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.asyncio
async def test_returns_at_the_first_attempt_after_the_port_opens():
    clock = FakeClock(random_port(), open_at=1.0)
    try:
        ok = await wait_for_port(
            "127.0.0.1", clock.port, timeout=5, interval=0.25, clock=clock, sleep=clock.sleep
        )
    finally:
        clock.close()
    assert ok
    assert clock.opened_at == 1.0
    # attempts at 0, 0.25, 0.5, 0.75 fail; the one at 1.0, right after the port opened, wins
    assert clock.sleeps == [0.25] * 4
    assert clock.now == clock.opened_at


@pytest.mark.asyncio
async def test_gives_up_at_the_timeout():
    clock = FakeClock(random_port())
    ok = await wait_for_port(
        "127.0.0.1", clock.port, timeout=0.9, interval=0.25, clock=clock, sleep=clock.sleep
    )
    assert not ok
    # the last wait is cut to the deadline, and no attempt is made after it
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25, 0.15])
    assert clock.now == pytest.approx(0.9)


@pytest.mark.asyncio
async def test_gives_up_early_when_the_container_exits():
    calls = []

    async def alive():
        calls.append(clock.now)
        return False

    clock = FakeClock(random_port())
    ok = await wait_for_port(
        "127.0.0.1",
        clock.port,
        timeout=10,
        interval=0.25,
        alive=alive,
        alive_every=1.0,
        clock=clock,
        sleep=clock.sleep,
    )
    assert not ok
    # asked once, after alive_every, and stopped there instead of at the 10 s timeout
    assert calls == [1.0]
    assert clock.now == 1.0


@pytest.mark.asyncio
async def test_asks_the_container_every_alive_every_while_waiting():
    calls = []

    async def alive():
        calls.append(clock.now)
        return True

    clock = FakeClock(random_port(), open_at=2.5)
    try:
        ok = await wait_for_port(
            "127.0.0.1",
            clock.port,
            timeout=10,
            interval=0.25,
            alive=alive,
            alive_every=1.0,
            clock=clock,
            sleep=clock.sleep,
        )
    finally:
        clock.close()
    assert ok and clock.now == 2.5
    assert calls == [1.0, 2.0]


def test_inherits_the_dockerspawner_configuration():
    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:abc"
    c.TestbedDockerSpawner.ready_poll_interval = 0.1
    s = TestbedDockerSpawner(config=c, user=SimpleNamespace(name="alice", id=1, url="/u/"))
    assert s.image == "testbed-hub/notebook:abc"
    assert s.ready_poll_interval == 0.1
