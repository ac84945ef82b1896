"""The reverse proxy's contract as reusable checks (for Molecule / e2e tests).

Each function sends real requests through nginx with :mod:`testbed_proxy.client`
and raises AssertionError with what was expected and what came back. They work
with any upstream; the ``*_echo`` checks need the header-echo upstream
(:mod:`testbed_proxy.echo`) in place of the hub, the others also hold in front
of the real JupyterHub (the full-stack scenario).

Typical use in a testinfra module::

    t = Target("https://localhost:8443", connect=(ip, 443), verify=False)
    checks.assert_login_redirect(t, "/jupyter/hub/home?a=1&b=x%3Dy")
    cookies = checks.login_through_proxy(t, "alice@testbed.example", "wonderland")
"""

from __future__ import annotations

import base64
import json
import shlex
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from testbed_devtools.stats import compare
from testbed_proxy import bench
from testbed_proxy.client import (
    Response,
    Target,
    cookie_header,
    forwarded_headers,
    login,
    redirect_param,
    request,
    websocket,
)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# Identity headers a client may try to smuggle to the hub. Each case is one
# request's extra header lines: letter cases, duplicates, "_" spellings, the
# other identity headers nginx must drop, and a guessed hub secret.
FORGED_IDENTITY_CASES: dict[str, list[tuple[str, str]]] = {
    "canonical": [("X-Authorized-User", "mallory@testbed.example")],
    "lower-case": [("x-authorized-user", "mallory@testbed.example")],
    "upper-case": [("X-AUTHORIZED-USER", "mallory@testbed.example")],
    "twice": [
        ("X-Authorized-User", "mallory@testbed.example"),
        ("X-Authorized-User", "bob@testbed.example"),
    ],
    "twice-mixed-case": [
        ("x-Authorized-user", "mallory@testbed.example"),
        ("X-AUTHORIZED-USER", "bob@testbed.example"),
    ],
    "underscore": [("X-Authorized_User", "mallory@testbed.example")],
    "all-underscores": [("X_Authorized_User", "mallory@testbed.example")],
    "other-identity-headers": [
        ("Remote-User", "mallory@testbed.example"),
        ("X-Forwarded-User", "mallory@testbed.example"),
        ("remote_user", "mallory@testbed.example"),
    ],
    "guessed-secret": [
        ("X-Testbed-Hub-Secret", "0" * 64),
        ("X-Authorized-User", "mallory@testbed.example"),
    ],
}


# JupyterHub API tokens as clients send them (README "Scripts and editors"): the
# Authorization header's scheme in any letter case, Bearer like token. nginx lets
# these through without the testbed session (reverse_proxy_api_tokens_enabled).
API_TOKEN_AUTHORIZATIONS: dict[str, str] = {
    "token": "token 3f2a9c0d1e7b4a6f8c5d2e1b0a9f8e7d",
    "Bearer": "Bearer 3f2a9c0d1e7b4a6f8c5d2e1b0a9f8e7d",
    "upper-case-scheme": "TOKEN 3f2a9c0d1e7b4a6f8c5d2e1b0a9f8e7d",
    "lower-case-bearer-tab": "bearer\t3f2a9c0d1e7b4a6f8c5d2e1b0a9f8e7d",
}
# Authorization headers that carry no API token: such a request is a browser's
# and needs the testbed session like one without the header.
NOT_API_TOKEN_AUTHORIZATIONS: dict[str, str] = {
    "basic": "Basic YWxpY2U6d29uZGVybGFuZA==",
    "token-without-value": "token",
    "bearer-without-value": "Bearer ",
    "no-space": "token3f2a9c0d1e7b4a6f",
    "other-scheme": "Tokens 3f2a9c0d1e7b4a6f",
}
# Identity headers that must never reach the hub with a token request, whatever
# the client sent (the hub user and secret headers are in Contract).
OTHER_IDENTITY_HEADERS = (
    "Remote-User",
    "X-Forwarded-User",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
)


