"""run-notebook: validation before any run, parallel runs, outputs and summary."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from testbed.batch import BatchError, inspect_notebook, plan_batch
from testbed.batch.cli import main
from testbed.batch.notebook import NotebookError
from testbed.batch.runner import parse_value, safe_name

pytestmark = pytest.mark.usefixtures("testbed_env")

TINY_BODY = """
from testbed import data, record
n = len(data.ptt_events(experiment_id))
if experiment_id == fail_on:
    raise RuntimeError(f"deliberate failure on {experiment_id}")
record("n_events", n)
record("scaled", n * scale)
record("status", "recorded")
"""


def write_notebook(path: Path, params: str | None, body: str = TINY_BODY) -> Path:
    cells = []
    if params is not None:
        cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    cells.append(nbformat.v4.new_code_cell(body))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return write_notebook(
        tmp_path / "tiny.ipynb", 'experiment_id = "exp-001"\nscale: int = 1\nfail_on = ""'
    )


def n_events(seed_data, exp_id):
    return sum(e["experiment_id"] == exp_id for e in seed_data.ptt_events)


# -- validation: messages before any run -------------------------------------------


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_experiment_is_refused_before_any_run(capsys, tiny, tmp_path):
    out_dir = tmp_path / "runs"
    code, out, err = run_cli(
        capsys, tiny, "--experiment", "exp-001", "exp-0002", "-o", out_dir, "--progress", "lines"
    )
    assert code == 2
    assert "nothing was run" in err
    assert "No experiment 'exp-0002'" in err and "Did you mean: exp-002" in err
    assert not out_dir.exists()  # no batch directory, no run


def test_notebook_without_parameters_cell(capsys, tmp_path):
    bare = write_notebook(tmp_path / "bare.ipynb", None)
    code, _, err = run_cli(capsys, bare, "--all", "-o", tmp_path / "runs")
    assert code == 2
    assert "has no cell tagged 'parameters'" in err
    assert "add the tag 'parameters'" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_parameter_name_with_suggestion(capsys, tiny, tmp_path):
    code, _, err = run_cli(capsys, tiny, "--all", "-p", "scal", "2", "-o", tmp_path / "runs")
    assert code == 2
    assert "unknown parameter 'scal' (did you mean 'scale'?)" in err
    assert "defines experiment_id, scale, fail_on" in err
    assert not (tmp_path / "runs").exists()


def test_all_problems_are_listed_together(tiny):
    with pytest.raises(BatchError) as err:
        plan_batch(
            tiny,
            experiments=["nope"],
            parameters={"experiment_id": "x", "bogus": 1},
            jobs=0,
            timeout=-1,
        )
    problems = err.value.problems
    assert len(problems) == 5, problems
    assert any("--jobs must be at least 1" in p for p in problems)
    assert any("--timeout must be a positive" in p for p in problems)
    assert any("use --experiment instead" in p for p in problems)
    assert any("unknown parameter 'bogus'" in p for p in problems)
    assert any("No experiment 'nope'" in p for p in problems)


def test_missing_notebook_and_missing_experiment_parameter(tmp_path):
    with pytest.raises(BatchError, match="no such file"):
        plan_batch(tmp_path / "missing.ipynb", all_experiments=True)
    other = write_notebook(tmp_path / "other.ipynb", "exp = 'exp-001'")
    with pytest.raises(BatchError, match="does not define 'experiment_id' .it defines: exp."):
        plan_batch(other, all_experiments=True)
    plan = plan_batch(other, all_experiments=True, experiment_param="exp")
    assert plan.experiment_param == "exp"


def test_bad_query_and_empty_selection(capsys, tiny, tmp_path):
    code, _, err = run_cli(capsys, tiny, "--query", "{loss: 2}", "-o", tmp_path / "r")
    assert code == 2 and "--query is not valid JSON" in err
    code, _, err = run_cli(capsys, tiny, "--query", "[1]", "-o", tmp_path / "r")
    assert code == 2 and "--query must be a JSON object" in err
    code, _, err = run_cli(
        capsys, tiny, "--query", '{"channel.delay_ms": 12345}', "-o", tmp_path / "r"
    )
    assert code == 2 and "matches no experiment" in err


def test_unreachable_database_is_a_validation_error(
    capsys, tiny, tmp_path, monkeypatch, closed_port
):
    monkeypatch.setenv("TESTBED_MONGO_URI", f"mongodb://127.0.0.1:{closed_port}/")
    monkeypatch.setenv("TESTBED_MONGO_TIMEOUT_MS", "200")
    code, _, err = run_cli(capsys, tiny, "--all", "-o", tmp_path / "runs")
    assert code == 2
    assert f"Cannot reach the experiment database at 127.0.0.1:{closed_port}" in err
    assert "Traceback" not in err


def test_unknown_kernel(tiny):
    with pytest.raises(BatchError, match="kernel 'no-such-kernel' is not installed here"):
        plan_batch(tiny, all_experiments=True, kernel_name="no-such-kernel")


def test_selections(seed_data, tiny):
    assert plan_batch(tiny, all_experiments=True).experiments == tuple(
        sorted(e["_id"] for e in seed_data.experiments)
    )
    lossy = plan_batch(tiny, query={"channel.packet_loss_pct": {"$gte": 5}})
    assert lossy.experiments == tuple(
        sorted(e["_id"] for e in seed_data.experiments if e["channel"]["packet_loss_pct"] >= 5)
    )
    dedup = plan_batch(tiny, experiments=["exp-003", "exp-001", "exp-003"], jobs=3)
    assert dedup.experiments == ("exp-003", "exp-001")
    assert dedup.jobs == 3


def test_inspect_notebook_names(tmp_path):
    nb = write_notebook(tmp_path / "p.ipynb", "a = 1\nb, c = 2, 3\nd: float = 0.5\nprint(a)\n")
    assert inspect_notebook(nb).parameters == ("a", "b", "c", "d")
    broken = write_notebook(tmp_path / "b.ipynb", "a = = 1")
    with pytest.raises(NotebookError, match="not valid Python .line 1"):
        inspect_notebook(broken)
    (tmp_path / "junk.ipynb").write_text("{not json")
    with pytest.raises(NotebookError, match="not a readable .ipynb"):
        inspect_notebook(tmp_path / "junk.ipynb")


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0.5", 0.5), ("true", True), ("null", None), ("exp-001", "exp-001"), ('"3"', "3")],
)
def test_parameter_values(text, value):
    assert parse_value(text) == value


def test_safe_names():
    assert safe_name("exp-001") == "exp-001"
    assert safe_name("a/b c") == "a_b_c"


# -- a real batch: 3 experiments, 2 workers, one deliberate failure -----------------


@pytest.mark.slow
def test_batch_runs_all_reports_failure_and_summarises(capsys, tiny, tmp_path, seed_data):
    out_dir = tmp_path / "runs"
    exps = ["exp-001", "exp-002", "exp-003"]
    code, out, err = run_cli(
        capsys,
        tiny,
        "--experiment",
        *exps,
        "-p",
        "fail_on",
        "exp-002",
        "-p",
        "scale",
        "3",
        "--jobs",
        "2",
        "-o",
        out_dir,
        "--progress",
        "lines",
    )
    assert code == 1, err
    batch = Path(out.strip().splitlines()[-1])
    assert batch.parent == out_dir / "tiny"
    # plain progress lines (not a TTY), one per run
    assert (
        sorted(line.split("] ")[1].split()[0] for line in err.splitlines() if "] exp-" in line)
        == exps
    )
    assert "2 ok, 1 failed" in err

    for exp in exps:
        assert (batch / f"{exp}.ipynb").is_file()
        html = (batch / f"{exp}.html").read_text()
        assert html.startswith("<!DOCTYPE html>") and exp in html
    executed = nbformat.read(batch / "exp-003.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'experiment_id = "exp-003"' in injected[0].source

    with (batch / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["experiment"] for r in rows] == exps  # selection order, not finishing order
    by_exp = {r["experiment"]: r for r in rows}
    for exp in ("exp-001", "exp-003"):
        n = n_events(seed_data, exp)
        assert by_exp[exp]["status"] == "ok" and by_exp[exp]["error"] == ""
        assert int(by_exp[exp]["n_events"]) == n
        assert int(by_exp[exp]["scaled"]) == 3 * n
        assert float(by_exp[exp]["run_duration_s"]) > 0
        assert by_exp[exp]["record_status"] == "recorded"
    failed = by_exp["exp-002"]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("RuntimeError: deliberate failure on exp-002")
    assert failed["n_events"] == "" and failed["notebook"] == "exp-002.ipynb"
    summary_html = (batch / "summary.html").read_text()
    assert summary_html.count('<tr class="failed">') == 1
    assert summary_html.count('<tr class="ok">') == 2
    assert "2 of 3 runs succeeded" in summary_html


@pytest.mark.slow
def test_timeout_fails_the_run(capsys, tmp_path):
    slow = write_notebook(
        tmp_path / "slow.ipynb", 'experiment_id = "exp-001"', "import time\ntime.sleep(30)"
    )
    code, out, err = run_cli(
        capsys,
        slow,
        "-e",
        "exp-001",
        "--timeout",
        "2",
        "-o",
        tmp_path / "runs",
        "--progress",
        "lines",
    )
    assert code == 1
    rows = list(csv.DictReader((Path(out.strip()) / "summary.csv").open()))
    assert rows[0]["status"] == "failed"
    assert "Timeout" in rows[0]["error"] or "timed out" in rows[0]["error"]
    assert float(rows[0]["run_duration_s"]) < 25


def test_help_mentions_the_contract(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--experiment", "--all", "--query", "--jobs", "--output-dir", "--timeout", "-p"):
        assert word in text
