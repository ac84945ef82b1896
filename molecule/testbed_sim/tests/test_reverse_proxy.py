"""nginx in front: auth_request SSO, identity headers, API tokens, websockets, TLS, cache, bench.

HTTP requests go from the control node (outside the base-station instance) to
the instance's address, with the Host the demo's port mapping gives
(localhost:8443 -> 443, localhost:8080 -> 80). The hub is replaced by the
header-echo upstream (prepare.yml), the auth service is the simulator's.

Nothing here waits a fixed time or compares durations: what happened behind
nginx is read from the journals of the echo upstream and of the auth service
(which log every request), after a marker request sent later has appeared
there, so the log is known to have caught up; caching is proven by counting
the auth checks nginx made.
"""

import json
import math
import shlex
import ssl
import time
import uuid
from collections.abc import Callable

import pytest

from testbed_proxy import checks
from testbed_proxy.client import (
    Target,
    cookie_header,
    forwarded_headers,
    login,
    request,
    websocket,
)

HUB = "/jupyter/"
ALICE = ("alice@testbed.example", "wonderland")
BOB = ("bob@testbed.example", "")
SECRET_FILE = "/etc/jupyterhub/secrets/proxy-auth-secret"  # noqa: S105 - a path
AUTH_UNIT = "testbed-sim-auth"
AUTH_CHECK = "http://127.0.0.1:9000/auth/check"  # the simulator's auth check, inside
ECHO_UNIT = "testbed-echo"
ECHO = "http://127.0.0.1:8000"  # the header-echo upstream in the hub's place
UNIT_PORTS = {AUTH_UNIT: 9000, ECHO_UNIT: 8000}
# How the simulator (tornado.access) logs an auth check nginx made: no query.
NGINX_AUTH_CHECK = "GET /auth/check ("


def journal(host, unit, n=40):
    return host.run(f"journalctl -u {unit} --no-pager -n {n}").stdout


def log_lines(host, unit) -> list[str]:
    """Every message of ``unit`` in the journal, oldest first."""
    return host.run(f"journalctl -u {unit} --no-pager -o cat").stdout.splitlines()


