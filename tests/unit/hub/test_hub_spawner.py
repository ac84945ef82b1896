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


# --- the image a server was started from (after an upgrade: the previous one) ---------

OLD, NEW = "testbed-hub/notebook:0123456789ab", "testbed-hub/notebook:ba9876543210"


def spawner(image=NEW) -> TestbedDockerSpawner:
    c = Config()
    c.DockerSpawner.image = image
    return TestbedDockerSpawner(config=c, user=SimpleNamespace(name="alice", id=1, url="/u/"))


def test_the_started_image_survives_a_hub_restart_in_the_state():
    s = spawner(OLD)
    s.object_id = "c0ffee"
    s.started_image = OLD  # as start() records it
    state = s.get_state()
    assert state["started_image"] == OLD and state["object_id"] == "c0ffee"
    # the hub restarts with the next release's image configured
    after = spawner(NEW)
    after.load_state(state)
    assert after.started_image == OLD and after.image == NEW
    assert after.outdated_image
    # stopped: nothing left to tell
    after.clear_state()
    assert after.started_image == "" and not after.outdated_image
    assert "started_image" not in after.get_state()


def test_a_server_on_the_configured_image_is_not_outdated():
    s = spawner(NEW)
    s.load_state({"object_id": "c0ffee", "started_image": NEW})
    assert not s.outdated_image
    assert not spawner(NEW).outdated_image  # nothing started


@pytest.mark.asyncio
async def test_a_state_from_before_reads_the_image_from_the_running_container(monkeypatch):
    """The previous release's state has no started_image: the container tells."""
    s = spawner(NEW)
    s.load_state({"object_id": "c0ffee", "object_name": "jupyter-alice"})
    assert s.started_image == "" and not s.outdated_image
    inspected = []

    async def get_object():
        inspected.append(1)
        return {"Id": "c0ffee", "State": {"Running": True}, "Config": {"Image": OLD}}

    monkeypatch.setattr(s, "get_object", get_object)
    assert await s.poll() is None
    assert s.started_image == OLD and s.outdated_image
    assert s.get_state()["started_image"] == OLD
    calls = len(inspected)
    assert await s.poll() is None
    assert len(inspected) == calls + 1  # known now: no second look at the image


@pytest.mark.asyncio
async def test_a_stopped_container_records_no_image(monkeypatch):
    s = spawner(NEW)
    s.load_state({"object_id": "c0ffee"})

    async def get_object():
        return {"Id": "c0ffee", "Config": {"Image": OLD}, "State": _exited()}

    monkeypatch.setattr(s, "get_object", get_object)
    assert await s.poll() is not None
    assert s.started_image == "" and not s.outdated_image


def _exited():
    return {"Running": False, "ExitCode": 0, "Error": "", "FinishedAt": "2026-11-30T07:00:00Z"}


@pytest.mark.asyncio
async def test_start_records_the_configured_image(monkeypatch):
    from dockerspawner import DockerSpawner

    port = random_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)

    async def started(self):
        return "127.0.0.1", port

    monkeypatch.setattr(DockerSpawner, "start", started)
    s = spawner(NEW)
    try:
        assert await s.start() == ("127.0.0.1", port)
    finally:
        server.close()
    assert s.started_image == NEW and not s.outdated_image
