"""The role's nginx site, rendered by Ansible, run by this machine's nginx.

No Docker: the site template is rendered for several variable sets (one
ansible-playbook run), each copy is started by a private nginx master on free
loopback ports in front of the header-echo upstream and a stub auth service
whose answer depends on the session cookie. This covers what the Molecule
scenario cannot switch within one converge: a 403 from the auth service, an
auth service answering a redirect or too slowly, oauth2-proxy-style variables,
an absolute login URL with its own query, TLS off, no web UI, API tokens off
and the hub down behind the token route.

The stub auth service counts the checks it answers per session cookie value,
so caching is proven by how often nginx asked, not by how fast it answered;
a hanging auth check is held open by the stub until the test has seen nginx's
own answer. No test measures time.

Skipped when nginx or its set-misc module is not installed
(``apt-get install nginx-light libnginx-mod-http-set-misc``; ``make host`` does),
which fails ``make test``: the skip is not in tests/skips.yml.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from testbed_proxy import checks, echo
from testbed_proxy.client import Target, forwarded_headers, redirect_param, request, websocket

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "reverse_proxy"
MODULES = Path("/usr/lib/nginx/modules")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECRET = "fedcba9876543210" * 4

pytestmark = pytest.mark.skipif(
    not (Path(NGINX).exists() and (MODULES / "ngx_http_set_misc_module.so").exists()),
    reason="nginx with libnginx-mod-http-set-misc is not installed",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StubAuth(BaseHTTPRequestHandler):
    """Auth check stub: the session cookie's value picks the answer.

    ``user-<name>``: 200 + user header; ``big<K>-<name>``: the same with a header
    block of exactly K KiB (status line to the blank line: a token header of 12 KiB
    or a quarter of the block, many group headers, one filler); ``status500...``:
    500; ``forbidden...``: 403;
    ``redirect``: 302; ``slow...``: no answer until the test sets ``hold[value]``;
    anything else 401. ``hits[value]`` counts the checks that reached the stub for
    each value, ``header_bytes[value]`` the size of the last header block sent.
    """

    protocol_version = "HTTP/1.1"
    user_header = "X-Authorized-User"
    hits: Counter = Counter()
    header_bytes: dict[str, int] = {}
    hold: dict[str, threading.Event] = {}
    lock = threading.Lock()

    def _pad_to(self, total: int) -> None:
        """Add headers until the block (with its final CRLF) is ``total`` bytes."""

        def size() -> int:
            return sum(len(line) for line in self._headers_buffer) + 2

        self.send_header("X-Auth-Request-Access-Token", "t" * min(12 * 1024, total // 4))
        n = 0
        while total - size() > 200:
            self.send_header("X-Auth-Request-Group", f"testbed-experiment-group-{n:05d}-analysts")
            n += 1
        filler = total - size() - len("X-Pad: \r\n")
        self.send_header("X-Pad", "p" * filler)
        assert size() == total, (size(), total)

    def log_message(self, *args):
        pass

    def do_GET(self):
        cookie = self.headers.get("Cookie") or ""
        value = cookie.split("=", 1)[1] if "=" in cookie else ""
        with self.lock:
            self.hits[value] += 1
        status, headers, pad = 401, {}, 0
        if value.startswith("user-"):
            status, headers = 200, {self.user_header: value[5:]}
        elif value.startswith("big"):
            kib, name = value[3:].split("-", 1)
            status, headers, pad = 200, {self.user_header: name}, int(kib) * 1024
        elif value.startswith("status500"):
            status = 500
        elif value.startswith("forbidden"):
            status = 403
        elif value == "redirect":
            status, headers = 302, {"Location": "/elsewhere"}
        elif value.startswith("slow"):
            # a bounded hold: a stub thread never outlives the test run by much
            self.hold.setdefault(value, threading.Event()).wait(timeout=120)
            status = 200
            self.close_connection = True  # nginx has closed its end meanwhile
        body = b"auth\n"
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if pad:
                self._pad_to(pad)
            self.header_bytes[value] = sum(len(line) for line in self._headers_buffer) + 2
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # nginx gave up on a held check and closed the connection


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def upstreams():
    hub = _serve(echo.make_server("127.0.0.1", 0))
    auth = _serve(ThreadingHTTPServer(("127.0.0.1", 0), StubAuth))
    oauth_handler = type("OAuthStub", (StubAuth,), {"user_header": "X-Auth-Request-User"})
    oauth = _serve(ThreadingHTTPServer(("127.0.0.1", 0), oauth_handler))
    yield {
        "hub": hub.server_address[1],
        "auth": auth.server_address[1],
        "oauth": oauth.server_address[1],
    }
    for s in (hub, auth, oauth):
        s.shutdown()
        s.server_close()


def _variants(up: dict, tmp: Path) -> dict[str, dict]:
    common = {
        "reverse_proxy_listen_addresses": ["127.0.0.1"],
        "reverse_proxy_hub_upstream": f"http://127.0.0.1:{up['hub']}",
        "reverse_proxy_auth_timeout": 1,
    }
    return {
        "tls": {
            **common,
            "reverse_proxy_http_port": free_port(),
            "reverse_proxy_https_port": free_port(),
            "reverse_proxy_web_ui_upstream": f"http://127.0.0.1:{up['hub']}",
            "reverse_proxy_auth_url": f"http://127.0.0.1:{up['auth']}/auth/check",
            "reverse_proxy_auth_cache_seconds": 30,
        },
        "oauth2": {
            **common,
            "reverse_proxy_tls_enabled": False,
            "reverse_proxy_http_port": free_port(),
            "reverse_proxy_web_ui_upstream": "",
            "reverse_proxy_auth_url": f"http://127.0.0.1:{up['oauth']}/oauth2/auth",
            "reverse_proxy_auth_user_header": "X-Auth-Request-User",
            "reverse_proxy_login_url": "/oauth2/start",
            "reverse_proxy_login_redirect_param": "rd",
            "reverse_proxy_auth_cache_cookie": "_oauth2_proxy",
            "reverse_proxy_hub_path": "/lab/hub/",
        },
        "external-login": {
            **common,
            "reverse_proxy_tls_enabled": False,
            "reverse_proxy_http_port": free_port(),
            "reverse_proxy_web_ui_upstream": "",
            "reverse_proxy_auth_url": f"http://127.0.0.1:{up['auth']}/auth/check?app=hub",
            "reverse_proxy_login_url": "https://sso.testbed.example/login?app=hub",
        },
        "tokens-off": {
            **common,
            "reverse_proxy_tls_enabled": False,
            "reverse_proxy_http_port": free_port(),
            "reverse_proxy_web_ui_upstream": "",
            "reverse_proxy_auth_url": f"http://127.0.0.1:{up['auth']}/auth/check",
            "reverse_proxy_api_tokens_enabled": False,
        },
        # nothing listens on the hub's port: the token route's own error page
        "hub-down": {
            **common,
            "reverse_proxy_tls_enabled": False,
            "reverse_proxy_http_port": free_port(),
            "reverse_proxy_web_ui_upstream": "",
            "reverse_proxy_hub_upstream": f"http://127.0.0.1:{free_port()}",
            "reverse_proxy_auth_url": f"http://127.0.0.1:{up['auth']}/auth/check",
        },
        # reverse_proxy_auth_header_buffer_size: below the default, its floor, its ceiling
        **{
            f"auth-{size}": {
                **common,
                "reverse_proxy_tls_enabled": False,
                "reverse_proxy_http_port": free_port(),
                "reverse_proxy_web_ui_upstream": "",
                "reverse_proxy_auth_url": f"http://127.0.0.1:{up['auth']}/auth/check",
                "reverse_proxy_auth_header_buffer_size": size,
            }
            for size in ("32k", "4k", "1m")
        },
    }


def _render_playbook(variants: dict, tmp: Path) -> list:
    tasks = []
    for name, values in variants.items():
        d = tmp / name
        values = {
            **values,
            "reverse_proxy_site_name": name,
            "__reverse_proxy_hub_secret": SECRET,
            "__reverse_proxy_secret_snippet": str(d / "secret.conf"),
            "__reverse_proxy_cache_dir": str(d / "cache"),
            "__reverse_proxy_tls_certificate_path": str(tmp / "tls.crt"),
            "__reverse_proxy_tls_key_path": str(tmp / "tls.key"),
        }
        for src, dest in (
            ("etc/nginx/sites-available/testbed-hub.conf.j2", d / "site.conf"),
            ("etc/nginx/snippets/hub-secret.conf.j2", d / "secret.conf"),
        ):
            tasks.append(
                {
                    "name": f"Render {name} {dest.name}",
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / src),
                        "dest": str(dest),
                        "mode": "0600",
                    },
                    "vars": values,
                }
            )
    return [
        {
            "name": "Render the site variants",
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "tasks": tasks,
        }
    ]


def _self_signed(tmp: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-keyout", str(tmp / "tls.key"), "-out", str(tmp / "tls.crt")],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def sites(upstreams, tmp_path_factory):
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists():
        pytest.skip("ansible-playbook is not installed (make venv)")
    tmp = tmp_path_factory.mktemp("nginx")
    _self_signed(tmp)
    variants = _variants(upstreams, tmp)
    # vars_files outrank play vars: pass the variants as task vars (higher still).
    for name in variants:
        (tmp / name / "cache").mkdir(parents=True)
        (tmp / name / "logs").mkdir()
    pb = tmp / "render.yml"
    pb.write_text(yaml.safe_dump(_render_playbook(variants, tmp), sort_keys=False))
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [str(playbook_bin), "-i", "localhost,", "-c", "local"]
        + ["-e", f"ansible_python_interpreter={sys.executable}", str(pb)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    masters = {}
    for name, values in variants.items():
        d = tmp / name
        site = (d / "site.conf").read_text().replace("/var/log/nginx/", f"{d}/logs/")
        (d / "site.conf").write_text(site)
        conf = d / "nginx.conf"
        # Started as root, nginx's workers would run as nobody, which cannot enter
        # pytest's private (0700) temporary folders to write the auth cache.
        worker_user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(
            worker_user + f"load_module {MODULES}/ndk_http_module.so;\n"
            f"load_module {MODULES}/ngx_http_set_misc_module.so;\n"
            f"pid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\n"
            "daemon off;\nevents {}\nhttp {\n"
            "  include /etc/nginx/mime.types;\n"
            f"  access_log {d}/logs/access.log;\n"
            f"  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n"
            f"  include {d}/site.conf;\n}}\n"
        )
        test = subprocess.run(
            [NGINX, "-t", "-q", "-p", str(d), "-c", str(conf)], capture_output=True, text=True
        )
        assert test.returncode == 0, f"{name}: nginx -t failed: {test.stderr}"
        masters[name] = subprocess.Popen(
            [NGINX, "-p", str(d), "-c", str(conf)], stderr=subprocess.DEVNULL
        )
    for name, values in variants.items():
        port = values["reverse_proxy_http_port"]
        deadline = time.monotonic() + 60
        while not _answers(port):
            if masters[name].poll() is not None or time.monotonic() > deadline:
                log = (tmp / name / "logs" / "error.log").read_text(errors="replace")
                pytest.fail(f"nginx for {name} does not listen on {port}: {log[-2000:]}")
            time.sleep(0.05)
    yield {name: {**values, "dir": tmp / name} for name, values in variants.items()}
    for p in masters.values():
        os.kill(p.pid, signal.SIGQUIT)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tls(sites):
    return Target(f"https://localhost:{sites['tls']['reverse_proxy_https_port']}", verify=False)


def _plain(sites, name):
    return Target(f"http://localhost:{sites[name]['reverse_proxy_http_port']}")


def test_logged_in_gets_user_and_secret(sites):
    r = request(_tls(sites), "/jupyter/hub/api/user", headers=[("Cookie", "s=user-alice")])
    assert r.status == 200
    echo_seen = r.json()
    assert forwarded_headers(echo_seen, "X-Authorized-User") == ["alice"]
    assert forwarded_headers(echo_seen, "X-Testbed-Hub-Secret") == [SECRET]


def test_auth_403_stays_403(sites):
    r = request(_tls(sites), "/jupyter/hub/home", headers=[("Cookie", "s=forbidden")])
    assert r.status == 403 and b"does not allow this account" in r.body


def test_auth_redirect_is_503(sites):
    r = request(_tls(sites), "/jupyter/hub/home", headers=[("Cookie", "s=redirect")])
    assert r.status == 503 and b"Login service unavailable" in r.body


def test_auth_that_never_answers_is_503_by_nginx_timeout(sites):
    """nginx gives up on a hanging auth check by itself (the stub never answered)."""
    value = f"slow-{uuid.uuid4().hex}"
    released = StubAuth.hold.setdefault(value, threading.Event())
    target = Target(_tls(sites).base_url, verify=False, timeout=60)
    try:
        r = request(target, "/jupyter/hub/home", headers=[("Cookie", f"s={value}")])
        assert not released.is_set()
    finally:
        released.set()
    assert r.status == 503 and b"Login service unavailable" in r.body
    assert StubAuth.hits[value] == 1, "the check never reached the auth service"
    log = (sites["tls"]["dir"] / "logs" / "tls.error.log").read_text(errors="replace")
    assert "upstream timed out" in log, log[-2000:]
    # the value nginx waited for is the role's variable (reverse_proxy_auth_timeout: 1)
    site = (sites["tls"]["dir"] / "site.conf").read_text()
    auth = site.split("location = /_reverse_proxy_auth {", 1)[1].split("}", 1)[0]
    assert "proxy_read_timeout 1s;" in auth, auth


def test_http_redirect_keeps_default_port_out(sites):
    r = request(_plain(sites, "tls"), "/jupyter/?a=1")
    assert r.status == 301
    port = sites["tls"]["reverse_proxy_https_port"]
    # reverse_proxy_public_https_port is 443 here: no port in the redirect.
    assert r.header("Location") == "https://localhost/jupyter/?a=1", port


def test_oauth2_proxy_style_variables(sites):
    t = _plain(sites, "oauth2")
    r = request(t, "/lab/hub/home?x=1&y=a%26b", headers=[("Accept", "text/html")])
    assert r.status == 302
    loc = r.header("Location")
    assert loc.startswith("/oauth2/start?rd=")
    assert redirect_param(loc, "rd") == t.url("/lab/hub/home?x=1&y=a%26b")
    ok = request(t, "/lab/hub/api/user", headers=[("Cookie", "_oauth2_proxy=user-bob")])
    assert forwarded_headers(ok.json(), "X-Authorized-User") == ["bob"]
    assert forwarded_headers(ok.json(), "X-Forwarded-Proto") == ["http"]
    assert "Strict-Transport-Security" not in dict(ok.headers)


def test_no_web_ui_root_redirects_to_hub_and_rest_is_404(sites):
    t = _plain(sites, "oauth2")
    r = request(t, "/")
    assert (r.status, r.header("Location")) == (302, "/lab/hub/")
    assert request(t, "/auth/login").status == 404


def test_absolute_login_url_with_query(sites):
    t = _plain(sites, "external-login")
    r = request(t, "/jupyter/hub/?q=1", headers=[("Accept", "text/html")])
    loc = r.header("Location")
    assert loc.startswith("https://sso.testbed.example/login?app=hub&next=")
    assert redirect_param(loc, "next") == t.url("/jupyter/hub/?q=1")


def test_cache_keeps_403_uncached(sites):
    """Only 2xx answers are cached: the auth service sees every request of a 403
    session, and only the first of an allowed one (cache keyed on testbed_session)."""
    allowed = f"user-carol-{uuid.uuid4().hex[:8]}"
    forbidden = f"forbidden-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        r = request(
            _tls(sites), "/jupyter/hub/home", headers=[("Cookie", f"testbed_session={allowed}")]
        )
        assert r.status == 200, r.body[:200]
        assert forwarded_headers(r.json(), "X-Authorized-User") == [allowed[5:]]
        r = request(
            _tls(sites), "/jupyter/hub/home", headers=[("Cookie", f"testbed_session={forbidden}")]
        )
        assert r.status == 403 and b"does not allow this account" in r.body
    assert StubAuth.hits[allowed] == 1, "the allowed session's 200 was not cached"
    assert StubAuth.hits[forbidden] == 3, "a 403 was answered from the cache"


def test_without_the_session_cookie_nothing_is_cached(sites):
    """Another cookie name is no session for the cache: every request asks."""
    value = f"user-dave-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        r = request(_tls(sites), "/jupyter/hub/home", headers=[("Cookie", f"s={value}")])
        assert r.status == 200, r.body[:200]
    assert StubAuth.hits[value] == 3


def _error_log(sites, name: str, marker: str) -> str:
    """The lines of variant ``name``'s site error log about the request with ``marker``."""
    log = (sites[name]["dir"] / "logs" / f"{name}.error.log").read_text(errors="replace")
    return "".join(line for line in log.splitlines(keepends=True) if marker in line)


