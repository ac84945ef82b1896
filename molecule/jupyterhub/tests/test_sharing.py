"""Sharing a server through JupyterHub's REST API (issue 16, item 4).

Runs after test_server_choices.py and before test_station_confinement.py (file
order), with the users this scenario allows through every re-run:
the owner (alice) starts her server; without a share, another user's token gets 403
at the owner's server; the owner shares it with that user's testbed identifier
(``POST /hub/api/testbed/shares`` with her own token, as the home page does with her
session); the other user gets 200, a third user still 403; the owner revokes, and
the other user gets 403 again. What the hub refuses of JupyterHub's sharing is
refused through the proxy too: a share with an admin, scopes beyond access, share
codes. Sharing is on in this scenario's converge.yml (off by default).

The single-user server caches the hub's answer for a token for up to
``HubOAuth.cache_max_age`` (``notebook_image_hub_auth_cache_seconds``, 30 s here;
JupyterHub's default is 300 s): a token it has just refused
would stay refused that long after a share, and one it has just let in would stay in
that long after a revoke. Each step therefore uses a fresh token, and the token that
was let in is polled until it is refused (the revoke's real delay, within a deadline).
"""

from __future__ import annotations

import json
import time

import pytest
from test_jupyterhub import PROXY, api, http, journal, wait_ready

from testbed_hub.auth import username_for

OWNER = username_for("alice@testbed.example", fold_case=True)
FRIEND = username_for("jos\u00e9@testbed.example", fold_case=True)
OTHER = username_for("Mixed.Case@Testbed.Example", fold_case=True)
CACHE_MAX_AGE = 30  # HubOAuth.cache_max_age of the image (notebook_image_hub_auth_cache_seconds)


def user_token(host, admin_token, user):
    """A fresh API token of ``user`` (the admin asks the hub for it)."""
    assert api(host, admin_token, "POST", f"/users/{user}")["status"] in (201, 409)
    r = api(
        host,
        admin_token,
        "POST",
        f"/users/{user}/tokens",
        json.dumps({"note": "sharing test", "expires_in": 900}),
    )
    assert r["status"] == 201, r["body"]
    return r["json"]["token"]


def contents(host, token):
    """GET the owner's /api/contents through the proxy with ``token``: the status."""
    url = f"{PROXY}/user/{OWNER}/api/contents"
    return http(host, "GET", url, {"Authorization": f"token {token}"})["status"]


def share_by_identity(host, owner_token, identity):
    """What the home page's Share button posts (with the session instead of a token)."""
    return api(host, owner_token, "POST", "/testbed/shares", json.dumps({"identity": identity}))


def share(host, owner_token, method, body=None):
    payload = "" if body is None else json.dumps(body)
    return api(host, owner_token, method, f"/shares/{OWNER}/", payload)


@pytest.fixture(scope="module")
def owner(host, token):
    """The owner's running server and her own token."""
    mine = user_token(host, token, OWNER)
    assert api(host, token, "POST", f"/users/{OWNER}/server")["status"] in (201, 202, 400)
    wait_ready(host, token, OWNER)
    share(host, mine, "DELETE")  # no share left from an earlier run
    yield mine
    share(host, mine, "DELETE")
    api(host, token, "DELETE", f"/users/{OWNER}/server")
    wait_ready(host, token, OWNER, ready=False)  # the next test file starts clean


def test_a_share_opens_the_owners_server_and_a_revoke_closes_it(
    host, token, owner, record_property
):
    # the owner herself, with her token
    assert contents(host, owner) == 200, journal(host, "jupyterhub")
    # without a share: refused
    assert contents(host, user_token(host, token, FRIEND)) == 403
    assert contents(host, user_token(host, token, OTHER)) == 403

    r = share_by_identity(host, owner, "Jos\u00e9@testbed.example")
    assert r["status"] == 200, r["body"]
    assert "they can now open your server" in r["json"]["message"]
    listed = share(host, owner, "GET")["json"]["items"]
    assert [s["user"]["name"] for s in listed] == [FRIEND]
    assert [s["scopes"] for s in listed] == [[f"access:servers!server={OWNER}/"]]

    friend = user_token(host, token, FRIEND)
    assert contents(host, friend) == 200, journal(host, "jupyterhub")
    assert contents(host, user_token(host, token, OTHER)) == 403  # only who it names
    # access only: the shared-with user can neither stop the server nor share it on
    assert api(host, friend, "DELETE", f"/users/{OWNER}/server")["status"] in (403, 404)
    assert share(host, friend, "POST", {"user": OTHER})["status"] in (403, 404)

    r = share(host, owner, "PATCH", {"user": FRIEND})  # the home page's Revoke
    assert r["status"] == 200, r["body"]
    assert share(host, owner, "GET")["json"]["items"] == []
    assert contents(host, user_token(host, token, FRIEND)) == 403
    # the token the server let in: refused once its cached answer expires
    revoked = time.monotonic()
    deadline = revoked + CACHE_MAX_AGE + 15
    while (status := contents(host, friend)) != 403:
        assert status == 200, status
        assert time.monotonic() < deadline, "still let in after the revoke"
        time.sleep(1)
    record_property("revoke_effective_seconds", round(time.monotonic() - revoked, 1))


def test_the_hub_refuses_admins_other_scopes_and_share_codes(host, owner):
    r = share_by_identity(host, owner, "hub-admin")  # an admin of this scenario
    assert r["status"] == 403, r["body"]
    assert "hub-admin is a hub admin" in r["json"]["message"]
    r = share(host, owner, "POST", {"user": FRIEND, "scopes": [f"servers!server={OWNER}/"]})
    assert r["status"] == 400, r["body"]
    assert "grants only access to the server" in r["json"]["message"]
    r = api(host, owner, "POST", f"/share-codes/{OWNER}/", "{}")
    assert r["status"] == 403, r["body"]
    assert "share codes are off on this hub" in r["json"]["message"]
    assert share(host, owner, "GET")["json"]["items"] == []