def wait_until(
    condition: Callable[[], object],
    what: str,
    timeout: float = 60,
    interval: float = 0.2,
    detail: Callable[[], str] | None = None,
):
    """Poll ``condition`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s" + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


def log_marker(host, unit: str, url: str) -> str:
    """Send a request with a fresh marker in its URL straight to ``unit``; return the
    marker once its log line is in the journal (everything the unit logged before is too)."""
    marker = f"caught-up-{uuid.uuid4().hex}"
    host.check_output(f"curl -s -o /dev/null {shlex.quote(url + marker)}")
    wait_until(
        lambda: any(marker in line for line in log_lines(host, unit)),
        f"{unit} logging the request {marker}",
        detail=lambda: journal(host, unit),
    )
    return marker


def auth_marker(host) -> str:
    return log_marker(host, AUTH_UNIT, f"{AUTH_CHECK}?marker=")


def auth_checks_between(host, start: str, end: str) -> int:
    """Auth checks nginx made between two markers (see :func:`auth_marker`)."""
    lines = log_lines(host, AUTH_UNIT)
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i, line in enumerate(lines) if end in line)
    return sum(NGINX_AUTH_CHECK in line for line in lines[first + 1 : last])


@pytest.fixture(scope="module")
def ip(host):
    addrs = [a for a in host.interface("eth0").addresses if ":" not in a]
    assert addrs, "the instance has no IPv4 address on eth0"
    return addrs[0]


@pytest.fixture(scope="module")
def https(ip):
    return Target("https://localhost:8443", connect=(ip, 443), verify=False)


@pytest.fixture(scope="module")
def http(ip):
    return Target("http://localhost:8080", connect=(ip, 80))


@pytest.fixture(scope="module")
def secret(host):
    return host.check_output(f"cat {SECRET_FILE}").strip()


@pytest.fixture(scope="module")
def alice(https):
    return checks.login_through_proxy(https, *ALICE)


@pytest.fixture(scope="module")
def bob(https):
    return checks.login_through_proxy(https, *BOB)


@pytest.fixture
def stopped(host):
    """Stop a unit for one test and start it again afterwards."""
    units = []

    def stop(unit):
        host.check_output(f"systemctl stop {unit}")
        units.append(unit)

    yield stop
    for unit in units:
        host.check_output(f"systemctl start {unit}")
        port = UNIT_PORTS[unit]
        wait_until(
            lambda port=port: host.socket(f"tcp://127.0.0.1:{port}").is_listening,
            f"{unit} listening on 127.0.0.1:{port} again after its restart",
            detail=lambda unit=unit: journal(host, unit),
        )


AUTH_CONFIG = "/etc/testbed-sim/auth.json"  # the testbed_sim role's default
NGINX_ERROR_LOG = "/var/log/nginx/testbed-hub.error.log"


@pytest.fixture
def auth_padding(host):
    """Give the simulator's auth check a padded answer for one test
    (``check_padding_bytes``, off in the role's config), then restore its config."""
    host.check_output(f"cp -p {AUTH_CONFIG} {AUTH_CONFIG}.molecule")

    def restart():
        host.check_output(f"systemctl restart {AUTH_UNIT}")
        wait_until(
            lambda: host.socket("tcp://127.0.0.1:9000").is_listening,
            f"{AUTH_UNIT} listening again after its restart",
            detail=lambda: journal(host, AUTH_UNIT),
        )

    def pad(n: int) -> None:
        config = json.loads(host.check_output(f"cat {AUTH_CONFIG}"))
        config["check_padding_bytes"] = n
        host.check_output(f"echo {shlex.quote(json.dumps(config))} > {AUTH_CONFIG}")
        restart()

    yield pad
    host.check_output(f"mv {AUTH_CONFIG}.molecule {AUTH_CONFIG}")
    restart()


# -- service and files -------------------------------------------------------------


def test_nginx_running_enabled_and_listening(host):
    svc = host.service("nginx")
    assert svc.is_running, journal(host, "nginx")
    assert svc.is_enabled
    for spec in ("tcp://0.0.0.0:80", "tcp://0.0.0.0:443"):
        assert host.socket(spec).is_listening, spec
    for port in (8090, 8091, 8092):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_config_valid_default_site_gone_secret_root_only(host):
    assert host.run("nginx -t").rc == 0
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    site = host.file("/etc/nginx/sites-enabled/testbed-hub.conf")
    assert site.is_symlink and site.linked_to == "/etc/nginx/sites-available/testbed-hub.conf"
    snippet = host.file("/etc/nginx/snippets/testbed-hub-hub-secret.conf")
    assert (snippet.user, snippet.group, snippet.mode) == ("root", "root", 0o600)
    key = host.file("/etc/nginx/tls/testbed-hub.key")
    assert (key.user, key.mode) == ("root", 0o600)


# -- TLS and HTTP ------------------------------------------------------------------


def test_http_redirects_to_https_on_public_port(http):
    r = request(http, "/jupyter/hub/home?a=1&b=x%3Dy")
    assert r.status == 301
    assert r.header("Location") == "https://localhost:8443/jupyter/hub/home?a=1&b=x%3Dy"


def test_self_signed_certificate_names(host):
    text = host.check_output("openssl x509 -in /etc/nginx/tls/testbed-hub.crt -noout -text")
    for name in ("DNS:localhost", "IP Address:127.0.0.1", "DNS:basestation.testbed.example"):
        assert name in text


@pytest.mark.parametrize(
    "version,accepted",
    [
        (ssl.TLSVersion.TLSv1_3, True),
        (ssl.TLSVersion.TLSv1_2, True),
        (ssl.TLSVersion.TLSv1_1, False),
        (ssl.TLSVersion.TLSv1, False),
    ],
)
def test_tls_versions(https, version, accepted):
    got = checks.tls_version(https, version)
    assert (got is not None) == accepted, f"{version.name}: negotiated {got}"


def test_security_headers_on_every_answer(https, alice):
    for r in (
        request(https, "/"),
        request(https, "/jupyter/hub/api/"),
        checks.get_as(https, "/jupyter/hub/api/", alice),
    ):
        assert r.header("Strict-Transport-Security") == "max-age=31536000"
        assert r.header_all("X-Content-Type-Options") == ["nosniff"]
        assert r.header("Referrer-Policy") == "same-origin"
        assert "frame-ancestors 'self'" in r.header_all("Content-Security-Policy")
    hub = checks.get_as(https, "/jupyter/hub/api/", alice)
    assert hub.header("X-Frame-Options") is None, "X-Frame-Options DENY would break JupyterLab"


# -- not logged in -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/jupyter/hub/home",
        "/jupyter/user/alice/lab?reset&x=1",
        "/jupyter/hub/spawn?next=%2Fjupyter%2Fuser%2Fa%3Fb%3Dc%26d%3De&profile=a=b",
        "/jupyter/user/alice/lab/tree/My%20Notebook%C3%A9.ipynb?a=1&b=2&c=%26%3D%2B+~",
    ],
)
def test_browser_without_session_goes_to_login_with_exact_url(https, path):
    checks.assert_login_redirect(https, path)