def _target(sites, name):
    return _tls(sites) if name == "tls" else _plain(sites, name)


# (site variant, its reverse_proxy_auth_header_buffer_size, KiB of the auth
# answer's header block, whether it fits)
AUTH_ANSWERS = [
    ("tls", "64k (default)", 32, True),
    ("tls", "64k (default)", 60, True),
    ("tls", "64k (default)", 72, False),
    ("auth-32k", "32k", 24, True),
    ("auth-32k", "32k", 40, False),
    ("auth-4k", "4k", 2, True),
    ("auth-4k", "4k", 8, False),
    ("auth-1m", "1m", 200, True),
]


@pytest.mark.parametrize(
    "name,limit,kib,fits", AUTH_ANSWERS, ids=[f"{a[0]}-{a[2]}KiB" for a in AUTH_ANSWERS]
)
def test_large_auth_answer(sites, name, limit, kib, fits):
    """An auth answer whose header block (many group headers, a big token) fits
    the configured buffer lets the user in, with only the user header forwarded;
    one that does not is refused with the 503 page and logged as too big."""
    marker = uuid.uuid4().hex
    user = f"erin-{marker[:8]}"
    value = f"big{kib}-{user}"
    path = f"/jupyter/hub/api/user?case={marker}"
    headers = [("Cookie", f"testbed_session={value}")]
    r = request(_target(sites, name), path, headers=headers)
    assert StubAuth.header_bytes[value] == kib * 1024
    log = _error_log(sites, name, marker)
    if fits:
        assert r.status == 200, (limit, r.status, r.body[:300], log)
        seen = r.json()
        assert forwarded_headers(seen, "X-Authorized-User") == [user]
        for big in ("X-Auth-Request-Access-Token", "X-Auth-Request-Group", "X-Pad"):
            assert forwarded_headers(seen, big) == [], f"{big} reached the hub"
        assert log == "", log
        if name == "tls":  # the cached copy of the large answer is read back too
            again = request(_target(sites, name), path, headers=headers)
            assert again.status == 200, again.body[:300]
            assert forwarded_headers(again.json(), "X-Authorized-User") == [user]
            assert StubAuth.hits[value] == 1, "the large answer was not cached"
    else:
        assert r.status == 503 and b"Login service unavailable" in r.body, (r.status, r.body)
        assert "upstream sent too big header" in log, log
        assert 'subrequest: "/_reverse_proxy_auth"' in log, log
        assert "auth request unexpected status: 502" in log, log


