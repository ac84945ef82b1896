"""One identity, one user; access follows the inventory after a playbook re-run (issue 13).

Runs after test_jupyterhub.py (file order): it re-runs this scenario's converge.yml
with other user lists, as an operator re-runs the playbook with an edited inventory.

Before the re-run: logins with mixed case and with UTF-8 header bytes land on the
inventory's users; a hub user and volume as the old code named them are created for
``Mixed.Case@Testbed.Example`` (files with known checksums); four users log in
(cookie sessions kept on the instance), one of them gets a server and tokens.
The re-run removes one user from the allowed list, blocks one, demotes one admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from testbed_devtools.molecule_run import start_playbook
from testbed_hub.auth import identity_to_username, username_for

SCENARIO = Path(__file__).resolve().parents[1]
REPO = SCENARIO.parents[1]
HUB = "http://127.0.0.1:8081/jupyter/hub"
PROXY = "http://127.0.0.1:8000/jupyter/hub"
CONFIG = "/etc/jupyterhub/jupyterhub_config.py"
SECRET_FILE = "/etc/jupyterhub/secrets/proxy-auth-secret"  # noqa: S105 (a path)
JARS = "/tmp"  # noqa: S108 - cookie jars on the instance (a tmpfs there)


def name(identity: str) -> str:
    return username_for(identity, fold_case=True)


ALICE = name("alice@testbed.example")
JOSE = name("jos\u00e9@testbed.example")
MIXED_ID = "Mixed.Case@Testbed.Example"
MIXED_OLD = identity_to_username(MIXED_ID)  # the name the code before issue 13 gave it
MIXED_NEW = name(MIXED_ID)
REMOVED, BLOCKED, DEMOTED = (
    name(f"{u}@testbed.example") for u in ("removed", "to-block", "demoted")
)
INVENTORY = {
    "jupyterhub_allowed_users": [
        "Alice@Testbed.Example",
        "jos\u00e9@testbed.example",
        MIXED_ID,
        "to-block@testbed.example",
        "demoted@testbed.example",
    ],
    "jupyterhub_admin_users": ["hub-admin"],
    "jupyterhub_blocked_users": ["blocked@testbed.example", "to-block@testbed.example"],
}

# Runs on the instance: one request with a cookie jar kept in a file (a browser).
SESSION = r"""
import http.cookiejar, json, sys, urllib.error, urllib.request
jar_file, method, url, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
jar = http.cookiejar.LWPCookieJar(jar_file)
try:
    jar.load(ignore_discard=True, ignore_expires=True)
except FileNotFoundError:
    pass
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(jar))
data = b"" if method == "POST" else None
req = urllib.request.Request(url, method=method, headers=headers, data=data)
try:
    r = opener.open(req, timeout=30)
except urllib.error.HTTPError as e:
    r = e
