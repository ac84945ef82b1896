"""Servers start in turn (testbed_hub.startqueue): at most ``slots`` at once, the
others in arrival order, each told its place; a start given up while waiting takes
no slot. Then the spawner: its starts really go through the hub's one queue."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from testbed_hub import startqueue
from testbed_hub.spawner import TestbedDockerSpawner
from testbed_hub.startqueue import StartQueue


@pytest.fixture(autouse=True)
def fresh_queues(monkeypatch):
    """Every test with the hub's queues empty (a slot a failed test kept would stall the next)."""
    monkeypatch.setattr(startqueue, "_QUEUES", {})


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_no_more_than_the_slots_start_at_once_and_the_rest_go_in_arrival_order():
    queue = StartQueue(2)
    gates = {n: asyncio.Event() for n in range(5)}
    entered: list[int] = []
    most = 0

    async def start(n: int) -> None:
        nonlocal most
        async with queue.slot():
            entered.append(n)
            most = max(most, queue.starting)
            await gates[n].wait()

    tasks = []
    for n in range(5):
        tasks.append(asyncio.ensure_future(start(n)))
        await _settle()  # they arrive one after the other
    assert entered == [0, 1] and queue.starting == 2 and queue.waiting == 3
    gates[1].set()  # the second finishes first: the first in line gets its slot
    await _settle()
    assert entered == [0, 1, 2]
    for n in (0, 2, 3, 4):
        gates[n].set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3, 4]
    assert most == 2
    assert queue.starting == 0 and queue.waiting == 0


@pytest.mark.asyncio
async def test_each_waiting_start_is_told_its_place_as_the_line_moves():
    queue = StartQueue(1)
    told: dict[str, list[tuple[int, int]]] = {"b": [], "c": []}
    await queue.acquire()  # a holds the one slot
    b = asyncio.ensure_future(queue.acquire(lambda *p: told["b"].append(p)))
    await _settle()
    c = asyncio.ensure_future(queue.acquire(lambda *p: told["c"].append(p)))
    await _settle()
    assert told == {"b": [(0, 1)], "c": [(1, 1)]}  # (ahead of it, starting now)
    queue.release()  # a is done: b starts, c is next
    await _settle()
    assert b.done() and not c.done()
    assert told["c"] == [(1, 1), (0, 1)]
    queue.release()
    await _settle()
    assert c.done()
    queue.release()
    assert queue.starting == 0


@pytest.mark.asyncio
async def test_a_start_given_up_while_waiting_leaves_the_line_and_takes_no_slot():
    queue = StartQueue(1)
    told: list[tuple[int, int]] = []
    await queue.acquire()
    gone = asyncio.ensure_future(queue.acquire())
    await _settle()
    last = asyncio.ensure_future(queue.acquire(lambda *p: told.append(p)))
    await _settle()
    gone.cancel()  # start_timeout, or the user pressed Cancel
    await _settle()
    assert gone.cancelled()
    assert queue.waiting == 1 and told[-1] == (0, 1)  # moved up
    queue.release()
    await _settle()
    assert last.done() and queue.starting == 1
    queue.release()
    assert queue.starting == 0 and queue.waiting == 0


@pytest.mark.asyncio
async def test_a_slot_handed_over_just_as_the_wait_is_given_up_is_passed_on():
    queue = StartQueue(1)
    await queue.acquire()
    late = asyncio.ensure_future(queue.acquire())
    after = asyncio.ensure_future(queue.acquire())
    await _settle()
    queue.release()  # the slot goes to ``late`` ...
    late.cancel()  # ... which is cancelled before it runs again
    await _settle()
    assert late.cancelled()
    assert after.done()  # the slot was not lost
    assert queue.starting == 1
    queue.release()
    assert queue.starting == 0


@pytest.mark.asyncio
async def test_zero_slots_is_no_limit():
    queue = StartQueue(0)
    for _ in range(50):
        await asyncio.wait_for(queue.acquire(), 1)
    assert queue.starting == 50 and queue.waiting == 0


def test_a_negative_number_of_slots_is_refused():
    with pytest.raises(ValueError, match="0 .no limit. or more"):
        StartQueue(-1)


def test_the_default_is_the_machines_cores(monkeypatch):
    monkeypatch.setattr(startqueue.os, "cpu_count", lambda: 6)
    assert startqueue.default_slots() == 6
    monkeypatch.setattr(startqueue.os, "cpu_count", lambda: None)
    assert startqueue.default_slots() == 1
    s = TestbedDockerSpawner(user=SimpleNamespace(name="u", id=1, url="/u/"))
    assert s.concurrent_starts == 1


# -- the spawner: every start of the hub goes through one queue ------------------------


