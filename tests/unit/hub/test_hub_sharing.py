"""Sharing a server with another hub user (issue 16, item 4), without Docker.

settings.json -> Config (testbed_hub.config) gives every user JupyterHub's sharing
scopes only when ``hub.sharing_enabled`` is on; then a real hub (JupyterHub's MockHub
with TestbedHub, the header authenticator and our home page) takes the path the
home page's share form takes: the owner's browser session (cookie and xsrf token in
the header) posts a testbed identifier to ``/hub/api/testbed/shares``. The shared-with
user then holds the access scope of the owner's server, a third user does not, and a
revoked or switched-off share grants nothing. What testbed_hub.sharing refuses of
JupyterHub's sharing is refused (other scopes, groups, admins, share codes), and a
hub start takes back the shares of blocked users and admins.
"""

from __future__ import annotations

import copy
import html
import re

import pytest
import pytest_asyncio
from jupyterhub import orm

from testbed_hub.auth import username_for
from testbed_hub.config import SHARING_SCOPES, TEMPLATES, SettingsError, sharing_roles, validate
from testbed_hub.sharing import SHARE_CODES_OFF

from .conftest import HubClient
from .test_hub_config import build
from .test_hub_config import settings as settings  # noqa: F401,PLC0414 - the fixture

OWNER, FRIEND, OTHER = "ue-01", "Bob@Testbed.Example", "ue-03"
FRIEND_NAME = username_for(FRIEND, fold_case=True)  # bob-testbed-example-<hash>
ADMIN = "ops@testbed.example"
ADMIN_NAME = username_for(ADMIN, fold_case=True)
ACCESS = f"access:servers!server={OWNER}/"


# -- settings -> config ------------------------------------------------------------------


def test_sharing_on_gives_the_user_role_the_sharing_scopes(settings):  # noqa: F811
    settings["hub"]["sharing_enabled"] = True
    c = build(settings)
    user_roles = [r for r in c.JupyterHub.load_roles if r["name"] == "user"]
    assert user_roles == [{"name": "user", "scopes": ["self", "shares!user"]}]
    # the other roles are still there, the admin role first
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["admin", "idle-culler", "user"]
    assert c.JupyterHub.template_vars["testbed_sharing"] is True
    assert c.TestbedHub.sharing_enabled is True


@pytest.mark.parametrize("value", [False, None])
def test_sharing_off_or_unset_leaves_jupyterhubs_user_role(settings, value):  # noqa: F811
    if value is not None:
        settings["hub"]["sharing_enabled"] = value
    c = build(settings)
    assert "user" not in [r["name"] for r in c.JupyterHub.load_roles]
    assert c.JupyterHub.template_vars["testbed_sharing"] is False
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


def hub_settings(base, sharing: bool, admins=()):
    s = copy.deepcopy(base)
    s["hub"]["sharing_enabled"] = sharing
    s["culler"]["enabled"] = False  # no service process in a unit test
    s["auth"]["admin_users"] = list(admins)
    return s


@pytest_asyncio.fixture
async def run_hub(restart_hub, settings):  # noqa: F811
    """Start a hub with the roles, template vars and switch apply() sets; a second
    start keeps the first one's database (a playbook re-run restarts the hub)."""

    async def _run(sharing: bool, admins=(ADMIN,), blocked=()):
        built = build(hub_settings(settings, sharing, admins))

        def configure(c):
            c.JupyterHub.template_paths = [TEMPLATES]
            c.JupyterHub.load_roles = built.JupyterHub.load_roles
            c.JupyterHub.template_vars = built.JupyterHub.template_vars
            c.TestbedHub.sharing_enabled = built.TestbedHub.sharing_enabled
            c.Authenticator.admin_users = set()  # the admin role of apply() decides
            c.Authenticator.blocked_users = set(blocked)  # hub user names, as apply() maps

        return await restart_hub(configure)

    return _run


