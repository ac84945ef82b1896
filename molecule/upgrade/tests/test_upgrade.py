"""The station after an upgrade by re-running site.yml (prepare: the previous release).

What prepare recorded under /root/upgrade (every file's SHA-256 in the user and
shared volumes, the hub's users and admin flags, the running server) is compared
with what the upgraded station has; then the running server's user is told about
the new image and moves to it, a downgrade is refused, old image tags are pruned.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from testbed_devtools.molecule_run import flat, run_playbook

REPO = Path(__file__).resolve().parents[3]
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
HUB_API = "http://127.0.0.1:8081/jupyter/hub/api"
VENV = "/opt/jupyterhub"
BACKUP_DIR = "/var/backups/jupyterhub"
PREVIOUS_HEAD = "4621fec11365"  # JupyterHub 5.x's database schema


@pytest.fixture(scope="module")
def before(host):
    return json.loads(host.file("/root/upgrade/before.json").content_string)


@pytest.fixture(scope="module")
def token(host, before):
    cmd = host.run(
        f"cd /var/lib/jupyterhub && {VENV}/bin/jupyterhub token --config {CONFIG} {before['alice']}"
    )
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip().splitlines()[-1]


def api(host, token, method, path):
    out = host.run(
        "curl -sS -X %s -H %s -w '\\n%%{http_code}' %s",
        method,
        f"Authorization: token {token}",
        HUB_API + path,
    )
    assert out.rc == 0, out.stderr
    body, _, status = out.stdout.rpartition("\n")
    return int(status), (json.loads(body) if body.startswith(("{", "[")) else body)


def instance_ip(name: str) -> str:
    return subprocess.run(
        ["docker", "inspect", name, "--format", "{{.NetworkSettings.IPAddress}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def home_page(host, identity: str) -> str:
    """The hub's home page as the user's browser gets it: testbed login through nginx."""
    from testbed_devtools.hubclient import HubSession

    session = HubSession(f"https://{instance_ip(host.backend.get_hostname())}")
    session.login(identity)
    resp = session.get("/jupyter/hub/home")
    assert resp.status_code == 200, (resp.status_code, resp.url)
    return resp.text


def journal(host) -> str:
    units = "-u jupyterhub -u configurable-http-proxy -u docker -u testbed-notebook-egress"
    out = host.run(f"journalctl {units} --no-pager -n 80; docker ps -a")
    return out.stdout[-6000:]


def inspect(host, name):
    out = host.run(f"docker inspect {name}")
    return json.loads(out.stdout)[0] if out.rc == 0 else None


def test_hub_runs_the_current_release(host):
    assert host.service("jupyterhub").is_running
    version = host.check_output(
        f"{VENV}/bin/python -c 'import importlib.metadata as m; print(m.version(\"jupyterhub\"))'"
    )
    assert version == "6.1.1"
    status = json.loads(host.check_output(f"{VENV}/bin/python -m testbed_hub.database status"))
    assert status["state"] == "current", status
    assert status["revision"] == status["head"] != PREVIOUS_HEAD


@pytest.mark.parametrize("volume_index", [0, 1, 2], ids=["alice", "bob", "shared"])
def test_every_file_is_byte_identical(host, before, volume_index, record_property):
    volume = before["volumes"][volume_index]
    want = host.file(f"/root/upgrade/{volume}.sha256").content_string
    assert want.count("\n") >= 1
    check = host.run(
        f"cd /var/lib/docker/volumes/{volume}/_data"
        f" && sha256sum --quiet -c /root/upgrade/{volume}.sha256"
    )
    assert check.rc == 0, check.stdout + check.stderr
    record_property("files_checked", want.count("\n"))


def test_users_and_admin_flags_kept(host, token, before):
    status, users = api(host, token, "GET", "/users")
    assert status == 200, users
    now = {u["name"]: u["admin"] for u in users}
    for name, admin in before["users"].items():
        assert now.get(name) == admin, (name, admin, now)
    # alice is an admin from jupyterhub_admin_users; carol was made through the API
    assert before["users"] == {before["alice"]: True, before["bob"]: False, "carol": False}


def test_database_backed_up_before_its_upgrade(host, before):
    backups = host.check_output(f"ls {BACKUP_DIR}").split()
    assert any(PREVIOUS_HEAD in b for b in backups), backups
    name = next(b for b in backups if PREVIOUS_HEAD in b)
    assert host.file(f"{BACKUP_DIR}/{name}").mode == 0o600
    assert host.file(BACKUP_DIR).mode == 0o700
    # the copy is a database of the previous schema with the users in it
    query = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        "print(c.execute('select version_num from alembic_version').fetchone()[0]);"
        "print(','.join(sorted(r[0] for r in c.execute('select name from users'))))"
    )
    out = host.check_output(f"python3 -c %s {BACKUP_DIR}/{name}", query).splitlines()
    assert out[0] == PREVIOUS_HEAD
    assert set(out[1].split(",")) >= set(before["users"])


def test_running_server_kept_on_its_image_and_user_told(host, token, before):
    container = inspect(host, f"jupyter-{before['alice']}")
    assert container is not None and container["State"]["Running"]
    assert container["Id"] == before["running_container"]
    assert container["Config"]["Image"] == before["running_image"]
    status, user = api(host, token, "GET", f"/users/{before['alice']}")
    assert user["servers"][""]["ready"] is True, user
    home = home_page(host, "alice@testbed.example")
    assert "earlier notebook image" in home, home[-3000:]
    assert before["running_image"].rpartition(":")[2] in home


def test_downgrade_is_refused_and_changes_nothing(host):
    started = host.check_output(
        "systemctl show -p ExecMainStartTimestampMonotonic --value jupyterhub"
    )
    res = run_playbook(REPO / "site.yml", "-e", "jupyterhub_version=5.5.4")
    assert res.returncode != 0
    out = flat(res)
    assert "jupyterhub_version 5.5.4 is older than the JupyterHub 6.1.1" in out, out[-3000:]
    assert "changed=0" in out, out[-3000:]
    assert (
        host.check_output("systemctl show -p ExecMainStartTimestampMonotonic --value jupyterhub")
        == started
    )
    version = host.check_output(
        f"{VENV}/bin/python -c 'import importlib.metadata as m; print(m.version(\"jupyterhub\"))'"
    )
    assert version == "6.1.1"


def test_tag_in_use_is_kept_by_pruning_then_removed(host, token, before):
    old = before["running_image"]
    res = run_playbook(
        REPO / "site.yml", "--tags", "notebook_image", "-e", "notebook_image_keep_previous=0"
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert inspect(host, old) is not None, "pruned the image of a running server"
    # the user moves to the current image: stop and start
    assert api(host, token, "DELETE", f"/users/{before['alice']}/server")[0] in (202, 204)
    deadline = time.monotonic() + 60
    while inspect(host, f"jupyter-{before['alice']}") is not None:
        assert time.monotonic() < deadline, "old server not removed"
        time.sleep(1)
    assert api(host, token, "POST", f"/users/{before['alice']}/server")[0] in (201, 202)
    deadline = time.monotonic() + 120
    while (
        not api(host, token, "GET", f"/users/{before['alice']}")[1]["servers"]
        .get("", {})
        .get("ready")
    ):
        assert time.monotonic() < deadline, "server not ready on the new image"
        time.sleep(2)
    container = inspect(host, f"jupyter-{before['alice']}")
    assert container["Config"]["Image"] != old
    assert "earlier notebook image" not in home_page(host, "alice@testbed.example")
    # the files written before the upgrade, seen from the new server
    out = host.check_output(
        f"docker exec jupyter-{before['alice']} cat /home/jovyan/nist/results/summary.csv"
    )
    assert "exp-001,231.5" in out
    res = run_playbook(
        REPO / "site.yml", "--tags", "notebook_image", "-e", "notebook_image_keep_previous=0"
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert inspect(host, old) is None, "old tag kept although nothing uses it"
    assert inspect(host, container["Config"]["Image"]) is not None


SERVICES = [
    "docker",
    "configurable-http-proxy",
    "jupyterhub",
    "nginx",
    "testbed-sim-auth",
    "testbed-sim-mongo",
    "testbed-notebook-egress",
]


def test_restart_of_the_base_station_brings_every_service_back(host, before, record_property):
    """Last: the instance restarts (a power cut, a kernel update). systemd starts
    every service by itself; the volumes hold every file; a researcher logs in
    through nginx and gets JupyterLab."""
    from testbed_devtools.hubclient import HubFlowError, HubSession

    name = host.backend.get_hostname()
    started = time.monotonic()
    subprocess.run(["docker", "restart", "-t", "30", name], check=True, timeout=120)
    deadline = time.monotonic() + 240
    while True:
        states = host.run(f"systemctl is-active {' '.join(SERVICES)}").stdout.split()
        if states == ["active"] * len(SERVICES):
            break
        assert time.monotonic() < deadline, dict(zip(SERVICES, states, strict=False))
        time.sleep(2)
    record_property("services_back_seconds", round(time.monotonic() - started, 1))
    failed = host.run("systemctl list-units --failed --no-legend --plain").stdout.strip()
    assert failed == "", failed
    for volume in before["volumes"]:
        check = host.run(
            f"cd /var/lib/docker/volumes/{volume}/_data"
            f" && sha256sum --quiet -c /root/upgrade/{volume}.sha256"
        )
        assert check.rc == 0, check.stdout + check.stderr
    while host.run("curl -fsS -o /dev/null http://127.0.0.1:8081/jupyter/hub/health").rc != 0:
        assert time.monotonic() < deadline, journal(host)
        time.sleep(1)
    ip = instance_ip(name)
    # bob's server was stopped before the restart: a plain login spawns it
    try:
        timing = HubSession(f"https://{ip}").login_to_lab("bob@testbed.example", before["bob"])
    except HubFlowError as e:
        pytest.fail(f"{e}\n{journal(host)}")
    record_property("login_after_restart_seconds", round(timing.ready_s, 2))
    out = host.check_output(
        f"docker exec jupyter-{before['bob']} cat /home/jovyan/nist/results/summary.csv"
    )
    assert "exp-001,231.5" in out