def test_auth_service_error_is_503_and_logged_as_such(sites):
    """An auth service answering 500 still gets the 503 page, and its error log
    line names the status, without the too-big-header line."""
    marker = uuid.uuid4().hex
    value = f"status500-{marker[:8]}"
    r = request(_tls(sites), f"/jupyter/hub/home?case={marker}", headers=[("Cookie", f"s={value}")])
    assert r.status == 503 and b"Login service unavailable" in r.body, (r.status, r.body)
    assert StubAuth.hits[value] == 1
    log = _error_log(sites, "tls", marker)
    assert "auth request unexpected status: 500" in log, log
    assert "too big header" not in log, log


def test_auth_header_buffer_is_the_role_variable(sites):
    """The rendered auth location carries reverse_proxy_auth_header_buffer_size
    (nginx -t accepted every variant, 4k to 1m, when the fixture started them)."""
    for name, size in (("tls", "64k"), ("auth-32k", "32k"), ("auth-4k", "4k"), ("auth-1m", "1m")):
        site = (sites[name]["dir"] / "site.conf").read_text()
        auth = site.split("location = /_reverse_proxy_auth {", 1)[1].split("}", 1)[0]
        for line in (
            f"proxy_buffer_size {size};",
            f"proxy_buffers 2 {size};",
            f"proxy_busy_buffers_size {size};",
        ):
            assert line in auth, (name, auth)