class Browser(HubClient):
    """A logged-in browser: the hub session cookie and the page's xsrf token (in the
    X-XSRFToken header only), as the home page's script calls the API."""

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
        headers = self.headers(self.identity, **{"X-XSRFToken": self.xsrf})
        return await self.session.request(
            method, f"{self.base}api/{path}", headers=headers, json=json, allow_redirects=False
        )

    async def share(self, identity):
        """What the home page's Share button posts."""
        return await self.api("POST", "testbed/shares", json={"identity": identity})


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


async def logged_in(app, *identities):
    browsers = [Browser(app, i) for i in identities]
    for b in browsers:
        await b.login()
    return browsers


def shares_in_db(app):
    return sorted((s.owner.name, s.user.name if s.user else None) for s in app.db.query(orm.Share))


@pytest.mark.asyncio
async def test_a_share_from_the_home_page_grants_access_to_that_server_only(run_hub):
    app = await run_hub(sharing=True)
    owner, friend, other = await logged_in(app, OWNER, FRIEND, OTHER)
    home = await owner.get("home", identity=OWNER)
    assert 'id="testbed-share-form"' in home.text
    assert "Share this server with a testbed user" in page_text(home.text)

    # before: neither may use the owner's server
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)
    assert ACCESS not in await scopes_of(app, OTHER)

    # the form: a testbed identifier, mapped to the hub user name by the hub
    r = await owner.share(FRIEND)
    assert r.status_code == 200, r.text
    assert r.json()["message"] == (
        "If bob@testbed.example has logged in to the hub before, they can now open your server."
    )
    friend_scopes = await scopes_of(app, FRIEND_NAME)
    assert ACCESS in friend_scopes
    # access only: no start/stop, nothing of the owner's other things
    assert not {s for s in friend_scopes if OWNER in s} - {ACCESS}
    assert ACCESS not in await scopes_of(app, OTHER)
    # the user role reads no other user's name
    names = {s for s in await scopes_of(app, OTHER) if s.startswith("read:users:name")}
    assert names <= {f"read:users:name!user={OTHER}"}, names

    listed = await owner.api("GET", f"shares/{OWNER}/")
    assert [s["user"]["name"] for s in listed.json()["items"]] == [FRIEND_NAME]
    assert [s["scopes"] for s in listed.json()["items"]] == [[ACCESS]]
    # the home page's list: the testbed identifier beside the hub name
    mine = await owner.api("GET", "testbed/shares")
    assert mine.status_code == 200, mine.text
    assert [(i["user"], i["identity"]) for i in mine.json()["items"]] == [
        (FRIEND_NAME, "bob@testbed.example")
    ]
    assert mine.json()["items"][0]["created_at"].endswith("Z")
    assert (await friend.api("GET", "testbed/shares")).json() == {"items": []}

    # the shared-with user cannot pass the share on, the third user cannot grant one
    # (JupyterHub answers 404: without a scope on it, the server is not even there)
    r = await friend.api("POST", f"shares/{OWNER}/", json={"user": OTHER})
    assert r.status_code == 404, r.text
    r = await other.api("POST", f"shares/{OWNER}/", json={"user": OTHER})
    assert r.status_code == 404, r.text

    # revoke (the home page then restarts the server, see test_hub_home_page.py)
    r = await owner.api("PATCH", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 200, r.text
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)


@pytest.mark.asyncio
async def test_the_answer_does_not_tell_who_uses_the_hub(run_hub):
    app = await run_hub(sharing=True)
    (owner,) = await logged_in(app, OWNER)
    # bob has never logged in: the same answer, and no share is made
    r = await owner.share(FRIEND)
    assert r.status_code == 200, r.text
    assert r.json()["message"].startswith("If bob@testbed.example has logged in to the hub before")
    assert shares_in_db(app) == []
    (friend,) = await logged_in(app, FRIEND)
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)
    # once he has, a share with him is made
    r = await owner.share("bob@testbed.example")
    assert r.status_code == 200, r.text
    assert shares_in_db(app) == [(OWNER, FRIEND_NAME)]


