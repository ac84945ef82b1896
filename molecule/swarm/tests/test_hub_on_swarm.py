"""The real hub on the swarm (site.yml with workers: jupyterhub_swarm_enabled).

Two users' servers started through the hub's REST API land on the workers as Swarm
services (TestbedSwarmSpawner); from inside them the recordings, the user's files,
the shared folder and the database answer; a file a server writes is on the
station's volume, nowhere on a worker's disk; the services carry the station's
confinement; the egress lock holds on the workers (the station's hub and database
only, no other port, no other server, the published port for the station only) and
the station's hub port answers the swarm's nodes only.

Runs before test_swarm.py (file order); test_worker_loss.py, after the worker that
test_swarm.py kills, starts the lost server again. The fixtures (the admin's token,
both servers) are in conftest.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from urllib.parse import urlparse

import pytest
from test_swarm import STATION, WORKERS, inspect, on, wait_for

from testbed_hub.auth import username_for

HUB = "http://127.0.0.1:8081/jupyter/hub"
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
NB = "/home/jovyan/nist"
USERS = [username_for(i, fold_case=True) for i in ("alice@testbed.example", "bob@testbed.example")]
NOTE = "swarm-note.txt"
# Run in a server: the experiments in the database, by the URI every server gets
# (host.docker.internal there is the station).
COUNT = (
    "import os, pymongo;"
    " c = pymongo.MongoClient(os.environ['TESTBED_MONGO_URI'], serverSelectionTimeoutMS=5000);"
    " print(c[os.environ['TESTBED_MONGO_DB']].experiments.count_documents({}))"
)

# Runs on the station: one HTTP request to the hub's API, JSON result.
HTTP = r"""
import json, sys, urllib.request, urllib.error
method, url, token = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, method=method, headers={"Authorization": "token " + token})
try:
    r = urllib.request.urlopen(req, timeout=60)
except urllib.error.HTTPError as e:
    r = e
body = r.read().decode()
print(json.dumps({"status": r.status if hasattr(r, "status") else r.code, "body": body}))
"""


def api(token: str, method: str, path: str) -> dict:
    out = json.loads(on(STATION, "python3", "-c", HTTP, method, HUB + "/api" + path, token).stdout)
    out["json"] = json.loads(out["body"]) if out["body"].startswith(("{", "[")) else None
    return out


def journal(unit: str = "jupyterhub") -> str:
    return on(STATION, "journalctl", "-u", unit, "--no-pager", "-n", "40", check=False).stdout


def wait_ready(token: str, user: str, timeout: float = 180) -> dict:
    def probe():
        r = api(token, "GET", f"/users/{user}")
        server = (r["json"] or {}).get("servers", {}).get("")
        return server if server and server.get("ready") else None

    try:
        return wait_for(f"the server of {user} ready", probe, timeout=timeout, step=2)
    except pytest.fail.Exception:
        print(journal())
        raise


def start(token: str, user: str) -> dict:
    r = api(token, "POST", f"/users/{user}")  # a user who never logged in yet
    assert r["status"] in (201, 409), r["body"]
    r = api(token, "POST", f"/users/{user}/server")
    assert r["status"] in (201, 202), r["body"]
    return wait_ready(token, user)


def service_of(user: str) -> str:
    return f"jupyter-{user}"


def placed(user: str) -> tuple[str, str]:
    """(worker host name, container ID there) of the user's running server task."""
    ids = on(
        STATION, "docker", "service", "ps", "-q", "--no-trunc", "--filter",
        "desired-state=running", service_of(user),
    ).stdout.split()  # fmt: skip
    assert len(ids) == 1, (user, ids)
    task = json.loads(on(STATION, "docker", "inspect", ids[0]).stdout)[0]
    node = inspect("node", task["NodeID"])["Description"]["Hostname"]
    return node, task["Status"]["ContainerStatus"]["ContainerID"]


