"""The whole base station from site.yml with the demo's variables.

Single sign-on through nginx into a spawned JupyterLab, then the operator
playbooks (run-notebooks, backup, restore) run against the instance exactly
as an operator runs them.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import statistics
import subprocess
from pathlib import Path

import pytest

from testbed_devtools.hubclient import HubSession
from testbed_devtools.molecule_run import flat, run_playbook
from testbed_devtools.waiting import parameterised_notebook
from testbed_hub.auth import identity_to_username
from testbed_sim.seed import generate

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
USER_ID = "bob@testbed.example"
USER = identity_to_username(USER_ID)
VOLUME = f"jupyterhub-user-{USER}"
RUNS = REPO / "artifacts" / "runs"
BACKUP = "/var/backups/testbed-hub/20261126T000000Z"


@pytest.fixture(scope="module")
def sso():
    """Log in from outside (this machine) through nginx; the user's server is spawned."""
    ip = subprocess.run(
        ["docker", "inspect", "tb-default", "--format", "{{.NetworkSettings.IPAddress}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    session = HubSession(f"https://{ip}")
    timing = session.login_to_lab(USER_ID, USER)
    return session, timing


def test_sso_lands_in_jupyterlab(sso):
    session, timing = sso
    assert timing.redirects[0].endswith("/jupyter/")
    # The hub's own record of the browser's session (its REST API through nginx),
    # not the name this test passed to the client.
    resp = session.get("/jupyter/hub/api/user", headers={"Accept": "application/json"})
    assert resp.status_code == 200, (resp.status_code, resp.url, resp.text[:300])
    me = resp.json()
    assert me["user_info"] == {"testbed_id": USER_ID}, me
    assert me["name"] == identity_to_username(USER_ID), me
    assert me["server"] == f"/jupyter/user/{me['name']}/", me
    assert me["servers"][""]["ready"] is True, me
    # and the walk from the login went to that server
    assert f"/jupyter/hub/spawn-pending/{me['name']}" in timing.redirects or any(
        r.endswith(f"/jupyter/user/{me['name']}/lab") for r in timing.redirects
    ), timing.redirects


def test_user_container_has_the_three_mounts(host, sso):
    mounts = json.loads(
        host.check_output(f"docker inspect jupyter-{USER} --format '{{{{json .Mounts}}}}'")
    )
    by_dest = {m["Destination"]: m for m in mounts}
    assert by_dest["/home/jovyan/nist"]["Name"] == VOLUME
    assert by_dest["/home/jovyan/nist/share"]["Name"] == "jupyterhub-shared"
    assert by_dest["/home/jovyan/nist/media"]["Source"] == "/srv/lmr/wavs"
    assert by_dest["/home/jovyan/nist/media"]["RW"] is False


def run_notebooks(**variables) -> subprocess.CompletedProcess[str]:
    """playbooks/run-notebooks.yml as the test user on the PTT demo notebook."""
    return run_playbook(
        PLAYBOOKS / "run-notebooks.yml",
        "-e",
        f"run_user={USER}",
        "-e",
        "run_notebook=demo-notebooks/02-ptt-performance.ipynb",
        "-e",
        json.dumps(variables),
    )


def test_run_notebooks_playbook_matches_seed(sso):
    ids = ["exp-001", "exp-002", "exp-003"]
    res = run_notebooks(run_experiments=ids, run_fetch_dir=str(RUNS))
    assert res.returncode == 0, res.stdout[-3000:]
    rows = list(csv.DictReader(io.StringIO((RUNS / "02-ptt-performance-summary.csv").read_text())))
    assert [r["experiment"] for r in rows] == ids
    assert {r["status"] for r in rows} == {"ok"}
    events = generate().ptt_events
    for row in rows:
        mine = [e for e in events if e["experiment_id"] == row["experiment"]]
        assert int(row["n_events"]) == len(mine)
        want = statistics.fmean(e["access_delay_ms"] for e in mine)
        assert float(row["mean_access_delay_ms"]) == pytest.approx(want, abs=0.01)


def test_run_notebooks_all_experiments_six_kernels_at_once(sso, record_property):
    """Every seeded experiment, six kernels at once on two cores: each run reports
    ok (a kernel that lost the port race is started again, at most three times)."""
    res = run_notebooks(run_all=True, run_jobs=6, run_fetch_dir=str(RUNS))
    assert res.returncode == 0, res.stdout[-3000:]
    rows = list(csv.DictReader(io.StringIO((RUNS / "02-ptt-performance-summary.csv").read_text())))
    assert sorted(r["experiment"] for r in rows) == sorted(e["_id"] for e in generate().experiments)
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    record_property("runs", len(rows))
    record_property("kernel_starts", sum(int(r["attempts"]) for r in rows))


def _nist_rows(notebook: str) -> list[dict[str, str]]:
    """run-notebook --all over a NIST demo notebook through the operator's playbook;
    the summary table's rows (one per seeded experiment, every run ok)."""
    res = run_playbook(
        PLAYBOOKS / "run-notebooks.yml",
        "-e",
        f"run_user={USER}",
        "-e",
        f"run_notebook=demo-notebooks/{notebook}.ipynb",
        "-e",
        json.dumps({"run_all": True, "run_jobs": 4, "run_fetch_dir": str(RUNS)}),
    )
    assert res.returncode == 0, res.stdout[-3000:]
    rows = list(csv.DictReader(io.StringIO((RUNS / f"{notebook}-summary.csv").read_text())))
    assert sorted(r["experiment"] for r in rows) == sorted(e["_id"] for e in generate().experiments)
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    return rows


def _injected_ms(key: str) -> dict[str, float]:
    """Per experiment, the value the simulator injected into NIST's channel: the mean
    of its PTT events' ``key`` rounded to 0.1 ms (testbed_sim.nist_seed), computed here
    from the seed, not read from the station."""
    events = generate().ptt_events
    return {
        e["_id"]: round(
            statistics.fmean(v[key] for v in events if v["experiment_id"] == e["_id"]), 1
        )
        for e in generate().experiments
    }


def test_m2e_measured_from_the_audio_within_1_ms_of_truth_for_every_experiment(
    sso, record_property
):
    """Issue 15 item 5: 04-mouth-to-ear over every seeded experiment (run-notebook
    --all): NIST's M2E evaluation of the audio QoEsim recorded on the station is
    within 1 ms of the injected latency with NIST's 31 ms device-delay convention
    (the simulated interface has exactly that delay, so truth = injected)."""
    rows = _nist_rows("04-mouth-to-ear")
    injected = _injected_ms("mouth_to_ear_ms")
    errors = {}
    for r in rows:
        exp = r["experiment"]
        assert int(r["n_trials"]) >= 8, r
        assert float(r["m2e_truth_ms"]) == pytest.approx(injected[exp], abs=0.05), r
        errors[exp] = float(r["m2e_measured_ms"]) - float(r["m2e_truth_ms"])
    assert max(abs(v) for v in errors.values()) <= 1.0, errors
    record_property("m2e_worst_error_ms", max(abs(v) for v in errors.values()))


def test_access_delay_within_nists_resolution_where_measured(sso, record_property):
    """Issue 15 item 5: 05-access-delay over every seeded experiment: the four with an
    access-time test (testbed_sim_nist_access_experiments) estimate the injected
    access delay within the resolution NIST's bisection search states (5 ms); the
    others report no test (0 trials) and still finish ok."""
    rows = _nist_rows("05-access-delay")
    injected = _injected_ms("access_delay_ms")
    measured = [r for r in rows if int(r["n_trials"]) > 0]
    assert len(measured) == 4, [(r["experiment"], r["n_trials"]) for r in rows]
    errors = {}
    for r in measured:
        exp = r["experiment"]
        assert float(r["access_truth_ms"]) == pytest.approx(injected[exp], abs=0.05), r
        assert float(r["resolution_ms"]) == pytest.approx(5.0), r
        errors[exp] = float(r["access_delay_ms"]) - float(r["access_truth_ms"])
        assert abs(errors[exp]) <= float(r["resolution_ms"]), (exp, errors[exp], r)
    record_property("access_delay_errors_ms", json.dumps(errors))


#: Issue 14's soak: batches of six kernels started at once, in the user's own server
#: (a researcher's terminal), each batch on six experiments. Ten in `make test` (60
#: kernels, 95 s); SOAK_BATCHES=30 gives the 180-kernel soak that found the kernel that
#: never answered at start (1 in 180; the retry itself is unit-tested in
#: tests/unit/notebook/test_run_notebook.py).
SOAK_BATCHES = int(os.environ.get("SOAK_BATCHES", "10"))
SOAK_NOTEBOOK = parameterised_notebook("import os, testbed\ntestbed.record('pid', os.getpid())")


def test_batches_of_six_kernels_all_report_ok(host, sso, record_property):
    """``run-notebook --jobs 6`` SOAK_BATCHES times in a row in the user's server: every run
    of every batch reports ok, each in its own kernel (a kernel that lost the port race
    at start is started again, and the summary counts it)."""
    server = f"jupyter-{USER}"
    nb = base64.b64encode(json.dumps(SOAK_NOTEBOOK).encode()).decode()
    path = "/home/jovyan/nist/soak.ipynb"
    host.check_output(f"docker exec -u jovyan {server} sh -c 'echo {nb} | base64 -d > {path}'")
    ids = sorted(e["_id"] for e in generate().experiments)[:6]
    select = " ".join(f"--experiment {i}" for i in ids)
    rows, failures = [], []
    for batch in range(SOAK_BATCHES):
        res = host.run(
            f"docker exec -u jovyan -w /home/jovyan/nist {server} run-notebook soak.ipynb "
            f"{select} --jobs 6 --progress lines -o soak-runs"
        )
        # stdout is the batch folder (relative to the working directory), stderr the
        # progress and the summary's path
        lines = res.stdout.strip().splitlines()
        if res.rc != 0 or not lines:
            failures.append((batch, res.rc, res.stdout[-800:], res.stderr[-800:]))
            continue
        text = host.check_output(
            f"docker exec {server} cat /home/jovyan/nist/{lines[-1]}/summary.csv"
        )
        got = list(csv.DictReader(io.StringIO(text)))
        assert sorted(r["experiment"] for r in got) == ids, (batch, got)
        # six runs, six kernels of their own
        assert len({r["pid"] for r in got}) == len(ids), (batch, got)
        # the summary at the top of the batch folder, the runs' files in experiments/
        files = host.check_output(
            f"docker exec {server} find /home/jovyan/nist/{lines[-1]} -mindepth 1 -printf '%P\\n'"
        ).split()
        assert sorted(f for f in files if "/" not in f) == [
            "experiments",
            "summary.csv",
            "summary.html",
            "summary.ipynb",
        ], (batch, files)
        assert {f for r in got for f in (r["notebook"], r["html"])} <= set(files), (batch, files)
        rows += got
    assert failures == [], failures
    assert len(rows) == SOAK_BATCHES * len(ids)
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    record_property("batches", SOAK_BATCHES)
    record_property("runs", len(rows))
    record_property("kernel_starts", sum(int(r["attempts"]) for r in rows))
    host.check_output(
        f"docker exec {server} rm -rf /home/jovyan/nist/soak-runs /home/jovyan/nist/soak.ipynb"
    )


def test_run_notebooks_rejects_unknown_experiment(sso):
    res = run_notebooks(run_experiments=["exp-999"])
    assert res.returncode != 0
    out = flat(res)
    assert "run-notebook exited with 2" in out, out[-3000:]
    # YAML callbacks double the quotes, the default one does not.
    assert re.search(r"No experiment '+exp-999'+ in the experiment database", out), out[-3000:]


def test_backup_and_restore_bring_back_a_users_file(host, sso):
    marker = "/home/jovyan/nist/backup-marker.txt"
    host.check_output(f"docker exec jupyter-{USER} sh -c 'echo kept-by-backup > {marker}'")
    res = run_playbook(PLAYBOOKS / "backup.yml", "-e", "backup_timestamp=20261126T000000Z")
    assert res.returncode == 0, res.stdout[-3000:]
    manifest = json.loads(host.file(f"{BACKUP}/MANIFEST.json").content_string)
    assert VOLUME in manifest["volumes"]
    host.check_output(f"docker exec jupyter-{USER} rm {marker}")
    res = run_playbook(
        PLAYBOOKS / "restore.yml",
        "-e",
        "backup_timestamp=20261126T000000Z",
        "-e",
        json.dumps({"restore_volumes": [VOLUME], "restore_hub_state": False}),
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert host.check_output(f"docker exec jupyter-{USER} cat {marker}") == "kept-by-backup"
