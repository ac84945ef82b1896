"""Issue 13: the data stays on the station, and one user cannot take it down.

From inside a user's container (``docker exec`` + a Python socket probe with a 3 s
timeout): the hub API and the database answer; the internet, another user's server
and the station's other ports are refused at once, by the notebook_egress role's
nftables table. The same after ``systemctl restart docker`` and after the base
station itself restarts (the last test: it restarts the instance). A fork bomb and a
memory hog in one user's container leave the hub and another user's server answering
within 2 s.

Runs after test_jupyterhub.py (file order) and reuses its helpers (and, through
conftest.py, its fixtures).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from test_jupyterhub import (
    CONTAINER,
    KEPT_USER,
    NB,
    PROXY,
    ROUTE_POLL,
    TEST_USER,
    api,
    gateway,
    inspect,
    journal,
    wait_ready,
)

from testbed_hub.auth import identity_to_username

PEER_ID = "peer.two@testbed.example"
PEER = identity_to_username(PEER_ID)
PEER_CONTAINER = f"jupyter-{PEER}"
TABLE = "inet testbed_egress"
UNIT = "testbed-notebook-egress"
#: Ports the station listens on beyond loopback in this test (nginx's 80 and 443 on a
#: real station, and one more): started on 0.0.0.0 by the ``listeners`` fixture.
HOST_PORTS = (80, 443, 2222)
ANSWER_S = 2.0  # another user's server must answer within this during an attack
PIDS_LIMIT = 256  # molecule/jupyterhub/converge.yml: jupyterhub_spawner.pids_limit

#: Figures for the report, written to artifacts/molecule/confinement-figures.json.
FIGURES: dict = {"egress_rounds": []}
FIGURES_FILE = Path(__file__).resolve().parents[3] / "artifacts/molecule/confinement-figures.json"


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield FIGURES
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=1) + "\n")


# Runs in a container: one TCP connect per target, 3 s timeout each, JSON result.
PROBE = r"""
import json, socket, sys, time
out = []
for host, port in json.loads(sys.argv[1]):
    t = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=3).close()
        r = "open"
    except ConnectionRefusedError:
        r = "refused"
    except socket.timeout:
        r = "timeout"
    except socket.gaierror:
        r = "no-dns"
    except OSError as e:
        r = f"error {e.errno}"
    out.append({"target": f"{host}:{port}", "result": r, "s": round(time.monotonic() - t, 6)})
print(json.dumps(out))
"""

# Runs in the attacker's container: fork until the kernel refuses, keep every child
# alive for `hold` seconds, report how many forks succeeded in the user's volume.
FORK_BOMB = r"""
import json, os, sys, time
hold = float(sys.argv[1]); end = time.time() + hold; n = 0; err = None
while n < 100000:
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        while time.time() < end:
            time.sleep(0.2)
        os._exit(0)
    n += 1
with open(sys.argv[2], "w") as f:
    json.dump({"forked": n, "errno": err}, f)
while time.time() < end:
    time.sleep(0.2)
"""

# Runs on the instance: GET each URL `rounds` times, JSON list of (status, seconds).
TIMED_GETS = r"""
import json, sys, time, urllib.request, urllib.error
out = []
for _ in range(int(sys.argv[2])):
    for url in json.loads(sys.argv[1]):
        t = time.monotonic()
        try:
            status = urllib.request.urlopen(url, timeout=10).status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError as e:
            status = str(e)
        out.append({"url": url, "status": status, "s": round(time.monotonic() - t, 4)})
    time.sleep(0.2)
