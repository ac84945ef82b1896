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

What a researcher chooses at start, with upstream's machinery only: the spawn form
(``options_form``) offers the images of ``DockerSpawner.allowed_images`` (the current
image first and preselected, then the earlier tags kept on the station, each named
by ``image_labels``) and the operator's resource ``profiles``; ``options_from_form``
turns the form into ``user_options`` and refuses a value that is not offered (the
form comes back with the message), and ``apply_user_options`` (JupyterHub >= 5.3,
run before every start, also for ``user_options`` sent through the REST API) applies
the profile's limits and refuses the same. ``DockerSpawner.start`` then picks the
image from ``user_options`` through its own ``check_allowed``. The container learns
its image through ``TESTBED_IMAGE``, ``TESTBED_IMAGE_CURRENT`` and
``TESTBED_IMAGE_OUTDATED`` (the terminal's login banner reads them).
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Dict, Float, Integer, List, Unicode, default

from testbed_hub import auditing, startqueue


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

    concurrent_starts = Integer(
        config=True,
        help="Servers starting at the same time (from docker create until the port "
        "answers); more starts wait in line, first come first served, and their spawn "
        "page says how many are ahead. 0: no limit. Default: the hub machine's CPU cores.",
    )

    start_slot_seconds = Float(
        15.0,
        config=True,
        help="Longest a start holds its slot: a server whose port does not answer by then "
        "goes on starting outside the line, and the next start in line gets the slot.",
    )

    @default("concurrent_starts")
    def _default_concurrent_starts(self) -> int:
        return startqueue.default_slots()

    started_image = Unicode(
        "",
        help="The image the running server was started from ('' when stopped or not known).",
    )

    current_image = Unicode(
        "",
        config=True,
        help="The current notebook image (the form's default; '' = DockerSpawner.image as "
        "configured). DockerSpawner.image itself changes to the image a server starts on.",
    )

    image_labels = Dict(
        Unicode(),
        config=True,
        help="How the spawn form names each image of allowed_images (image -> label).",
    )

    profiles = List(
        Dict(),
        config=True,
        help="Resource profiles a researcher chooses from: dicts with name, mem_limit, "
        "cpu_limit, default (exactly one true) and label. Empty: DockerSpawner's mem_limit "
        "and cpu_limit, no choice.",
    )

    profile = Unicode("", help="Name of the profile the server was started with.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.current_image:
            self.current_image = self.image
        self._progress_events: list[dict[str, Any]] = []

    # -- the spawn page's progress messages -------------------------------------------

    def _step(self, progress: int, message: str) -> None:
        self._progress_events.append({"progress": progress, "message": message})

    async def progress(self):
        """Events for the spawn page (JupyterHub's progress API, read while the start
        is pending; JupyterHub adds "Server requested" before and "Server ready" after):
        dicts with ``progress`` (0-100) and ``message``, one per step of :meth:`start`.
        """
        sent, seen = 0, self._progress_events
        while True:
            events = self._progress_events
            if events is not seen:  # start() began a new list
                sent, seen = 0, events
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(self.ready_poll_interval)

    @property
    def outdated_image(self) -> bool:
        """The running server's image is not the current one: chosen at start among the
        earlier tags, or an upgrade moved on while it ran."""
        return bool(self.started_image) and self.started_image != self.current_image

    # -- choices at start: image and resource profile ---------------------------------

    def _images(self) -> list[str]:
        allowed = self._get_allowed_images()
        if allowed == "*" or not allowed:
            return [self.current_image]
        return list(allowed)

    def _profile(self, name: Any) -> dict[str, Any] | None:
        """The operator's profile called ``name`` (None or '': the default one)."""
        if not self.profiles:
            if name:
                raise web.HTTPError(
                    400, f"Resource profile {name!r} is not offered: this hub has no profiles"
                )
            return None
        if name is None or name == "":
            return next(p for p in self.profiles if p.get("default"))
        for p in self.profiles:
            if p["name"] == name:
                return p
        raise web.HTTPError(
            400,
            f"Resource profile {name!r} is not one this hub offers; choose one of "
            + ", ".join(p["name"] for p in self.profiles),
        )

    def _check_image(self, image: Any) -> None:
        if image is None or image == "":
            return
        offered = self._images()
        if len(offered) < 2:
            raise web.HTTPError(
                400,
                f"Image {image!r} is not one this hub offers: it starts every server on the "
                "current image (no earlier tags are offered)",
            )
        if image not in offered:
            raise web.HTTPError(
                400,
                f"Image {image!r} is not one this hub offers; choose one of " + ", ".join(offered),
            )

    @default("options_form")
    def _testbed_options_form(self) -> str:
        images, profiles = self._images(), self.profiles
        if len(images) < 2 and len(profiles) < 2:
            return ""  # nothing to choose: JupyterHub starts the server without a form
        out = []
        if len(images) > 1:
            options = "".join(
                f'<option value="{html.escape(i)}"{" selected" if i == self.current_image else ""}>'
                f"{html.escape(self.image_labels.get(i, i))}</option>"
                for i in images
            )
            out.append(
                '<div class="form-group mb-3"><label for="testbed-image" class="form-label">'
                "Environment (notebook image)</label>"
                f'<select class="form-select form-control" id="testbed-image" name="image">'
                f"{options}</select>"
                '<small class="form-text text-muted">The current image is preselected; an '
                "earlier one re-runs an analysis on the environment it was made with. Your "
                "files are the same either way.</small></div>"
            )
        if len(profiles) > 1:
            options = "".join(
                f'<option value="{html.escape(p["name"])}"'
                f"{' selected' if p.get('default') else ''}>"
                f"{html.escape(p.get('label') or p['name'])}</option>"
                for p in profiles
            )
            out.append(
                '<div class="form-group mb-3"><label for="testbed-profile" class="form-label">'
                "Resources</label>"
                f'<select class="form-select form-control" id="testbed-profile" name="profile">'
                f"{options}</select></div>"
            )
        return "\n".join(out)

    @default("options_from_form")
    def _testbed_options_from_form(self):
        def options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
            """The form's choices as ``user_options``; a value not offered is refused
            here, so the form comes back with the message."""
            options = {}
            for key in ("image", "profile"):
                if formdata.get(key):
                    options[key] = formdata[key][0]
            self._check_image(options.get("image"))
            self._profile(options.get("profile"))
            return options

        return options_from_form

    @default("apply_user_options")
    def _testbed_apply_user_options(self):
        return TestbedDockerSpawner._apply_choices

    @staticmethod
    def _apply_choices(spawner: TestbedDockerSpawner, user_options: dict[str, Any]) -> None:
        """Before every start (form or API): the current image unless another offered one
        is asked for (DockerSpawner.start resolves it), the chosen profile's limits.

        Refused options are forgotten: JupyterHub stores ``user_options`` sent through
        its REST API as the server's defaults before this runs, and a later start
        without options would otherwise send the refused ones again.
        """
        try:
            if not isinstance(user_options, dict):
                raise web.HTTPError(400, "user_options must be an object")
            unknown = set(user_options) - {"image", "profile"}
            if unknown:
                raise web.HTTPError(
                    400, f"Unknown option(s) {', '.join(sorted(unknown))}: only image and profile"
                )
            spawner._check_image(user_options.get("image"))
            profile = spawner._profile(user_options.get("profile"))
        except web.HTTPError:
            spawner._forget_user_options()
            raise
        # a spawner object lives on between starts: every start begins from the defaults
        spawner.image = spawner.current_image
        if profile is not None:
            spawner.mem_limit = profile["mem_limit"]
            spawner.cpu_limit = float(profile["cpu_limit"])
            spawner.profile = profile["name"]

    def _forget_user_options(self) -> None:
        """Back to the defaults: no stored ``user_options`` for this server."""
        self.user_options = {}
        orm_spawner = self.orm_spawner
        if getattr(orm_spawner, "user_options", None):
            from sqlalchemy.orm import object_session  # the hub's session of this row

            orm_spawner.user_options = {}
            session = object_session(orm_spawner)
            if session is not None:
                session.commit()

    def get_env(self):
        env = super().get_env()
        # self.image is the image this start uses (DockerSpawner.start set it)
        env["TESTBED_IMAGE"] = self.image
        env["TESTBED_IMAGE_CURRENT"] = self.current_image
        env["TESTBED_IMAGE_OUTDATED"] = "1" if self.image != self.current_image else "0"
        env["TESTBED_IMAGE_LABEL"] = self.image_labels.get(self.image, self.image)
        if self.profile:
            env["TESTBED_PROFILE"] = self.profile
        return env

    def get_state(self):
        state = super().get_state()
        if self.started_image:
            state["started_image"] = self.started_image
            # The user's testbed identity while the server runs: the authenticator knows
            # it only from logins since the hub started, and a server outlives a hub
            # restart (the culler's stop, run-notebook's batch records).
            identity = auditing.identity_of(self.authenticator, self.user)
            if identity != self.user.name:
                state["testbed_identity"] = identity
        return state

    def load_state(self, state):
        super().load_state(state)
        # absent from the state of a server started by an earlier version: poll() reads it
        self.started_image = state.get("started_image", "") or ""
        self._recall_identity(state.get("testbed_identity"))

    def _recall_identity(self, identity: Any) -> None:
        """Tell the authenticator the identity a running server was started for, unless
        it already knows one (a login since the restart is newer) or the identity does
        not map to this user (a state edited by hand)."""
        known = getattr(self.authenticator, "known_identities", None)
        to_name = getattr(self.authenticator, "identity_to_username", None)
        if not isinstance(identity, str) or not identity or known is None or to_name is None:
            return
        if self.user.name in known:
            return
        if to_name(identity) != self.user.name:
            self.log.warning(
                "Spawner state of %s holds the testbed identity %r, which is another "
                "user's: not used",
                self.user.name,
                identity,
            )
            return
        known[self.user.name] = identity

    def clear_state(self):
        super().clear_state()
        self._progress_events = []  # a stopped server's steps are not the next start's
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

    def _first_steps(self) -> list[dict[str, Any]]:
        """Progress messages a start opens with (a subclass says why the last server
        is gone); none here."""
        return []

    async def start(self):
        self._progress_events = self._first_steps()
        image = (self.user_options or {}).get("image") or self.image
        what = self.image_labels.get(image, image.rsplit("/", 1)[-1])
        if self.profile:
            profile = next((p for p in self.profiles if p["name"] == self.profile), {})
            what += f"; {profile.get('label') or self.profile}"
        # A slot is held from the first Docker call until the port answers (the part of
        # a start that takes the station's CPU), for at most start_slot_seconds: a server
        # that never listens must not hold up the users in line behind it.
        queue = startqueue.shared(self.concurrent_starts)
        await queue.acquire(self._waiting)
        held = True
        try:
            await self._before_container(image)
            self._step(20, f"Starting your container ({what})")
            ip, port = await super().start()
            # DockerSpawner.remove is on: start() always created the container from self.image
            self.started_image = self.image
            self._step(60, "Container running; JupyterLab is loading")
            t0 = time.monotonic()
            ready = await self._port_answers(
                ip, port, min(self.http_timeout, self.start_slot_seconds)
            )
            queue.release()
            held = False
            if not ready:
                ready = await self._port_answers(
                    ip, port, max(0.0, self.http_timeout - (time.monotonic() - t0))
                )
        finally:
            if held:
                queue.release()
        self.log.info(
            "Server of %s %s on %s:%s after %.2f s",
            self.user.name,
            "listening" if ready else "not listening (the hub's own check decides)",
            ip,
            port,
            time.monotonic() - t0,
        )
        if ready:
            self._step(90, "JupyterLab answers; opening it")
        await self._audit("server_start")
        return ip, port

    async def _before_container(self, image: str) -> None:
        """What a start needs before its container, inside the start slot; nothing here
        (the Swarm spawner makes the user's volume on the station)."""

    async def _port_answers(self, ip: str, port: int, timeout: float) -> bool:
        return await wait_for_port(
            ip,
            port,
            timeout=timeout,
            interval=self.ready_poll_interval,
            alive=self._container_running,
        )

    def _waiting(self, ahead: int, starting: int) -> None:
        """A progress step while the start waits for a slot (StartQueue's ``on_wait``)."""
        servers = "1 server is" if starting == 1 else f"{starting} servers are"
        place = "yours is next" if ahead == 0 else f"{ahead} ahead of yours"
        self._step(10, f"Waiting to start: {servers} starting, {place}")

    async def stop(self, now=False):
        image = self.started_image or self.image
        await super().stop(now=now)
        await self._audit("server_stop", image)

    async def _audit(self, event: str, image: str = "") -> None:
        """A ``server_start`` / ``server_stop`` record (testbed_hub.auditing): object the
        server name ('' = default), details the image tag (and the profile at start,
        who asked when it was not the owner). Source: the address of the request that
        started the server; none for a stop (the user, an admin or the idle culler: the
        spawner is not told)."""
        audit = auditing.hub_audit(getattr(self.user, "settings", None) or {})
        if audit is None or not audit.enabled:
            return
        image = image or self.image
        details: dict[str, Any] = {"image": image.rsplit("/", 1)[-1]}
        source = None
        if event == "server_start":
            if self.profile:
                details["profile"] = self.profile
            handler = getattr(self, "handler", None)
            if handler is not None and getattr(handler, "request", None) is not None:
                source = audit.source_of(handler.request)
                by = getattr(handler, "current_user", None)
                if by is not None and getattr(by, "name", None) != self.user.name:
                    details["requested_by"] = auditing.identity_of(self.authenticator, by)
        await audit.record(
            event,
            auditing.identity_of(self.authenticator, self.user),
            user=self.user.name,
            source=source,
            object=self.name or "",
            details=details,
        )
