"""DockerSpawner that hands the server to the hub the moment its port answers.

JupyterHub checks a new server with an exponential backoff (waits of up to
0.2, 0.4, 0.8, 1.6, 3.2 s ... with jitter) that starts when ``start()`` returns,
i.e. right after ``docker start``. A server that needs about 2 s to load its
extensions is then found 1 to 4 s late: measured on the demo, the server
listened 1.9 s after ``docker start`` and the hub noticed it 3.8 s later.

``start()`` here returns only once the container's port accepts a TCP
connection (polled every ``ready_poll_interval`` seconds, bounded by
``http_timeout``, giving up early when the container exits), so the hub's first
check already succeeds.

It also remembers the image each server was started from (``started_image``, kept
in the spawner's state in the hub database; for a server started before that, read
from its container when the hub finds it running). After an upgrade moves the hub
to a new notebook image, a running server keeps the previous one until it is
stopped and started again: ``outdated_image`` says so, and the hub's home page
(``templates/home.html``) tells the user.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from dockerspawner import DockerSpawner
from traitlets import Float, Unicode


async def wait_for_port(
    ip: str,
    port: int,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], Awaitable[bool]] | None = None,
    alive_every: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> bool:
    """True once ``ip:port`` accepts a connection; False on timeout or when ``alive`` says no.

    ``clock`` and ``sleep`` measure and spend the waiting time (``time.monotonic``
    and ``asyncio.sleep``); the unit tests pass a fake clock to check the schedule
    without waiting for real.
    """
    deadline = clock() + timeout
    next_alive = clock() + alive_every
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout=1.0)
        except (TimeoutError, OSError):
            pass
        else:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return True
        now = clock()
        if now >= deadline:
            return False
        if alive is not None and now >= next_alive:
            next_alive = now + alive_every
            if not await alive():
                return False
        await sleep(min(interval, max(0.0, deadline - now)))


class TestbedDockerSpawner(DockerSpawner):
    """``DockerSpawner`` + wait for the server's port before returning from ``start()``,
    + the image the server was started from (``started_image``, ``outdated_image``)."""

    __test__ = False  # not a pytest test class despite the name

    ready_poll_interval = Float(
        0.05,
        config=True,
        help="Seconds between connection attempts to a starting server's port.",
    )

    started_image = Unicode(
        "",
        help="The image the running server was started from ('' when stopped or not known).",
    )

    @property
    def outdated_image(self) -> bool:
        """The running server's image is not the configured one (an upgrade moved on)."""
        return bool(self.started_image) and self.started_image != self.image

    def get_state(self):
        state = super().get_state()
        if self.started_image:
            state["started_image"] = self.started_image
        return state

    def load_state(self, state):
        super().load_state(state)
        # absent from the state of a server started by an earlier version: poll() reads it
        self.started_image = state.get("started_image", "") or ""

    def clear_state(self):
        super().clear_state()
        self.started_image = ""

    async def poll(self):
        status = await super().poll()
        if status is None and not self.started_image:
            # running, started before the image was recorded: its container's image
            container = await self.get_object()
            if container:
                self.started_image = (container.get("Config") or {}).get("Image") or ""
        return status

    async def _container_running(self) -> bool:
        return await self.poll() is None

    async def start(self):
        ip, port = await super().start()
        # DockerSpawner.remove is on: start() always created the container from self.image
        self.started_image = self.image
        t0 = time.monotonic()
        ready = await wait_for_port(
            ip,
            port,
            timeout=self.http_timeout,
            interval=self.ready_poll_interval,
            alive=self._container_running,
        )
        self.log.info(
            "Server of %s %s on %s:%s after %.2f s",
            self.user.name,
            "listening" if ready else "not listening (the hub's own check decides)",
            ip,
            port,
            time.monotonic() - t0,
        )
        return ip, port