print(json.dumps(out))
"""


def probe(host, container, targets):
    cmd = host.run(f"docker exec {container} python -c %s %s", PROBE, json.dumps(targets))
    assert cmd.rc == 0, cmd.stderr
    return {r["target"]: r for r in json.loads(cmd.stdout)}


def container_ip(host, name):
    return inspect(host, name)["NetworkSettings"]["Networks"]["jupyter"]["IPAddress"]


def refused_count(host):
    out = host.check_output(f"nft list counter {TABLE} refused")
    return int(out.split("packets")[1].split()[0])


def start_server(host, token, user):
    r = api(host, token, "POST", f"/users/{user}")
    assert r["status"] in (201, 409), r["body"]
    r = api(host, token, "POST", f"/users/{user}/server")
    assert r["status"] in (201, 202, 400), r["body"]
    return wait_ready(host, token, user)


@pytest.fixture(scope="module")
def peer(host, token):
    return start_server(host, token, PEER)


@pytest.fixture(scope="module")
def listeners(host):
    """Listeners on every interface, as nginx has on a real station: without the
    egress lock a container reaches them (checked from the default bridge)."""
    for port in HOST_PORTS:
        host.run(
            f"systemd-run --unit tb-listen-{port} python3 -m http.server {port} --bind 0.0.0.0"
        )
    deadline = time.monotonic() + 30
    while not all(host.socket(f"tcp://0.0.0.0:{p}").is_listening for p in HOST_PORTS):
        assert time.monotonic() < deadline, "test listeners did not start"
        time.sleep(0.5)
    yield HOST_PORTS
    for port in HOST_PORTS:
        host.run(f"systemctl stop tb-listen-{port}")


@pytest.fixture(scope="module")
def addresses(host):
    return find_addresses(host)


def find_addresses(host):
    """The targets: the jupyter gateway, docker0's gateway, the instance's own address
    and an internet address (resolved on the instance; the containers have no DNS out)."""
    bridge = json.loads(host.check_output("docker network inspect bridge"))[0]
    internet = host.run("getent ahostsv4 pypi.org").stdout.split()
    route = host.check_output("ip -4 -o route get 1.1.1.1").split()
    return {
        "gateway": gateway(host),
        "docker0": bridge["IPAM"]["Config"][0]["Gateway"],
        # the station's own address towards the outside (not a bridge's)
        "instance": route[route.index("src") + 1],
        "internet": internet[0] if internet else "151.101.0.223",
    }


def expected(addresses, peer_ip):
    """target -> the result a user's container must get."""
    gw = addresses["gateway"]
    want = {f"{gw}:8081": "open", f"{gw}:27017": "open", f"{peer_ip}:8888": "refused"}
    for port in HOST_PORTS:
        want[f"{gw}:{port}"] = "refused"
        want[f"{addresses['docker0']}:{port}"] = "refused"
        want[f"{addresses['instance']}:{port}"] = "refused"
    want[f"{addresses['docker0']}:27017"] = "refused"  # the database only on its own address
    want[f"{gw}:8001"] = "refused"  # the proxy's API port, on loopback only anyway
    want[f"{addresses['internet']}:443"] = "refused"
    want[f"{addresses['internet']}:80"] = "refused"
    return want


def check_egress(host, addresses):
    """Probe every target from the user's container; return the results."""
    peer_ip = container_ip(host, PEER_CONTAINER)
    want = expected(addresses, peer_ip)
    targets = [t.rsplit(":", 1) for t in want]
    got = probe(host, CONTAINER, [[h, int(p)] for h, p in targets])
    assert {t: r["result"] for t, r in got.items()} == want, (
        json.dumps(got, indent=1) + "\n" + host.run(f"nft list table {TABLE}").stdout
    )
    # refused at once (TCP reset), not after a timeout
    slow = {t: r["s"] for t, r in got.items() if r["result"] == "refused" and r["s"] > 0.5}
    assert not slow, slow
    # and the other way round: the peer cannot reach this user's server either
    back = probe(host, PEER_CONTAINER, [[container_ip(host, CONTAINER), 8888]])
    assert [r["result"] for r in back.values()] == ["refused"], back
    refused = [r["s"] for r in [*got.values(), *back.values()] if r["result"] == "refused"]
    FIGURES["egress_rounds"].append(
        {
            "cases": len(got) + len(back),
            "open": sorted(t for t, r in got.items() if r["result"] == "open"),
            "refused": len(refused),
            "refused_max_ms": round(max(refused) * 1000, 3),
            "refused_median_ms": round(statistics.median(refused) * 1000, 3),
        }
    )
    return got


def test_rules_are_loaded_by_their_unit_beside_dockers(host):
    svc = host.service(UNIT)
    assert svc.is_enabled and svc.is_running, journal(host, UNIT)
    table = host.run(f"nft list table {TABLE}")
    assert table.rc == 0, table.stderr
    rules = [
        line
        for line in table.stdout.splitlines()
        if (" accept" in line or " reject" in line) and "policy" not in line
    ]
    # per chain: bridge filter, established, hub, database, then TCP reset + ICMP reject
    assert len(rules) == 12, table.stdout
    # Docker's own iptables-nft rules are still there
    assert "DOCKER-USER" in host.check_output("nft list table ip filter")
    FIGURES["rules_installed"] = len(rules)


