"""The swarm and station_share roles (playbooks/scale_out.yml) on three instances:
the station (manager) and two workers.

What the hub's Swarm spawner (testbed_hub.swarm) relies on, measured on a real
swarm: the nodes joined and labelled, the overlay network, a service the way the
spawner makes one (no restart by swarm, DNS round robin, the port published in host
mode, workers only) answering at the address ``task_address`` computes from Docker's
own documents, and a dead worker's task judged gone by ``task_verdict``; the station's
share: a user's files through the binds ``share_mounts`` gives, written on one worker
and read on the other and on the station, the recordings read-only. The last test
kills a worker's instance: Molecule's destroy removes it.

The tests use no ``host`` fixture (it would run each once per instance): they reach
the instances with ``docker exec`` from the control node, in file order.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from testbed_hub.swarm import (
    service_overrides,
    share_mounts,
    task_address,
    task_verdict,
)

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


NB_UID = "1000"
# The hub's spawner settings as far as the mounts go: the binds a server on a worker
# gets come from testbed_hub.swarm.share_mounts, as the Swarm spawner's will.
SPAWNER = {
    "notebook_dir": "/home/jovyan",
    "user_volume_template": "jupyterhub-user-{username}",
    "shared_volume": "jupyterhub-shared",
    "media_dir": "/srv/lmr/wavs",
}
VOLUME = "jupyterhub-user-probe"
WORK, _SHARED, MEDIA = share_mounts(SPAWNER, "probe")
# A recording the simulator seeded on the station (site.yml's testbed_sim).
MEDIA_FILE = on(
    STATION, "sh", "-c", "cd /srv/lmr/wavs && ls exp-001/*.wav | head -1", check=False
).stdout.strip()


def run_on(worker: str, binds: list[tuple[str, str, bool]], script: str, check: bool = True):
    """``sh -c script`` as the notebook user in a container on ``worker``'s engine,
    with ``binds`` (``(source, target, read_only)``: the worker's own paths) as the
    mounts a Swarm service gets (``--mount type=bind``: a missing source is refused,
    never made)."""
    argv = ["docker", "run", "--rm", "--user", f"{NB_UID}:{NB_UID}"]
    for source, target, read_only in binds:
        argv += [
            "--mount",
            f"type=bind,source={source},target={target}" + (",readonly" * read_only),
        ]
    return on(worker, *argv, IMAGE, "sh", "-c", script, check=check)


def share_ssh(
    worker: str, tool: str, *argv: str, key: str = "", stdin: str = "", command: str = ""
):
    """``ssh``/``sftp`` (options ``argv``, then ``command`` for ssh) from ``worker`` to
    the station's share account with the worker's own key (or ``key``) and the pinned
    host key."""
    pinned = on(worker, "cat", "/etc/testbed-share/known_hosts").stdout.split()[0]
    opts = [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/etc/testbed-share/known_hosts",
        "-o", f"IdentityFile={key or '/etc/testbed-share/id_ed25519'}",
        "-o", "IdentitiesOnly=yes",
    ]  # fmt: skip
    return subprocess.run(
        ["docker", "exec", "-i", worker, tool, *opts, *argv, f"testbed-share@{pinned}"]
        + ([command] if command else []),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


WORK_BIND = (WORK.source, "/home/jovyan/work", False)


@pytest.fixture(scope="module")
def user_volume():
    """A user's volume made on the station as the hub makes it (owned by the
    notebook user); its folder as the workers bind it."""
    on(STATION, "docker", "volume", "create", VOLUME)
    data = on(STATION, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", VOLUME).stdout
    # the notebook image's own files would give it that owner (the spawner makes the
    # volume from it on the station); the minimal image here has none
    on(STATION, "chown", f"{NB_UID}:{NB_UID}", data.strip())
    assert WORK.source == f"/srv/station/volumes/{VOLUME}/_data"
    yield WORK.source


def test_workers_mount_the_share_and_the_station_binds_it():
    for worker in WORKERS:
        for folder in ("/srv/station/volumes", "/srv/station/media"):
            fstype = on(worker, "findmnt", "-no", "FSTYPE", folder).stdout.strip()
            assert fstype == "fuse.sshfs", (worker, folder, fstype)
    media_opts = on(STATION, "findmnt", "-no", "OPTIONS", "/srv/station-share/media").stdout
    assert "ro" in media_opts.strip().split(","), media_opts  # read-only at the station too
    volumes_opts = on(STATION, "findmnt", "-no", "OPTIONS", "/srv/station-share/volumes").stdout
    assert {"nosuid", "nodev", "noexec"} <= set(volumes_opts.strip().split(",")), volumes_opts


def test_station_volumes_stay_unlistable_to_the_share():
    # Docker's own 0701: the share account reaches a volume it names, lists none
    # (the chroot's bind must not have changed it).
    mode = on(STATION, "stat", "-c", "%a", "/var/lib/docker/volumes").stdout.strip()
    assert mode == "701"
    for worker in WORKERS:
        listing = on(worker, "ls", "/srv/station/volumes", check=False)
        assert listing.returncode != 0, (worker, listing.stdout)
        assert "Permission denied" in listing.stderr


def test_share_account_is_sftp_only_and_knows_only_the_workers_keys():
    worker = WORKERS[0]
    # a command is replaced by internal-sftp: it never runs
    shell = share_ssh(worker, "ssh", "-T", command="echo SHELL-RAN")
    assert "SHELL-RAN" not in shell.stdout, shell
    # no forwarding (-W: a direct TCP channel to the station's own sshd)
    forward = share_ssh(worker, "ssh", "-W", "127.0.0.1:22")
    assert forward.returncode != 0
    assert "prohibited" in forward.stderr, forward.stderr
    # the chroot's top is root's: nothing can be written there
    put = share_ssh(worker, "sftp", "-b", "-", stdin="put /etc/hostname /planted\n")
    assert put.returncode != 0, put.stdout
    assert on(STATION, "test", "-e", "/srv/station-share/planted", check=False).returncode
    # a key the station was not given (a removed worker's) is refused
    on(worker, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/stranger-key")
    stranger = share_ssh(worker, "sftp", "-b", "-", key="/root/stranger-key", stdin="ls /\n")
    assert stranger.returncode != 0
    assert "Permission denied (publickey)" in stranger.stderr, stranger.stderr


def test_a_workers_key_works_from_that_worker_only():
    owner, thief = WORKERS
    key = on(owner, "cat", "/etc/testbed-share/id_ed25519").stdout
    subprocess.run(
        ["docker", "exec", "-i", thief, "sh", "-c", "umask 077; cat > /root/borrowed-key"],
        input=key,
        text=True,
        check=True,
    )
    try:
        own = share_ssh(owner, "sftp", "-b", "-", stdin="ls /\n")
        assert own.returncode == 0, own.stderr
        assert {"media", "volumes"} <= {t.strip("/") for t in own.stdout.split()}, own.stdout
        stolen = share_ssh(thief, "sftp", "-b", "-", key="/root/borrowed-key", stdin="ls /\n")
        assert stolen.returncode != 0
        assert "Permission denied (publickey)" in stolen.stderr, stolen.stderr
    finally:
        on(thief, "rm", "-f", "/root/borrowed-key")


def test_file_written_on_one_worker_is_read_on_the_other_and_on_the_station(user_volume):
    writer, reader = WORKERS
    payload = "written on " + writer
    run_on(writer, [WORK_BIND], f"echo '{payload}' > /home/jovyan/work/note.txt")
    got = run_on(reader, [WORK_BIND], "cat /home/jovyan/work/note.txt")
    assert got.stdout.strip() == payload
    on_station = f"/var/lib/docker/volumes/{VOLUME}/_data/note.txt"
    assert on(STATION, "cat", on_station).stdout.strip() == payload
    assert on(STATION, "stat", "-c", "%u:%g", on_station).stdout.strip() == f"{NB_UID}:{NB_UID}"
    # nothing of it on the workers' own disks (the root file system and Docker's)
    for worker in WORKERS:
        for where in (["/", "-xdev"], ["/var/lib/docker"]):
            local = on(worker, "find", *where, "-name", "note.txt").stdout
            assert local.strip() == "", (worker, where, local)


def test_recordings_are_readable_and_read_only_on_the_workers():
    assert MEDIA_FILE.endswith(".wav"), "no recording in /srv/lmr/wavs/exp-001 on the station"
    want = on(STATION, "sha256sum", f"/srv/lmr/wavs/{MEDIA_FILE}").stdout.split()[0]
    for worker in WORKERS:
        media = (MEDIA.source, MEDIA.target, True)
        got = run_on(worker, [media], f"sha256sum {MEDIA.target}/{MEDIA_FILE}")
        assert got.stdout.split()[0] == want, worker
        # read-only at the source too: a bind without readonly cannot write either
        write = run_on(
            worker, [(MEDIA.source, "/m", False)], f"touch /m/{MEDIA_FILE}.new", check=False
        )
        assert write.returncode != 0, worker
        assert "Read-only file system" in write.stderr, write.stderr
    assert on(STATION, "test", "-e", f"/srv/lmr/wavs/{MEDIA_FILE}.new", check=False).returncode


def test_unknown_volume_is_refused_not_made_on_the_worker():
    # a server bound to a volume the station lacks must not start on a local folder
    missing = share_mounts(SPAWNER, "nobody")[0].source
    out = run_on(WORKERS[0], [(missing, "/home/jovyan/work", False)], "true", check=False)
    assert out.returncode != 0
    assert "bind source path does not exist" in out.stderr, out.stderr
    assert on(WORKERS[0], "test", "-e", missing, check=False).returncode != 0


def test_share_down_refuses_the_server_and_comes_back(user_volume):
    worker = WORKERS[1]
    on(worker, "umount", "/srv/station/volumes")
    try:
        out = run_on(worker, [WORK_BIND], "echo local > /home/jovyan/work/lost.txt", check=False)
        assert out.returncode != 0
        assert "bind source path does not exist" in out.stderr, out.stderr
        assert on(worker, "test", "-e", user_volume, check=False).returncode != 0
    finally:
        on(worker, "mount", "/srv/station/volumes")  # the fstab entry, as at boot
    assert on(worker, "findmnt", "-no", "FSTYPE", "/srv/station/volumes").stdout.strip() == (
        "fuse.sshfs"
    )
    got = run_on(worker, [WORK_BIND], "cat /home/jovyan/work/note.txt")
    assert got.stdout.strip().startswith("written on ")


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
    got = run_on(other, [WORK_BIND], "cat /home/jovyan/work/note.txt")
    assert got.stdout.strip().startswith("written on ")
