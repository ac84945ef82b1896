"""testbed.activity: long work (a busy kernel, a run-notebook batch, a jupyter-scheduler
job) counts as the server's activity while it runs, and stops counting when it ends.

No Jupyter server here: the monitor gets a settings mapping with a fake kernel manager
and a fake scheduler (a SQLite database laid out as jupyter-scheduler's ``jobs``
table); processes are real (this one, ``sleep``, an unreaped zombie).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import datetime as dt
import json
import logging
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from traitlets import TraitError
from traitlets.config import Config

from testbed.activity import _jupyter_server_extension_points, batches, procs, scheduler
from testbed.activity.monitor import (
    ACTIVITY_KEY,
    LongWork,
    LongWorkMonitor,
    _interval_default,
)
from testbed.batch import plan_batch, runner
from testbed.batch.runner import RunResult

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def wait_for(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.02)


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


@pytest.fixture()
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture()
def ended_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- procs: is it still the same process? ---------------------------------------------


def test_start_ticks_of_a_running_process_an_unreaped_one_and_an_ended_one(sleeper):
    ticks = procs.start_ticks(sleeper.pid)
    assert isinstance(ticks, int) and ticks > 0
    assert procs.start_ticks(sleeper.pid) == ticks  # the same on every read
    assert procs.start_ticks(os.getpid()) < ticks  # this process started earlier
    sleeper.kill()
    wait_for(lambda: state(sleeper.pid) == "Z", "a zombie")  # ended, not yet reaped
    assert procs.start_ticks(sleeper.pid) is None
    sleeper.wait()
    assert procs.start_ticks(sleeper.pid) is None


def test_start_time_is_in_the_past_and_after_boot(sleeper):
    began = procs.start_time(sleeper.pid)
    assert began is not None
    assert procs.boot_time() < began <= time.time() + 1
    assert time.time() - began < 60  # started by this test


def test_stat_line_with_a_command_holding_parentheses_and_spaces(tmp_path):
    (tmp_path / "77").mkdir()
    rest = "S 1 77 77 0 -1 4194560 100 0 0 0 5 2 0 0 20 0 1 0 4242 1000 50"
    (tmp_path / "77" / "stat").write_text(f"77 (we) ird (cmd) {rest}\n")
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    assert procs.start_ticks(77, tmp_path) == 4242
    assert procs.start_time(77, tmp_path) == 1700000000 + 4242 / os.sysconf("SC_CLK_TCK")
    (tmp_path / "77" / "stat").write_text(f"77 (x) {rest.replace('S', 'Z', 1)}\n")
    assert procs.start_ticks(77, tmp_path) is None


@pytest.mark.parametrize("pid", [0, -1, True, "12", None])
def test_no_process_for_a_pid_that_is_not_one(pid):
    assert procs.start_ticks(pid) is None


# -- run-notebook's heartbeat files -------------------------------------------------------


def test_batches_dir_follows_xdg_state_home_else_home():
    assert batches.batches_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/testbed/batches")
    assert batches.batches_dir({"HOME": "/home/jovyan"}) == Path(
        "/home/jovyan/.local/state/testbed/batches"
    )


def test_heartbeat_is_there_while_the_block_runs_and_gone_after(tmp_path):
    with batches.heartbeat("/nb/analysis.ipynb", 3, directory=tmp_path) as path:
        assert path is not None and path.parent == tmp_path
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid()
        assert record["start_ticks"] == procs.start_ticks(os.getpid())
        assert (record["notebook"], record["experiments"]) == ("/nb/analysis.ipynb", 3)
        (running,) = batches.running_batches(tmp_path)
        assert (running.pid, running.notebook_name, running.experiments) == (
            os.getpid(),
            "analysis.ipynb",
            3,
        )
    assert list(tmp_path.iterdir()) == []
    assert batches.running_batches(tmp_path) == []


def test_heartbeat_is_removed_when_the_batch_fails(tmp_path):
    with pytest.raises(KeyboardInterrupt), batches.heartbeat("a.ipynb", 1, directory=tmp_path):
        assert len(list(tmp_path.iterdir())) == 1
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_two_batches_of_one_process_have_two_heartbeats(tmp_path):
    with (
        batches.heartbeat("a.ipynb", 1, directory=tmp_path) as a,
        batches.heartbeat("b.ipynb", 1, directory=tmp_path) as b,
    ):
        assert a != b
        found = batches.running_batches(tmp_path)
        assert sorted(x.notebook_name for x in found) == ["a.ipynb", "b.ipynb"]
    assert batches.running_batches(tmp_path) == []


def test_an_unwritable_folder_warns_and_the_batch_runs(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    said = []
    ran = False
    with batches.heartbeat("a.ipynb", 1, directory=blocker / "batches", warn=said.append) as path:
        ran = True
        assert path is None
    assert ran
    assert len(said) == 1 and "cannot write the batch's heartbeat" in said[0]
    assert "idle culler" in said[0]


def write_heartbeat(folder: Path, name: str, **record) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(record))
    return path


def test_stale_heartbeats_are_ignored_and_removed(tmp_path, ended_pid, sleeper, caplog):
    me = os.getpid()
    live = write_heartbeat(
        tmp_path,
        f"{me}-a.json",
        pid=me,
        start_ticks=procs.start_ticks(me),
        notebook="/x/live.ipynb",
    )
    dead = write_heartbeat(tmp_path, f"{ended_pid}-b.json", pid=ended_pid, start_ticks=1)
    # a pid that another process holds now (the sleeper started after the batch did)
    reused = write_heartbeat(
        tmp_path, f"{sleeper.pid}-c.json", pid=sleeper.pid, start_ticks=procs.start_ticks(me)
    )
    garbage = tmp_path / "9-d.json"
    garbage.write_text("{not json")
    not_ours = tmp_path / "notes.txt"
    not_ours.write_text("kept")
    with caplog.at_level(logging.INFO):
        found = batches.running_batches(tmp_path)
    assert [b.path for b in found] == [live]
    assert live.exists() and not_ours.exists()
    assert not dead.exists() and not reused.exists() and not garbage.exists()
    assert f"process {ended_pid} of that batch no longer runs" in caplog.text
    assert f"process {sleeper.pid} of that batch no longer runs" in caplog.text


def test_no_folder_no_batches(tmp_path):
    assert batches.running_batches(tmp_path / "never-created") == []
    assert not (tmp_path / "never-created").exists()


# -- run-notebook leaves its heartbeat while it runs ----------------------------------------


HEARTBEAT_BODY = """
import glob, json, os
folder = os.path.join(os.environ["XDG_STATE_HOME"], "testbed", "batches")
beats = [json.load(open(p)) for p in glob.glob(os.path.join(folder, "*.json"))]
record("heartbeats", [[b["pid"], b["notebook"], b["experiments"]] for b in beats])
if experiment_id == fail_on:
    raise RuntimeError("deliberate failure")
