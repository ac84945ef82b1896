"""The swarm role on three instances: the station (manager) and two workers.

What the hub's Swarm spawner (testbed_hub.swarm) relies on, measured on a real
swarm: the nodes joined and labelled, the overlay network, a service the way the
spawner makes one (no restart by swarm, DNS round robin, the port published in host
mode, workers only) answering at the address ``task_address`` computes from Docker's
own documents, and a dead worker's task judged gone by ``task_verdict``. The last
test kills a worker's instance: Molecule's destroy removes it.

The tests use no ``host`` fixture (it would run each once per instance): they reach
the instances with ``docker exec`` from the control node, in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from testbed_hub.swarm import service_overrides, task_address, task_verdict

STATION = os.environ.get("SWARM_STATION", "tb-swarm-station")
WORKERS = os.environ.get("SWARM_WORKERS", "tb-swarm-w1 tb-swarm-w2").split()
NETWORK = "jupyterhub-swarm"
IMAGE = "testbed-hub/debian:bookworm"
PORT = 8000
# An HTTP server in the minimal Debian image (perl-base is essential there): answers
# every request with the node's host name.
SERVE = (
    "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5,"
    " ReuseAddr => 1) or die; while (my $c = $s->accept) { my $b = $ENV{NODE};"
    ' print $c "HTTP/1.0 200 OK\\r\\nContent-Length: " . length($b) . "\\r\\n\\r\\n$b";'
    " close $c }"
)


def on(instance: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``argv`` in ``instance`` (a Molecule container) and return the result."""
    return subprocess.run(
        ["docker", "exec", instance, *argv], capture_output=True, text=True, check=check
    )


def inspect(kind: str, ident: str) -> dict:
    return json.loads(on(STATION, "docker", kind, "inspect", ident).stdout)[0]


def tasks_of(service: str) -> list[dict]:
    ids = on(STATION, "docker", "service", "ps", "-q", "--no-trunc", service).stdout.split()
    return [json.loads(on(STATION, "docker", "inspect", i).stdout)[0] for i in ids]


