"""HeaderAuthenticator inside a real JupyterHub (MockHub) over HTTP."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from testbed_hub.auth import LOGIN_GUARD_COOKIE, identity_to_username

pytestmark = pytest.mark.asyncio


async def test_header_with_secret_logs_in_and_redirects_to_next(client):
    r = await client.get("login?next=/jupyter/hub/home", identity="ue-01")
    assert r.status_code == 302
    assert r.headers["Location"] == "/jupyter/hub/home"
    assert "jupyterhub-hub-login" in client.session.cookies
    assert await client.whoami("ue-01") == "ue-01"


async def test_email_identity_gets_mapped_safe_name(client, hub):
    r = await client.get("login", identity="Alice.Smith@Example.org")
    assert r.status_code == 302
    name = identity_to_username("Alice.Smith@Example.org")
    assert name.startswith("alice-smith-example-org-")
    assert await client.whoami("Alice.Smith@Example.org") == name
    assert hub.users[name].name == name


@pytest.mark.parametrize("headers", [{}, {"X-Authorized-User": ""}])
async def test_missing_or_empty_header_redirects_to_testbed_login(client, headers):
    h = client.headers(None, **{"X-Forwarded-Proto": "https,http"})
    h.update(headers)
    r = await client.get("login?next=%2Fjupyter%2Fhub%2Fhome", headers=h)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert loc.path == "/auth/login"
    assert parse_qs(loc.query)["next"] == [
        "https://bs.example/jupyter/hub/login?next=%2Fjupyter%2Fhub%2Fhome"
    ]
    assert "jupyterhub-hub-login" not in client.session.cookies


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-" + "x" * 40])
async def test_forged_identity_without_right_secret_is_not_logged_in(client, secret):
    r = await client.get("login", identity="ops-admin", secret=secret)
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/auth/login"
    assert "jupyterhub-hub-login" not in client.session.cookies
    assert await client.whoami("ops-admin", secret=secret) is None


async def test_redirect_loop_is_broken_with_an_explanation(client):
    statuses = []
    for _ in range(3):
        r = await client.get("login", identity=None)
        statuses.append(r.status_code)
    assert statuses == [302, 302, 403]
    assert "X-Testbed-Hub-Secret" in r.text
    # after the error page the counter starts again
    assert LOGIN_GUARD_COOKIE not in client.session.cookies
    # a good login clears the counter
    await client.get("login", identity=None)
    assert client.session.cookies.get(LOGIN_GUARD_COOKIE) == "1"
    r = await client.get("login", identity="ue-01")
    assert r.status_code == 302
    assert LOGIN_GUARD_COOKIE not in client.session.cookies


async def test_unauthenticated_page_goes_to_hub_login_not_error(client):
    r = await client.get("home", identity=None, secret=None)
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/jupyter/hub/login"


async def test_admin_flag_from_admin_users(client, hub, make_client):
    await client.get("login", identity="ops-admin")
    assert hub.users["ops-admin"].admin is True
    other = make_client(hub)
    await other.get("login", identity="ue-02")
    assert hub.users["ue-02"].admin is False


async def test_secret_file_missing_disables_header_login(client, secret_file):
    secret_file.unlink()
    r = await client.get("login", identity="ue-01")
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/auth/login"


async def test_secret_rotation_is_picked_up(client, secret_file):
    new = "n" * 48
    secret_file.write_text(new)
    r = await client.get("login", identity="ue-01")  # old secret
    assert urlsplit(r.headers["Location"]).path == "/auth/login"
    r = await client.get("login", identity="ue-01", secret=new)
    assert r.headers["Location"] == "/jupyter/hub/home" or r.status_code == 302
    assert await client.whoami("ue-01", secret=new) == "ue-01"


async def test_identity_change_logs_out_old_user(client):
    await client.get("login", identity="ue-01")
    assert await client.whoami("ue-01") == "ue-01"
    await asyncio.sleep(1.1)  # auth_refresh_age is 1 s
    # same browser (cookies), the testbed now says ue-02: the old session is refused
    assert await client.whoami("ue-02") is None
    r = await client.get("home", identity="ue-02")
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/jupyter/hub/login"
    r = await client.get("login?next=/jupyter/hub/home", identity="ue-02")
    assert r.status_code == 302
    assert await client.whoami("ue-02") == "ue-02"


async def test_request_without_headers_after_login_is_refused(client):
    await client.get("login", identity="ue-01")
    await asyncio.sleep(1.1)
    # cookies stolen/replayed to the hub port directly, without nginx's secret
    assert await client.whoami(None, secret=None) is None


async def test_logout_goes_to_testbed_logout(client):
    await client.get("login", identity="ue-01")
    r = await client.get("logout", identity="ue-01")
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert loc.path == "/auth/logout"
    assert parse_qs(loc.query)["next"] == ["http://bs.example/jupyter/"]
    assert "jupyterhub-hub-login" not in client.session.cookies


async def test_api_token_requests_are_not_refreshed_against_headers(client, hub):
    await client.get("login", identity="ue-01")
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
