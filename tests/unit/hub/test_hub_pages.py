"""What the hub's pages show a researcher (issue 16, items 6 and 7), without Docker.

A real hub (JupyterHub's MockHub with TestbedHub, the header authenticator and this
project's templates): each page shows the user's testbed identifier, not the mapped
hub user name, also after a hub restart; the page title is the site's; the spawn
form says what it is for; the page shown while a server starts says for whom, and
the spawner names each step of the start in JupyterHub's progress events. The
settings that set the title and the logo are validated with messages that name the
role variable.
"""

from __future__ import annotations

import asyncio
import copy
import html
import re
from types import SimpleNamespace

import pytest
import pytest_asyncio
from jupyterhub.utils import random_port

from testbed_hub.auth import username_for
from testbed_hub.config import DEFAULT_SITE_TITLE, TEMPLATES, SettingsError, validate
from testbed_hub.spawner import TestbedDockerSpawner

from .conftest import HubClient
from .test_hub_config import build
from .test_hub_config import settings as settings  # noqa: F401,PLC0414 - the fixture

BOB = "Bob@Testbed.Example"  # what the testbed sends; the hub folds the case
BOB_ID = "bob@testbed.example"
BOB_NAME = username_for(BOB, fold_case=True)  # bob-testbed-example-<hash>
CAROL_ID = "carol@testbed.example"
ADMIN = "ops-admin"  # hub_config's admin (a name that is its own identifier)
TITLE = "Site title <with> & characters"


def text(page: str) -> str:
    return " ".join(html.unescape(page).split())


def visible_text(page: str) -> str:
    """The text a browser shows: no scripts, styles, tags or attributes."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return text(re.sub(r"<[^>]+>", " ", page))


def navbar_identity(page: str) -> str:
    m = re.search(r'<span id="testbed-identity"[^>]*>([^<]*)</span>', page)
    assert m, page[:2000]
    return html.unescape(m.group(1))


@pytest_asyncio.fixture
async def run_hub(restart_hub, settings):  # noqa: F811
    """A TestbedHub with what apply() sets for the pages (template path, template
    vars, identities of the inventory's lists)."""

    async def _run(allowed=(), title=TITLE):
        s = copy.deepcopy(settings)
        s["hub"]["site_title"] = title
        s["culler"]["enabled"] = False
        s["auth"]["allowed_users"] = list(allowed)
        s["auth"]["allow_all"] = not allowed
        built = build(s)

        def configure(c):
            c.JupyterHub.template_paths = [TEMPLATES]
            c.JupyterHub.template_vars = built.JupyterHub.template_vars
            c.HeaderAuthenticator.known_identities = built.HeaderAuthenticator.known_identities
            c.Authenticator.allow_all = s["auth"]["allow_all"]
            c.Authenticator.allowed_users = built.Authenticator.allowed_users

        return await restart_hub(configure)

    return _run


async def logged_in(app, identity) -> HubClient:
    client = HubClient(app)
    r = await client.get("login", identity=identity)
    assert r.status_code == 302, r.text[:300]
    return client


@pytest.mark.asyncio
async def test_pages_show_the_testbed_identifier_and_the_site_title(run_hub):
    app = await run_hub()
    client = await logged_in(app, BOB)
    page = (await client.get("home", identity=BOB)).text
    assert navbar_identity(page) == BOB_ID
    # the mapped name only in the tooltip, nowhere in what the page shows
    assert f'title="hub user name: {BOB_NAME}"' in page
    assert BOB_ID in visible_text(page)
    assert BOB_NAME not in visible_text(page)
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1).strip()
    assert html.unescape(title) == TITLE
    assert "&lt;with&gt; &amp;" in title  # escaped, not markup
    token_page = (await client.get("token", identity=BOB)).text
    assert navbar_identity(token_page) == BOB_ID


@pytest.mark.asyncio
async def test_after_a_hub_restart_the_first_request_shows_the_identifier_again(run_hub):
    app = await run_hub()
    client = await logged_in(app, BOB)
    app = await run_hub()  # nothing stored: the hub forgets who bob is...
    assert app.authenticator.identity_of(BOB_NAME) == BOB_NAME
    # ...until his browser's next request (the same session cookie, no new login),
    # whose header the session refresh reads
    client.base = app.hub.url
    page = (await client.get("home", identity=BOB)).text
    assert navbar_identity(page) == BOB_ID
    assert app.authenticator.identity_of(BOB_NAME) == BOB_ID


@pytest.mark.asyncio
async def test_the_inventorys_identifiers_are_known_before_anyone_logs_in(run_hub):
    app = await run_hub(allowed=[BOB, CAROL_ID])
    auth = app.authenticator
    assert auth.identity_of(BOB_NAME) == BOB_ID
    assert auth.identity_of(username_for(CAROL_ID, fold_case=True)) == CAROL_ID
    assert auth.identity_of("someone-else") == "someone-else"
    assert auth.identity_of(None) == ""


@pytest.mark.asyncio
async def test_an_error_page_has_the_default_title(run_hub):
    app = await run_hub(title=DEFAULT_SITE_TITLE)
    r = await HubClient(app).get("no-such-page", identity=None)
    assert r.status_code == 404
    assert f"<title>{DEFAULT_SITE_TITLE}</title>" in r.text