@pytest.mark.parametrize(
    "path,headers",
    [
        ("/jupyter/hub/api/user", [("Accept", checks.BROWSER_ACCEPT)]),
        ("/jupyter/user/alice/api/contents", []),
        ("/jupyter/hub/home", [("Accept", "text/html"), ("X-Requested-With", "XMLHttpRequest")]),
        ("/jupyter/hub/home", [("Accept", "application/json")]),
        ("/jupyter/hub/home", []),
    ],
)
def test_api_xhr_json_clients_get_plain_401(https, path, headers):
    checks.assert_plain_401(https, path, headers)


def test_websocket_without_session_is_401(https):
    ws = websocket(https, "/jupyter/user/alice/api/kernels/k1/channels")
    assert ws.status == 401


def test_hub_path_without_slash_redirects(https):
    r = request(https, "/jupyter?x=1")
    assert (r.status, r.header("Location")) == (302, "/jupyter/?x=1")


@pytest.mark.parametrize("case", sorted(checks.FORGED_IDENTITY_CASES))
def test_forged_identity_without_session_never_reaches_hub(host, https, case):
    marker = f"forged-{case}-{uuid.uuid4().hex[:8]}"
    for path, accept in ((f"/jupyter/hub/{marker}", True), (f"/jupyter/hub/api/{marker}", False)):
        forged = checks.FORGED_IDENTITY_CASES[case]
        r = request(
            https, path, headers=([("Accept", checks.BROWSER_ACCEPT)] if accept else []) + forged
        )
        assert r.status == (302 if accept else 401), f"{case} {path}: {r.status} {r.body[:200]}"
    # a request sent straight to the echo afterwards is in its log: so would the forged ones be
    log_marker(host, ECHO_UNIT, f"{ECHO}/jupyter/hub/")
    assert not any(marker in line for line in log_lines(host, ECHO_UNIT)), (
        "a forged request reached the hub"
    )


# -- logged in ---------------------------------------------------------------------


def test_logged_in_user_reaches_hub_with_identity_and_secret(https, alice, secret):
    r = checks.get_as(https, "/jupyter/hub/home?a=1&b=x%3Dy", alice)
    assert r.status == 200, r.body[:300]
    echo = r.json()
    assert echo["path"] == "/jupyter/hub/home?a=1&b=x%3Dy"
    checks.assert_identity_echo(echo, ALICE[0], secret)
    assert forwarded_headers(echo, "Host") == ["localhost:8443"]
    assert forwarded_headers(echo, "X-Forwarded-Proto") == ["https"]
    assert forwarded_headers(echo, "X-Scheme") == ["https"]
    assert len(forwarded_headers(echo, "X-Real-IP")) == 1
    assert forwarded_headers(echo, "X-Forwarded-For") == forwarded_headers(echo, "X-Real-IP")


def test_user_without_password_logs_in_as_themself(https, bob, secret):
    echo = checks.get_as(https, "/jupyter/hub/api/user", bob).json()
    checks.assert_identity_echo(echo, BOB[0], secret)


def test_wrong_password_gives_no_session(https):
    with pytest.raises(AssertionError, match="no testbed_session cookie"):
        login(https, ALICE[0], "not-the-password")


@pytest.mark.parametrize("case", sorted(checks.FORGED_IDENTITY_CASES))
def test_logged_in_user_forging_another_name_stays_themself(https, alice, secret, case):
    forged = checks.FORGED_IDENTITY_CASES[case]
    r = checks.get_as(https, "/jupyter/hub/api/user", alice, forged)
    assert r.status == 200
    echo = r.json()
    checks.assert_identity_echo(echo, ALICE[0], secret)
    assert not any("mallory" in v for _, v in echo["headers"]), echo["headers"]


