"""python -m testbed.batch.bench: refuses bad input before any run, computes the summary,
and times both arms for real on a tiny notebook.

The notebook itself needs no database, but run-notebook checks the experiment ids
against it before running, so these tests use the MongoDB stand-in (``testbed_env``)
and ids it holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_run_notebook import write_notebook

from testbed.batch import bench
from testbed.batch.bench import Failure, summarize

pytestmark = pytest.mark.usefixtures("testbed_env")

EXPS = ["exp-001", "exp-002", "exp-003"]


def write_tiny(path: Path) -> Path:
    return write_notebook(path, 'experiment_id = ""', "x = len(experiment_id)")


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return write_tiny(tmp_path / "tiny.ipynb")


# -- bad input: exit 2, a message saying what to do, nothing run -------------------------


@pytest.fixture()
def nothing_may_run(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a run started despite bad input")

    for name in ("measure_overhead", "run_sequential", "run_batch_arm"):
        monkeypatch.setattr(bench, name, refuse)
    monkeypatch.setattr(bench.subprocess, "run", refuse)


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
        (
            ["{tiny}", "-e", "exp-001", "--json", "{tmp}/no/such/dir/out.json"],
            ["does not exist; create it first"],
        ),
        (["{tiny}", "-e", "exp-001", "--workdir", "{tiny}"], ["is not a directory"]),
    ],
)
def test_bad_input_exits_2_before_any_run(capsys, tmp_path, tiny, nothing_may_run, argv, expected):
    workdir = tmp_path / "wd"
    args = [a.format(tmp=tmp_path, tiny=tiny) for a in argv]
    if "--workdir" not in args:
        args += ["--workdir", str(workdir)]
    code = bench.main(args)
    out, err = capsys.readouterr()
    assert code == 2
    assert "nothing was run" in err
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert out == ""
    assert not workdir.exists()


# -- the summary arithmetic ------------------------------------------------------------


def timings(**overrides):
    values = {
        "experiments": 20,
        "jobs": 2,
        "sequential_s": 60.0,
        "batch_s": 30.0,
        "kernel_start_s": 0.61234,
        "empty_run_s": 1.7,
    }
    return {**values, **overrides}


def test_summary_keys_and_ratio():
    result = summarize(**timings())
    assert result == {
        "experiments": 20,
        "jobs": 2,
        "sequential_s": 60.0,
        "batch_s": 30.0,
        "speedup": 2.0,
        "kernel_start_s": 0.612,
        "empty_run_s": 1.7,
        "failures": 0,
        "failed_runs": [],
        "target_speedup": 1.7,
        "meets_target": True,
    }
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(
    ("sequential_s", "batch_s", "speedup", "meets"),
    [
        (17.0, 10.0, 1.7, True),  # exactly the target
        (16.9, 10.0, 1.69, False),
        (10.0, 30.0, 0.333, False),  # slower than the loop
        (10.0, 0.0, None, False),  # no time to divide by
    ],
)
def test_speedup_against_target(sequential_s, batch_s, speedup, meets):
    result = summarize(**timings(sequential_s=sequential_s, batch_s=batch_s))
    assert result["speedup"] == speedup
    assert result["meets_target"] is meets


def test_failures_are_counted_and_never_meet_the_target():
    failures = [
        Failure("sequential", "exp-002", "AssertionError: boom"),
        Failure("batch", "exp-002", "AssertionError: boom (cell 2)"),
    ]
    result = summarize(**timings(sequential_s=90.0, batch_s=10.0), failures=failures)
    assert result["speedup"] == 9.0
    assert result["failures"] == 2
    assert result["failed_runs"][1] == {
        "arm": "batch",
        "experiment": "exp-002",
        "error": "AssertionError: boom (cell 2)",
    }
    assert result["meets_target"] is False


def test_missing_overhead_stays_null_and_target_is_configurable():
    result = summarize(**timings(kernel_start_s=None, empty_run_s=None), target_speedup=2.5)
    assert result["kernel_start_s"] is None and result["empty_run_s"] is None
    assert result["target_speedup"] == 2.5 and result["meets_target"] is False


# -- one real run: 3 experiments, --jobs 2 ---------------------------------------------


@pytest.mark.slow
def test_real_run_times_both_arms(tmp_path, tiny):
    workdir = tmp_path / "wd"
    json_file = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "testbed.batch.bench", str(tiny), "--experiment", *EXPS]
    cmd += ["--jobs", "2", "--workdir", str(workdir), "--json", str(json_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert json.loads(json_file.read_text()) == result
    assert result["experiments"] == 3 and result["jobs"] == 2
    assert result["failures"] == 0 and result["failed_runs"] == []
    for key in ("sequential_s", "batch_s", "kernel_start_s", "empty_run_s"):
        assert result[key] > 0, key
    assert result["speedup"] == pytest.approx(result["sequential_s"] / result["batch_s"], 0.01)
    assert result["target_speedup"] == 1.7
    assert isinstance(result["meets_target"], bool)
    table = "\n".join(lines[:-1])
    assert f"speedup (sequential_s / batch_s): {result['speedup']:.3f}x" in table

    # the baseline really ran papermill with the id injected into experiment_id
    for exp in EXPS:
        executed = nbformat.read(workdir / "sequential" / f"{exp}.ipynb", as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata["tags"]]
        assert f'experiment_id = "{exp}"' in injected[0].source
    # and the candidate was run-notebook, with its per-experiment outputs and summary
    (batch_dir,) = (workdir / "batch" / "tiny").iterdir()
    assert sorted(p.name for p in batch_dir.glob("*.ipynb")) == [f"{e}.ipynb" for e in EXPS]
    assert (batch_dir / "summary.csv").is_file()
