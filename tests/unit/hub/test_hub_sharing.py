"""Sharing a server with another hub user (issue 16, item 4), without Docker.

settings.json -> Config (testbed_hub.config) gives every user JupyterHub's sharing
scopes only when ``hub.sharing_enabled`` is on; then a real hub (JupyterHub's MockHub
with TestbedHub, the header authenticator and our home page) takes the path the
home page's share form takes: the owner's browser session (cookie and xsrf token)
maps a testbed identifier to the hub user name and posts a share to JupyterHub's own
share API. The shared-with user then holds the access scope of the owner's server,
a third user does not, and a revoked or switched-off share grants nothing.
"""

from __future__ import annotations

import copy
import html
import re

import pytest
import pytest_asyncio
from jupyterhub import orm
from jupyterhub.tests.mocking import MockHub
from jupyterhub.utils import random_port

from testbed_hub.app import TestbedHub
from testbed_hub.auth import username_for
from testbed_hub.config import SHARING_SCOPES, TEMPLATES, SettingsError, sharing_roles, validate

from .conftest import HubClient
from .test_hub_config import build
from .test_hub_config import settings as settings  # noqa: F401,PLC0414 - the fixture

OWNER, FRIEND, OTHER = "ue-01", "Bob@Testbed.Example", "ue-03"
FRIEND_NAME = username_for(FRIEND, fold_case=True)  # bob-testbed-example-<hash>
ACCESS = f"access:servers!server={OWNER}/"


# -- settings -> config ------------------------------------------------------------------


def test_sharing_on_gives_the_user_role_the_sharing_scopes(settings):  # noqa: F811
    settings["hub"]["sharing_enabled"] = True
    c = build(settings)
    user_roles = [r for r in c.JupyterHub.load_roles if r["name"] == "user"]
    assert user_roles == [{"name": "user", "scopes": ["self", "shares!user", "read:users:name"]}]
    # the other roles are still there, the admin role first
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["admin", "idle-culler", "user"]
    assert c.JupyterHub.template_vars == {"testbed_sharing": True}
    assert c.TestbedHub.sharing_enabled is True


@pytest.mark.parametrize("value", [False, None])
def test_sharing_off_or_unset_leaves_jupyterhubs_user_role(settings, value):  # noqa: F811
    if value is not None:
        settings["hub"]["sharing_enabled"] = value
    c = build(settings)
    assert "user" not in [r["name"] for r in c.JupyterHub.load_roles]
    assert c.JupyterHub.template_vars == {"testbed_sharing": False}
    assert c.TestbedHub.sharing_enabled is False


def test_sharing_roles_alone():
    assert sharing_roles(False) == []
    assert sharing_roles(True) == [{"name": "user", "scopes": SHARING_SCOPES}]
    assert sharing_roles(True)[0]["scopes"] is not SHARING_SCOPES  # a copy


def test_a_sharing_switch_that_is_no_boolean_is_refused(settings):  # noqa: F811
    settings["hub"]["sharing_enabled"] = "yes"
    with pytest.raises(SettingsError) as err:
        validate(settings)
    assert "jupyterhub_sharing_enabled (hub.sharing_enabled) must be true/false" in str(err.value)


# -- a real hub --------------------------------------------------------------------------


class MockTestbedHub(MockHub, TestbedHub):
    pass


def hub_settings(base, sharing: bool):
    s = copy.deepcopy(base)
    s["hub"]["sharing_enabled"] = sharing
    s["culler"]["enabled"] = False  # no service process in a unit test
    s["auth"]["admin_users"] = []
    return s


@pytest_asyncio.fixture
async def run_hub(hub_config, settings, tmp_path, monkeypatch):  # noqa: F811
    """Start a hub with the roles, template vars and switch apply() sets; a second
    start keeps the first one's database (a playbook re-run restarts the hub)."""
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", f"sqlite:///{tmp_path / 'hub.sqlite'}")
    started = []

    async def _run(sharing: bool):
        for app in started[-1:]:
            app.http_server.stop()
            for pc in app._periodic_callbacks.values():
                pc.stop()
            app.db.close()
        MockTestbedHub.clear_instance()
        built = build(hub_settings(settings, sharing))
        c = hub_config.copy()
        c.JupyterHub.bind_url = f"http://127.0.0.1:{random_port()}/jupyter/"
        c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{random_port()}"
        c.JupyterHub.cleanup_servers = False
        c.JupyterHub.template_paths = [TEMPLATES]
        c.JupyterHub.load_roles = built.JupyterHub.load_roles
        c.JupyterHub.template_vars = built.JupyterHub.template_vars
        c.TestbedHub.sharing_enabled = built.TestbedHub.sharing_enabled
        app = MockTestbedHub.instance(config=c)
        app.test_clean_db = not started
        await app.initialize([])
        await app.start()
        started.append(app)
        return app

    yield _run
    for app in started[-1:]:
        app.log.handlers = []
        await app.stop()
    MockTestbedHub.clear_instance()


