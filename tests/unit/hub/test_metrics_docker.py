"""testbed_hub.metrics_docker against a fake Docker engine on a unix socket: the exact
lines node exporter's textfile collector serves, the atomic write, an engine that is
down."""

from __future__ import annotations

import json
import os
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest

from testbed_hub import metrics_docker as md

ALICE = "a" * 64
BOB = "b" * 64
BATCH = "c" * 64

CONTAINERS = [
    {"Id": ALICE, "Names": ["/jupyter-alice"]},
    {"Id": BOB, "Names": ["/jupyter-bob--gpu"]},
    # the engine's name filter matches anywhere in the name
    {"Id": "d" * 64, "Names": ["/not-jupyter-x"]},
    # a container with the prefix that the hub did not start (no JUPYTERHUB_USER)
    {"Id": BATCH, "Names": ["/jupyter-batch"]},
]
INSPECT = {
    ALICE: {"Config": {"Env": ["JUPYTERHUB_USER=alice", "JUPYTERHUB_API_TOKEN=secret"]}},
    BOB: {"Config": {"Env": ["JUPYTERHUB_USER=bob", "JUPYTERHUB_SERVER_NAME=gpu", "X=1"]}},
    BATCH: {"Config": {"Env": ["PATH=/usr/bin"]}},
}
STATS = {
    # cgroup v2: inactive_file
    ALICE: {
        "cpu_stats": {"cpu_usage": {"total_usage": 12_500_000_000}},
        "memory_stats": {
            "usage": 110_000_000,
            "limit": 2_147_483_648,
            "stats": {"inactive_file": 5_142_400},
        },
    },
    # cgroup v1: total_inactive_file
    BOB: {
        "cpu_stats": {"cpu_usage": {"total_usage": 250_000_000}},
        "memory_stats": {
            "usage": 50_000_000,
            "limit": 4_294_967_296,
            "stats": {"total_inactive_file": 10_000_000},
        },
    },
    BATCH: {"cpu_stats": {}, "memory_stats": {}},
}

EXPECTED = """\
# HELP testbed_user_container_cpu_seconds_total CPU time used by a user's notebook container since it started, in seconds (Docker engine).
# TYPE testbed_user_container_cpu_seconds_total counter
testbed_user_container_cpu_seconds_total{user="alice",server=""} 12.5
testbed_user_container_cpu_seconds_total{user="bob",server="gpu"} 0.25
# HELP testbed_user_container_memory_bytes Memory used by a user's notebook container without the inactive page cache, in bytes (as docker stats shows it).
# TYPE testbed_user_container_memory_bytes gauge
testbed_user_container_memory_bytes{user="alice",server=""} 104857600
testbed_user_container_memory_bytes{user="bob",server="gpu"} 40000000
# HELP testbed_user_container_memory_limit_bytes Memory limit of a user's notebook container, in bytes.
# TYPE testbed_user_container_memory_limit_bytes gauge
testbed_user_container_memory_limit_bytes{user="alice",server=""} 2147483648
testbed_user_container_memory_limit_bytes{user="bob",server="gpu"} 4294967296
# HELP testbed_user_container_metrics_up 1 when the Docker engine answered the last collection, else 0.
# TYPE testbed_user_container_metrics_up gauge
testbed_user_container_metrics_up 1
"""  # noqa: E501


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path):
    """A fake Docker engine: the few endpoints the module calls; records each request."""
    requests: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            requests.append((url.path, query))
            parts = url.path.strip("/").split("/")
            body = None
            if parts == ["containers", "json"]:
                body = CONTAINERS
            elif len(parts) == 3 and parts[2] == "json":
                body = INSPECT.get(parts[1])
            elif len(parts) == 3 and parts[2] == "stats":
                body = STATS.get(parts[1])
            data = json.dumps(body or {"message": "No such container"}).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def address_string(self):  # a unix socket has no client address
            return "unix"

        def log_message(self, *args):
            pass

    path = str(tmp_path / "d.sock")
    server = _Server(path, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path, requests
    server.shutdown()
    server.server_close()


def test_the_file_has_exactly_the_users_containers(engine, tmp_path):
    sock, requests = engine
    out = tmp_path / "prom" / "testbed_user_containers.prom"
    out.parent.mkdir()
    assert md.main(["--socket", sock, "--output", str(out)]) == 0
    assert out.read_text() == EXPECTED
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    # nothing but the .prom file is left in the folder (the temporary file was renamed)
    assert os.listdir(out.parent) == [out.name]
    # the list is filtered by name at the engine; stats are one-shot, not a stream
    assert requests[0] == ("/containers/json", {"filters": json.dumps({"name": ["jupyter-"]})})
    assert ("/containers/" + ALICE + "/stats", {"stream": "false", "one-shot": "true"}) in requests
    # the container that does not start with the prefix is never asked about
    assert not any(("d" * 64) in path for path, _ in requests)


def test_the_token_in_a_containers_environment_is_not_written(engine, tmp_path):
    sock, _ = engine
    out = tmp_path / "x.prom"
    md.main(["--socket", sock, "--output", str(out)])
    assert "secret" not in out.read_text()


def test_a_container_gone_between_list_and_stats_is_skipped(engine, tmp_path, monkeypatch):
    sock, _ = engine
    monkeypatch.delitem(STATS, BOB)
    samples = md.collect(md.DockerClient(sock))
    assert [(s.user, s.server) for s in samples] == [("alice", "")]


def test_an_engine_that_is_down_gives_up_0_and_exit_1(tmp_path, capsys):
    out = tmp_path / "x.prom"
    out.write_text("old\n")
    rc = md.main(["--socket", str(tmp_path / "missing.sock"), "--output", str(out)])
    assert rc == 1
    text = out.read_text()
    assert text.endswith("testbed_user_container_metrics_up 0\n")
    assert "{" not in text  # no series
    assert "is docker.service running?" in capsys.readouterr().err


def test_label_values_are_escaped():
    sample = md.Sample('we"ird\\', "a\nb", 1.0, 2, 3)
    text = md.render([sample])
    assert 'user="we\\"ird\\\\",server="a\\nb"' in text


@pytest.mark.parametrize(
    ("stats", "used"),
    [
        ({"usage": 100, "stats": {"inactive_file": 30}}, 70),
        ({"usage": 100, "stats": {"total_inactive_file": 40}}, 60),
        ({"usage": 10, "stats": {"inactive_file": 30}}, 0),
        ({}, 0),
    ],
)
def test_memory_used_is_usage_without_inactive_cache(stats, used):
    assert md.memory_used(stats) == used