@dataclass(frozen=True)
class Contract:
    """The names the proxy and the auth service agree on (docs/ARCHITECTURE.md)."""

    hub_path: str = "/jupyter/"
    login_path: str = "/auth/login"
    next_param: str = "next"
    cookie_name: str = "testbed_session"
    user_header: str = "X-Authorized-User"
    secret_header: str = "X-Testbed-Hub-Secret"  # noqa: S105 - a header name


DEFAULT = Contract()


def _show(r: Response) -> str:
    return f"{r.status} {r.reason}, Location={r.header('Location')!r}, body={r.body[:200]!r}"


def assert_login_redirect(
    target: Target, path: str, contract: Contract = DEFAULT, extra: Sequence = ()
) -> str:
    """A browser without a session is sent to the login page with its URL as next.

    Returns the decoded success URL, which must equal the full original URL.
    """
    r = request(target, path, headers=[("Accept", BROWSER_ACCEPT), *extra])
    assert r.status == 302, f"GET {path} without a session: expected 302, got {_show(r)}"
    location = r.header("Location") or ""
    assert urlsplit(location).path == contract.login_path, (
        f"GET {path}: redirect goes to {location!r}, expected the login page {contract.login_path}"
    )
    success = redirect_param(location, contract.next_param)
    expected = target.url(path)
    assert success == expected, (
        f"GET {path}: login success URL {success!r} != original URL {expected!r}"
    )
    return success


def assert_plain_401(target: Target, path: str, headers: Sequence = ()) -> Response:
    """API, XHR and JSON clients without a session get a plain 401 JSON answer."""
    r = request(target, path, headers=list(headers))
    assert r.status == 401, f"GET {path} {list(headers)}: expected 401, got {_show(r)}"
    assert r.header("Location") is None, f"GET {path}: a 401 must not redirect ({_show(r)})"
    assert (r.header("Content-Type") or "").startswith("application/json"), _show(r)
    assert r.json()["status"] == 401
    return r


def login_through_proxy(
    target: Target, user: str, password: str = "", contract: Contract = DEFAULT
) -> dict[str, str]:
    """Log in through nginx -> the testbed login form; returns the session cookie jar.

    Also checks the complete round trip: protected URL -> login -> back at the
    exact protected URL.
    """
    path = f"{contract.hub_path}hub/home?tab=files&q=a%26b%3Dc"
    success = assert_login_redirect(target, path, contract)
    jar, r = login(
        target,
        user,
        password,
        login_path=contract.login_path,
        next_url=success,
        next_param=contract.next_param,
        cookie_name=contract.cookie_name,
    )
    assert r.status == 302 and r.header("Location") == success, (
        f"login as {user}: expected 302 back to {success!r}, got {_show(r)}"
    )
    return jar


def get_as(target: Target, path: str, cookies: dict[str, str], extra: Sequence = ()) -> Response:
    return request(target, path, headers=[cookie_header(cookies), *extra])


def assert_identity_echo(
    echo: dict, user: str, secret: str | None, contract: Contract = DEFAULT
) -> None:
    """The echo upstream saw exactly one identity header (``user``) and the secret."""
    users = forwarded_headers(echo, contract.user_header)
    assert users == [user], f"upstream saw {contract.user_header} = {users}, expected [{user!r}]"
    secrets = forwarded_headers(echo, contract.secret_header)
    if secret is not None:
        assert secrets == [secret], (
            f"upstream saw {len(secrets)} {contract.secret_header} header(s), expected the "
            "real secret exactly once"
        )
    for name in ("Remote-User", "X-Forwarded-User"):
        assert forwarded_headers(echo, name) == [], (
            f"a client's {name} reached the upstream: {forwarded_headers(echo, name)}"
        )