# -- JupyterHub API tokens (reverse_proxy_api_tokens_enabled, on by default) -------

TOKEN = checks.API_TOKEN_AUTHORIZATIONS["token"]


def _unasked() -> tuple[str, tuple[str, str]]:
    """A cookie that is no browser session (a token client's cookie jar): the stub
    counts the auth checks that carried its value, which must stay 0."""
    value = f"jar-{uuid.uuid4().hex}"
    return value, ("Cookie", f"_xsrf={value}")


@pytest.mark.parametrize("case", sorted(checks.API_TOKEN_AUTHORIZATIONS))
def test_api_token_reaches_hub_without_identity_secret_or_cookie(sites, case):
    """No testbed session, no auth check: the hub gets the request line as sent,
    the token, the forwarding headers, and nothing that names a user."""
    authorization = checks.API_TOKEN_AUTHORIZATIONS[case]
    value, cookie = _unasked()
    path = "/jupyter/user/alice/api/contents/a%2Fb%20c%3F.ipynb?content=1&x=%26%3D+~"
    t = _tls(sites)
    r = request(t, path, headers=[("Authorization", authorization), cookie])
    assert r.status == 200, (r.status, r.body[:300])
    seen = r.json()
    assert seen["path"] == path
    checks.assert_token_echo(seen, authorization)
    assert forwarded_headers(seen, "Host") == [t.hostport]
    assert forwarded_headers(seen, "X-Forwarded-Proto") == ["https"]
    assert StubAuth.hits[value] == 0, "nginx asked the auth service about a token request"
    assert r.header("Strict-Transport-Security"), "the token route lost the security headers"


