"""Issue 14: long work is not culled, and the idle culler stops the server once it ends.

Three users' servers and the real jupyterhub-idle-culler with a 30 s timeout (this
scenario's servers report their activity every 10 s: ``jupyterhub_activity_interval``
in converge.yml). The idle server is culled; the one whose kernel is busy in a cell and
the one running a ``run-notebook`` batch stay while their work runs (WORK_S, past the
time the culler would have stopped them), and are culled a timeout after it ends. Their
notebook containers' extension ``testbed.activity`` is what keeps them
(``GET .../testbed/activity`` says why).

The culler runs as a one-off beside the hub's own (timeout 3600), with a token whose
scopes name only these three users: no other test's server is touched. Everything the
test asks a user's server goes to its port inside the container (``docker exec``), not
through configurable-http-proxy, whose traffic the hub counts as activity.

Runs after test_jupyterhub.py (file order) and reuses its helpers.
"""

from __future__ import annotations

import json
import time

import pytest
from test_jupyterhub import HTTP, HUB_LOOPBACK, NB, api, http, journal, wait_ready

from testbed_hub.config import CULLER_SCOPES

IDLE, KERNEL, BATCH = "long-work-idle", "long-work-kernel", "long-work-batch"
USERS = (IDLE, KERNEL, BATCH)
TIMEOUT_S = 30  # the culler's --timeout
EVERY_S = 5  # its --cull-every
ACTIVITY_S = 10  # jupyterhub_activity_interval (converge.yml)
WORK_S = 75  # the busy cell and the batch's notebook sleep this long
#: A server with nothing going on is culled within the timeout, one culler round, one
#: activity report (+10 % jitter), one check of the extension (ACTIVITY_S / 2) and a stop.
CULL_WITHIN_S = TIMEOUT_S + 2 * EVERY_S + ACTIVITY_S + 15
UNIT = "tb-long-work-culler"
# on the users' volumes, read from the station after the servers are gone
CLIENT_LOG = f"{NB}/long-work-client.log"
BATCH_LOG = f"{NB}/long-work-batch.log"

# Runs in the kernel user's container: one cell on the server's kernel, through the
# kernel's connection file (the server sees the kernel busy on IOPub like for a tab).
KERNEL_CLIENT = r"""
import glob, os, sys, traceback
kernel_id, code = sys.argv[1], sys.argv[2]
with open(sys.argv[3], "w") as log:
    try:
        from jupyter_client import BlockingKernelClient
        from jupyter_core.paths import jupyter_runtime_dir
        name = f"kernel-{kernel_id}.json"
        path = os.path.join(jupyter_runtime_dir(), name)
        if not os.path.exists(path):  # the server's runtime folder is not the default
            path = glob.glob(f"/home/jovyan/**/{name}", recursive=True)[0]
        print("connection file", path, file=log, flush=True)
        client = BlockingKernelClient(connection_file=path)
        client.load_connection_file()
        client.start_channels()
        sent = client.execute(code)
        reply = client.get_shell_msg(timeout=600)
        while reply["parent_header"].get("msg_id") != sent:
            reply = client.get_shell_msg(timeout=600)
        print("reply", reply["content"]["status"], file=log)
    except Exception:
        traceback.print_exc(file=log)
"""

# Runs in the batch user's container: a notebook that only sleeps.
NOTEBOOK = r"""
import sys, nbformat
cells = [
    nbformat.v4.new_code_cell('experiment_id = "exp-001"', metadata={"tags": ["parameters"]}),
    nbformat.v4.new_code_cell(f"import time\ntime.sleep({sys.argv[2]})"),
]
nb = nbformat.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
nbformat.write(nb, sys.argv[1])
"""


def container(user):
    return f"jupyter-{user}"


def ask(host, token, user, method, path, body=""):
    """One request to the user's server on its own port; None when the container is gone."""
    url = f"http://127.0.0.1:8888/jupyter/user/{user}{path}"
    headers = json.dumps({"Authorization": f"token {token}", "Content-Type": "application/json"})
    cmd = host.run(
        f"docker exec {container(user)} python -c %s %s %s %s %s", HTTP, method, url, headers, body
    )
    if cmd.rc != 0:
        return None
    out = json.loads(cmd.stdout)
    out["json"] = json.loads(out["body"]) if out["body"].startswith(("{", "[")) else None
    return out


