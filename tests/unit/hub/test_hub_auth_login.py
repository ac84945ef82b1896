"""HeaderAuthenticator inside a real JupyterHub (MockHub) over HTTP.

Every redirect is checked for its exact target (path and query), and every
login for the session it leaves behind (the hub's login cookie and the user the
hub's API reports), so a redirect to the wrong place never passes as "a 302".
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
from jupyterhub import orm

from testbed_hub.auth import LOGIN_GUARD_COOKIE, identity_to_username

pytestmark = pytest.mark.asyncio

LOGIN_COOKIE = "jupyterhub-hub-login"
#: Where the hub sends a browser without valid headers: the testbed login, back
#: to the hub's login URL as nginx forwarded it (X-Forwarded-Host bs.example).
TESTBED_LOGIN = "/auth/login?next=http%3A%2F%2Fbs.example%2Fjupyter%2Fhub%2Flogin"
#: Where a fresh login without ?next= goes: the hub spawns the user's server.
SPAWN = "/jupyter/hub/spawn"


def redirect(r) -> str:
    """The Location of a 302 (fails with the answer when it is not a 302)."""
    assert r.status_code == 302, (r.status_code, r.headers.get("Location"), r.text[:300])
    return r.headers["Location"]


def hub_users(hub) -> set[str]:
    """Names of the users in the hub's database."""
    return {u.name for u in hub.db.query(orm.User)}


async def test_header_with_secret_logs_in_and_redirects_to_next(client):
    r = await client.get("login?next=/jupyter/hub/home", identity="ue-01")
    assert redirect(r) == "/jupyter/hub/home"
    assert LOGIN_COOKIE in client.session.cookies
    assert await client.whoami("ue-01") == "ue-01"


async def test_email_identity_gets_mapped_safe_name(client, hub):
    r = await client.get("login", identity="Alice.Smith@Example.org")
    assert redirect(r) == SPAWN
    assert LOGIN_COOKIE in client.session.cookies
    # the identifier is normalised first (case folded), then mapped
    name = identity_to_username("alice.smith@example.org")
    assert name.startswith("alice-smith-example-org-")
    assert await client.whoami("Alice.Smith@Example.org") == name
    assert await client.whoami("alice.smith@example.org") == name
    assert name in hub_users(hub) and "Alice.Smith@Example.org" not in hub_users(hub)


@pytest.mark.parametrize("headers", [{}, {"X-Authorized-User": ""}])
async def test_missing_or_empty_header_redirects_to_testbed_login(client, headers):
    h = client.headers(None, **{"X-Forwarded-Proto": "https,http"})
    h.update(headers)
    r = await client.get("login?next=%2Fjupyter%2Fhub%2Fhome", headers=h)
    loc = urlsplit(redirect(r))
    assert loc.path == "/auth/login"
    assert parse_qs(loc.query) == {
        "next": ["https://bs.example/jupyter/hub/login?next=%2Fjupyter%2Fhub%2Fhome"]
    }
    assert LOGIN_COOKIE not in client.session.cookies
    assert client.session.cookies.get(LOGIN_GUARD_COOKIE) == "1"


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-" + "x" * 40])
async def test_forged_identity_without_right_secret_is_not_logged_in(client, secret):
    r = await client.get("login", identity="ops-admin", secret=secret)
    assert redirect(r) == TESTBED_LOGIN
    assert LOGIN_COOKIE not in client.session.cookies
    assert await client.whoami("ops-admin", secret=secret) is None


async def test_redirect_loop_is_broken_with_an_explanation(client):
    answers = []
    for _ in range(3):
        r = await client.get("login", identity=None)
        answers.append((r.status_code, r.headers.get("Location")))
    assert answers == [(302, TESTBED_LOGIN), (302, TESTBED_LOGIN), (403, None)]
    assert "X-Testbed-Hub-Secret" in r.text
    # after the error page the counter starts again
    assert LOGIN_GUARD_COOKIE not in client.session.cookies
    # a good login clears the counter
    assert redirect(await client.get("login", identity=None)) == TESTBED_LOGIN
    assert client.session.cookies.get(LOGIN_GUARD_COOKIE) == "1"
    r = await client.get("login", identity="ue-01")
    assert redirect(r) == SPAWN
    assert LOGIN_GUARD_COOKIE not in client.session.cookies
    assert await client.whoami("ue-01") == "ue-01"