@pytest.mark.parametrize("case", sorted(checks.FORGED_IDENTITY_CASES))
def test_api_token_with_forged_identity_reaches_hub_without_it(sites, case):
    forged = checks.FORGED_IDENTITY_CASES[case]
    for headers in ([*forged, ("Authorization", TOKEN)], [("Authorization", TOKEN), *forged]):
        r = request(_tls(sites), "/jupyter/hub/api/user", headers=headers)
        assert r.status == 200, (r.status, r.body[:300])
        checks.assert_token_echo(r.json(), TOKEN)


@pytest.mark.parametrize("case", sorted(checks.NOT_API_TOKEN_AUTHORIZATIONS))
def test_not_an_api_token_needs_the_testbed_session(sites, case):
    """Basic, a scheme without a token, other schemes: the browser way, as today."""
    authorization = checks.NOT_API_TOKEN_AUTHORIZATIONS[case]
    t = _tls(sites)
    checks.assert_plain_401(t, "/jupyter/hub/api/user", [("Authorization", authorization)])
    checks.assert_login_redirect(
        t, "/jupyter/hub/home?a=1", extra=[("Authorization", authorization)]
    )


def test_api_token_with_the_testbed_session_stays_a_browser_request(sites):
    """JupyterLab sends its token with the session cookie: the testbed identity and
    the secret go on as without a token, the token too (the hub reads both)."""
    r = request(
        _tls(sites),
        "/jupyter/user/alice/api/status",
        headers=[("Cookie", "testbed_session=user-alice"), ("Authorization", TOKEN)],
    )
    assert r.status == 200, (r.status, r.body[:300])
    seen = r.json()
    assert forwarded_headers(seen, "X-Authorized-User") == ["alice"]
    assert forwarded_headers(seen, "X-Testbed-Hub-Secret") == [SECRET]
    assert forwarded_headers(seen, "Authorization") == [TOKEN]
    assert forwarded_headers(seen, "Cookie") == ["testbed_session=user-alice"]