@pytest.mark.asyncio
async def test_the_share_endpoint_needs_a_login_an_identifier_and_another_user(run_hub):
    app = await run_hub(sharing=True)
    anonymous = HubClient(app)
    r = await anonymous.session.post(anonymous.base + "api/testbed/shares", json={"identity": "x"})
    assert r.status_code == 403
    (owner,) = await logged_in(app, OWNER)
    r = await owner.share(" ")
    assert r.status_code == 400
    assert "testbed identifier" in r.json()["message"]
    r = await owner.share(OWNER)
    assert r.status_code == 400
    assert "That is you" in r.json()["message"]
    # the xsrf token is required (in the header; the page never puts it in the URL)
    r = await owner.session.post(
        owner.base + "api/testbed/shares",
        headers=owner.headers(OWNER),
        json={"identity": FRIEND},
    )
    assert r.status_code == 403, r.text
    assert shares_in_db(app) == []


@pytest.mark.asyncio
async def test_a_share_grants_access_and_nothing_else(run_hub):
    app = await run_hub(sharing=True)
    owner, _ = await logged_in(app, OWNER, FRIEND)
    for scopes in (
        [f"servers!server={OWNER}/"],  # start and stop it
        [f"users:activity!user={OWNER}"],  # keep the idle culler away
        ["access:servers", f"read:servers!server={OWNER}/"],
        "access:servers",
    ):
        r = await owner.api(
            "POST", f"shares/{OWNER}/", json={"user": FRIEND_NAME, "scopes": scopes}
        )
        assert r.status_code == 400, (scopes, r.text)
        assert "grants only access to the server" in r.json()["message"], r.text
    r = await owner.api("POST", f"shares/{OWNER}/", json={"group": "everyone"})
    assert r.status_code == 400, r.text
    assert "Shares with groups are off" in r.json()["message"]
    # access itself passes these checks and reaches JupyterHub's own, which wants
    # read:users:name (the home page's endpoint does not)
    for scopes in (None, ["access:servers"], [ACCESS]):
        body = {"user": FRIEND_NAME} if scopes is None else {"user": FRIEND_NAME, "scopes": scopes}
        r = await owner.api("POST", f"shares/{OWNER}/", json=body)
        assert r.status_code == 403, r.text
        assert "read:users:name" in r.json()["message"]
    assert shares_in_db(app) == []


@pytest.mark.asyncio
async def test_no_share_from_or_with_a_hub_admin(run_hub):
    app = await run_hub(sharing=True)
    owner, admin, _ = await logged_in(app, OWNER, ADMIN, FRIEND)
    assert app.users[ADMIN_NAME].admin
    r = await owner.share(ADMIN)
    assert r.status_code == 403, r.text
    assert f"{ADMIN_NAME} is a hub admin" in r.json()["message"]
    r = await admin.share(FRIEND)
    assert r.status_code == 403, r.text
    assert f"{ADMIN_NAME} is a hub admin" in r.json()["message"]
    # JupyterHub's own API, with an admin's rights: refused too
    r = await admin.api("POST", f"shares/{ADMIN_NAME}/", json={"user": FRIEND_NAME})
    assert r.status_code == 403, r.text
    assert "is a hub admin" in r.json()["message"]
    r = await admin.api("POST", f"shares/{OWNER}/", json={"user": ADMIN_NAME})
    assert r.status_code == 403, r.text
    assert shares_in_db(app) == []


@pytest.mark.asyncio
async def test_share_codes_are_off(run_hub):
    app = await run_hub(sharing=True)
    owner, admin = await logged_in(app, OWNER, ADMIN)
    for who in (owner, admin):
        for method in ("POST", "GET", "DELETE"):
            r = await who.api(method, f"share-codes/{OWNER}/")
            assert r.status_code == 403, (method, r.text)
            assert r.json()["message"] == SHARE_CODES_OFF
        r = await who.api("GET", f"share-codes/{OWNER}")
        assert r.status_code == 403
    r = await owner.get("accept-share?code=sc_123", identity=OWNER)
    assert r.status_code == 403
    assert SHARE_CODES_OFF in page_text(r.text)
    assert app.db.query(orm.ShareCode).count() == 0