def test_user_container_is_confined(host, server):
    hc = inspect(host, CONTAINER)["HostConfig"]
    assert hc["PidsLimit"] == PIDS_LIMIT
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["CapDrop"] == ["ALL"]
    assert not hc["CapAdd"]
    # the container's first process (tini, then the server): how the server runs
    status = host.check_output(f"docker exec {CONTAINER} cat /proc/1/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0


def test_without_the_lock_a_container_reaches_the_same_ports(host, server, listeners, addresses):
    """Control: from a container on the default bridge (no lock there) the station's
    listeners answer, so "refused" below is the lock, not a missing listener."""
    image = inspect(host, CONTAINER)["Config"]["Image"]
    targets = [[addresses["docker0"], p] for p in HOST_PORTS] + [[addresses["gateway"], 27017]]
    cmd = host.run(
        f"docker run --rm --network bridge --entrypoint python {image} -c %s %s",
        PROBE,
        json.dumps(targets),
    )
    assert cmd.rc == 0, cmd.stderr
    assert {r["result"] for r in json.loads(cmd.stdout)} == {"open"}, cmd.stdout


def test_user_container_reaches_hub_and_database_and_nothing_else(
    host, server, peer, listeners, addresses
):
    before = refused_count(host)
    got = check_egress(host, addresses)
    assert refused_count(host) > before
    # no name resolution to the outside either (Docker's DNS forwards from the container)
    dns = probe(host, CONTAINER, [["pypi.org", 443]])
    assert [r["result"] for r in dns.values()] in (["no-dns"], ["refused"]), dns
    FIGURES["dns_from_container"] = next(iter(dns.values()))
    FIGURES["refused_counter_delta"] = refused_count(host) - before
    assert len(got) >= 15


def test_a_server_still_starts_and_the_database_reads(host, server):
    code = (
        "import os, pymongo; "
        "c = pymongo.MongoClient(os.environ['TESTBED_MONGO_URI'], serverSelectionTimeoutMS=10000); "
        "print(c[os.environ['TESTBED_MONGO_DB']].experiments.count_documents({}))"
    )
    r = host.run(f"docker exec {CONTAINER} python -c %s", code)
    assert r.rc == 0 and int(r.stdout) >= 1, r.stderr


def timed_gets(host, urls, rounds):
    cmd = host.run("python3 -c %s %s %s", TIMED_GETS, json.dumps(urls), str(rounds))
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def peer_urls():
    # the peer's own server through the proxy (/api answers without a login) and the hub
    return [f"{PROXY}/user/{PEER}/api", f"{PROXY}/hub/health"]


def test_fork_bomb_leaves_hub_and_peer_answering(host, server, peer):
    volume = json.loads(host.check_output(f"docker volume inspect jupyterhub-user-{TEST_USER}"))
    report = f"{volume[0]['Mountpoint']}/forkbomb.json"
    host.run(f"rm -f {report}")
    before = processes(host, CONTAINER)
    start = host.run(f"docker exec -d {CONTAINER} python -c %s 25 {NB}/forkbomb.json", FORK_BOMB)
    assert start.rc == 0, start.stderr
    deadline = time.monotonic() + 30
    while not host.file(report).exists:
        assert time.monotonic() < deadline, "the fork bomb never hit a limit"
        time.sleep(0.5)
    bomb = json.loads(host.file(report).content_string)
    # the kernel refused the next fork (EAGAIN) below the container's limit
    assert bomb["errno"] == 11 and bomb["forked"] < PIDS_LIMIT, bomb
    # while every child is alive: the hub and the other user's server answer in time
    gets = timed_gets(host, peer_urls(), rounds=5)
    assert all(g["status"] == 200 for g in gets), gets
    assert max(g["s"] for g in gets) < ANSWER_S, gets
    FIGURES["fork_bomb"] = {
        "forks_before_eagain": bomb["forked"],
        "requests": len(gets),
        "slowest_answer_s": max(g["s"] for g in gets),
    }
    # the bomb ends by itself; afterwards the attacker's container works again
    deadline = time.monotonic() + 60
    while host.run(f"docker exec {CONTAINER} true").rc != 0:
        assert time.monotonic() < deadline, "fork bomb children still there after 60 s"
        time.sleep(1)
    # ...once its children are gone: one exec can succeed while the last of them still
    # hold pids, and the next fails to start ("read init-p: connection reset by peer")
    while (left := processes(host, CONTAINER)) > before + 2:
        assert time.monotonic() < deadline, f"{left} processes after 60 s, {before} before"
        time.sleep(1)


def processes(host, container: str) -> int:
    """How many processes run in ``container`` (``docker top``)."""
    out = host.check_output(f"docker top {container} -o pid")
    return len(out.splitlines()) - 1  # the header


def test_memory_hog_leaves_hub_and_peer_answering(host, server, peer):
    hog = "b = bytearray(1536 * 1024 * 1024); import time; time.sleep(5)"  # 1.5 G > 1 G limit
    start = host.run(f"docker exec -d {CONTAINER} python -c %s", hog)
    assert start.rc == 0, start.stderr
    gets = timed_gets(host, peer_urls(), rounds=8)
    assert all(g["status"] == 200 for g in gets), gets
    assert max(g["s"] for g in gets) < ANSWER_S, gets
    assert inspect(host, PEER_CONTAINER)["State"]["Running"]
    FIGURES["memory_hog"] = {"requests": len(gets), "slowest_answer_s": max(g["s"] for g in gets)}


def wait_hub(host, timeout=120):
    deadline = time.monotonic() + timeout
    while host.run("curl -fsS -o /dev/null http://127.0.0.1:8081/jupyter/hub/health").rc != 0:
        assert time.monotonic() < deadline, journal(host, "jupyterhub")
        time.sleep(1)


def test_lock_survives_a_docker_restart(
    host, token, server, peer, listeners, addresses, record_property
):
    """``systemctl restart docker`` (live-restore): an allowed user's server keeps its
    container (same Id, same start time) and its route, and the hub, restarted with
    Docker, takes it back; the egress lock is applied again with the engine."""
    kept = f"jupyter-{KEPT_USER}"
    assert api(host, token, "POST", f"/users/{KEPT_USER}")["status"] in (201, 409)
    assert api(host, token, "POST", f"/users/{KEPT_USER}/server")["status"] in (201, 202, 400)
    wait_ready(host, token, KEPT_USER)
    kept_before = inspect(host, kept)
    before = host.check_output(f"systemctl show -p ExecMainStartTimestampMonotonic --value {UNIT}")
    started = time.monotonic()
    assert host.run("systemctl restart docker").rc == 0, journal(host, "docker")
    deadline = time.monotonic() + 60
    while host.run("docker info").rc != 0:
        assert time.monotonic() < deadline, journal(host, "docker")
        time.sleep(1)
    # the server was not removed (Docker's AutoRemove would have: container.host_config)
    kept_after = inspect(host, kept)
    assert kept_after["Id"] == kept_before["Id"], journal(host, "docker")
    assert kept_after["State"]["StartedAt"] == kept_before["State"]["StartedAt"]
    assert kept_after["State"]["Running"] is True
    route = host.check_output("python3 -c %s %s 60", ROUTE_POLL, f"{PROXY}/user/{KEPT_USER}/api")
    assert route != "never", journal(host, "jupyterhub")
    record_property("docker_restart_route_back_seconds", round(time.monotonic() - started, 2))
    wait_hub(host)
    assert wait_ready(host, token, KEPT_USER)["ready"] is True
    assert inspect(host, kept)["State"]["StartedAt"] == kept_before["State"]["StartedAt"]
    assert api(host, token, "DELETE", f"/users/{KEPT_USER}/server")["status"] in (202, 204)
    wait_ready(host, token, KEPT_USER, ready=False)
    # DockerSpawner removed it on stop, as before
    assert host.run(f"docker inspect {kept}").rc != 0
    # re-applied with Docker (PartOf=docker.service), and still loaded
    after = host.check_output(f"systemctl show -p ExecMainStartTimestampMonotonic --value {UNIT}")
    assert after != before
    assert host.run(f"nft list table {TABLE}").rc == 0
    wait_hub(host)
    # live-restore keeps the servers; start_server also copes with one that died
    start_server(host, token, TEST_USER)
    start_server(host, token, PEER)
    check_egress(host, addresses)


def test_lock_survives_a_restart_of_the_base_station(host, token, listeners):
    """Last: restarts the instance (systemd boots again, Docker's containers are gone)."""
    name = host.backend.get_hostname()
    subprocess.run(["docker", "restart", "-t", "30", name], check=True, timeout=120)
    deadline = time.monotonic() + 180
    while host.run("systemctl is-active jupyterhub docker").stdout.split() != ["active"] * 2:
        assert time.monotonic() < deadline, journal(host, "jupyterhub")
        time.sleep(2)
    assert host.service(UNIT).is_running, journal(host, UNIT)
    assert host.run(f"nft list table {TABLE}").rc == 0
    wait_hub(host)
    # the old servers died with the engine; start both again, then the same checks
    for user in (TEST_USER, PEER):
        deadline = time.monotonic() + 120
        while True:
            r = api(host, token, "POST", f"/users/{user}/server")
            if r["status"] in (201, 202):
                break
            assert time.monotonic() < deadline, r["body"]
            time.sleep(2)  # 400 while the hub still believes the old server runs
        wait_ready(host, token, user)
    for port in HOST_PORTS:  # tmpfs /run: the transient listeners are gone
        host.run(f"systemctl reset-failed tb-listen-{port}")
        host.run(
            f"systemd-run --unit tb-listen-{port} python3 -m http.server {port} --bind 0.0.0.0"
        )
    deadline = time.monotonic() + 30
    while not all(host.socket(f"tcp://0.0.0.0:{p}").is_listening for p in HOST_PORTS):
        assert time.monotonic() < deadline, "test listeners did not start"
        time.sleep(0.5)
    check_egress(host, find_addresses(host))