@pytest.mark.asyncio
async def test_the_spawners_of_a_hub_start_in_turn_and_the_spawn_page_says_so(
    monkeypatch, quick_start
):
    from dockerspawner import DockerSpawner

    running = 0
    most = 0
    gates: dict[str, asyncio.Event] = {}

    async def docker_start(self):  # DockerSpawner.start: the container runs
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gates[self.user.name].wait()
        running -= 1
        return "127.0.0.1", 1

    monkeypatch.setattr(DockerSpawner, "start", docker_start)
    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:abc"
    c.TestbedDockerSpawner.concurrent_starts = 2
    users = ["u0", "u1", "u2", "u3"]
    spawners = [
        TestbedDockerSpawner(config=c, user=SimpleNamespace(name=u, id=i, url=f"/{u}/"))
        for i, u in enumerate(users)
    ]
    for u in users:
        gates[u] = asyncio.Event()
    tasks = []
    for s in spawners:
        tasks.append(asyncio.ensure_future(s.start()))
        await _settle()
    assert running == 2
    messages = [e["message"] for e in spawners[3]._progress_events]
    assert messages == ["Waiting to start: 2 servers are starting, 1 ahead of yours"]
    gates["u0"].set()
    await _settle()
    assert [e["message"] for e in spawners[3]._progress_events][-1] == (
        "Waiting to start: 2 servers are starting, yours is next"
    )
    assert spawners[2]._progress_events[-1]["message"].startswith("Starting your container")
    for u in users:
        gates[u].set()
    assert await asyncio.gather(*tasks) == [("127.0.0.1", 1)] * 4
    assert most == 2
    assert startqueue.shared(2).starting == 0


@pytest.mark.asyncio
async def test_only_the_starts_behind_a_cancelled_one_are_told_they_moved():
    queue = StartQueue(1)
    told: dict[str, list[tuple[int, int]]] = {"a": [], "c": []}
    await queue.acquire()
    a = asyncio.ensure_future(queue.acquire(lambda *p: told["a"].append(p)))
    await _settle()
    b = asyncio.ensure_future(queue.acquire())
    await _settle()
    c = asyncio.ensure_future(queue.acquire(lambda *p: told["c"].append(p)))
    await _settle()
    b.cancel()
    await _settle()
    assert told == {"a": [(0, 1)], "c": [(2, 1), (1, 1)]}
    a.cancel()
    c.cancel()
    await _settle()
    queue.release()
    assert queue.starting == 0 and queue.waiting == 0


@pytest.mark.asyncio
async def test_an_error_inside_the_slot_gives_it_back():
    queue = StartQueue(1)
    with pytest.raises(RuntimeError):
        async with queue.slot():
            raise RuntimeError("docker create failed")
    assert queue.starting == 0
    await asyncio.wait_for(queue.acquire(), 1)  # the next start is not held up


def _spawner(c: Config, name: str, i: int = 1) -> TestbedDockerSpawner:
    return TestbedDockerSpawner(config=c, user=SimpleNamespace(name=name, id=i, url=f"/{name}/"))


def _config(slots: int) -> Config:
    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:abc"
    c.TestbedDockerSpawner.concurrent_starts = slots
    return c


@pytest.mark.asyncio
async def test_a_failed_or_timed_out_start_gives_its_slot_back(monkeypatch):
    from dockerspawner import DockerSpawner

    async def fails(self):
        raise RuntimeError("image not found")

    async def hangs(self):
        await asyncio.sleep(3600)

    monkeypatch.setattr(DockerSpawner, "start", fails)
    with pytest.raises(RuntimeError, match="image not found"):
        await _spawner(_config(1), "u1").start()
    assert startqueue.shared(1).starting == 0
    # JupyterHub runs start() under asyncio.wait_for(start_timeout)
    monkeypatch.setattr(DockerSpawner, "start", hangs)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_spawner(_config(1), "u2").start(), 0.05)
    assert startqueue.shared(1).starting == 0 and startqueue.shared(1).waiting == 0


@pytest.mark.asyncio
async def test_a_server_that_does_not_listen_leaves_the_line_after_start_slot_seconds(
    monkeypatch, quick_start
):
    """Its slot goes to the next start; it goes on waiting for its port outside the line."""
    from dockerspawner import DockerSpawner

    async def docker_start(self):
        return "127.0.0.1", 1

    waits: list[tuple[str, float]] = []
    listening = asyncio.Event()

    async def port(self, ip, p, timeout):
        waits.append((self.user.name, timeout))
        if self.user.name == "slow" and len(waits) == 1:
            await asyncio.sleep(0.05)  # the hold limit runs out: not listening yet
            return False
        if self.user.name == "slow":
            await listening.wait()
        return True

    monkeypatch.setattr(DockerSpawner, "start", docker_start)
    monkeypatch.setattr(TestbedDockerSpawner, "_port_answers", port)
    c = _config(1)
    c.TestbedDockerSpawner.start_slot_seconds = 2.0
    c.DockerSpawner.http_timeout = 30
    slow = asyncio.ensure_future(_spawner(c, "slow").start())
    await _settle()
    nxt = await asyncio.wait_for(_spawner(c, "next", 2).start(), 5)  # not held up
    assert nxt == ("127.0.0.1", 1)
    assert not slow.done()
    listening.set()
    assert await asyncio.wait_for(slow, 5) == ("127.0.0.1", 1)
    # inside the line for at most start_slot_seconds, then the rest of http_timeout
    slow_waits = [t for name, t in waits if name == "slow"]
    assert [t for name, t in waits if name == "next"] == [2.0]
    assert slow_waits[0] == 2.0 and 29.0 < slow_waits[1] <= 30.0 and len(slow_waits) == 2
    assert startqueue.shared(1).starting == 0


@pytest.mark.asyncio
async def test_one_server_starting_is_said_in_the_singular():
    s = _spawner(_config(1), "u")
    s._waiting(0, 1)
    s._waiting(3, 1)
    assert [e["message"] for e in s._progress_events] == [
        "Waiting to start: 1 server is starting, yours is next",
        "Waiting to start: 1 server is starting, 3 ahead of yours",
    ]
