"""The auth-overhead benchmark: raw timing, its command line, and the benchmark
listeners' nginx file run by this machine's nginx (statistics: testbed_devtools.stats).

The nginx part starts a private nginx master on free loopback ports with the
listeners in front of the header-echo upstream and a stub auth service, as the
reverse_proxy Molecule scenario does inside its instance; skipped when nginx is
not installed (``apt-get install nginx-light``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testbed_devtools.stats import compare
from testbed_proxy import bench, echo
from testbed_proxy.client import Target, forwarded_headers, request

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECRET = "0123456789abcdef" * 4


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def echo_url():
    server = _serve(echo.make_server("127.0.0.1", 0))
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Status(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def url_401():
    server = _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Status))
    yield f"http://127.0.0.1:{server.server_address[1]}/x"
    server.shutdown()
    server.server_close()


# -- raw timing ---------------------------------------------------------------------------


def test_measure_interleaves_cases_with_injected_clock(echo_url):
    # Every request is timed by two clock() calls; durations: a 1 ms, b 3 ms.
    durations = {"a": 0.001, "b": 0.003}
    order = []
    state = {"t": 0.0, "start": True}

    def clock():
        if state["start"]:
            state["start"] = False
            return state["t"]
        case = "a" if len(order) % 2 == 0 else "b"
        order.append(case)
        state["t"] += durations[case]
        state["start"] = True
        return state["t"]

    result = bench.measure(
        {"a": echo_url + "/a", "b": echo_url + "/b"}, requests=5, warmup=2, clock=clock
    )
    assert order[:4] == ["a", "b", "a", "b"] and len(order) == 2 * (5 + 2)
    assert result["unit"] == "s" and result["requests"] == 5 and result["warmup"] == 2
    assert result["samples"]["a"] == pytest.approx([0.001] * 5)
    assert result["samples"]["b"] == pytest.approx([0.003] * 5)
    assert compare(result["samples"], "a")["ratio"] == {"a": 1.0, "b": 3.0}


def test_measure_real_requests(echo_url):
    result = bench.measure({"x": echo_url + "/x", "y": echo_url + "/y?z=1"}, requests=20, warmup=2)
    assert result["cases"] == {"x": echo_url + "/x", "y": echo_url + "/y?z=1"}
    for samples in result["samples"].values():
        assert len(samples) == 20 and all(s > 0 for s in samples)


def test_measure_refuses_wrong_status(url_401):
    with pytest.raises(bench.BenchError, match="answered 401, expected 200"):
        bench.measure({"auth": url_401}, requests=3, warmup=0)


def test_measure_rejects_bad_input():
    with pytest.raises(bench.BenchError, match="no cases"):
        bench.measure({})
    with pytest.raises(bench.BenchError, match="requests must be >= 1"):
        bench.measure({"a": "http://127.0.0.1:1/"}, requests=0)
    with pytest.raises(bench.BenchError, match="unsupported URL scheme"):
        bench.measure({"a": "ftp://127.0.0.1/"}, requests=1)


def test_cli_measure_prints_the_samples_as_json(echo_url, capsys):
    argv = ["measure", "--case", f"a={echo_url}/a", "--case", f"b={echo_url}/b"]
    assert bench.main([*argv, "--requests", "5", "--warmup", "1", "--cookie", "s=1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["samples"]) == {"a", "b"} and len(out["samples"]["a"]) == 5


def test_cli_bad_case_is_a_clear_error(capsys):
    assert bench.main(["measure", "--case", "nourl"]) == 2
    assert "NAME=http(s)://" in capsys.readouterr().err


# -- the listeners' nginx file ------------------------------------------------------------


def test_listeners_conf_names_three_loopback_ports_and_the_cache():
    conf = bench.listeners_conf(9100, cache_seconds=2)
    assert [ln.strip() for ln in conf.splitlines() if ln.strip().startswith("listen")] == [
        "listen 127.0.0.1:9100;",
        "listen 127.0.0.1:9101;",
        "listen 127.0.0.1:9102;",
    ]
    assert conf.count("auth_request /_testbed_bench_auth;") == 2
    assert conf.count("proxy_cache_valid 200 202 204 2s;") == 1
    assert conf.count("include /etc/nginx/snippets/testbed-hub-hub-secret.conf;") == 2


def test_listeners_conf_refuses_bad_input():
    with pytest.raises(bench.BenchError) as exc:
        bench.listeners_conf(65535, cache_seconds=0, hub_path="/jupyter", auth_url="x")
    for text in ("port 65535", "cache seconds 0", "hub path '/jupyter'", "auth URL 'x'"):
        assert text in str(exc.value)


def test_cli_listeners_prints_the_file(capsys):
    assert bench.main(["listeners", "--port", "9100", "--cache-seconds", "2"]) == 0
    assert capsys.readouterr().out == bench.listeners_conf(9100, cache_seconds=2)
    assert bench.main(["listeners", "--cache-seconds", "0"]) == 2
    assert "cache seconds 0" in capsys.readouterr().err


# -- the listeners run by a private nginx ----------------------------------------------------


class StubAuth(BaseHTTPRequestHandler):
    """Auth check: ``testbed_session=user-<name>`` is logged in; ``down`` answers 500."""

    protocol_version = "HTTP/1.1"
    down = False
    calls = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).calls += 1
        cookie = self.headers.get("Cookie") or ""
        value = cookie.split("=", 1)[1] if "=" in cookie else ""
        status, headers = 401, {}
        if type(self).down:
            status = 500
        elif value.startswith("user-"):
            status, headers = 200, {"X-Authorized-User": value[5:]}
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _free_run_of_three() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        socks = []
        try:
            for p in (port, port + 1, port + 2):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no three consecutive free ports")


@pytest.fixture(scope="module")
def listeners(tmp_path_factory):
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    hub = _serve(echo.make_server("127.0.0.1", 0))
    auth = _serve(ThreadingHTTPServer(("127.0.0.1", 0), StubAuth))
    d = tmp_path_factory.mktemp("bench-nginx")
    (d / "logs").mkdir()
    secret = d / "secret.conf"
    secret.write_text(f'proxy_set_header X-Testbed-Hub-Secret "{SECRET}";\n')
    port = _free_run_of_three()
    (d / "listeners.conf").write_text(
        bench.listeners_conf(
            port,
            cache_seconds=2,
            hub_upstream=f"127.0.0.1:{hub.server_address[1]}",
            auth_url=f"http://127.0.0.1:{auth.server_address[1]}/auth/check",
            secret_snippet=str(secret),
            cache_dir=str(d / "cache"),
            log_dir=str(d / "logs"),
        )
    )
    conf = d / "nginx.conf"
    # As root, nginx's workers run as nobody and cannot enter pytest's private
    # (0700) temporary folders to write the auth cache.
    worker_user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        worker_user + f"pid {d}/nginx.pid;\nerror_log {d}/logs/error.log info;\n"
        "daemon off;\nevents {}\nhttp {\n"
        f"  access_log {d}/logs/access.log;\n"
        f"  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n"
        f"  include {d}/listeners.conf;\n}}\n"
    )
    test = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(d), "-c", str(conf)], capture_output=True, text=True
    )
    assert test.returncode == 0, f"nginx -t refused the listeners: {test.stderr}"
    master = subprocess.Popen([NGINX, "-p", str(d), "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 2)) == 0:
                break
        time.sleep(0.05)
    targets = {name: Target(f"http://127.0.0.1:{port + i}") for i, name in enumerate(bench.CASES)}
    yield {**targets, "port": port}
    os.kill(master.pid, signal.SIGQUIT)
    try:
        master.wait(timeout=5)
    except subprocess.TimeoutExpired:
        master.kill()
    for s in (hub, auth):
        s.shutdown()
        s.server_close()


ALICE = ("Cookie", "testbed_session=user-alice")


def test_listeners_forward_identity_and_secret_only_behind_auth(listeners):
    forged = ("X-Authorized-User", "mallory")
    noauth = request(listeners["noauth"], "/jupyter/hub/api/", headers=[ALICE, forged]).json()
    assert forwarded_headers(noauth, "X-Authorized-User") == []
    assert forwarded_headers(noauth, "X-Testbed-Hub-Secret") == []
    for case in ("auth", "auth_cached"):
        seen = request(listeners[case], "/jupyter/hub/api/", headers=[ALICE, forged]).json()
        assert forwarded_headers(seen, "X-Authorized-User") == ["alice"], case
        assert forwarded_headers(seen, "X-Testbed-Hub-Secret") == [SECRET], case
        r = request(listeners[case], "/jupyter/hub/api/", headers=[("Accept", "text/html")])
        assert r.status == 401 and r.json()["status"] == 401, case


def test_cache_answers_a_known_session_while_auth_is_down(listeners):
    bob = ("Cookie", "testbed_session=user-bob")
    assert request(listeners["auth_cached"], "/jupyter/x", headers=[bob]).status == 200
    StubAuth.down = True
    try:
        assert request(listeners["auth_cached"], "/jupyter/x", headers=[bob]).status == 200
        carol = ("Cookie", "testbed_session=user-carol")
        assert request(listeners["auth_cached"], "/jupyter/x", headers=[carol]).status == 503
        assert request(listeners["auth"], "/jupyter/x", headers=[bob]).status == 503
    finally:
        StubAuth.down = False


def test_measure_through_nginx_gives_the_three_ratios(listeners):
    port = listeners["port"]
    cases = {
        name: f"http://127.0.0.1:{port + i}/jupyter/hub/api/" for i, name in enumerate(bench.CASES)
    }
    before = StubAuth.calls
    raw = bench.measure(cases, requests=30, warmup=3, headers={"Cookie": ALICE[1]})
    # every request to "auth" asked the auth service (33); "auth_cached" hardly ever did
    assert 33 <= StubAuth.calls - before < 33 + 10
    out = compare(raw["samples"], "noauth", scale=1000.0)
    assert out["ratio"]["noauth"] == 1.0
    assert set(out["ratio"]) == set(bench.CASES)
    assert all(c["n"] == 30 and c["p50"] > 0 for c in out["cases"].values())