@pytest.mark.parametrize(
    "cookie",
    [
        "testbed_session={v}",
        "jupyterhub-user-alice={v}",
        "jupyterhub-hub-login={v}",
        "jupyterhub-session-id={v}",
        "JupyterHub-Session-Id={v}",
        "_xsrf={v}; jupyterhub-user-alice=x",
        "_xsrf={v};testbed_session=x",
    ],
)
def test_api_token_with_a_browser_cookie_needs_the_testbed_session(sites, cookie):
    """A browser whose testbed session ended (JupyterHub's cookies left, or an expired
    session cookie) is refused by nginx, token or not: an open JupyterLab stops
    with the testbed session, as without API tokens."""
    header = cookie.format(v=f"ended-{uuid.uuid4().hex}")
    headers = [("Cookie", header), ("Authorization", TOKEN)]
    checks.assert_plain_401(_tls(sites), "/jupyter/user/alice/api/status", headers)
    # the stub counts by everything after the first "=" of the Cookie header
    assert StubAuth.hits[header.split("=", 1)[1]] == 1, "the browser's session was not checked"


def test_token_query_parameter_reaches_hub_anonymously(sites):
    value, cookie = _unasked()
    for path in (
        "/jupyter/user/alice/api/kernels/k1/channels?session_id=s1&token=3f2a9c0d",
        "/jupyter/user/alice/api/status?token=3f2a9c0d",
    ):
        r = request(
            _tls(sites), path, headers=[("X-Authorized-User", "mallory@testbed.example"), cookie]
        )
        assert r.status == 200, (path, r.status, r.body[:300])
        seen = r.json()
        assert seen["path"] == path
        checks.assert_token_echo(seen, None)
    assert StubAuth.hits[value] == 0
    for empty in ("/jupyter/hub/api/user?token=", "/jupyter/hub/api/user?token=&x=1"):
        checks.assert_plain_401(_tls(sites), empty)


