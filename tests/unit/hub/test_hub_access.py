"""The inventory decides access at every hub start (issue 13, item 4).

Two real hubs (JupyterHub's MockHub with TestbedHub) run one after the other on the
same database file, the second with changed lists, as after a playbook re-run that
restarts the hub. A browser session (cookies) and an API token opened under the
first hub are then tried against the second.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from jupyterhub import orm

from testbed_hub.auth import identity_to_username

from .conftest import HubClient

pytestmark = pytest.mark.asyncio

SPAWN = "/jupyter/hub/spawn"


def lists(allowed, admins=(), blocked=()):
    return {"allowed": list(allowed), "admins": list(admins), "blocked": list(blocked)}


@pytest_asyncio.fixture
async def run_hub(restart_hub):
    """Start a hub on a database that outlives it, with inventory lists as apply() sets them."""

    async def _run(inventory):
        def configure(c):
            c.Authenticator.allow_all = False
            c.Authenticator.admin_users = set()
            c.Authenticator.allow_existing_users = False
            c.Authenticator.allowed_users = set(inventory["allowed"]) | set(inventory["admins"])
            c.Authenticator.blocked_users = set(inventory["blocked"])
            c.JupyterHub.load_roles = [{"name": "admin", "users": sorted(inventory["admins"])}]

        return await restart_hub(configure)

    return _run


async def login(app, identity):
    c = HubClient(app)
    r = await c.get("login", identity=identity)
    assert r.status_code == 302 and r.headers["Location"] == SPAWN, (r.status_code, r.text[:300])
    return c


async def test_removed_blocked_and_demoted_users_after_a_restart(run_hub):
    hub1 = await run_hub(lists(["ue-01", "ue-02", "ue-03", "ue-04"], admins=["ue-04"]))
    sessions = {name: await login(hub1, name) for name in ("ue-01", "ue-02", "ue-03", "ue-04")}
    tokens = {name: hub1.users[name].new_api_token() for name in sessions}
    assert hub1.users["ue-04"].admin is True

    # re-run: ue-02 removed from the allowed users, ue-03 blocked, ue-04 no admin any more
    hub2 = await run_hub(lists(["ue-01", "ue-03", "ue-04"], blocked=["ue-03"]))
    for name, client in sessions.items():
        client.app = hub2
        client.base = hub2.hub.url
    # the browser sessions (cookies from the first hub), each at its next request
    assert await sessions["ue-01"].whoami("ue-01") == "ue-01"
    assert await sessions["ue-02"].whoami("ue-02") is None
    assert await sessions["ue-03"].whoami("ue-03") is None
    assert await sessions["ue-04"].whoami("ue-04") == "ue-04"
    # and a new login
    for name, status in (("ue-02", 403), ("ue-03", 403)):
        r = await HubClient(hub2).get("login", identity=name)
        assert r.status_code == status, (name, r.status_code)
    # tokens of users who lost access are gone, the others still work
    db = hub2.db
    assert orm.APIToken.find(db, tokens["ue-01"]) is not None
    assert orm.APIToken.find(db, tokens["ue-02"]) is None
    assert orm.APIToken.find(db, tokens["ue-03"]) is None
    assert orm.APIToken.find(db, tokens["ue-04"]) is not None
    # admin follows the list both ways
    assert hub2.users["ue-04"].admin is False
    assert [u.name for u in db.query(orm.User).filter_by(admin=True)] == []
    # the next run makes ue-01 admin and allows ue-02 again
    hub3 = await run_hub(lists(["ue-01", "ue-02"], admins=["ue-01"]))
    assert hub3.users["ue-01"].admin is True
    assert await (await login(hub3, "ue-02")).whoami("ue-02") == "ue-02"


async def test_blocked_user_cookie_session_ends_even_with_the_right_headers(run_hub):
    hub1 = await run_hub(lists(["ue-01"]))
    client = await login(hub1, "ue-01")
    cookie_id = hub1.users["ue-01"].cookie_id
    hub2 = await run_hub(lists(["ue-01"], blocked=["ue-01"]))
    assert hub2.users["ue-01"].cookie_id != cookie_id  # every browser session ended
    client.app, client.base = hub2, hub2.hub.url
    r = await client.get("home", identity="ue-01")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/jupyter/hub/login")


async def test_mixed_case_and_utf8_header_land_on_the_inventory_user(run_hub):
    alice = identity_to_username("alice@testbed.example")
    jose = identity_to_username("jos\u00e9@testbed.example")
    hub = await run_hub(lists([alice, jose]))
    for sent in (
        "Alice@Testbed.Example",
        "ALICE@testbed.example",
        "alice@testbed.example",
    ):
        assert await (await login(hub, sent)).whoami(sent) == alice
    # UTF-8 bytes in the header, as auth proxies send them (tornado reads Latin-1),
    # precomposed and decomposed
    for sent in ("jos\u00e9@testbed.example", "Jose\u0301@Testbed.example"):
        raw = sent.encode("utf-8")
        c = HubClient(hub)
        r = await c.get("login", headers={**c.headers(), "X-Authorized-User": raw})
        assert r.status_code == 302 and r.headers["Location"] == SPAWN, r.text[:300]
        me = await c.session.get(
            c.base + "api/user", headers={**c.headers(), "X-Authorized-User": raw}
        )
        assert me.status_code == 200, me.text[:300]
        assert me.json()["name"] == jose
        assert me.json()["user_info"] == {"testbed_id": "jos\u00e9@testbed.example"}
    assert {u.name for u in hub.db.query(orm.User)} >= {alice, jose}
    assert len([u for u in hub.db.query(orm.User) if u.name.startswith(("alice", "jos"))]) == 2