def activity(host, token, user):
    """The extension's answer (testbed.activity), None when the server is gone."""
    r = ask(host, token, user, "GET", "/testbed/activity")
    if r is None:
        return None
    assert r["status"] == 200, r["body"]
    return r["json"]


def running(host, token):
    """Which of the three users' servers the hub still has, and is not stopping."""
    r = api(host, token, "GET", "/users?state=ready&limit=200")  # ready: running, not pending
    assert r["status"] == 200, r["body"]
    servers = {u["name"]: u["servers"].get("") for u in r["json"] if u["name"] in USERS}
    return {name for name, s in servers.items() if s and s.get("ready") and not s.get("pending")}


def volume_file(host, user, path):
    """A file of the user's volume (``path`` as the container sees it), from the station."""
    volume = json.loads(host.check_output(f"docker volume inspect jupyterhub-user-{user}"))
    return host.file(volume[0]["Mountpoint"] + path[len(NB) :]).content_string


def diagnostics(host, token, users=USERS):
    parts = [f"culler:\n{journal(host, UNIT)}"]
    for user in users:
        parts.append(f"{user}: {api(host, token, 'GET', f'/users/{user}')['body']}")
        logs = host.run(f"docker logs --tail 25 {container(user)}")
        parts.append(f"{container(user)} log:\n{logs.stdout}{logs.stderr}")
    return "\n".join(parts)


def poll(condition, what, timeout, explain):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout} s\n{explain()}")
        time.sleep(2)


@pytest.fixture(scope="module")
def culler_token(host, token):
    """A token for the culler that can see and stop these three users' servers only."""
    scopes = [f"{scope}!user={user}" for user in USERS for scope in CULLER_SCOPES]
    body = json.dumps({"scopes": scopes, "expires_in": 900, "note": "test_long_work culler"})
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    r = http(host, "POST", f"{HUB_LOOPBACK}/api/users/hub-admin/tokens", headers, body)
    assert r["status"] == 201, r["body"]
    yield r["json"]["token"]
    api(host, token, "DELETE", f"/users/hub-admin/tokens/{r['json']['id']}")


@pytest.fixture(scope="module")
def servers(host, token):
    """The three users with a running server each; afterwards the users are removed."""
    for user in USERS:
        assert api(host, token, "POST", f"/users/{user}")["status"] in (201, 409)
        r = api(host, token, "POST", f"/users/{user}/server")
        assert r["status"] in (201, 202, 400), r["body"]  # 400: already running
    for user in USERS:
        wait_ready(host, token, user)
    yield USERS
    host.run(f"systemctl stop {UNIT}")
    host.run(f"systemctl reset-failed {UNIT}")
    for user in USERS:
        deadline = time.monotonic() + 60
        while api(host, token, "DELETE", f"/users/{user}")["status"] == 400:  # still stopping
            if time.monotonic() > deadline:
                break
            time.sleep(2)


def start_busy_kernel(host, token):
    r = ask(host, token, KERNEL, "POST", "/api/kernels", json.dumps({"name": "python3"}))
    assert r is not None and r["status"] == 201, r
    code = f"import time; time.sleep({WORK_S})"
    cmd = host.run(
        f"docker exec -d {container(KERNEL)} python -c %s %s %s %s",
        KERNEL_CLIENT,
        r["json"]["id"],
        code,
        CLIENT_LOG,
    )
    assert cmd.rc == 0, cmd.stderr
    poll(
        lambda: (activity(host, token, KERNEL) or {}).get("busy_kernels") == 1,
        "the kernel busy",
        60,
        lambda: (
            host.run(f"docker exec {container(KERNEL)} cat {CLIENT_LOG}").stdout
            + diagnostics(host, token, [KERNEL])
        ),
    )


