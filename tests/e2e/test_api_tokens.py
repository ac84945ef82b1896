"""JupyterHub API tokens through nginx (README "Scripts and editors (API tokens)").

A request with a JupyterHub API token and no testbed session reaches the hub,
and nginx sends it without any identity header and without the secret header:
the hub alone decides, by the token. Molecule ``reverse_proxy`` proves what
nginx forwards (a header-echo upstream in the hub's place); here the real hub
and the users' servers show what that means from a researcher's laptop: the
token is its owner and nobody else, whatever identity header comes with it; it
opens its owner's server (REST and a kernel over its WebSocket, as VS Code
does) and not another user's; without a token and a session nginx still answers
401.

The token is made the way a researcher makes one on the hub's Token page:
logged in through the testbed login, ``POST /jupyter/hub/api/users/<name>/tokens``
with the browser session and the hub's XSRF token. It expires after an hour and
is deleted at the end of the module. Every token request goes out with exactly
the headers listed (no cookie jar): :func:`testbed_proxy.client.request`.
"""

from __future__ import annotations

import json
import ssl

import pytest
from conftest import ALICE, BOB

from testbed_devtools.hubclient import BROWSER_ACCEPT, HubSession, _run_on_channel
from testbed_proxy import checks
from testbed_proxy.client import Target, request

TOKEN_NOTE = "e2e tests/e2e/test_api_tokens.py"


@pytest.fixture(scope="module")
def target(base_url) -> Target:
    return Target(base_url, verify=False, timeout=60)


@pytest.fixture(scope="module")
def bob_session(base_url, bob) -> HubSession:
    """bob (no admin) logged in through the testbed, his server running."""
    s = HubSession(base_url)
    s.login_to_lab(BOB, bob)
    return s


@pytest.fixture(scope="module")
def alice_server(base_url, alice) -> str:
    """alice's server running (a user without a server would give 404, not 403).
    The token's owner is bob: alice is an admin in the demo, and JupyterHub lets an
    admin's token open any server."""
    HubSession(base_url).login_to_lab(ALICE, alice)
    return alice