"""


@pytest.mark.slow
@pytest.mark.usefixtures("testbed_env")
def test_run_notebook_keeps_a_heartbeat_while_it_runs_even_when_a_notebook_fails(
    tmp_path, state_home
):
    cells = [
        nbformat.v4.new_code_cell(
            'experiment_id = "exp-001"\nfail_on = ""', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell("from testbed import record\n" + HEARTBEAT_BODY),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    path = tmp_path / "beat.ipynb"
    nbformat.write(nb, path)
    plan = plan_batch(
        path,
        experiments=["exp-001", "exp-002"],
        parameters={"fail_on": "exp-002"},
        jobs=1,
        output_dir=tmp_path / "runs",
    )
    outcome = runner.run_batch(plan)
    rows = {r["experiment"]: r for r in csv.DictReader(outcome.summary_csv.open())}
    assert rows["exp-002"]["status"] == "failed"
    # the kernels saw one heartbeat: this process's batch of this notebook, 2 experiments
    expected = [[os.getpid(), str(path.resolve()), 2]]
    assert json.loads(rows["exp-001"]["heartbeats"]) == expected
    executed = nbformat.read(outcome.directory / "experiments" / "exp-002.ipynb", as_version=4)
    assert str(path.resolve()) in json.dumps(executed.cells[-1].outputs)
    # and it is gone once the batch is done, though a run failed
    assert list((state_home / "testbed" / "batches").glob("*.json")) == []


def in_process_pool(max_workers, mp_context=None):
    return cf.ThreadPoolExecutor(max_workers=1)


def test_run_batch_removes_its_heartbeat_when_interrupted(tmp_path, state_home, monkeypatch):
    folder = state_home / "testbed" / "batches"
    seen = []

    def fake_job(job):
        seen.append([b.notebook_name for b in batches.running_batches(folder)])
        return RunResult(job.experiment, "failed", 0.1, "boom", None, None)

    def progress(result, done, total):
        raise KeyboardInterrupt  # the researcher presses Ctrl-C

    monkeypatch.setattr(runner.cf, "ProcessPoolExecutor", in_process_pool)
    monkeypatch.setattr(runner, "execute_job", fake_job)
    plan = runner.BatchPlan(
        notebook=tmp_path / "n.ipynb",
        experiments=("exp-001",),
        parameters={},
        kernel_name="python3",
        jobs=1,
        timeout=None,
        output_root=tmp_path / "runs",
    )
    with pytest.raises(KeyboardInterrupt):
        runner.run_batch(plan, progress)
    assert seen == [["n.ipynb"]]
    assert list(folder.glob("*.json")) == []


# -- jupyter-scheduler jobs --------------------------------------------------------------

JOBS_TABLE = """CREATE TABLE jobs (
    runtime_environment_name VARCHAR(256) NOT NULL, input_filename VARCHAR(256) NOT NULL,
    name VARCHAR(256), create_time INTEGER, job_id VARCHAR(36) PRIMARY KEY,
    status VARCHAR(64), start_time INTEGER, end_time INTEGER, pid INTEGER)"""


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@pytest.fixture()
def jobs_db(tmp_path):
    """A database laid out like jupyter-scheduler's (orm.Job), and a way to add jobs."""
    path = tmp_path / ".jupyter-scheduler.sqlite"
    con = sqlite3.connect(path)
    con.execute(JOBS_TABLE)
    con.commit()

    def add(job_id, status, pid, created, started=None, name=None):
        con.execute(
            "INSERT INTO jobs (runtime_environment_name, input_filename, name, create_time,"
            " job_id, status, start_time, pid) VALUES ('python3', 'nb.ipynb', ?, ?, ?, ?, ?, ?)",
            (
                name or job_id,
                ms(created),
                job_id,
                status,
                None if started is None else ms(started),
                pid,
            ),
        )
        con.commit()

    yield SimpleNamespace(path=path, add=add, url=f"sqlite:///{path}")
    con.close()