@pytest.mark.parametrize("path", ["/jupyter/hub/api", "/jupyter/hub/api/"])
def test_hub_api_root_answers_without_session(sites, path):
    """Editors (VS Code's JupyterHub extension) ask the hub API's root for the
    version before any token: it passes anonymously; nothing below it does."""
    r = request(
        _tls(sites), path, headers=[("Accept", "application/json"), ("Remote-User", "mallory")]
    )
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json()["path"] == path
    checks.assert_token_echo(r.json(), None)
    for below in ("/jupyter/hub/api/user", "/jupyter/hub/api/users", "/jupyter/hub/apix"):
        checks.assert_plain_401(_tls(sites), below)


def test_websocket_with_api_token(sites):
    """A kernel websocket of an editor: the token on the upgrade request."""
    ws = websocket(
        _tls(sites),
        "/jupyter/user/alice/api/kernels/k1/channels?session_id=s1",
        headers=[("Authorization", TOKEN), ("X-Authorized-User", "mallory@testbed.example")],
    )
    assert ws.status == 101, (ws.status, ws.headers)
    first = json.loads(ws.first_frame or b"{}")
    checks.assert_token_echo(first, TOKEN)
    assert [v.lower() for v in forwarded_headers(first, "Upgrade")] == ["websocket"]
    assert "upgrade" in ",".join(forwarded_headers(first, "Connection")).lower()
    assert ws.reply == b"echo:ping-through-nginx", ws.reply