@pytest.mark.asyncio
async def test_the_spawn_pages_say_what_happens_and_for_whom(run_hub):
    app = await run_hub()
    client = await logged_in(app, BOB)
    user = app.users[BOB_NAME]
    # the form page: JupyterHub renders spawn.html when the spawner has a form
    user.spawner.options_form = '<input name="x" value="1">'
    form = visible_text((await client.get(f"spawn/{BOB_NAME}", identity=BOB)).text)
    assert "Start JupyterLab" in form
    assert "Your files in ~/nist are the same whichever you choose." in form
    # the pending page: the start is held until the test lets it finish
    user.spawner.options_form = ""
    release = asyncio.Event()
    real_start = user.spawner.start

    async def slow_start():
        await release.wait()
        return await real_start()

    user.spawner.start = slow_start
    r = await client.session.post(
        client.base + f"spawn/{BOB_NAME}",
        headers=client.headers(BOB),
        data={"_xsrf": client.session.cookies.get("_xsrf", "")},
        allow_redirects=False,
    )
    try:
        pending = await client.get(f"spawn-pending/{BOB_NAME}", identity=BOB)
        assert pending.status_code == 200, (r.status_code, pending.status_code)
        message = visible_text(pending.text)
        assert f"Starting JupyterLab for {BOB_ID}." in message
        assert "opens JupyterLab by itself as soon as it answers" in message
        # an admin on bob's page: about bob, while the navigation bar shows the admin
        admin = await logged_in(app, ADMIN)
        seen = (await admin.get(f"spawn-pending/{BOB_NAME}", identity=ADMIN)).text
        assert f"Starting JupyterLab for {BOB_ID}." in visible_text(seen)
        assert navbar_identity(seen) == ADMIN
    finally:
        release.set()
        await asyncio.wait_for(user.spawner._spawn_future, 30)


def test_site_title_and_logo_are_checked_with_the_variables_named(settings):  # noqa: F811
    for title in ("", "  ", "x" * 81, "tab\there"):
        s = copy.deepcopy(settings)
        s["hub"]["site_title"] = title
        with pytest.raises(SettingsError, match="jupyterhub_site_title"):
            validate(s)
    for logo in ("logo.png", "/etc/jupyterhub/logo.txt", "/etc/jupyterhub/logo"):
        s = copy.deepcopy(settings)
        s["hub"]["logo_file"] = logo
        with pytest.raises(SettingsError, match="jupyterhub_logo_src"):
            validate(s)


def test_title_logo_and_identities_reach_the_hub_config(settings):  # noqa: F811
    s = copy.deepcopy(settings)
    s["hub"]["site_title"] = "Station 7"
    s["hub"]["logo_file"] = "/etc/jupyterhub/logo.svg"
    s["auth"]["allowed_users"] = [BOB]
    s["auth"]["blocked_users"] = ["Mallory@Testbed.Example"]
    c = build(s)
    assert c.JupyterHub.template_vars["testbed_site_title"] == "Station 7"
    assert c.JupyterHub.logo_file == "/etc/jupyterhub/logo.svg"
    known = c.HeaderAuthenticator.known_identities
    assert known[BOB_NAME] == BOB_ID
    assert known[username_for("mallory@testbed.example", fold_case=True)] == (
        "mallory@testbed.example"
    )
    # without them: the default title, JupyterHub's logo
    plain = build(settings)
    assert plain.JupyterHub.template_vars["testbed_site_title"] == DEFAULT_SITE_TITLE
    assert "logo_file" not in plain.JupyterHub


@pytest.mark.asyncio
async def test_progress_names_each_step_of_the_start(monkeypatch):
    from dockerspawner import DockerSpawner
    from traitlets.config import Config

    port = random_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    docker_started = asyncio.Event()
    go_on = asyncio.Event()

    async def started(self):
        docker_started.set()
        await go_on.wait()
        return "127.0.0.1", port

    monkeypatch.setattr(DockerSpawner, "start", started)
    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:ba9876543210"
    c.TestbedDockerSpawner.image_labels = {"testbed-hub/notebook:ba9876543210": "current (x)"}
    s = TestbedDockerSpawner(config=c, user=SimpleNamespace(name="alice", id=1, url="/u/"))
    s.ready_poll_interval = 0.01
    events = []

    async def read():
        async for event in s.progress():
            events.append(event)

    reader = asyncio.ensure_future(read())
    start = asyncio.ensure_future(s.start())
    try:
        await asyncio.wait_for(docker_started.wait(), 5)
        await asyncio.sleep(0.05)
        assert [e["message"] for e in events] == ["Starting your container (current (x))"]
        go_on.set()
        assert await asyncio.wait_for(start, 5) == ("127.0.0.1", port)
        await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        server.close()
    assert [(e["progress"], e["message"]) for e in events] == [
        (20, "Starting your container (current (x))"),
        (60, "Container running; JupyterLab is loading"),
        (90, "JupyterLab answers; opening it"),
    ]


@pytest.mark.asyncio
async def test_a_new_start_does_not_replay_the_previous_starts_steps():
    from traitlets.config import Config

    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:ba9876543210"
    s = TestbedDockerSpawner(config=c, user=SimpleNamespace(name="alice", id=1, url="/u/"))
    s.ready_poll_interval = 0.01
    s._step(90, "JupyterLab answers; opening it")  # the previous start's last step
    s.clear_state()  # the server stopped
    events = []

    async def read():
        async for event in s.progress():
            events.append(event["message"])

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.05)
    assert events == []
    s._progress_events = []  # what start() does first
    s._step(20, "Starting your container (x)")
    await asyncio.sleep(0.05)
    reader.cancel()
    assert events == ["Starting your container (x)"]