def test_database_path_of_the_scheduler_url():
    assert scheduler.database_path("sqlite:////home/jovyan/nist/.jupyter-scheduler.sqlite") == Path(
        "/home/jovyan/nist/.jupyter-scheduler.sqlite"
    )
    assert scheduler.database_path("sqlite:///rel.sqlite") == Path("rel.sqlite")
    assert scheduler.database_path("sqlite:///:memory:") is None
    assert scheduler.database_path("postgresql://db/scheduler") is None


def test_a_job_counts_while_its_process_runs(jobs_db, sleeper, ended_pid):
    began = procs.start_time(sleeper.pid)
    jobs_db.add("running", "IN_PROGRESS", sleeper.pid, began - 1, began + 1, name="nightly")
    jobs_db.add("done", "COMPLETED", sleeper.pid, began - 1, began + 1)
    jobs_db.add("failed", "FAILED", sleeper.pid, began - 1, began + 1)
    # died with an earlier server: still IN_PROGRESS in the database, no process
    jobs_db.add("orphan", "IN_PROGRESS", ended_pid, began - 1, began + 1)
    # its pid now belongs to a process started long after the job (a new container)
    jobs_db.add("reused", "IN_PROGRESS", sleeper.pid, began - 3600, began - 3500)
    assert scheduler.running_jobs(jobs_db.path) == [
        scheduler.SchedulerJob("running", "nightly", sleeper.pid)
    ]
    sleeper.kill()
    sleeper.wait()
    assert scheduler.running_jobs(jobs_db.path) == []


def test_a_job_being_started_has_no_start_time_yet(jobs_db, sleeper):
    began = procs.start_time(sleeper.pid)
    jobs_db.add("starting", "IN_PROGRESS", sleeper.pid, began - 1, None)
    assert [j.job_id for j in scheduler.running_jobs(jobs_db.path)] == ["starting"]


def test_a_missing_database_is_not_created(tmp_path):
    path = tmp_path / "none.sqlite"
    assert scheduler.running_jobs(path) == []
    assert not path.exists()


# -- the monitor -----------------------------------------------------------------------------


class FakeKernelManager:
    """What the monitor uses of jupyter_server's MappingKernelManager."""

    def __init__(self, *states):
        self.states = list(states)

    def list_kernels(self):
        return [
            {"id": f"k{i}", "name": "python3", "execution_state": s, "connections": 0}
            for i, s in enumerate(self.states)
        ]


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += dt.timedelta(seconds=seconds)


