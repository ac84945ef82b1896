"""Issue 16: an environment, resources and more than one server per user, on Docker.

Runs after test_rerun_access.py (file order: the re-run there leaves the profiles and
the named-server limit of converge.yml in place) and before test_station_confinement.py
(which restarts the instance last). Through the hub's REST API as an admin, the way
the spawn form's choices arrive (``user_options``):

- the resource profiles of converge.yml are what Docker enforces: HostConfig.Memory,
  CpuQuota/CpuPeriod (DockerSpawner sets cpu_quota = cpu_limit x cpu_period, not
  NanoCpus), the container's own cgroup files, and an allocation between the two
  memory limits that only the larger profile survives;
- a profile or image the operator does not offer is refused with the hub's message,
  and nothing is started;
- two named servers of one user are two containers on one volume: a file written in
  one is read in the other, and the named-server limit holds;
- an earlier tag on the station (made here with ``docker tag``) is offered after a
  re-run of the roles, labelled with the versions read in the image; a server started
  on it gets TESTBED_IMAGE_OUTDATED=1 and its login shell (JupyterLab's terminal) says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from test_jupyterhub import NB, api, inspect, journal
from test_rerun_access import INVENTORY

from testbed_devtools.molecule_run import run_playbook
from testbed_hub.auth import identity_to_username

SCENARIO = Path(__file__).resolve().parents[1]
USER_ID = "Profile.User@testbed.example"
USER = identity_to_username(USER_ID)
GIB = 1024**3
#: molecule/jupyterhub/converge.yml: jupyterhub_profiles, jupyterhub_named_server_limit
STANDARD = {"memory": 1 * GIB, "quota": 100_000}
AUDIO = {"memory": 1536 * 1024**2, "quota": 200_000}
NAMED_LIMIT = 2
SETTINGS = "/etc/jupyterhub/settings.json"
EARLIER_TAG = "0000000000e1"  # a tag no build gives (12 hex digits, as the role's)


def container(server: str = "") -> str:
    return f"jupyter-{USER}--{server}" if server else f"jupyter-{USER}"


def wait_server(host, token, server, ready=True, timeout=240):
    deadline = time.monotonic() + timeout
    while True:
        r = api(host, token, "GET", f"/users/{USER}")
        got = (r["json"] or {}).get("servers", {}).get(server)
        if ready and got and got.get("ready"):
            return got
        if not ready and not got:
            return None
        if time.monotonic() > deadline:
            pytest.fail(
                f"server {server!r} of {USER} not {'ready' if ready else 'gone'} after "
                f"{timeout} s: {r['body']}\n{journal(host, 'jupyterhub')}"
            )
        time.sleep(2)


def start(host, token, server="", options=None):
    path = f"/users/{USER}/servers/{server}" if server else f"/users/{USER}/server"
    return api(host, token, "POST", path, json.dumps(options or {}))


def remove(host, token, server):
    """Stop a named server and delete it: only then it no longer counts to the limit."""
    api(host, token, "DELETE", f"/users/{USER}/servers/{server}", json.dumps({"remove": True}))
    wait_server(host, token, server, ready=False)


@pytest.fixture(scope="module")
def user(host, token):
    r = api(host, token, "POST", f"/users/{USER}")
    assert r["status"] in (201, 409), r["body"]
    yield USER
    for server in ("", "batch", "live", "old"):
        api(
            host,
            token,
            "DELETE",
            f"/users/{USER}/servers/{server}" if server else f"/users/{USER}/server",
        )


def limits(host, name):
    cfg = inspect(host, name)["HostConfig"]
    return {"memory": cfg["Memory"], "quota": cfg["CpuQuota"], "period": cfg["CpuPeriod"]}


# The container's own view of its limits, from cgroup v2 or v1 (this machine's
# kernel mounts v1; a station with systemd's unified hierarchy has v2).
MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)
CPU_LIMIT = (
    "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) "
    "$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
)
# times the memory limit was hit: v2 memory.events "max", v1 memory.failcnt
LIMIT_HITS = (
    "awk '$1 == \"max\" {print $2}' /sys/fs/cgroup/memory.events 2>/dev/null "
    "|| cat /sys/fs/cgroup/memory/memory.failcnt"
)


def in_container(host, name, script):
    return host.run(f"docker exec {name} sh -c %s", script)


def test_the_default_profile_is_enforced_by_docker(host, token, user):
    r = start(host, token)
    assert r["status"] in (201, 202), r["body"]
    wait_server(host, token, "")
    assert limits(host, container()) == {**STANDARD, "period": 100_000}
    cgroup = in_container(host, container(), MEMORY_LIMIT)
    assert cgroup.rc == 0 and int(cgroup.stdout) == STANDARD["memory"], cgroup
    env = host.check_output(f"docker exec {container()} printenv TESTBED_PROFILE")
    assert env == "standard"


def test_the_chosen_profile_is_enforced_by_docker(host, token, user):
    r = start(host, token, "batch", {"profile": "audio"})
    assert r["status"] in (201, 202), r["body"]
    wait_server(host, token, "batch")
    assert limits(host, container("batch")) == {**AUDIO, "period": 100_000}
    cpu = in_container(host, container("batch"), CPU_LIMIT)
    assert cpu.rc == 0 and cpu.stdout.split() == ["200000", "100000"], cpu


# Runs in a container: touch `mb` MiB of memory; prints "ok" when it survives.
HOG = "import sys; b = bytearray(int(sys.argv[1]) * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ok')"  # noqa: E501


def test_only_the_larger_profile_survives_an_allocation_between_the_limits(host, token, user):
    """1.25 GiB: above the standard profile's 1 GiB, below audio's 1.5 GiB."""
    small = host.run(f"docker exec {container()} python3 -c %s 1280", HOG)
    swap_kb = int(host.check_output("awk '/^SwapTotal/ {print $2}' /proc/meminfo"))
    if swap_kb == 0:
        assert small.rc == 137, (small.rc, small.stdout, small.stderr)  # the OOM killer
    else:  # with swap the kernel may page out instead: the limit was hit all the same
        hits = in_container(host, container(), LIMIT_HITS)
        assert small.rc == 137 or int(hits.stdout) > 0, (small.rc, hits)
    large = host.run(f"docker exec {container('batch')} python3 -c %s 1280", HOG)
    assert large.rc == 0 and large.stdout.strip() == "ok", (large.rc, large.stderr)
    # the default server is still there: only the allocating process was killed
    assert wait_server(host, token, "", timeout=30)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"profile": "huge"},
            "Resource profile 'huge' is not one this hub offers; choose one of standard, audio",
        ),
        ({"image": "debian:bookworm"}, "Image 'debian:bookworm' is not one this hub offers"),
        ({"mem_limit": "64G"}, "Unknown option(s) mem_limit: only image and profile"),
    ],
)
def test_a_forged_choice_is_refused_and_nothing_starts(host, token, user, options, message):
    r = start(host, token, "live", options)
    assert r["status"] == 400, r["body"]
    assert message in r["json"]["message"], r["body"]
    assert host.run(f"docker inspect {container('live')}").rc != 0


def test_two_named_servers_see_the_same_files(host, token, user):
    r = start(host, token, "live")
    assert r["status"] in (201, 202), r["body"]
    wait_server(host, token, "live")
    names = {container(), container("batch"), container("live")}
    assert len(names) == 3
    volumes = {
        name: {m["Destination"]: m["Name"] for m in inspect(host, name)["Mounts"] if m.get("Name")}
        for name in names
    }
    assert {v[NB] for v in volumes.values()} == {f"jupyterhub-user-{USER}"}, volumes
    stamp = f"written in batch at {time.time()}"
    w = host.run(
        f"docker exec {container('batch')} sh -c %s", f"echo '{stamp}' > {NB}/from-batch.txt"
    )
    assert w.rc == 0, w.stderr
    assert host.check_output(f"docker exec {container('live')} cat {NB}/from-batch.txt") == stamp


def test_the_named_server_limit_holds(host, token, user):
    r = start(host, token, "third")
    assert r["status"] == 400, r["body"]
    assert f"maximum of {NAMED_LIMIT} named servers" in r["json"]["message"], r["body"]


def rerun_roles() -> subprocess.CompletedProcess[str]:
    """converge.yml again for the two roles, with the user lists test_rerun_access.py
    left (its INVENTORY), so that only the offered images change."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "choices-rerun-vars.json"
    path.write_text(json.dumps(INVENTORY, ensure_ascii=False))
    return run_playbook(
        SCENARIO / "converge.yml",
        "--tags",
        "notebook_image,jupyterhub",
        "-e",
        f"@{path}",
        timeout=1200,
    )