def test_tampered_cookie_is_not_a_session(https, alice):
    value = alice["testbed_session"]
    forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    r = request(https, "/jupyter/hub/api/user", headers=[("Cookie", f"testbed_session={forged}")])
    assert r.status == 401


def test_client_forwarded_for_is_replaced(https, alice):
    echo = checks.get_as(
        https, "/jupyter/hub/api/", alice, [("X-Forwarded-For", "203.0.113.7")]
    ).json()
    assert "203.0.113.7" not in ",".join(forwarded_headers(echo, "X-Forwarded-For"))


def test_websocket_upgrade_passes_with_identity(https, alice):
    checks.assert_websocket_echo(
        https, "/jupyter/user/alice/api/kernels/k1/channels?session_id=s1", alice, ALICE[0]
    )


def test_upload_limit(https, alice):
    ok = request(
        https,
        "/jupyter/user/alice/api/contents/x",
        "PUT",
        [cookie_header(alice), ("Content-Type", "application/octet-stream")],
        b"x" * (7 * 1024 * 1024),
    )
    assert ok.status == 200 and ok.json()["body_length"] == 7 * 1024 * 1024
    too_big = request(
        https,
        "/jupyter/user/alice/api/contents/x",
        "PUT",
        [cookie_header(alice), ("Content-Type", "application/octet-stream")],
        b"x" * (9 * 1024 * 1024),
    )
    assert too_big.status == 413


def test_web_ui_passes_through_without_identity_headers(https):
    r = request(https, "/", headers=[("X-Authorized-User", "mallory"), ("Accept", "text/html")])
    assert r.status == 200 and b"JupyterHub" in r.body
    assert r.header("X-Frame-Options") == "DENY"  # the web UI's own header is kept


# -- JupyterHub API tokens (reverse_proxy_api_tokens_enabled: true, the default) -----
#
# The echo stands in for the hub, so what is proven here is what nginx forwards;
# what the hub makes of a token (owner, other user's server) is
# tests/e2e/test_api_tokens.py against the full stack.

TOKEN = checks.API_TOKEN_AUTHORIZATIONS["token"]


def never_reached_echo(host, marker: str) -> None:
    """No request with ``marker`` in its URL reached the echo (the hub's place)."""
    log_marker(host, ECHO_UNIT, f"{ECHO}/jupyter/hub/")
    assert not any(marker in line for line in log_lines(host, ECHO_UNIT)), (
        f"a request with {marker} reached the hub"
    )


@pytest.mark.parametrize("case", sorted(checks.API_TOKEN_AUTHORIZATIONS))
def test_api_token_reaches_hub_without_session_identity_or_secret(host, https, case):
    """No testbed session and no auth check: the hub gets the request as sent and
    the token, with no identity header, no secret header and no cookie."""
    authorization = checks.API_TOKEN_AUTHORIZATIONS[case]
    path = f"/jupyter/user/alice/api/contents/a%2Fb%20c.ipynb?content=1&case={case}"
    start = auth_marker(host)
    r = request(https, path, headers=[("Authorization", authorization), ("Cookie", "_xsrf=2|ab")])
    end = auth_marker(host)
    assert r.status == 200, (r.status, r.body[:300])
    echo = r.json()
    assert echo["path"] == path
    checks.assert_token_echo(echo, authorization)
    assert forwarded_headers(echo, "Host") == ["localhost:8443"]
    assert forwarded_headers(echo, "X-Forwarded-Proto") == ["https"]
    assert auth_checks_between(host, start, end) == 0, "nginx asked the auth service"


@pytest.mark.parametrize("case", sorted(checks.FORGED_IDENTITY_CASES))
def test_api_token_with_forged_identity_reaches_hub_without_it(https, case):
    forged = checks.FORGED_IDENTITY_CASES[case]
    r = request(https, "/jupyter/hub/api/user", headers=[*forged, ("Authorization", TOKEN)])
    assert r.status == 200, (r.status, r.body[:300])
    checks.assert_token_echo(r.json(), TOKEN)