def server_settings(kernels=(), scheduler_obj=None):
    """The parts of jupyter_server's web_app.settings the monitor reads and writes."""
    settings = {
        "started": T0 - dt.timedelta(hours=1),
        "kernel_manager": FakeKernelManager(*kernels),
        "last_activity_times": {},
    }
    if scheduler_obj is not None:
        settings["scheduler"] = scheduler_obj
    return settings


def last_activity(settings):
    """jupyter_server's ServerWebApplication.last_activity() (serverapp.py): the latest of
    the server's start, the kernels' activity, any ``*_last_activity`` setting and
    ``last_activity_times``; what the single-user server reports to the hub."""
    sources = [settings["started"]]
    sources += [v for k, v in settings.items() if k.endswith("_last_activity")]
    sources += list(settings["last_activity_times"].values())
    return max(sources)


@pytest.fixture()
def make_monitor(tmp_path):
    def make(settings, **kwargs):
        clock = Clock()
        monitor = LongWorkMonitor(
            settings,
            clock=clock,
            config=Config({"LongWorkMonitor": {"batches_dir": str(tmp_path / "batches")}}),
            **kwargs,
        )
        return monitor, clock

    return make


def test_a_busy_kernel_keeps_the_server_active_until_it_is_idle(make_monitor):
    settings = server_settings(["idle", "busy"])
    monitor, clock = make_monitor(settings)
    work = monitor.tick()
    assert work.active and work.reasons == ["1 busy kernel"]
    assert last_activity(settings) == T0
    clock.advance(30)
    monitor.tick()
    assert last_activity(settings) == T0 + dt.timedelta(seconds=30)
    # the cell has finished: nothing more is recorded, the activity ages from here
    settings["kernel_manager"].states = ["idle", "idle"]
    clock.advance(30)
    work = monitor.tick()
    assert not work.active and work.reasons == []
    assert last_activity(settings) == T0 + dt.timedelta(seconds=30)


@pytest.mark.parametrize("states", [[], ["idle"], ["idle", "starting", "dead", "restarting"]])
def test_kernels_that_are_not_busy_are_not_long_work(make_monitor, states):
    settings = server_settings(states)
    monitor, _ = make_monitor(settings)
    assert not monitor.tick().active
    assert ACTIVITY_KEY not in settings["last_activity_times"]
    assert last_activity(settings) == settings["started"]


def test_a_running_batch_is_long_work_and_a_stale_one_is_not(make_monitor, tmp_path, ended_pid):
    settings = server_settings(["idle"])
    monitor, _ = make_monitor(settings)
    folder = tmp_path / "batches"
    stale = write_heartbeat(folder, f"{ended_pid}-x.json", pid=ended_pid, start_ticks=5)
    assert not monitor.tick().active
    assert not stale.exists()
    with batches.heartbeat("/n/02-ptt-performance.ipynb", 12, directory=folder):
        work = monitor.tick()
        assert work.reasons == ["1 run-notebook batch (02-ptt-performance.ipynb)"]
        assert settings["last_activity_times"][ACTIVITY_KEY] == T0
    assert not monitor.tick().active


def test_scheduler_jobs_count_while_they_run(make_monitor, jobs_db, sleeper):
    began = procs.start_time(sleeper.pid)
    jobs_db.add("j1", "IN_PROGRESS", sleeper.pid, began - 1, began + 1, name="nightly-report")
    settings = server_settings(scheduler_obj=SimpleNamespace(db_url=jobs_db.url))
    monitor, _ = make_monitor(settings)
    assert monitor.tick().reasons == ["1 jupyter-scheduler job (nightly-report)"]
    # the job's process ends and jupyter-scheduler marks it finished
    with contextlib.closing(sqlite3.connect(jobs_db.path)) as con:
        con.execute("UPDATE jobs SET status = 'COMPLETED'")
        con.commit()
    assert not monitor.tick().active


def test_without_the_scheduler_its_jobs_are_not_looked_for(make_monitor, jobs_db, sleeper):
    began = procs.start_time(sleeper.pid)
    jobs_db.add("j1", "IN_PROGRESS", sleeper.pid, began - 1, began + 1)
    monitor, _ = make_monitor(server_settings())  # no "scheduler" in the settings
    assert not monitor.tick().active


