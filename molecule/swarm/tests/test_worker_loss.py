"""After test_swarm.py killed a worker: the hub sees the server there gone, tells its
user, and the next start lands on the live worker with the same files (they never
left the station). Runs last (file order); Molecule's destroy removes the dead
instance.
"""

from __future__ import annotations

import time

from test_hub_on_swarm import HUB, NB, NOTE, USERS, api, inside, placed, wait_ready
from test_swarm import STATION, WORKERS, inspect, on, wait_for

# Runs on the station: starts the user's server (POST, which JupyterHub answers only
# once the server is ready or 10 s passed) and meanwhile reads the start's progress
# events (JupyterHub's event stream: 404 until the POST made the server's Spawner,
# JupyterHub dropped the last one when it stopped the server, then 400 until the start
# is pending), one message per line, then the POST's status.
START_AND_WATCH = r"""
import json, sys, threading, time, urllib.error, urllib.request
base, token = sys.argv[1], sys.argv[2]
def call(method, url):
    req = urllib.request.Request(url, method=method, headers={"Authorization": "token " + token})
    return urllib.request.urlopen(req, timeout=120)
posted = {}
def post():
    posted["status"] = call("POST", base + "/server").status
threading.Thread(target=post).start()
deadline = time.monotonic() + 30
while True:
    try:
        stream = call("GET", base + "/server/progress")
        break
    except urllib.error.HTTPError as e:
        if e.code not in (400, 404) or time.monotonic() > deadline:
            raise
        time.sleep(0.02)
for line in stream:
    line = line.decode().strip()
    if line.startswith("data:"):
        event = json.loads(line[5:])
        print(event.get("message", ""), flush=True)
        if event.get("ready") or event.get("failed"):
            break
while "status" not in posted and time.monotonic() < deadline:
    time.sleep(0.1)
print(posted.get("status"))
"""


def dead_worker() -> str:
    down = [w for w in WORKERS if inspect("node", w)["Status"]["State"] == "down"]
    assert len(down) == 1, f"test_swarm.py kills one worker; down: {down}"
    return down[0]


def test_the_hub_sees_the_lost_server_and_the_next_start_lands_elsewhere(token, servers):
    dead = dead_worker()
    alive = next(w for w in WORKERS if w != dead)
    # conftest.py's servers put one user's server on each worker
    (lost,) = [user for user, (_, node) in servers.items() if node == dead]
    started = time.monotonic()

    def stopped():
        r = api(token, "GET", f"/users/{lost}")
        return not (r["json"] or {}).get("servers", {}).get("")

    # JupyterHub polls every server (Spawner.poll_interval, 30 s): it finds the task's
    # node down and stops the server
    wait_for(f"the hub to see the server of {lost} on {dead} gone", stopped, timeout=120, step=2)
    print(f"the hub stopped {lost}'s server {time.monotonic() - started:.1f} s after the check")
    log = on(STATION, "journalctl", "-u", "jupyterhub", "--no-pager", "-n", "200").stdout
    assert f"Server of {lost} is gone" in log and dead in log

    watched = on(
        STATION, "python3", "-c", START_AND_WATCH, f"{HUB}/api/users/{lost}", token, check=False
    )
    assert watched.returncode == 0, watched.stderr
    *messages, status = watched.stdout.splitlines()
    assert status in ("201", "202"), (status, messages)
    assert any(m.startswith("Your last server stopped:") and dead in m for m in messages), messages
    wait_ready(token, lost)
    node, _ = placed(lost)
    assert node == alive
    # the user's files, written earlier on whichever worker ran the server, are there
    if lost == USERS[0]:
        assert inside(lost, f"cat {NB}/{NOTE}").stdout.startswith("written on ")
    inside(lost, f"echo after-loss > {NB}/after-loss.txt")
    assert (
        on(
            STATION, "cat", f"/var/lib/docker/volumes/jupyterhub-user-{lost}/_data/after-loss.txt"
        ).stdout.strip()
        == "after-loss"
    )