@pytest.mark.parametrize("case", sorted(checks.NOT_API_TOKEN_AUTHORIZATIONS))
def test_not_an_api_token_is_a_browser_request(host, https, case):
    """Basic, a scheme without its token, another scheme: 401 / login as without it."""
    authorization = checks.NOT_API_TOKEN_AUTHORIZATIONS[case]
    marker = f"not-a-token-{case}-{uuid.uuid4().hex[:8]}"
    checks.assert_plain_401(https, f"/jupyter/hub/api/{marker}", [("Authorization", authorization)])
    checks.assert_login_redirect(
        https, f"/jupyter/hub/{marker}?a=1", extra=[("Authorization", authorization)]
    )
    never_reached_echo(host, marker)


def test_api_token_with_the_session_is_a_browser_request(https, alice, secret):
    """JupyterLab sends its token with the browser's cookies: the testbed identity
    and the secret go on as without a token, and the token too."""
    r = checks.get_as(https, "/jupyter/user/alice/api/status", alice, [("Authorization", TOKEN)])
    assert r.status == 200, (r.status, r.body[:300])
    echo = r.json()
    checks.assert_identity_echo(echo, ALICE[0], secret)
    assert forwarded_headers(echo, "Authorization") == [TOKEN]


@pytest.mark.parametrize(
    "cookie",
    ["jupyterhub-user-alice=2|1:0|10:17", "jupyterhub-session-id=abc", "testbed_session=expired"],
)
def test_api_token_after_the_session_ended_is_refused(host, https, cookie):
    """A browser whose testbed session ended keeps JupyterHub's cookies and
    JupyterLab's token: nginx still asks for the testbed session."""
    marker = f"ended-{uuid.uuid4().hex[:8]}"
    checks.assert_plain_401(
        https,
        f"/jupyter/user/alice/api/{marker}",
        [("Cookie", cookie), ("Authorization", TOKEN)],
    )
    never_reached_echo(host, marker)


def test_token_query_parameter_reaches_hub_without_identity(https):
    path = "/jupyter/user/alice/api/kernels/k1/channels?session_id=s1&token=3f2a9c0d"
    r = request(https, path, headers=[("X-Authorized-User", "mallory@testbed.example")])
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json()["path"] == path
    checks.assert_token_echo(r.json(), None)
    checks.assert_plain_401(https, "/jupyter/hub/api/user?token=")


@pytest.mark.parametrize("path", ["/jupyter/hub/api", "/jupyter/hub/api/"])
def test_hub_api_root_answers_without_session(https, path):
    """VS Code's JupyterHub extension asks the hub API's root (the version) before
    it has a token: that one URL passes anonymously, nothing below it."""
    r = request(https, path, headers=[("X-Authorized-User", "mallory@testbed.example")])
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json()["path"] == path
    checks.assert_token_echo(r.json(), None)


def test_websocket_with_api_token_passes_without_identity(https):
    ws = websocket(
        https,
        "/jupyter/user/alice/api/kernels/k1/channels?session_id=s1",
        headers=[("Authorization", TOKEN), ("X-Authorized-User", "mallory@testbed.example")],
    )
    assert ws.status == 101, (ws.status, ws.headers)
    first = json.loads(ws.first_frame or b"{}")
    checks.assert_token_echo(first, TOKEN)
    assert [v.lower() for v in forwarded_headers(first, "Upgrade")] == ["websocket"]
    assert ws.reply == b"echo:ping-through-nginx", ws.reply


def test_token_route_is_internal(https):
    r = request(https, "/_reverse_proxy_token", headers=[("Authorization", TOKEN)])
    assert r.status == 404, (r.status, r.body[:200])


# -- failures ----------------------------------------------------------------------


def test_auth_service_down_is_503_never_access(https, alice, stopped):
    stopped("testbed-sim-auth")
    for headers in ([cookie_header(alice)], [cookie_header(alice), ("Accept", "text/html")], []):
        r = request(https, "/jupyter/hub/api/user", headers=headers)
        assert r.status == 503, (headers, r.status, r.body[:200])
        assert b"Login service unavailable" in r.body