def assert_token_echo(echo: dict, authorization: str | None, contract: Contract = DEFAULT) -> None:
    """The echo upstream saw a token request as nginx must pass it: the client's
    Authorization header exactly once (none when ``authorization`` is None: a
    ``?token=`` or a request to the hub API's root), and no identity header, no
    secret header and no cookie, whatever the client sent (the hub alone decides)."""
    sent = forwarded_headers(echo, "Authorization")
    expected = [] if authorization is None else [authorization]
    assert sent == expected, f"upstream saw Authorization = {sent}, expected {expected}"
    for name in (contract.user_header, contract.secret_header, *OTHER_IDENTITY_HEADERS):
        assert forwarded_headers(echo, name) == [], (
            f"a token request reached the upstream with {name}: {forwarded_headers(echo, name)}"
        )
    assert forwarded_headers(echo, "Cookie") == [], (
        f"a token request reached the upstream with cookies: {forwarded_headers(echo, 'Cookie')}"
    )
    assert not any("mallory" in value for _, value in echo["headers"]), echo["headers"]


def assert_forgery_denied(target: Target, path: str, forged: Sequence) -> Response:
    """Without a session, forged identity headers never get past nginx."""
    r = request(target, path, headers=[("Accept", BROWSER_ACCEPT), *forged])
    assert r.status in (302, 401), (
        f"forged {list(forged)} without a session: expected 302/401 from nginx, got {_show(r)}"
    )
    return r


def assert_websocket_echo(target: Target, path: str, cookies: dict[str, str], user: str) -> dict:
    """A WebSocket upgrade passes through with the user header; frames go both ways."""
    ws = websocket(target, path, headers=[cookie_header(cookies)])
    assert ws.status == 101, f"WebSocket {path}: expected 101, got {ws.status} {ws.headers}"
    first = json.loads(ws.first_frame or b"{}")
    assert [v.lower() for v in forwarded_headers(first, "Upgrade")] == ["websocket"]
    assert "upgrade" in ",".join(forwarded_headers(first, "Connection")).lower()
    assert forwarded_headers(first, "X-Authorized-User") == [user]
    assert ws.reply == b"echo:ping-through-nginx", f"no echo over the WebSocket: {ws.reply!r}"
    return first


def tls_version(target: Target, version: ssl.TLSVersion) -> str | None:
    """Handshake with exactly ``version``; the negotiated version, or None when refused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = version
    ctx.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    host, port = target.address()
    try:
        with socket.create_connection((host, port), target.timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=urlsplit(target.base_url).hostname) as tls:
                return tls.version()
    except (ssl.SSLError, ConnectionError):
        return None


def bench_in_instance(
    host,
    cookie: str,
    hub_api_path: str = "/jupyter/hub/api/",
    port: int = 8090,
    requests: int = 300,
    warmup: int = 30,
    dest: str = "/opt/testbed-bench/bench.py",
) -> dict:
    """Run :mod:`testbed_proxy.bench` inside the base station (testinfra ``host``).

    Copies the single-file benchmark to ``dest``, times the three loopback
    benchmark listeners (``bench.listeners_conf``; P: no auth, P+1: auth,
    P+2: auth + cache) with the session ``cookie`` value and summarises the
    samples here (:func:`testbed_devtools.stats.compare`, milliseconds):
    ``cases`` (p50, p95, ...) and ``ratio`` of each median to ``noauth``'s.
    """
    with open(bench.__file__, "rb") as f:
        b64 = base64.b64encode(f.read()).decode()
    folder = dest.rsplit("/", 1)[0]
    host.check_output(f"mkdir -p {shlex.quote(folder)} && echo {b64} | base64 -d > {dest}")
    cases = " ".join(
        f"--case {name}=http://127.0.0.1:{port + i}{hub_api_path}"
        for i, name in enumerate(bench.CASES)
    )
    out = host.check_output(
        f"python3 {dest} measure --requests {int(requests)} --warmup {int(warmup)} {cases} "
        f"--cookie {shlex.quote('testbed_session=' + cookie)}"
    )
    raw = json.loads(out)
    return {
        "requests": raw["requests"],
        "unit": "ms",
        **compare(raw["samples"], baseline="noauth", scale=1000.0),
    }