@pytest.fixture(scope="module")
def bob_token(bob_session, bob, target):
    """An API token of bob's, made on the hub's Token page through nginx."""
    page = bob_session.get("/jupyter/hub/token", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200, (page.status_code, page.url)
    # The page set the hub's _xsrf cookie (path /jupyter/hub/); the API wants it back.
    xsrf = [
        c.value
        for c in bob_session.http.cookies
        if c.name == "_xsrf" and (c.path or "").startswith("/jupyter/hub")
    ]
    assert xsrf, f"no hub _xsrf cookie after the Token page: {list(bob_session.http.cookies)}"
    r = bob_session.http.post(
        bob_session.hub(f"hub/api/users/{bob}/tokens"),
        json={"note": TOKEN_NOTE, "expires_in": 3600},
        headers={"Accept": "application/json", "X-XSRFToken": xsrf[0]},
        timeout=60,
    )
    assert r.status_code == 201, (r.status_code, r.text[:500])
    made = r.json()
    yield made["token"]
    gone = request(
        target,
        f"/jupyter/hub/api/users/{bob}/tokens/{made['id']}",
        "DELETE",
        [("Authorization", f"token {made['token']}")],
    )
    assert gone.status == 204, (gone.status, gone.body[:300])


def with_token(token: str, *extra: tuple[str, str], scheme: str = "token") -> list:
    return [*extra, ("Accept", "application/json"), ("Authorization", f"{scheme} {token}")]


@pytest.mark.parametrize("scheme", ["token", "Bearer", "bearer"])
def test_token_alone_is_its_owner(target, bob_token, bob, scheme):
    r = request(target, "/jupyter/hub/api/user", headers=with_token(bob_token, scheme=scheme))
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json()["name"] == bob


@pytest.mark.parametrize(
    "case",
    ["canonical", "lower-case", "twice-mixed-case", "other-identity-headers", "guessed-secret"],
)
def test_forged_identity_with_token_is_still_the_tokens_owner(target, bob_token, bob, alice, case):
    """alice's identity in every spelling nginx must drop, with bob's token: bob."""
    forged = [
        (k, v.replace("mallory@testbed.example", ALICE))
        for k, v in checks.FORGED_IDENTITY_CASES[case]
    ]
    r = request(target, "/jupyter/hub/api/user", headers=with_token(bob_token, *forged))
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json()["name"] == bob, f"{case}: the hub took {r.json()['name']!r}"
    assert alice not in r.body.decode()


def test_token_opens_its_owners_server(target, bob_token, bob):
    r = request(target, f"/jupyter/user/{bob}/api/status", headers=with_token(bob_token))
    assert r.status == 200, (r.status, r.body[:300])
    assert "started" in r.json(), r.json()


@pytest.mark.parametrize("forged", [[], [("X-Authorized-User", ALICE)]], ids=["plain", "forged"])
def test_token_cannot_open_another_users_server(target, bob_token, alice_server, forged):
    for path in (
        f"/jupyter/user/{alice_server}/api/status",
        f"/jupyter/user/{alice_server}/api/contents",
    ):
        r = request(target, path, headers=with_token(bob_token, *forged))
        assert r.status == 403, (path, r.status, r.body[:300])


def test_kernel_over_websocket_with_token(base_url, target, bob_token, bob):
    """What VS Code does with a token: start a kernel over REST, run code over the
    kernel's WebSocket (token in the upgrade's Authorization header), no cookie."""
    import websocket  # websocket-client, a test dependency

    api = f"/jupyter/user/{bob}/api/kernels"
    r = request(
        target,
        api,
        "POST",
        with_token(bob_token, ("Content-Type", "application/json")),
        json.dumps({"name": "python3"}).encode(),
    )
    assert r.status == 201, (r.status, r.body[:300])
    kernel_id = r.json()["id"]
    try:
        url = base_url.replace("https://", "wss://", 1) + f"{api}/{kernel_id}/channels"
        ws = websocket.create_connection(
            url,
            header=[f"Authorization: token {bob_token}"],
            origin=base_url,
            sslopt={"cert_reqs": ssl.CERT_NONE},
            timeout=60,
            http_no_proxy=["*"],
        )
        try:
            out = _run_on_channel(ws, "import getpass; print(6 * 7, getpass.getuser())", 60)
        finally:
            ws.close()
        assert out["status"] == "ok", out
        assert out["stdout"].split() == ["42", "jovyan"], out
    finally:
        request(target, f"{api}/{kernel_id}", "DELETE", with_token(bob_token))


def test_unknown_token_is_anonymous_to_the_hub(target, bob):
    """nginx lets any token through; the hub refuses one it does not know (its own
    403, not nginx's 401), and a forged identity header does not help."""
    unknown = "0123456789abcdef0123456789abcdef"
    for path in ("/jupyter/hub/api/user", f"/jupyter/hub/api/users/{bob}"):
        r = request(target, path, headers=with_token(unknown, ("X-Authorized-User", BOB)))
        assert r.status == 403, (path, r.status, r.body[:300])
        assert b"Not logged in to the testbed" not in r.body, "nginx answered, not the hub"


def test_without_token_or_session_nginx_answers_401(target, bob):
    for path in ("/jupyter/hub/api/user", f"/jupyter/user/{bob}/api/status"):
        checks.assert_plain_401(target, path, [("Accept", "application/json")])


def test_hub_api_root_answers_the_version(target):
    """The one URL an editor asks before it has a token (VS Code's JupyterHub
    extension recognises a hub by it): JupyterHub's version, to anyone."""
    r = request(target, "/jupyter/hub/api", headers=[("Accept", "application/json")])
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json()["version"], r.json()
