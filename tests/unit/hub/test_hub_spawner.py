"""The spawner returns as soon as the server's port answers, not a backoff later."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from jupyterhub.utils import random_port
from traitlets.config import Config

from testbed_hub.spawner import TestbedDockerSpawner, wait_for_port


async def listen_after(port: int, delay: float) -> asyncio.AbstractServer:
    await asyncio.sleep(delay)
    return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)


@pytest.mark.asyncio
async def test_returns_within_one_interval_of_the_port_opening():
    port = random_port()
    task = asyncio.create_task(listen_after(port, 0.6))
    t0 = time.monotonic()
    assert await wait_for_port("127.0.0.1", port, timeout=5, interval=0.05)
    elapsed = time.monotonic() - t0
    server = await task
    server.close()
    assert 0.6 <= elapsed < 0.8, elapsed


@pytest.mark.asyncio
async def test_gives_up_at_the_timeout():
    t0 = time.monotonic()
    assert not await wait_for_port("127.0.0.1", random_port(), timeout=0.4, interval=0.05)
    assert 0.4 <= time.monotonic() - t0 < 0.7


@pytest.mark.asyncio
async def test_gives_up_early_when_the_container_exits():
    calls = []

    async def alive():
        calls.append(1)
        return False

    t0 = time.monotonic()
    ok = await wait_for_port(
        "127.0.0.1", random_port(), timeout=10, interval=0.05, alive=alive, alive_every=0.2
    )
    assert not ok and calls == [1]
    assert time.monotonic() - t0 < 0.5


def test_inherits_the_dockerspawner_configuration():
    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:abc"
    c.TestbedDockerSpawner.ready_poll_interval = 0.1
    s = TestbedDockerSpawner(config=c, user=SimpleNamespace(name="alice", id=1, url="/u/"))
    assert s.image == "testbed-hub/notebook:abc"
    assert s.ready_poll_interval == 0.1