def make_share_code(app, owner):
    """A share code as an earlier hub version could have made it."""
    spawner = app.users[owner].orm_spawners[""]
    orm.ShareCode.new(app.db, spawner, scopes=[f"access:servers!server={owner}/"])


@pytest.mark.asyncio
async def test_a_hub_start_takes_back_the_shares_of_blocked_users_and_admins(run_hub, caplog):
    app = await run_hub(sharing=True)
    owner, other, _ = await logged_in(app, OWNER, OTHER, FRIEND)
    assert (await owner.share(FRIEND)).status_code == 200
    assert (await other.share(FRIEND)).status_code == 200
    assert (await owner.share(OTHER)).status_code == 200
    make_share_code(app, OWNER)
    assert shares_in_db(app) == [(OWNER, FRIEND_NAME), (OWNER, OTHER), (OTHER, FRIEND_NAME)]

    # the inventory blocks bob: his shares go, and every share code
    app = await run_hub(sharing=True, blocked={FRIEND_NAME})
    assert shares_in_db(app) == [(OWNER, OTHER)]
    assert app.db.query(orm.ShareCode).count() == 0
    assert ACCESS in await scopes_of(app, OTHER)  # a share between allowed users stays
    log = caplog.text
    assert f"Share of {OWNER}/ with {FRIEND_NAME} revoked: {FRIEND_NAME} is blocked" in log
    assert f"Share of {OTHER}/ with {FRIEND_NAME} revoked: {FRIEND_NAME} is blocked" in log
    assert "Share codes are off on this hub: 1 revoked" in log

    # the inventory makes ue-03 an admin: the share with them goes
    app = await run_hub(sharing=True, admins=(ADMIN, OTHER))
    assert shares_in_db(app) == []
    assert f"Share of {OWNER}/ with {OTHER} revoked: {OTHER} is a hub admin" in caplog.text


@pytest.mark.asyncio
async def test_without_sharing_no_form_no_share_and_earlier_shares_are_gone(run_hub):
    app = await run_hub(sharing=True)
    owner, _ = await logged_in(app, OWNER, FRIEND)
    r = await owner.share(FRIEND)
    assert r.status_code == 200, r.text
    make_share_code(app, OWNER)
    assert ACCESS in await scopes_of(app, FRIEND_NAME)

    # the operator turns sharing off; the playbook restarts the hub
    app = await run_hub(sharing=False)
    assert app.db.query(orm.Share).count() == 0
    assert app.db.query(orm.ShareCode).count() == 0
    assert ACCESS not in await scopes_of(app, FRIEND_NAME)
    (owner,) = await logged_in(app, OWNER)
    home = await owner.get("home", identity=OWNER)
    assert "testbed-share" not in home.text
    assert "Share this server" not in page_text(home.text)
    r = await owner.share(FRIEND)
    assert r.status_code == 403, r.text
    assert "Sharing is off on this hub" in r.json()["message"]
    r = await owner.api("POST", f"shares/{OWNER}/", json={"user": FRIEND_NAME})
    assert r.status_code == 403, r.text
    assert app.db.query(orm.Share).count() == 0


@pytest.mark.asyncio
async def test_the_share_list_needs_a_token_that_may_read_shares(run_hub):
    app = await run_hub(sharing=True)
    owner, _friend = await logged_in(app, OWNER, FRIEND)
    assert (await owner.share(FRIEND)).status_code == 200
    client = HubClient(app)

    async def listing(token):
        return await client.session.get(
            client.base + "api/testbed/shares", headers={"Authorization": f"token {token}"}
        )

    # a narrow token of the owner's (as a visitor's OAuth token at a server is): nothing
    narrow = app.users[OWNER].new_api_token(scopes=[f"read:users:activity!user={OWNER}"])
    r = await listing(narrow)
    assert r.status_code == 403, r.text
    assert "bob@testbed.example" not in r.text
    # the owner's full token: the list, as the home page gets it
    r = await listing(app.users[OWNER].new_api_token())
    assert r.status_code == 200, r.text
    assert [i["identity"] for i in r.json()["items"]] == ["bob@testbed.example"]
