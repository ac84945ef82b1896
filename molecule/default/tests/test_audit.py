"""Molecule ``default``: the audit trail after a scripted researcher session.

dave (a demo user no other test uses) logs in through nginx (his server starts), opens
a recording, opens a notebook through the contents API, lists a folder (not recorded),
runs a batch with ``run-notebook``, downloads its summary, exports a notebook as HTML,
stops his server and logs out. Every one of those events is then in the trail with his
testbed identity, a source address and the object; the chain verifies; one altered
line in a copy makes verification fail and name that line; the folder and file are
root's only; the converge itself left a ``playbook_run`` record.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from testbed_devtools.hubclient import BROWSER_ACCEPT, HubSession
from testbed_devtools.molecule_run import flat, run_playbook
from testbed_devtools.waiting import parameterised_notebook, poll
from testbed_hub.auth import identity_to_username
from testbed_sim.seed import generate

REPO = Path(__file__).resolve().parents[3]
#: the station (Molecule sets it; E2E_INSTANCE=testbed-hub-demo runs this on the demo)
INSTANCE = os.environ.get("E2E_INSTANCE", "tb-default")
IDENTITY = "dave@testbed.example"
USER = identity_to_username(IDENTITY)
SERVER = f"jupyter-{USER}"
AUDIT_LOG = "/var/log/testbed/audit.log"
PY = "/opt/jupyterhub/bin/python"
HOME = "/home/jovyan/nist"
NOTEBOOK = parameterised_notebook("import testbed\ntestbed.record('seen', experiment_id)")


def trail(host, *args: str) -> list[dict]:
    out = host.check_output(
        f"{PY} -m testbed_hub.audit report --log {AUDIT_LOG} " + " ".join(map(shlex.quote, args))
    )
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def running(host) -> bool:
    state = host.run(f"docker inspect -f '{{{{.State.Running}}}}' {SERVER}").stdout.strip()
    return state == "true"


def stop_server(host, s: HubSession) -> None:
    """Stop dave's server through the hub's REST API with his browser session."""
    r = s.http.delete(
        s.hub(f"hub/api/users/{USER}/server"),
        headers={"Accept": "application/json", **s._hub_xsrf()},
        timeout=60,
    )
    assert r.status_code in (202, 204), (r.status_code, r.text[:300])
    poll("server stopped", lambda: not running(host), timeout=60)


@pytest.fixture(scope="module")
def session_events(host):
    """Run the scripted session; return (records for dave, what the session touched)."""
    ip = subprocess.run(
        ["docker", "inspect", INSTANCE, "--format", "{{.NetworkSettings.IPAddress}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    s = HubSession(f"https://{ip}")
    if running(host):  # a re-run on the demo: start from a stopped server, as Molecule does
        s.login_to_lab(IDENTITY, USER)
        stop_server(host, s)
        s = HubSession(f"https://{ip}")
    before = trail(host)
    last_seq = before[-1]["seq"] if before else 0
    s.login_to_lab(IDENTITY, USER)
    base = f"/jupyter/user/{USER}"
    # the recordings are in one folder per experiment: media/exp-001/ptt-0001.wav
    wav = sorted(
        host.check_output(
            f"docker exec {SERVER} find {HOME}/media/ -name '*.wav' -printf '%P\\n'"
        ).split()
    )[0]
    r = s.get(f"{base}/files/media/{wav}")
    assert r.status_code == 200 and r.content[:4] == b"RIFF", (r.status_code, r.content[:16])
    # an audio element's or a download manager's ranged read: 206 Partial Content
    ranged = sorted(
        host.check_output(
            f"docker exec {SERVER} find {HOME}/media/ -name '*.wav' -printf '%P\\n'"
        ).split()
    )[1]
    r = s.get(f"{base}/files/media/{ranged}", headers={"Range": "bytes=0-1023"})
    assert r.status_code == 206 and len(r.content) == 1024, (r.status_code, len(r.content))

    nb = base64.b64encode(json.dumps(NOTEBOOK).encode()).decode()
    host.check_output(
        f"docker exec -u jovyan {SERVER} sh -c 'echo {nb} | base64 -d > {HOME}/audit.ipynb'"
    )
    # JupyterLab with real-time collaboration opens a notebook without its content
    # (content=0), then asks for a collaboration session; the content follows over the
    # session's WebSocket
    r = s.api(
        "GET",
        "contents/audit.ipynb",
        params={"type": "notebook", "content": "0", "hash": "0"},
    )
    assert r.status_code == 200 and r.json()["type"] == "notebook", r.status_code
    r = s.api(
        "PUT", "collaboration/session/audit.ipynb", json={"format": "json", "type": "notebook"}
    )
    assert r.status_code in (200, 201), (r.status_code, r.text[:300])
    # a script reads a notebook's content through the contents API
    r = s.api("GET", "contents/audit.ipynb", params={"type": "notebook", "content": "1"})
    assert r.status_code == 200 and r.json()["content"]["cells"], r.status_code
    listing = s.api("GET", "contents/media", params={"content": "1"})  # the file browser's poll
    assert listing.status_code == 200 and listing.json()["type"] == "directory"

    ids = sorted(e["_id"] for e in generate().experiments)[:2]
    res = host.run(
        f"docker exec -u jovyan -w {HOME} {SERVER} run-notebook audit.ipynb "
        + " ".join(f"--experiment {i}" for i in ids)
        + " --progress lines -o audit-runs"
    )
    assert res.rc == 0, (res.stdout[-1500:], res.stderr[-1500:])
    # no "the hub did not record ..." warning: the hub recorded the batch
    assert "audit trail" not in res.stderr, res.stderr[-1500:]
    folder = res.stdout.strip().splitlines()[-1]
    summary = f"{folder}/summary.csv"
    r = s.get(f"{base}/files/{summary}", params={"download": "1"})
    assert r.status_code == 200 and "attachment" in r.headers.get("Content-Disposition", "")
    r = s.get(f"{base}/nbconvert/html/audit.ipynb", params={"download": "true"})
    assert r.status_code == 200, r.status_code

    stop_server(host, s)
    r = s.get("/jupyter/hub/logout", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 200, r.status_code

    def logged_out():
        got = [x for x in trail(host, "--user", USER) if x["seq"] > last_seq]
        return got if any(x["event"] == "logout" for x in got) else None

    records = poll("the session's records, up to the logout", logged_out, timeout=60)
    host.run(f"docker exec {SERVER} rm -rf {HOME}/audit.ipynb {HOME}/audit-runs")
    return records, {"wav": wav, "ranged": ranged, "ids": ids, "summary": summary}


def test_the_session_is_in_the_trail_in_order(session_events):
    records, touched = session_events
    events = [r["event"] for r in records]
    assert events[0] == "login", events
    assert events[-1] == "logout", events
    order = ["login", "server_start", "file_read", "batch_start", "batch_end", "export"]
    order += ["server_stop", "logout"]
    positions = [events.index(e) for e in order]
    assert positions == sorted(positions), events
    assert {r["identity"] for r in records} == {IDENTITY}, records
    assert {r["user"] for r in records} == {USER}, records
    # every record names the client's address, but a stop: the hub cannot tell who
    # stopped a server (the user, an admin, the idle culler), so it names nobody
    unsourced = [r for r in records if not r["source"]]
    assert [r["event"] for r in unsourced] == ["server_stop"], unsourced


def test_each_object_is_named(session_events):
    records, touched = session_events
    reads = [r for r in records if r["event"] == "file_read"]
    objects = [r["object"] for r in reads]
    assert f"media/{touched['wav']}" in objects, objects
    part = next(r for r in reads if r["object"] == f"media/{touched['ranged']}")
    assert part["details"].get("partial") is True, part
    assert part["details"].get("range") == "bytes=0-1023", part
    # opened in JupyterLab (a collaboration session) and read through the contents API
    vias = sorted(r["details"].get("via", "") for r in reads if r["object"] == "audit.ipynb")
    assert vias == ["collaboration", "contents"], [r for r in reads if r["object"] == "audit.ipynb"]
    assert touched["summary"] in objects, objects
    download = next(r for r in reads if r["object"] == touched["summary"])
    assert download["details"].get("download") is True, download
    # the file browser's directory listing is not a file read
    assert not [o for o in objects if o.rstrip("/") == "media"], objects
    export = next(r for r in records if r["event"] == "export")
    assert export["object"] == "audit.ipynb", export
    batch = next(r for r in records if r["event"] == "batch_start")
    assert batch["object"] == touched["ids"], batch
    start = next(r for r in records if r["event"] == "server_start")
    stop = next(r for r in records if r["event"] == "server_stop")
    assert start["object"] == stop["object"] == "", (start, stop)


def test_the_converge_recorded_each_playbook_run(host):
    """Molecule's converge and its idempotence run: site.yml's start and end records,
    the operator named, the tags as the object (the first converge's start is not
    there: no trail existed yet)."""
    runs = trail(host, "--event", "playbook_run")
    phases = [r["details"]["phase"] for r in runs]
    assert phases[-3:] == ["end", "start", "end"], phases
    for r in runs[-3:]:
        assert r["identity"], r
        assert r["object"] == ["all"], r
        assert r["details"]["playbook"] == "site.yml" and r["details"]["audit_enabled"], r


def test_the_trail_is_roots_only_and_intact(host, session_events, record_property):
    folder = host.file(AUDIT_LOG.rsplit("/", 1)[0])
    log = host.file(AUDIT_LOG)
    assert (folder.user, folder.mode) == ("root", 0o700), (folder.user, oct(folder.mode))
    assert (log.user, log.mode) == ("root", 0o600), (log.user, oct(log.mode))
    res = host.run(f"{PY} -m testbed_hub.audit verify --log {AUDIT_LOG}")
    assert res.rc == 0 and res.stdout.startswith("intact:"), (res.rc, res.stdout, res.stderr)
    records = trail(host)
    size = int(host.check_output(f"stat -c %s {AUDIT_LOG}"))
    record_property("audit_records", len(records))
    record_property("audit_bytes_per_100_events", round(100 * size / len(records)))


def test_one_altered_line_fails_verification_and_is_named(host, session_events):
    # a copy in a fresh private folder on the station; the live log is not touched
    copy = host.check_output("mktemp -d") + "/trail"
    host.check_output(f"cp -a {AUDIT_LOG.rsplit('/', 1)[0]} {copy}")
    lines = host.check_output(f"cat {copy}/audit.log").splitlines()
    n = len(lines) // 2 + 1  # 1-based line in the middle
    rec = json.loads(lines[n - 1])
    rec["identity"] = "mallory@testbed.example"
    altered = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    script = (
        "import sys; p=sys.argv[1]; n=int(sys.argv[2]); "
        "L=open(p,'rb').read().split(b'\\n'); L[n-1]=sys.argv[3].encode(); "
        "open(p,'wb').write(b'\\n'.join(L))"
    )
    host.check_output(
        f"python3 -c {shlex.quote(script)} {copy}/audit.log {n} {shlex.quote(altered)}"
    )
    res = host.run(f"{PY} -m testbed_hub.audit verify --log {copy}/audit.log")
    host.run(f"rm -rf {copy.rsplit('/', 1)[0]}")
    assert res.rc == 1, (res.rc, res.stdout, res.stderr)
    assert f"audit.log line {n}" in res.stderr, res.stderr


def test_the_report_playbook_prints_and_fetches_daves_records(session_events, tmp_path):
    """``playbooks/audit-report.yml`` as an operator runs it: dave's records printed, the
    chain verified, the CSV on the control node with one row per record; a bad filter
    is refused before anything runs."""
    records, _ = session_events
    csv_path = tmp_path / "dave.csv"

    def report(*extra: str) -> subprocess.CompletedProcess[str]:
        return run_playbook(REPO / "playbooks" / "audit-report.yml", *extra, timeout=300)

    res = report("-e", f"user={USER}", "-e", f"audit_csv={csv_path}")
    out = flat(res)
    assert res.returncode == 0, out[-3000:]
    assert "intact:" in out, out[-3000:]
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert {r["user"] for r in rows} == {USER}, rows[:3]
    # every record of the session is a row (dave has no other records)
    assert [r["time"] for r in rows][-len(records) :] == [r["time"] for r in records]
    bad = report("-e", "since=last tuesday")
    assert bad.returncode != 0
    assert "since" in " ".join((bad.stdout + bad.stderr).split())