def wait_for(what: str, probe, timeout: float = 90.0, step: float = 1.0):
    """Call ``probe`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(step)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def node_ids() -> dict[str, str]:
    """Instance name -> its swarm node ID (each engine's own answer)."""
    return {
        name: on(name, "docker", "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        for name in [STATION, *WORKERS]
    }


def create_service(name: str) -> None:
    """A service made from the spawner's own settings (service_overrides, workers
    only) through the CLI: restart policy, endpoint mode, published port, placement."""
    spec = service_overrides(PORT, "workers")
    argv = [
        "docker",
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--restart-condition",
        spec["extra_task_spec"]["restart_policy"]["Condition"],
        "--endpoint-mode",
        spec["extra_endpoint_spec"]["mode"],
        "--network",
        NETWORK,
        "--env",
        "NODE={{.Node.Hostname}}",
    ]
    for port in spec["extra_endpoint_spec"]["ports"]:
        argv += [
            "--publish",
            f"mode={port['PublishMode']},target={port['TargetPort']},protocol={port['Protocol']}",
        ]
    for constraint in spec["extra_placement_spec"]["constraints"]:
        argv += ["--constraint", constraint.replace(" ", "")]
    on(STATION, *argv, IMAGE, "perl", "-e", SERVE)


@pytest.fixture(scope="module")
def probe_a():
    """The first service and its running task; both services removed at the end."""
    create_service("probe-a")
    yield running_task("probe-a")
    on(STATION, "docker", "service", "rm", "probe-a", "probe-b", check=False)


def running_task(service: str) -> dict:
    def probe():
        tasks = [t for t in tasks_of(service) if t["Status"]["State"] == "running"]
        return tasks[0] if tasks else None

    return wait_for(f"a running task of {service}", probe)


def fetch(address: str, port: int) -> str:
    """GET / from the station's own network namespace (where the hub runs)."""
    code = (
        "import urllib.request,sys;"
        f"print(urllib.request.urlopen('http://{address}:{port}/', timeout=5).read().decode())"
    )
    out = on(STATION, "python3", "-c", code, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_three_nodes_ready_and_labelled():
    ids = node_ids()
    assert all(ids.values()), ids
    nodes = {name: inspect("node", ident) for name, ident in ids.items()}
    for name, node in nodes.items():
        assert node["Status"]["State"] == "ready", (name, node["Status"])
        assert node["Spec"]["Availability"] == "active"
    assert nodes[STATION]["Spec"]["Role"] == "manager"
    assert nodes[STATION]["ManagerStatus"]["Leader"] is True
    assert [nodes[w]["Spec"]["Role"] for w in WORKERS] == ["worker", "worker"]
    assert nodes[STATION]["Spec"]["Labels"] == {"testbed.node": "station"}
    assert nodes[WORKERS[0]]["Spec"]["Labels"] == {"testbed.node": "worker"}
    assert nodes[WORKERS[1]]["Spec"]["Labels"] == {"testbed.node": "worker", "site": "lab2"}


def test_every_engine_has_live_restore_off():
    for name in [STATION, *WORKERS]:
        out = on(name, "docker", "info", "--format", "{{json .LiveRestoreEnabled}}").stdout
        assert out.strip() == "false", name


def test_overlay_network_is_attachable_with_its_subnet():
    net = inspect("network", NETWORK)
    assert net["Driver"] == "overlay"
    assert net["Scope"] == "swarm"
    assert net["Attachable"] is True
    assert [c["Subnet"] for c in net["IPAM"]["Config"]] == ["10.231.0.0/24"]


def test_service_lands_on_a_worker_and_answers_at_task_address(probe_a):
    task = probe_a
    node = inspect("node", task["NodeID"])
    hostname = node["Description"]["Hostname"]
    assert hostname in WORKERS, f"placed on {hostname}, not a worker"
    assert task_verdict(task, node).running is True
    address, port = task_address(task, node, PORT)
    assert address == on(hostname, "hostname", "-i").stdout.split()[0]
    assert port > 1024
    assert (
        wait_for("the server at its node's published port", lambda: fetch(address, port))
        == hostname
    )


VOLUME = "jupyterhub-user-probe"
NB_UID = "1000"
SHARE = "/srv/station"  # station_share_mount_dir on the workers
MEDIA_FILE = "exp-001/take-1.wav"  # converge.yml's pre_tasks put it on the station


def run_on(worker: str, binds: list[str], script: str, check: bool = True):
    """``sh -c script`` as the notebook user in a container on ``worker``'s engine,
    with ``binds`` (``-v`` arguments: the worker's own paths, as a server's)."""
    argv = ["docker", "run", "--rm", "--user", f"{NB_UID}:{NB_UID}"]
    for bind in binds:
        argv += ["-v", bind]
    return on(worker, *argv, IMAGE, "sh", "-c", script, check=check)


@pytest.fixture(scope="module")
def user_volume():
    """A user's volume made on the station as the hub makes it (owned by the
    notebook user); its folder as the workers bind it."""
    on(STATION, "docker", "volume", "create", VOLUME)
    data = on(STATION, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", VOLUME).stdout
    on(STATION, "chown", f"{NB_UID}:{NB_UID}", data.strip())
    yield f"{SHARE}/volumes/{VOLUME}/_data"


def test_station_volumes_stay_unlistable_to_the_share():
    # Docker's own 0701: the share account reaches a volume it names, lists none
    # (the chroot's bind must not have changed it).
    mode = on(STATION, "stat", "-c", "%a", "/var/lib/docker/volumes").stdout.strip()
    assert mode == "701"
    for worker in WORKERS:
        listing = on(worker, "ls", f"{SHARE}/volumes", check=False)
        assert listing.returncode != 0, (worker, listing.stdout)
        assert "Permission denied" in listing.stderr


def test_file_written_on_one_worker_is_read_on_the_other_and_on_the_station(user_volume):
    writer, reader = WORKERS
    payload = "written on " + writer
    work = [f"{user_volume}:/home/jovyan/work"]
    run_on(writer, work, f"echo '{payload}' > /home/jovyan/work/note.txt")
    got = run_on(reader, work, "cat /home/jovyan/work/note.txt")
    assert got.stdout.strip() == payload
    on_station = f"/var/lib/docker/volumes/{VOLUME}/_data/note.txt"
    assert on(STATION, "cat", on_station).stdout.strip() == payload
    assert on(STATION, "stat", "-c", "%u:%g", on_station).stdout.strip() == f"{NB_UID}:{NB_UID}"
    # nothing of it on the workers' own disks
    for worker in WORKERS:
        local = on(worker, "find", "/var/lib/docker/volumes", "-name", "note.txt").stdout
        assert local.strip() == "", worker


def test_recordings_are_readable_and_read_only_on_the_workers():
    want = on(STATION, "sha256sum", f"/srv/lmr/wavs/{MEDIA_FILE}").stdout.split()[0]
    for worker in WORKERS:
        media = f"{SHARE}/media:/home/jovyan/media:ro"
        got = run_on(worker, [media], f"sha256sum /home/jovyan/media/{MEDIA_FILE}")
        assert got.stdout.split()[0] == want, worker
        # read-only at the source too: a bind without :ro cannot write either
        write = run_on(worker, [f"{SHARE}/media:/m"], f"touch /m/{MEDIA_FILE}.new", check=False)
        assert write.returncode != 0, worker
        assert "Read-only file system" in write.stderr, write.stderr
    assert on(STATION, "test", "-e", f"/srv/lmr/wavs/{MEDIA_FILE}.new", check=False).returncode


def test_unknown_volume_is_refused_not_made_on_the_worker():
    # a server bound to a volume the station lacks must not start on a local folder
    missing = f"{SHARE}/volumes/jupyterhub-user-nobody/_data"
    out = run_on(WORKERS[0], [f"{missing}:/home/jovyan/work"], "true", check=False)
    assert out.returncode != 0
    assert on(WORKERS[0], "test", "-e", missing, check=False).returncode != 0


def test_dead_worker_is_seen_and_the_next_service_lands_elsewhere(probe_a, user_volume):
    task = probe_a
    node = inspect("node", task["NodeID"])
    dead = node["Description"]["Hostname"]
    assert dead in WORKERS, f"the probe runs on {dead}, not a worker: nothing to kill"
    started = time.monotonic()
    # The instance stays stopped: Molecule's destroy removes it.
    subprocess.run(["docker", "kill", dead], check=True, capture_output=True)
    wait_for(
        f"the manager marks {dead} down",
        lambda: inspect("node", task["NodeID"])["Status"]["State"] == "down",
        timeout=120,
    )
    seconds = time.monotonic() - started
    verdict = task_verdict(
        json.loads(on(STATION, "docker", "inspect", task["ID"]).stdout)[0],
        inspect("node", task["NodeID"]),
    )
    assert verdict.running is False
    assert dead in verdict.reason
    print(f"worker {dead} marked down after {seconds:.1f} s: {verdict.reason}")
    create_service("probe-b")
    again = running_task("probe-b")
    other = inspect("node", again["NodeID"])["Description"]["Hostname"]
    assert other in WORKERS
    assert other != dead
    # the user's files are on the station: the surviving worker still has them
    got = run_on(other, [f"{user_volume}:/home/jovyan/work"], "cat /home/jovyan/work/note.txt")
    assert got.stdout.strip().startswith("written on ")