def test_api_token_upload_passes_with_its_body(sites):
    body = b"x" * (3 * 1024 * 1024 + 7)
    r = request(
        _tls(sites),
        "/jupyter/user/alice/api/contents/big.bin",
        "PUT",
        [("Authorization", TOKEN), ("Content-Type", "application/octet-stream")],
        body,
    )
    assert r.status == 200, (r.status, r.body[:300])
    seen = r.json()
    assert (seen["method"], seen["body_length"]) == ("PUT", len(body))
    checks.assert_token_echo(seen, TOKEN)


def test_token_route_is_not_reachable_directly(sites):
    for path in ("/_reverse_proxy_token", "/_reverse_proxy_token?token=x"):
        r = request(_tls(sites), path, headers=[("Authorization", TOKEN)])
        assert r.status == 404, (path, r.status, r.body[:200])


def test_api_token_with_hub_down_gets_the_502_page(sites):
    r = request(
        _plain(sites, "hub-down"), "/jupyter/hub/api/user", headers=[("Authorization", TOKEN)]
    )
    assert r.status == 502 and b"JupyterHub is not answering" in r.body, (r.status, r.body[:200])


def test_api_tokens_with_oauth2_proxy_variables(sites):
    """The session cookie is reverse_proxy_auth_cache_cookie (_oauth2_proxy here);
    the hub API's root is under reverse_proxy_hub_path (/lab/hub/)."""
    t = _plain(sites, "oauth2")
    r = request(t, "/lab/hub/api/user", headers=[("Authorization", TOKEN)])
    assert r.status == 200, (r.status, r.body[:300])
    checks.assert_token_echo(r.json(), TOKEN)
    r = request(
        t,
        "/lab/hub/api/user",
        headers=[("Authorization", TOKEN), ("Cookie", "_oauth2_proxy=user-bob")],
    )
    assert forwarded_headers(r.json(), "X-Authorized-User") == ["bob"]
    assert request(t, "/lab/hub/hub/api/").status == 200
    checks.assert_plain_401(t, "/lab/hub/api/")  # not the hub API's root here
    checks.assert_plain_401(t, "/lab/hub/api/user", [("Cookie", "_oauth2_proxy=nobody")])


def test_api_tokens_disabled_every_hub_request_needs_the_session(sites):
    t = _plain(sites, "tokens-off")
    for path, headers in (
        ("/jupyter/hub/api/user", [("Authorization", TOKEN)]),
        ("/jupyter/hub/api/user?token=3f2a9c0d", []),
        ("/jupyter/hub/api/", []),
    ):
        checks.assert_plain_401(t, path, headers)
    ok = request(
        t, "/jupyter/hub/api/user", headers=[("Cookie", "s=user-alice"), ("Authorization", TOKEN)]
    )
    assert forwarded_headers(ok.json(), "X-Authorized-User") == ["alice"]
    site = (sites["tokens-off"]["dir"] / "site.conf").read_text()
    assert "_reverse_proxy_token" not in site and "$http_authorization" not in site


@pytest.mark.parametrize("site, hub_path", [("tls", "/jupyter/"), ("oauth2", "/lab/hub/")])
def test_the_logged_out_page_needs_no_session_and_reaches_no_upstream(sites, site, hub_path):
    """Where the testbed logout returns (the hub's logout: next=<hub path>logged-out)."""
    target = _tls(sites) if site == "tls" else _plain(sites, site)
    before = sum(StubAuth.hits.values())
    r = request(target, f"{hub_path}logged-out", headers=[("X-Authorized-User", "alice")])
    assert r.status == 200, r.body[:300]
    assert r.header("Content-Type").startswith("text/html")
    assert b"You have logged out of JupyterHub and of the testbed." in r.body
    assert f'href="{hub_path}"'.encode() in r.body  # "Log in again"
    assert b"alice" not in r.body  # nothing of the request comes back
    assert sum(StubAuth.hits.values()) == before, "nginx asked the auth service"
    assert r.header("X-Content-Type-Options") == "nosniff"  # the server's headers apply
    # only that exact page: anything beside it still needs the session
    assert request(target, f"{hub_path}logged-out/x").status in (302, 401)
    assert request(target, f"{hub_path}logged-outx").status in (302, 401)