async def test_unauthenticated_page_goes_to_hub_login_not_error(client):
    r = await client.get("home", identity=None, secret=None)
    assert redirect(r) == "/jupyter/hub/login?next=%2Fjupyter%2Fhub%2Fhome"


async def test_admin_flag_from_admin_users(client, hub, make_client):
    assert redirect(await client.get("login", identity="ops-admin")) == SPAWN
    assert await client.whoami("ops-admin") == "ops-admin"
    assert hub.users["ops-admin"].admin is True
    other = make_client(hub)
    assert redirect(await other.get("login", identity="ue-02")) == SPAWN
    assert await other.whoami("ue-02") == "ue-02"
    assert hub.users["ue-02"].admin is False


async def test_secret_file_missing_disables_header_login(client, hub, secret_file):
    secret_file.unlink()
    r = await client.get("login", identity="ue-01")
    assert redirect(r) == TESTBED_LOGIN
    assert LOGIN_COOKIE not in client.session.cookies
    assert "ue-01" not in hub_users(hub)


async def test_secret_rotation_is_picked_up(client, secret_file):
    new = "n" * 48
    secret_file.write_text(new)
    r = await client.get("login", identity="ue-01")  # old secret
    assert redirect(r) == TESTBED_LOGIN
    assert LOGIN_COOKIE not in client.session.cookies
    r = await client.get("login?next=/jupyter/hub/home", identity="ue-01", secret=new)
    assert redirect(r) == "/jupyter/hub/home"
    assert LOGIN_COOKIE in client.session.cookies
    assert await client.whoami("ue-01", secret=new) == "ue-01"


async def test_identity_change_logs_out_old_user(client):
    assert redirect(await client.get("login", identity="ue-01")) == SPAWN
    assert await client.whoami("ue-01") == "ue-01"
    await asyncio.sleep(1.1)  # auth_refresh_age is 1 s (a lower bound: load only adds)
    # same browser (cookies), the testbed now says ue-02: the old session is refused
    assert await client.whoami("ue-02") is None
    r = await client.get("home", identity="ue-02")
    assert redirect(r) == "/jupyter/hub/login?next=%2Fjupyter%2Fhub%2Fhome"
    r = await client.get("login?next=/jupyter/hub/home", identity="ue-02")
    assert redirect(r) == "/jupyter/hub/home"
    assert LOGIN_COOKIE in client.session.cookies
    assert await client.whoami("ue-02") == "ue-02"


async def test_request_without_headers_after_login_is_refused(client):
    assert redirect(await client.get("login", identity="ue-01")) == SPAWN
    assert await client.whoami("ue-01") == "ue-01"
    await asyncio.sleep(1.1)
    # cookies stolen/replayed to the hub port directly, without nginx's secret
    assert await client.whoami(None, secret=None) is None


async def test_logout_goes_to_testbed_logout(client):
    assert redirect(await client.get("login", identity="ue-01")) == SPAWN
    assert LOGIN_COOKIE in client.session.cookies
    r = await client.get("logout", identity="ue-01")
    loc = urlsplit(redirect(r))
    assert loc.path == "/auth/logout"
    # back to the page nginx serves without a session: "You have logged out"
    assert parse_qs(loc.query) == {"next": ["http://bs.example/jupyter/logged-out"]}
    assert LOGIN_COOKIE not in client.session.cookies


async def test_api_token_requests_are_not_refreshed_against_headers(client, hub):
    assert redirect(await client.get("login", identity="ue-01")) == SPAWN
    user = hub.users["ue-01"]
    token = user.new_api_token()
    await asyncio.sleep(1.1)
    r = await client.session.get(
        client.base + "api/user",
        headers={"Authorization": f"token {token}"},
        cookies={},
    )
    assert r.status_code == 200
    assert r.json()["name"] == "ue-01"