def test_large_auth_answer_passes_and_too_large_is_logged(host, https, alice, secret, auth_padding):
    """The simulator's check answers with about 32 KiB of headers (a token and many
    groups): the default reverse_proxy_auth_header_buffer_size (64k) lets alice in,
    and only her user header reaches the hub. Past the buffer (96 KiB) it is the 503
    page, with "upstream sent too big header" in the site's error log."""
    cookie = f"testbed_session={alice['testbed_session']}"
    for kib, fits in ((32, True), (96, False)):
        auth_padding(kib * 1024)
        sent = host.check_output(
            f"curl -s -o /dev/null -D - -H {shlex.quote('Cookie: ' + cookie)} {AUTH_CHECK}"
        )
        assert len(sent) >= kib * 1024, f"the simulator sent {len(sent)} bytes of headers"
        marker = uuid.uuid4().hex
        r = checks.get_as(https, f"/jupyter/hub/api/user?case={marker}", alice)
        log = [
            line
            for line in host.file(NGINX_ERROR_LOG).content_string.splitlines()
            if marker in line
        ]
        if fits:
            assert r.status == 200, (r.status, r.body[:300], log)
            echo = r.json()
            checks.assert_identity_echo(echo, ALICE[0], secret)
            assert not [k for k, _ in echo["headers"] if k.lower().startswith("x-testbed-sim-")]
            assert log == [], log
        else:
            assert r.status == 503 and b"Login service unavailable" in r.body, r.status
            assert any("upstream sent too big header" in line for line in log), log


def test_hub_down_is_502_page(https, alice, stopped):
    stopped("testbed-echo")
    r = checks.get_as(https, "/jupyter/hub/api/", alice)
    assert r.status == 502 and b"JupyterHub is not answering" in r.body


# -- cache and benchmark (loopback listeners inside the instance) --------------------


CACHED = "http://127.0.0.1:8092/jupyter/hub/api/"  # auth + cache (2 s in converge.yml)
UNCACHED = "http://127.0.0.1:8091/jupyter/hub/api/"  # auth, no cache


def curl_statuses(host, url, cookie, n=1) -> list[str]:
    """Status of each of ``n`` requests to ``url``, sent by one curl on one connection."""
    targets = " ".join(f"-o /dev/null {shlex.quote(url)}" for _ in range(n))
    cmd = f"curl -s -w '%{{http_code}}\\n' -H {shlex.quote('Cookie: ' + cookie)} {targets}"
    return host.check_output(cmd).split()


def test_auth_cache_asks_once_per_session_and_again_after_expiry(host, alice, bob):
    a = f"testbed_session={alice['testbed_session']}"
    n = 10
    start = auth_marker(host)
    assert curl_statuses(host, CACHED, a, n) == ["200"] * n
    mid = auth_marker(host)
    assert curl_statuses(host, UNCACHED, a, n) == ["200"] * n
    end = auth_marker(host)
    cached = auth_checks_between(host, start, mid)
    assert cached < n, f"the cached listener asked the auth service {cached} times for {n} requests"
    uncached = auth_checks_between(host, mid, end)
    assert uncached == n, f"the uncached listener asked {uncached} times for {n} requests"

    # another session is not answered from alice's entry: it is asked for, and stays bob
    before = auth_marker(host)
    cmd = f"curl -s -H {shlex.quote('Cookie: testbed_session=' + bob['testbed_session'])} {CACHED}"
    echo = json.loads(host.check_output(cmd))
    assert auth_checks_between(host, before, auth_marker(host)) == 1
    checks.assert_identity_echo(echo, BOB[0], None)

    # the entry expires (reverse_proxy_bench_cache_seconds: 2): the auth service is asked again
    def asks_again() -> bool:
        before = auth_marker(host)
        assert curl_statuses(host, CACHED, a) == ["200"]
        return auth_checks_between(host, before, auth_marker(host)) == 1

    wait_until(asks_again, "the cached auth answer of a session expiring", interval=0.5)


def test_benchmark_auth_overhead(host, alice):
    n, warmup = 400, 30
    start = auth_marker(host)
    result = checks.bench_in_instance(host, alice["testbed_session"], requests=n, warmup=warmup)
    end = auth_marker(host)
    print(json.dumps(result, indent=2))
    cases = result["cases"]
    assert sorted(cases) == ["auth", "auth_cached", "noauth"]
    for name, case in cases.items():
        assert case["n"] == n, (name, case)
        assert math.isfinite(case["p50"]) and case["p50"] > 0, (name, case)
    # "auth" asks for each of its requests, "noauth" never, "auth_cached" once per 2 s
    asked = auth_checks_between(host, start, end)
    per_case = warmup + n
    assert per_case <= asked < 2 * per_case, (
        f"{asked} auth checks for {per_case} requests per listener: expected every request "
        "of the auth listener and only a few of the cached one"
    )