body = r.read().decode("utf-8", "replace")
jar.save(ignore_discard=True, ignore_expires=True)
print(json.dumps({"status": r.code, "location": r.headers.get("Location"), "body": body}))
"""


MANIFEST = r"""
import hashlib, json, os, sys
root, out = sys.argv[1], {}
for d, dirs, files in os.walk(root):
    for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        if os.path.islink(p):
            out[rel] = "link:" + os.readlink(p)
        else:
            with open(p, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
print(json.dumps(out))
"""


class Station:
    def __init__(self, host):
        self.host = host
        self.container = host.backend.get_hostname()
        self.secret = host.file(SECRET_FILE).content_string.strip()
        self.token = host.check_output(
            f"/opt/jupyterhub/bin/jupyterhub token --config {CONFIG} hub-admin"
        ).splitlines()[-1]

    def request(self, method, url, headers=None, jar=f"{JARS}/none.jar"):
        # docker exec directly: usable from the polling thread as well
        r = subprocess.run(
            [
                "docker",
                "exec",
                self.container,
                "python3",
                "-c",
                SESSION,
                jar,
                method,
                url,
                json.dumps(headers or {}),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        out["json"] = json.loads(out["body"]) if out["body"].startswith(("{", "[")) else None
        return out

    def api(self, method, path):
        return self.request(method, HUB + "/api" + path, {"Authorization": f"token {self.token}"})

    def browser(self, identity: str, jar: str, path="/api/user", *, wire_utf8=True):
        """A request as nginx forwards it: identity (UTF-8 bytes on the wire) + secret."""
        # http.client sends str headers as Latin-1: hand it the Latin-1 reading of the
        # UTF-8 bytes so that the bytes on the wire are UTF-8, as an auth proxy sends them
        sent = identity.encode("utf-8").decode("latin-1") if wire_utf8 else identity
        headers = {"X-Authorized-User": sent, "X-Testbed-Hub-Secret": self.secret}
        return self.request("GET", PROXY + path, headers, jar=f"{JARS}/{jar}.jar")

    def login(self, identity, jar):
        r = self.browser(identity, jar, "/login")
        assert r["status"] == 302, r
        return self.browser(identity, jar)

    def volume_manifest(self, volume) -> dict[str, str]:
        """Relative path -> SHA-256 (``link:<target>`` for symlinks) of a volume's files."""
        mp = self.host.check_output(f"docker volume inspect -f '{{{{.Mountpoint}}}}' {volume}")
        return json.loads(self.host.check_output("python3 -c %s %s", MANIFEST, mp))


def rerun(extra: dict) -> tuple[subprocess.Popen, Path]:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "rerun-vars.json"
    path.write_text(json.dumps(extra, ensure_ascii=False))
    return start_playbook(SCENARIO / "converge.yml", "-e", f"@{path}"), path


@pytest.fixture(scope="module")
def st(host):
    return Station(host)


@pytest.fixture(scope="module")
def before(st, host):
    """Identity checks and the state the re-run acts on."""
    seen = {}
    for identity in ("ALICE@testbed.example", "Alice@Testbed.Example"):
        r = st.login(identity, "alice")
        assert r["status"] == 200, r
        seen[identity] = r["json"]["name"]
    for identity in ("jos\u00e9@testbed.example", "Jose\u0301@Testbed.Example"):
        r = st.login(identity, "jose")
        assert r["status"] == 200, r
        seen[identity] = (r["json"]["name"], r["json"]["user_info"])
    # the old code's user and volume for Mixed.Case@Testbed.Example, with files
    assert st.api("POST", f"/users/{MIXED_OLD}")["status"] == 201
    volume = f"jupyterhub-user-{MIXED_OLD}"
    host.check_output(f"docker volume create {volume}")
    mp = host.check_output(f"docker volume inspect -f '{{{{.Mountpoint}}}}' {volume}")
    script = (
        f"cd {mp} && mkdir -p analysis/runs && "
        "for i in $(seq 1 40); do "
        "head -c $((i * 997)) /dev/urandom > analysis/runs/r$i.bin; done && "
        "printf '{\"cells\": []}' > 'notes \u00e9.ipynb' && ln -s analysis latest && "
        "chown -R 1000:1000 ."
    )
    assert host.run(script).rc == 0
    mixed_files = st.volume_manifest(volume)
    # sessions and tokens of the users the re-run changes
    for identity, jar in (
        ("removed@testbed.example", "removed"),
        ("to-block@testbed.example", "blocked"),
        ("demoted@testbed.example", "demoted"),
    ):
        assert st.login(identity, jar)["status"] == 200
    tokens = {}
    for user in (REMOVED, BLOCKED):
        r = st.api("POST", f"/users/{user}/tokens")
        assert r["status"] == 201, r
        tokens[user] = r["json"]["token"]
    assert st.api("POST", f"/users/{BLOCKED}/server")["status"] in (201, 202)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        server = st.api("GET", f"/users/{BLOCKED}")["json"]["servers"].get("")
        if server and server.get("ready"):
            break
        time.sleep(2)
    else:
        pytest.fail(f"server of {BLOCKED} not ready")
    assert st.api("GET", f"/users/{DEMOTED}")["json"]["admin"] is True
    return {"seen": seen, "mixed_files": mixed_files, "tokens": tokens}


@pytest.fixture(scope="module")
def after(st, before):
    """Re-run the playbook; poll the blocked browser session meanwhile (seconds)."""
    refused_at = []
    start = time.monotonic()
    proc, _ = rerun(INVENTORY)

    def poll():
        while proc.poll() is None and not refused_at:
            if st.browser("to-block@testbed.example", "blocked-poll-copy")["status"] == 403:
                refused_at.append(time.monotonic() - start)
            time.sleep(1)

    subprocess.run(
        [
            "docker",
            "exec",
            st.container,
            "cp",
            f"{JARS}/blocked.jar",
            f"{JARS}/blocked-poll-copy.jar",
        ],
        check=True,
    )
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    out, _ = proc.communicate(timeout=1200)
    took = time.monotonic() - start
    thread.join(timeout=60)
    assert proc.returncode == 0, out[-6000:]
    figures = {"rerun_seconds": round(took, 1), "blocked_refused_after_seconds": refused_at}
    (REPO / "artifacts" / "molecule").mkdir(parents=True, exist_ok=True)
    (REPO / "artifacts" / "molecule" / "jupyterhub-rerun-access.json").write_text(
        json.dumps(figures) + "\n"
    )
    return {"log": out, "took": took, "refused_at": refused_at}


def test_mixed_case_and_utf8_bytes_land_on_the_inventory_user(before):
    seen = before["seen"]
    assert seen["ALICE@testbed.example"] == seen["Alice@Testbed.Example"] == ALICE
    for identity in ("jos\u00e9@testbed.example", "Jose\u0301@Testbed.Example"):
        assert seen[identity] == (JOSE, {"testbed_id": "jos\u00e9@testbed.example"})


def test_rerun_migrates_the_old_mixed_case_user_with_its_files(st, before, after, host):
    assert "Copy the volumes, check every file, rename the hub users" in after["log"]
    assert st.api("GET", f"/users/{MIXED_OLD}")["status"] == 404
    assert st.api("GET", f"/users/{MIXED_NEW}")["status"] == 200
    files = before["mixed_files"]
    assert len(files) == 42
    assert st.volume_manifest(f"jupyterhub-user-{MIXED_NEW}") == files
    assert st.volume_manifest(f"jupyterhub-user-{MIXED_OLD}") == files  # kept
    owner = host.check_output(
        "stat -c %u:%g $(docker volume inspect -f '{{.Mountpoint}}' "
        f"jupyterhub-user-{MIXED_NEW})/analysis/runs/r1.bin"
    )
    assert owner == "1000:1000"
    record = json.loads(host.file("/var/lib/jupyterhub/identity-migrations.json").content_string)
    assert [(r["old"], r["new"], r["files"]) for r in record] == [(MIXED_OLD, MIXED_NEW, 42)]
    plan = host.run(
        "/opt/jupyterhub/bin/python -m testbed_hub.migrate plan --settings "
        "/etc/jupyterhub/settings.json"
    )
    assert plan.rc == 0, plan.stderr
    assert json.loads(plan.stdout)["changes"] == []


def test_removed_user_is_refused_at_the_next_request(st, before, after):
    assert st.browser("removed@testbed.example", "removed")["status"] == 403
    assert st.browser("removed@testbed.example", "removed-new", "/login")["status"] == 403
    token = before["tokens"][REMOVED]
    r = st.request("GET", HUB + "/api/user", {"Authorization": f"token {token}"})
    assert r["status"] == 403, r


def test_blocked_user_session_token_and_server_end(st, before, after, host):
    assert after["refused_at"], "the blocked browser session was never refused during the re-run"
    assert after["refused_at"][0] <= after["took"]
    assert st.browser("to-block@testbed.example", "blocked")["status"] == 403
    assert st.browser("to-block@testbed.example", "blocked-new", "/login")["status"] == 403
    token = before["tokens"][BLOCKED]
    r = st.request("GET", HUB + "/api/user", {"Authorization": f"token {token}"})
    assert r["status"] == 403, r
    deadline = time.monotonic() + 60
    while host.run(f"docker inspect jupyter-{BLOCKED}").rc == 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert host.run(f"docker inspect jupyter-{BLOCKED}").rc != 0, "server still running"
    assert st.api("GET", f"/users/{BLOCKED}")["json"]["servers"] == {}


def test_demoted_admin_is_no_admin_but_still_a_user(st, before, after):
    assert st.api("GET", f"/users/{DEMOTED}")["json"]["admin"] is False
    r = st.browser("demoted@testbed.example", "demoted")
    assert r["status"] == 200 and r["json"]["name"] == DEMOTED and r["json"]["admin"] is False
    # and the other way round: a user in the list is admin
    assert st.api("GET", "/users/hub-admin")["json"]["admin"] is True


def test_second_rerun_changes_nothing(after):
    proc, _ = rerun(INVENTORY)
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-6000:]
    recap = [line for line in out.splitlines() if line.startswith("tb-")]
    assert recap and all(" changed=0 " in line for line in recap), recap