def start_batch(host, token):
    notebook = f"{NB}/long-work.ipynb"
    cmd = host.run(f"docker exec {container(BATCH)} python -c %s {notebook} {WORK_S}", NOTEBOOK)
    assert cmd.rc == 0, cmd.stderr
    command = (
        f"cd {NB} && run-notebook {notebook} -e exp-001 --jobs 1 --progress lines "
        f"> {BATCH_LOG} 2>&1"
    )
    cmd = host.run(f"docker exec -d {container(BATCH)} bash -lc %s", command)
    assert cmd.rc == 0, cmd.stderr
    poll(
        lambda: (activity(host, token, BATCH) or {}).get("batches"),
        "the run-notebook batch's heartbeat",
        60,
        lambda: (
            host.run(f"docker exec {container(BATCH)} cat {BATCH_LOG}").stdout
            + diagnostics(host, token, [BATCH])
        ),
    )


def test_long_work_keeps_its_server_until_it_ends(
    host, token, culler_token, servers, record_property
):
    start_busy_kernel(host, token)
    start_batch(host, token)
    assert activity(host, token, IDLE)["active"] is False
    for user in (KERNEL, BATCH):
        answer = activity(host, token, user)
        assert answer["active"] is True, answer
    assert activity(host, token, KERNEL)["reasons"] == ["1 busy kernel"]
    assert activity(host, token, BATCH)["reasons"] == ["1 run-notebook batch (long-work.ipynb)"]

    host.run(f"systemctl reset-failed {UNIT}")
    started = host.run(
        f"systemd-run --unit {UNIT} --setenv=JUPYTERHUB_API_TOKEN={culler_token} "
        "/opt/jupyterhub/bin/python -m jupyterhub_idle_culler "
        f"--url={HUB_LOOPBACK}/api --timeout={TIMEOUT_S} --cull-every={EVERY_S}"
    )
    assert started.rc == 0, started.stderr
    t0 = time.monotonic()
    culled: dict[str, float] = {}
    ended: dict[str, float] = {}
    last: dict[str, dict] = {}
    deadline = t0 + WORK_S + CULL_WITHIN_S + 30
    while len(culled) < len(USERS) and time.monotonic() < deadline:
        now = time.monotonic() - t0
        alive = running(host, token)
        for user in USERS:
            if user in culled:
                continue
            if user not in alive:
                culled[user] = now
                if user != IDLE and user not in ended:
                    pytest.fail(
                        f"{user}'s server was culled {now:.0f} s after the culler started, "
                        f"while its work still ran (last answer: {last.get(user)})\n"
                        + diagnostics(host, token)
                    )
            elif user != IDLE and user not in ended:
                answer = activity(host, token, user)
                if answer is not None:
                    last[user] = answer
                    if not answer["active"]:
                        ended[user] = now
        time.sleep(1)
    for user, seconds in culled.items():
        record_property(f"culled_s_{user}", round(seconds, 1))
    for user, seconds in ended.items():
        record_property(f"work_ended_s_{user}", round(seconds, 1))
    print(f"seconds after the culler started: work ended {ended}, servers culled {culled}")

    # the idle server: culled within a timeout and a round
    assert culled.get(IDLE, 1e9) <= CULL_WITHIN_S, f"{culled}\n{diagnostics(host, token)}"
    for user in (KERNEL, BATCH):
        assert user in ended, f"{user}: {last.get(user)}\n{diagnostics(host, token)}"
        # the work outlived the time at which the culler stops a server without it
        assert ended[user] > TIMEOUT_S + EVERY_S + ACTIVITY_S, (user, ended)
        assert user in culled, f"{user} not culled after its work\n{diagnostics(host, token)}"
        # ... and the culler then waited for its timeout (less the extension's last check
        # before the end and this loop's lag), and not much longer
        assert TIMEOUT_S / 2 <= culled[user] - ended[user] <= CULL_WITHIN_S, (user, ended, culled)
    # the work itself ran to its end: it was not stopped with its server
    assert "reply ok" in volume_file(host, KERNEL, CLIENT_LOG)
    assert "1 ok, 0 failed" in volume_file(host, BATCH, BATCH_LOG)