def inside(user: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """``sh -c script`` in the user's server, on whichever node runs it."""
    node, container = placed(user)
    return on(node, "docker", "exec", container, "sh", "-c", script, check=check)


def test_the_hub_runs_the_swarm_spawner_and_listens_for_the_workers():
    settings = json.loads(on(STATION, "cat", "/etc/jupyterhub/settings.json").stdout)
    station = station_address()
    assert settings["swarm"] == {
        "enabled": True,
        "station_ip": station,
        "network": "",
        "placement": "workers",
        "share_dir": "/srv/station",
    }
    listening = on(STATION, "ss", "-Hltn").stdout
    assert f"{station}:8081 " in listening, listening


def test_two_users_servers_land_on_the_workers(servers):
    nodes = {user: node for user, (_, node) in servers.items()}
    assert set(nodes.values()) <= set(WORKERS), nodes
    # swarm spreads the services: one per worker
    assert len(set(nodes.values())) == 2, nodes
    for user, (server, _) in servers.items():
        assert server["ready"] is True, (user, server)


def test_inside_a_server_the_recordings_files_share_and_database_answer(servers):
    station_wav = on(
        STATION, "sh", "-c", "cd /srv/lmr/wavs && ls exp-001/*.wav | head -1"
    ).stdout.strip()
    want = on(STATION, "sha256sum", f"/srv/lmr/wavs/{station_wav}").stdout.split()[0]
    for user in USERS:
        assert inside(user, f"sha256sum {NB}/media/{station_wav}").stdout.split()[0] == want
        # the recordings stay read-only
        denied = inside(user, f"touch {NB}/media/{station_wav}.x", check=False)
        assert denied.returncode != 0, user
        # the shared folder: the demo notebooks the station ships there
        assert "demo-notebooks" in inside(user, f"ls {NB}/share").stdout.split(), user
        # the database, by the URI every server gets (host.docker.internal = the station)
        count = inside(user, f'python3 -c "{COUNT}"')
        assert int(count.stdout.strip()) > 0, (user, count.stdout, count.stderr)


def test_a_file_written_on_a_worker_is_on_the_station_and_on_no_workers_disk(servers):
    user = USERS[0]
    node = servers[user][1]
    stamp = f"written on {node} at {time.time():.0f}"
    inside(user, f"echo '{stamp}' > {NB}/{NOTE}")
    volume = f"/var/lib/docker/volumes/jupyterhub-user-{user}/_data/{NOTE}"
    assert on(STATION, "cat", volume).stdout.strip() == stamp
    assert on(STATION, "stat", "-c", "%u:%g", volume).stdout.strip() == "1000:1000"
    for worker in WORKERS:
        found = on(
            worker, "find", "/var/lib/docker", "-xdev", "-name", NOTE, check=False
        ).stdout.strip()
        assert found == "", (worker, found)


def test_the_servers_carry_the_stations_confinement(servers):
    for user in USERS:
        node, container = placed(user)
        spec = json.loads(on(node, "docker", "inspect", container).stdout)[0]["HostConfig"]
        assert spec["PidsLimit"] == 512, user
        assert spec["CapDrop"] == ["ALL"], user
        assert spec["Memory"] == 2 * 1024**3, user
        status = inside(user, "grep -E '^(NoNewPrivs|CapEff):' /proc/1/status").stdout
        assert "NoNewPrivs:\t1" in status, status
        assert "CapEff:\t0000000000000000" in status, status
        assert inside(user, "id -u").stdout.strip() == "1000"


def connect(where: str, address: str, port: int, container: str = "") -> bool:
    """Whether a TCP connection from ``where`` (an instance, or a container ID on it)
    to ``address:port`` opens within 5 s."""
    code = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(('{address}', {port}), timeout=5).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    argv = ["docker", "exec", container] if container else []
    return on(where, *argv, "python3", "-c", code, check=False).returncode == 0


def published_port(user: str) -> int:
    """The host-mode port the user's task published (Docker's own task document)."""
    ids = on(
        STATION, "docker", "service", "ps", "-q", "--no-trunc", "--filter",
        "desired-state=running", service_of(user),
    ).stdout.split()  # fmt: skip
    task = json.loads(on(STATION, "docker", "inspect", ids[0]).stdout)[0]
    return int(task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"])


def station_address() -> str:
    return on(STATION, "docker", "info", "--format", "{{.Swarm.NodeAddr}}").stdout.strip()


def database_port() -> int:
    settings = json.loads(on(STATION, "cat", "/etc/jupyterhub/settings.json").stdout)
    return urlparse(settings["spawner"]["environment"]["TESTBED_MONGO_URI"]).port


def test_the_egress_lock_holds_on_the_workers(servers):
    station = station_address()
    alice, bob = USERS
    node, container = placed(alice)
    bob_node, _ = placed(bob)
    # what a server needs: the hub and the database, on the station
    assert connect(node, station, 8081, container)
    assert connect(node, station, database_port(), container)
    # nothing else: the station's SSH (the share's server), the other user's server
    assert not connect(node, station, 22, container)
    bob_address = inspect("node", bob_node)["Status"]["Addr"]
    assert not connect(node, bob_address, published_port(bob), container)
    refused = on(node, "nft", "list", "counter", "inet", "testbed_egress", "refused").stdout
    assert "packets 0 " not in refused, refused
    # the published port answers the station (the hub) and no other node
    address = inspect("node", node)["Status"]["Addr"]
    assert connect(STATION, address, published_port(alice))
    other = next(w for w in WORKERS if w != node)
    assert not connect(other, address, published_port(alice))


def test_the_stations_hub_and_database_answer_the_swarms_nodes_only():
    station = station_address()
    for worker in WORKERS:
        assert connect(worker, station, 8081), worker
        assert connect(worker, station, database_port()), worker
    # this machine (the control node) is on the same network and no node of the swarm
    for port in (8081, database_port()):
        with pytest.raises(OSError):
            socket.create_connection((station, port), timeout=5).close()


def test_a_hub_restart_leaves_the_servers_on_the_workers_running(token, servers):
    """The hub is a host process and the servers Swarm services: after `systemctl
    restart jupyterhub` the hub finds each running task again (its saved state, poll)
    and the same tasks serve on, nothing restarted."""
    before = {user: placed(user) for user in USERS}
    on(STATION, "systemctl", "restart", "jupyterhub")

    def healthy():
        code = (
            f"import urllib.request;print(urllib.request.urlopen('{HUB}/health', timeout=5).status)"
        )
        return on(STATION, "python3", "-c", code, check=False).stdout.strip() == "200"

    wait_for("the hub's health check after its restart", healthy, timeout=90)
    for user in USERS:
        assert wait_ready(token, user, timeout=60)["ready"] is True
        assert placed(user) == before[user], user  # the same node, the same container
        # and it still answers through the proxy the hub routes to it
        code = (
            "import urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:8000/jupyter/user/{user}/api',"
            " timeout=10)\n"
            "    print(r.status)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
        )
        assert on(STATION, "python3", "-c", code).stdout.strip() == "200", user