def test_an_unreadable_source_warns_once_and_the_others_still_count(make_monitor, tmp_path, caplog):
    class Broken:
        def list_kernels(self):
            raise RuntimeError("kernel manager gone")

    bad_db = tmp_path / "bad.sqlite"
    bad_db.write_text("this is not a database")
    settings = server_settings(scheduler_obj=SimpleNamespace(db_url=f"sqlite:///{bad_db}"))
    settings["kernel_manager"] = Broken()
    monitor, _ = make_monitor(settings)
    with caplog.at_level(logging.INFO):
        with batches.heartbeat("a.ipynb", 1, directory=tmp_path / "batches"):
            assert monitor.tick().reasons == ["1 run-notebook batch (a.ipynb)"]
            monitor.tick()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # once each, not at every check
    assert "cannot list the kernels" in warnings[0]
    assert f"cannot read jupyter-scheduler's jobs from {bad_db}" in warnings[1]


def test_a_scheduler_database_that_is_not_sqlite_is_named(make_monitor, caplog):
    settings = server_settings(scheduler_obj=SimpleNamespace(db_url="postgresql://db/s"))
    monitor, _ = make_monitor(settings)
    with caplog.at_level(logging.WARNING):
        assert not monitor.tick().active
    assert "'postgresql://db/s' is not a SQLite file" in caplog.text


def test_reasons_name_each_kind_and_count(tmp_path):
    b = [
        batches.Batch(1, "/n/a.ipynb", 2, "", tmp_path),
        batches.Batch(2, "/m/b.ipynb", 1, "", tmp_path),
    ]
    jobs = [scheduler.SchedulerJob("1", "nightly", 5)]
    assert LongWork(2, tuple(b), tuple(jobs)).reasons == [
        "2 busy kernels",
        "2 run-notebook batches (a.ipynb, b.ipynb)",
        "1 jupyter-scheduler job (nightly)",
    ]
    assert LongWork().reasons == [] and not LongWork().active


def test_changes_are_logged_at_info_steady_state_is_not(make_monitor, tmp_path, caplog):
    settings = server_settings(["busy"])
    monitor, _ = make_monitor(settings)
    with caplog.at_level(logging.INFO):
        with batches.heartbeat("/n/slow.ipynb", 1, directory=tmp_path / "batches"):
            monitor.tick()
            monitor.tick()
        settings["kernel_manager"].states = ["idle"]
        monitor.tick()
        monitor.tick()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        "testbed.activity: keeping the server active: 1 busy kernel, "
        "1 run-notebook batch (slow.ipynb)",
        "testbed.activity: no long work any more (was: 1 busy kernel, 1 run-notebook batch "
        "(slow.ipynb)); the idle culler may stop the server once it has been idle for its "
        "timeout",
    ]


def test_report_is_json_with_reasons_and_times(make_monitor):
    settings = server_settings(["busy"])
    monitor, _ = make_monitor(settings)
    work = monitor.tick()
    report = json.loads(json.dumps(monitor.report(work, last_activity(settings))))
    assert report["active"] is True and report["reasons"] == ["1 busy kernel"]
    assert report["recorded"] == report["last_activity"] == report["checked"]
    assert report["checked"] == "2024-05-01T12:00:00Z"
    assert report["batches"] == [] and report["scheduler_jobs"] == []


@pytest.mark.parametrize(
    ("env", "interval"),
    [(None, 30.0), ("300", 30.0), ("10", 5.0), ("1", 1.0), ("0", 30.0), ("soon", 30.0)],
)
def test_interval_is_half_the_hubs_activity_interval_at_most_30_s(env, interval):
    environ = {} if env is None else {"JUPYTERHUB_ACTIVITY_INTERVAL": env}
    assert _interval_default(environ) == interval


def test_interval_from_the_environment_and_from_config(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_ACTIVITY_INTERVAL", "10")
    assert LongWorkMonitor({}).interval == 5.0
    configured = LongWorkMonitor({}, config=Config({"LongWorkMonitor": {"interval": 7.5}}))
    assert configured.interval == 7.5


@pytest.mark.parametrize("value", [0, -5])
def test_an_interval_that_is_not_positive_is_refused_naming_the_setting(value):
    with pytest.raises(TraitError, match="LongWorkMonitor.interval must be a number of seconds"):
        LongWorkMonitor({}, config=Config({"LongWorkMonitor": {"interval": value}}))


def test_extension_point_names_the_module():
    assert _jupyter_server_extension_points() == [{"module": "testbed.activity"}]
