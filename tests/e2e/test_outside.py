"""Security checks from outside the base station (this machine plays the client).

Only nginx answers; the hub, the proxy's API, the notebook servers and the
simulator's login service do not; forged identity headers get nowhere; one user
cannot reach another's server; a kernel started through nginx runs code over its
WebSocket and cannot write the recordings.
"""

from __future__ import annotations

import socket

import pytest
from conftest import ALICE, BOB, in_instance

from testbed_devtools.hubclient import BROWSER_ACCEPT, HubSession
from testbed_proxy import checks
from testbed_proxy.client import Target, request

# Ports the base station may expose: nginx. Everything else that listens must be
# loopback- or bridge-only, the database included (loopback and the jupyter
# gateway: README "Where MongoDB must listen"; the simulator listens so).
PUBLIC = {80, 443}
TESTBED_OWNED: set[int] = set()
MUST_BE_CLOSED = {8000, 8001, 8081, 9000, 8888, 27017}


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state inside the instance (from /proc, no tools needed)."""
    out = in_instance("cat /proc/net/tcp /proc/net/tcp6").stdout
    ports = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[3] == "0A":
            ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def answers(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def target(base_url) -> Target:
    return Target(base_url, verify=False)


@pytest.fixture(scope="module")
def bob_session(base_url, bob) -> HubSession:
    s = HubSession(base_url)
    s.login_to_lab(BOB, bob)
    return s


def test_only_nginx_ports_answer_from_outside(instance_ip):
    listening = listening_ports()
    assert {80, 443} <= listening, listening
    assert {8000, 8001, 8081} <= listening, f"hub/proxy not listening: {listening}"
    reachable = {p for p in listening | MUST_BE_CLOSED if answers(instance_ip, p)}
    assert reachable - TESTBED_OWNED == PUBLIC, (
        f"from outside, {sorted(reachable)} answer on {instance_ip}; only {sorted(PUBLIC)} may"
    )


def test_http_redirects_to_https(instance_ip):
    resp = request(
        Target(f"http://{instance_ip}", verify=False),
        "/jupyter/hub/home",
        headers=[("Accept", BROWSER_ACCEPT)],
    )
    assert resp.status == 301, resp.status
    assert (resp.header("Location") or "").startswith("https://"), resp.header("Location")


@pytest.mark.parametrize("case", sorted(checks.FORGED_IDENTITY_CASES))
def test_forged_identity_without_session_gets_nowhere(target, case, alice):
    forged = checks.FORGED_IDENTITY_CASES[case]
    for path in (
        "/jupyter/hub/home",
        f"/jupyter/user/{alice}/api/contents",
        "/jupyter/hub/api/user",
    ):
        r = checks.assert_forgery_denied(target, path, forged)
        assert b"alice" not in r.body and b"mallory" not in r.body


@pytest.mark.parametrize("case", ["canonical", "lower-case", "twice-mixed-case"])
def test_logged_in_user_forging_another_gets_only_their_own(
    bob_session, base_url, alice, bob, case
):
    forged = [
        (k, v.replace("mallory@testbed.example", ALICE))
        for k, v in checks.FORGED_IDENTITY_CASES[case]
    ]
    s = bob_session.http
    # requests folds headers into a dict; the raw client sends every line as given.
    target = Target(base_url, verify=False)
    cookies = {c.name: c.value for c in s.cookies if c.path in ("/", "/jupyter/hub/")}
    home = checks.get_as(
        target, "/jupyter/hub/home", cookies, [("Accept", BROWSER_ACCEPT), *forged]
    )
    assert home.status == 200, home.status
    page = home.body.decode()
    assert f'href="/jupyter/user/{bob}"' in page, "bob's home page does not link bob's server"
    assert alice not in page, "bob's home page mentions alice's server"
    # The other user's server: the hub refuses bob, whatever header he adds.
    r = s.get(
        f"{base_url}/jupyter/user/{alice}/lab",
        headers={"Accept": BROWSER_ACCEPT, forged[0][0]: forged[0][1]},
        timeout=30,
    )
    assert r.status_code == 403, (r.status_code, r.url)


def test_kernel_through_nginx_runs_code_over_websocket(bob_session):
    out = bob_session.execute("import getpass; print(6 * 7, getpass.getuser()); 2 ** 10")
    assert out["status"] == "ok", out
    assert out["stdout"].split() == ["42", "jovyan"], out
    assert out["result"] == "1024"


def test_notebook_cannot_write_the_recordings(bob_session):
    code = (
        "import os, pathlib\n"
        "media = pathlib.Path.home() / 'nist' / 'media'\n"
        "print(len(list(media.glob('*/*.wav'))))\n"
        "(media / 'e2e-write-probe.txt').write_text('x')\n"
    )
    out = bob_session.execute(code)
    assert out["status"] == "error", out
    assert "Read-only file system" in out.get("error", ""), out
    assert int(out["stdout"].strip()) > 0, out
    home = bob_session.execute(
        "import pathlib; p = pathlib.Path.home() / 'nist' / 'e2e-probe.txt'; "
        "p.write_text('kept'); print(p.read_text())"
    )
    assert home["status"] == "ok" and home["stdout"].strip() == "kept", home