@pytest.fixture(scope="module")
def earlier(host, token, user):
    """The current image under an earlier tag, and the roles run again to offer it."""
    settings = json.loads(host.file(SETTINGS).content_string)
    current = settings["spawner"]["image"]
    ref = current.rsplit(":", 1)[0] + ":" + EARLIER_TAG
    host.check_output(f"docker tag {current} {ref}")
    res = rerun_roles()
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    deadline = time.monotonic() + 120
    while host.run("curl -fsS -o /dev/null http://127.0.0.1:8081/jupyter/hub/health").rc:
        assert time.monotonic() < deadline, journal(host, "jupyterhub")
        time.sleep(1)
    return current, ref, json.loads(host.file(SETTINGS).content_string)


def test_the_earlier_tag_is_offered_with_its_versions(earlier):
    current, ref, settings = earlier
    images = settings["spawner"]["images"]
    assert [i["image"] for i in images] == [current, ref]
    for image in images:
        assert image["created"][:2] == "20", image
        assert image["packages"]["jupyterlab"].startswith("4."), image
        assert "numpy" in image["packages"] and "python" in image["packages"], image


def test_a_server_on_the_earlier_tag_says_so_in_its_terminal(host, token, earlier):
    current, ref, _ = earlier
    remove(host, token, "live")
    r = start(host, token, "old", {"image": ref})
    assert r["status"] in (201, 202), r["body"]
    wait_server(host, token, "old")
    c = container("old")
    assert inspect(host, c)["Config"]["Image"] == ref
    env = host.check_output(f"docker exec {c} printenv TESTBED_IMAGE_OUTDATED")
    assert env == "1"
    # JupyterLab's terminal runs a login shell: /etc/profile reads the hub's notice
    banner = host.run(f"docker exec {c} bash -lc true")
    assert "This server runs an earlier notebook image" in banner.stdout, banner.stdout
    assert current in banner.stdout
    # a server on the current image shows nothing
    quiet = host.run(f"docker exec {container('batch')} bash -lc true")
    assert "earlier notebook image" not in quiet.stdout
