"""The batch benchmark: the in-image script (testbed_devtools.batch_bench) refuses bad
input before any run and times both arms for real on a tiny notebook, sent on stdin
as ``make bench`` sends it into the notebook container; the control node turns its
raw timings into the figures (bench.batch_summary) and drives it (bench.batch_speedup).

The notebook needs no database, but run-notebook checks the experiment ids against
it before running, so the script's tests use the simulator's MongoDB stand-in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from testbed_devtools import batch_bench, bench
from testbed_sim import mongo

EXPS = ["exp-001", "exp-002", "exp-003"]


@pytest.fixture(scope="module")
def mongo_server():
    server = mongo.MongoStandIn(host="127.0.0.1", port=0, experiments=len(EXPS))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def testbed_env(monkeypatch, mongo_server, tmp_path):
    """The notebook container's environment; papermill kernels and workers inherit it."""
    monkeypatch.setenv("TESTBED_MONGO_URI", mongo_server.uri)
    monkeypatch.setenv("TESTBED_MONGO_DB", "testbed")
    monkeypatch.setenv("TESTBED_MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("TESTBED_MONGO_TIMEOUT_MS", "3000")
    for name in ("TESTBED_MONGO_USER", "TESTBED_MONGO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def tiny(tmp_path) -> Path:
    cells = [
        nbformat.v4.new_code_cell('experiment_id = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = len(experiment_id)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


# -- bad input: exit 2, a message saying what to do, nothing run -------------------------


@pytest.fixture()
def nothing_may_run(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a run started despite bad input")

    for name in ("measure_overhead", "run_sequential", "run_batch_arm"):
        monkeypatch.setattr(batch_bench, name, refuse)
    monkeypatch.setattr(batch_bench.subprocess, "run", refuse)


@pytest.mark.usefixtures("testbed_env")
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["{tmp}/missing.ipynb", "-e", "exp-001"],
            ["missing.ipynb cannot be read: no such file", "Give the .ipynb path"],
        ),
        (
            ["{tiny}"],
            ["no experiments given", "--experiment ID (repeatable)"],
        ),
        (
            ["{tmp}/missing.ipynb"],
            ["missing.ipynb cannot be read: no such file", "no experiments given"],
        ),
        (
            ["{tiny}", "-e", "exp-001", "exp-0002"],
            ["No experiment 'exp-0002'", "Did you mean: exp-002"],
        ),
        (["{tiny}", "-e", "exp-001", "--jobs", "0"], ["--jobs must be at least 1, got 0"]),
        (["{tiny}", "-e", "exp-001", "--workdir", "{tiny}"], ["is not a directory"]),
        (
            ["{tiny}", "-e", "exp-001", "--runner-baseline-jobs", "0"],
            ["--runner-baseline-jobs must be at least 1, got 0"],
        ),
    ],
)
def test_bad_input_exits_2_before_any_run(capsys, tmp_path, tiny, nothing_may_run, argv, expected):
    workdir = tmp_path / "wd"
    args = [a.format(tmp=tmp_path, tiny=tiny) for a in argv]
    if "--workdir" not in args:
        args += ["--workdir", str(workdir)]
    code = batch_bench.main(args)
    out, err = capsys.readouterr()
    assert code == 2
    assert "nothing was run" in err
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert out == ""
    assert not workdir.exists()


# -- the figures from the raw timings (control node) -------------------------------------


def raw(**overrides):
    values = {
        "experiments": 20,
        "jobs": 2,
        "overhead_samples": 3,
        "kernel_start_s": [0.7, 0.61234, 0.5],
        "empty_run_s": [1.7, 1.9, 1.6],
        "sequential_s": 60.0,
        "batch_s": 30.0,
        "runner_baseline_jobs": 1,
        "runner_baseline_s": 57.0,
        "failed_runs": [],
    }
    return {**values, **overrides}


def test_summary_keys_ratio_and_medians():
    result = bench.batch_summary(raw())
    assert result == {
        "experiments": 20,
        "jobs": 2,
        "sequential_s": 60.0,
        "batch_s": 30.0,
        "speedup": 2.0,
        "runner_baseline_jobs": 1,
        "runner_baseline_s": 57.0,
        "runner_speedup": 1.9,
        "kernel_start_s": 0.612,
        "empty_run_s": 1.7,
        "failures": 0,
        "failed_runs": [],
        "target_speedup": 1.9,
        "meets_target": True,
        "samples": {"kernel_start_s": [0.7, 0.61234, 0.5], "empty_run_s": [1.7, 1.9, 1.6]},
    }
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(
    ("sequential_s", "batch_s", "speedup", "meets"),
    [
        (19.0, 10.0, 1.9, True),  # exactly the target
        (18.9, 10.0, 1.89, False),
        (10.0, 30.0, 0.333, False),  # slower than the loop
        (10.0, 0.0, None, False),  # no time to divide by
    ],
)
def test_speedup_against_the_one_target(sequential_s, batch_s, speedup, meets):
    result = bench.batch_summary(raw(sequential_s=sequential_s, batch_s=batch_s))
    assert result["speedup"] == speedup
    assert result["meets_target"] is meets
    assert result["target_speedup"] == bench.TARGETS["batch_speedup"].limit


def test_failures_are_counted_and_never_meet_the_target():
    failed = [
        {"arm": "sequential", "experiment": "exp-002", "error": "AssertionError: boom"},
        {"arm": "batch", "experiment": "exp-002", "error": "AssertionError: boom (cell 2)"},
    ]
    result = bench.batch_summary(raw(sequential_s=90.0, batch_s=10.0, failed_runs=failed))
    assert result["speedup"] == 9.0
    assert result["failures"] == 2 and result["failed_runs"] == failed
    assert result["meets_target"] is False
    (row,) = [r for r in bench.rows({"batch": result}) if "papermill CLI loop" in r.figure]
    assert (row.target, row.result) == (">= 1.9x, 0 failed", "FAIL")


def test_runner_jobs_n_vs_jobs_1_from_the_same_run():
    result = bench.batch_summary(raw(runner_baseline_s=45.0, batch_s=20.0))
    assert (result["runner_speedup"], result["runner_baseline_jobs"]) == (2.25, 1)
    figures = {r.figure: r for r in bench.rows({"batch": result})}
    row = figures["20 experiments, run-notebook --jobs 2 vs --jobs 1"]
    assert (row.value, row.target, row.result) == ("2.25x (45.0 s -> 20.0 s)", "report", "-")


def test_runner_baseline_that_did_not_run_is_not_measured():
    result = bench.batch_summary(raw(runner_baseline_s=None))
    assert result["runner_speedup"] is None
    (row,) = [r for r in bench.rows({"batch": result}) if "vs --jobs" in r.figure]
    assert row.value.startswith("not measured") and row.result == "FAIL"


@pytest.mark.parametrize(("empty", "result"), [(0.5, "PASS"), (0.51, "FAIL"), (None, "FAIL")])
def test_empty_papermill_run_against_its_target(empty, result):
    samples = [] if empty is None else [empty, empty + 0.2, empty - 0.1]
    summary = bench.batch_summary(raw(empty_run_s=samples))
    (row,) = [r for r in bench.rows({"batch": summary}) if "empty notebook" in r.figure]
    assert (row.target, row.result) == ("<= 0.5 s", result)


def test_an_incomplete_overhead_probe_has_no_median():
    result = bench.batch_summary(raw(kernel_start_s=[0.5], empty_run_s=[]))
    assert result["kernel_start_s"] is None and result["empty_run_s"] is None


class FakeStation:
    """The bench instance: describes a user's container, answers the ``docker run``."""

    def __init__(self, answer: str, code: int = 0):
        self.answer, self.code = answer, code
        self.calls: list[tuple[str, str | None]] = []

    def check_output(self, cmd: str) -> str:
        assert cmd == "/opt/jupyterhub/bin/python -m testbed_hub.container_cli --user bench-batch"
        return json.dumps(
            {
                "image": "testbed-hub/notebook:abc",
                "network": "jupyter",
                "working_dir": "/home/jovyan/nist",
                "env": {"TESTBED_MONGO_DB": "testbed", "TESTBED_MEDIA_DIR": "/x y"},
                "mounts": [
                    {
                        "type": "volume",
                        "source": "jupyterhub-shared",
                        "target": "/home/jovyan/nist/share",
                        "read_only": False,
                    },
                    {
                        "type": "bind",
                        "source": "/srv/lmr/wavs",
                        "target": "/home/jovyan/nist/media",
                        "read_only": True,
                    },
                ],
                "etc_hosts": {"host.docker.internal": "172.19.0.1"},
                "pids_limit": 512,
                "security_opt": ["no-new-privileges"],
                "cap_drop": ["ALL"],
                "cap_add": [],
            }
        )

    def run(self, cmd: str, check: bool = True, input: str | None = None):
        self.calls.append((cmd, input))
        return subprocess.CompletedProcess(cmd, self.code, self.answer, "progress\n")


def test_batch_speedup_runs_the_script_in_the_hubs_container_and_summarises():
    station = FakeStation("noise\n" + json.dumps(raw()) + "\n")
    result = bench.batch_speedup(station, experiments=2, jobs=2)
    ((cmd, script),) = station.calls
    assert cmd == (
        "docker run -i --rm --network jupyter --workdir /home/jovyan/nist "
        "-e TESTBED_MONGO_DB=testbed -e 'TESTBED_MEDIA_DIR=/x y' "
        "--mount type=volume,source=jupyterhub-shared,target=/home/jovyan/nist/share "
        "--mount type=bind,source=/srv/lmr/wavs,target=/home/jovyan/nist/media,readonly "
        "--add-host host.docker.internal:172.19.0.1 "
        "--pids-limit 512 --security-opt no-new-privileges --cap-drop ALL "
        "testbed-hub/notebook:abc python - "
        "/home/jovyan/nist/share/demo-notebooks/02-ptt-performance.ipynb "
        "--experiment exp-001 exp-002 --jobs 2"
    )
    assert script == bench.BATCH_SCRIPT.read_text() and "def run_sequential" in script
    assert result["speedup"] == 2.0 and result["meets_target"] is True


def test_batch_speedup_without_a_result_is_an_error():
    with pytest.raises(RuntimeError, match="batch bench exited 2"):
        bench.batch_speedup(FakeStation("", code=2), experiments=2, jobs=2)


# -- one real run: 3 experiments, --jobs 2, the script on stdin --------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("testbed_env")
def test_real_run_times_both_arms(tmp_path, tiny):
    workdir = tmp_path / "wd"
    cmd = [sys.executable, "-", str(tiny), "--experiment", *EXPS]
    cmd += ["--jobs", "2", "--workdir", str(workdir)]
    proc = subprocess.run(
        cmd,
        input=bench.BATCH_SCRIPT.read_text(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    timings = json.loads(proc.stdout.strip().splitlines()[-1])
    assert timings["experiments"] == 3 and timings["jobs"] == 2
    assert timings["failed_runs"] == []
    assert timings["runner_baseline_jobs"] == 1 and timings["runner_baseline_s"] > 0
    assert len(timings["kernel_start_s"]) == len(timings["empty_run_s"]) == 3
    result = bench.batch_summary(timings)
    for key in ("sequential_s", "batch_s", "runner_baseline_s", "kernel_start_s", "empty_run_s"):
        assert result[key] > 0, key
    assert result["speedup"] == pytest.approx(result["sequential_s"] / result["batch_s"], 0.01)

    # the baseline really ran papermill with the id injected into experiment_id
    for exp in EXPS:
        executed = nbformat.read(workdir / "sequential" / f"{exp}.ipynb", as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata["tags"]]
        assert f'experiment_id = "{exp}"' in injected[0].source
    # and the candidate was run-notebook, with its per-experiment outputs and summary
    # and our own runner again with --jobs 1, in a folder of its own
    for arm in ("batch", "runner-baseline"):
        (batch_dir,) = (workdir / arm / "tiny").iterdir()
        runs = batch_dir / "experiments"
        assert sorted(p.name for p in runs.glob("*.ipynb")) == [f"{e}.ipynb" for e in EXPS]
        assert (batch_dir / "summary.csv").is_file()
    assert "with --jobs 1" in proc.stderr and "with --jobs 2" in proc.stderr