class Browser(HubClient):
    """A logged-in browser: the hub session cookie and the page's xsrf token, as the
    home page's script calls the API."""

    def __init__(self, app, identity):
        super().__init__(app)
        self.identity = identity
        self.xsrf = ""

    async def login(self):
        r = await self.get("login", identity=self.identity)
        assert r.status_code == 302, r.text[:300]
        home = await self.get("home", identity=self.identity)
        assert home.status_code == 200, home.text[:300]
        self.xsrf = re.search(r'xsrf_token: "([^"]*)"', home.text).group(1)
        return home

    async def api(self, method, path, json=None):
        sep = "&" if "?" in path else "?"
        headers = self.headers(self.identity, **{"X-XSRFToken": self.xsrf})
        return await self.session.request(
            method,
            f"{self.base}api/{path}{sep}_xsrf={self.xsrf}",
            headers=headers,
            json=json,
            allow_redirects=False,
        )


async def scopes_of(app, name):
    """The expanded scopes of a fresh API token of ``name`` (GET /hub/api/user)."""
    token = app.users[name].new_api_token()
    client = HubClient(app)
    r = await client.session.get(
        client.base + "api/user", headers={"Authorization": f"token {token}"}
    )
    r.raise_for_status()
    return set(r.json()["scopes"])


def page_text(page: str) -> str:
    return " ".join(html.unescape(page).split())


@pytest.mark.asyncio
async def test_a_share_from_the_home_page_grants_access_to_that_server_only(run_hub):
    app = await run_hub(sharing=True)
    owner, friend, other = Browser(app, OWNER), Browser(app, FRIEND), Browser(app, OTHER)
    home = await owner.login()
    await friend.login()
    await other.login()
    assert 'id="testbed-share-form"' in home.text
    assert "Share this server with a testbed user" in page_text(home.text)

    # before: neither may use the owner's server
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)
    assert ACCESS not in await scopes_of(app, OTHER)

    # the form: testbed identifier -> hub user name (the login's mapping), then the share
    r = await owner.api("GET", "testbed/username?identity=" + FRIEND)
    assert r.status_code == 200, r.text
    assert r.json() == {"identity": "bob@testbed.example", "name": FRIEND_NAME}
    r = await owner.api("POST", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 200, r.text
    assert r.json()["scopes"] == [ACCESS]  # JupyterHub's default: access, nothing else

    friend_scopes = await scopes_of(app, FRIEND_NAME)
    assert ACCESS in friend_scopes
    # access only: no start/stop, nothing of the owner's other things
    assert not {s for s in friend_scopes if OWNER in s} - {ACCESS}
    assert ACCESS not in await scopes_of(app, OTHER)

    listed = await owner.api("GET", f"shares/{OWNER}/")
    assert [s["user"]["name"] for s in listed.json()["items"]] == [FRIEND_NAME]

    # the shared-with user cannot pass the share on, the third user cannot grant one
    # (JupyterHub answers 404: without a scope on it, the server is not even there)
    r = await friend.api("POST", f"shares/{OWNER}/", json={"user": OTHER})
    assert r.status_code == 404, r.text
    r = await other.api("POST", f"shares/{OWNER}/", json={"user": OTHER})
    assert r.status_code == 404, r.text

    # the Revoke button
    r = await owner.api("PATCH", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 200, r.text
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)


@pytest.mark.asyncio
async def test_sharing_with_a_user_who_never_logged_in_says_so(run_hub):
    app = await run_hub(sharing=True)
    owner = Browser(app, OWNER)
    await owner.login()
    r = await owner.api("POST", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 400
    assert f"No such user: {FRIEND_NAME}" in r.json()["message"]  # the form explains it


@pytest.mark.asyncio
async def test_the_username_mapping_needs_a_login_and_an_identifier(run_hub):
    app = await run_hub(sharing=True)
    anonymous = HubClient(app)
    r = await anonymous.session.get(anonymous.base + "api/testbed/username?identity=x@y")
    assert r.status_code == 403
    owner = Browser(app, OWNER)
    await owner.login()
    r = await owner.api("GET", "testbed/username?identity=%20")
    assert r.status_code == 400
    assert "testbed identifier" in r.json()["message"]


@pytest.mark.asyncio
async def test_without_sharing_no_form_no_share_and_earlier_shares_are_gone(run_hub):
    app = await run_hub(sharing=True)
    owner, friend = Browser(app, OWNER), Browser(app, FRIEND)
    await owner.login()
    await friend.login()
    r = await owner.api("POST", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 200, r.text
    r = await owner.api("POST", f"share-codes/{OWNER}/")
    assert r.status_code == 200, r.text
    assert ACCESS in await scopes_of(app, FRIEND_NAME)

    # the operator turns sharing off; the playbook restarts the hub
    app = await run_hub(sharing=False)
    assert app.db.query(orm.Share).count() == 0
    assert app.db.query(orm.ShareCode).count() == 0
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)
    owner = Browser(app, OWNER)
    home = await owner.login()
    assert "testbed-share" not in home.text
    assert "Share this server" not in page_text(home.text)
    r = await owner.api("POST", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 403, r.text
