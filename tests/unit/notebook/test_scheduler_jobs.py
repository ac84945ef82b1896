"""testbed.scheduler: jupyter-scheduler jobs take their parameters as ``run-notebook -p``
does, say why they failed in plain text, and leave their files in a visible folder.

The last tests run real jobs: jupyter-scheduler's own ``Scheduler``, configured as the
notebook image configures it (``BaseScheduler.execution_manager_class`` and
``output_directory`` in a traitlets Config), starts each job in a process of its own
with a real kernel, as the JupyterLab server does; no Docker, no server.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import papermill
import pytest
from jupyter_scheduler.environments import CondaEnvironmentManager
from jupyter_scheduler.models import CreateJob, Status
from jupyter_scheduler.orm import create_tables
from jupyter_scheduler.scheduler import Scheduler
from nbclient.exceptions import CellExecutionError
from traitlets.config import Config

from testbed import scheduler
from testbed.batch.runner import iter_pairs
from testbed.scheduler import JobParameterError, failure_message, inject_parameters

PARAMETERS = """\
experiment = "exp-001"
bins = 10
scale = 1.0
verbose = False
label = "plain"
channels = [1]
"""
BODY = "print(experiment, type(bins).__name__, bins)"
#: What a researcher types into the Create Job form, and what the notebook gets.
TYPED = {
    "experiment": "exp-005",
    "bins": "40",
    "scale": "2.5",
    "verbose": "true",
    "label": '"quoted"',
    "channels": "[1, 2]",
}
EXPECTED = {
    "experiment": "exp-005",
    "bins": 40,
    "scale": 2.5,
    "verbose": True,
    "label": "quoted",
    "channels": [1, 2],
}


def write_notebook(path: Path, params: str | None, *body: str) -> Path:
    cells = []
    if params is not None:
        cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    cells += [nbformat.v4.new_code_cell(source) for source in body or (BODY,)]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    nbformat.write(nb, path)
    return path


def injected(nb) -> tuple[int, dict]:
    """Index of the injected-parameters cell and the names its source assigns."""
    (index,) = [
        i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", [])
    ]
    names: dict = {}
    exec(nb.cells[index].source, {}, names)  # noqa: S102 - the test's own notebook
    return index, names


def test_values_are_read_as_run_notebook_reads_them(tmp_path):
    nb = inject_parameters(write_notebook(tmp_path / "a.ipynb", PARAMETERS), TYPED)
    index, names = injected(nb)
    # right after the parameters cell, before the notebook's own code
    assert nb.cells[index - 1].metadata["tags"] == ["parameters"]
    assert nb.cells[index + 1].source == BODY
    assert names == EXPECTED
    assert [type(names[n]) for n in EXPECTED] == [str, int, float, bool, str, list]


def test_the_injected_cell_is_the_one_run_notebook_writes(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", PARAMETERS)
    ours = inject_parameters(path, TYPED)
    # run-notebook: `-p NAME VALUE` pairs (iter_pairs), then papermill.execute_notebook
    theirs = papermill.execute_notebook(
        str(path), None, parameters=iter_pairs(TYPED.items()), prepare_only=True
    )
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert ours.metadata["papermill"]["parameters"] == EXPECTED


def test_a_notebook_without_a_parameters_cell_is_refused_with_the_fix(tmp_path):
    path = write_notebook(tmp_path / "untagged.ipynb", None, 'experiment = "exp-001"', BODY)
    with pytest.raises(JobParameterError) as caught:
        inject_parameters(path, {"experiment": "exp-005"})
    text = str(caught.value)
    assert "untagged.ipynb has no cell tagged 'parameters'" in text
    assert "(experiment) have nowhere to go" in text
    assert "add the tag 'parameters'" in text


def test_an_unknown_parameter_is_refused_with_what_the_notebook_defines(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", PARAMETERS)
    with pytest.raises(JobParameterError) as caught:
        inject_parameters(path, {"experment": "exp-005", "bins": "40"})
    assert str(caught.value) == (
        "unknown parameter 'experment' (did you mean 'experiment'?): the parameters cell of "
        "a.ipynb defines experiment, bins, scale, verbose, label, channels"
    )


def test_other_languages_need_the_tagged_cell_only(tmp_path):
    path = tmp_path / "r.ipynb"
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell('x <- "a"', metadata={"tags": ["parameters"]})]
    )
    nb.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    nbformat.write(nb, path)
    out = inject_parameters(path, {"experiment": "exp-005", "bins": "40"})
    # papermill's R translator; the names are not checked (run-notebook reads Python only)
    assert 'experiment = "exp-005"' in out.cells[1].source
    assert "bins = 40" in out.cells[1].source


COLOURED = (
    "An error occurred while executing the following cell:\n------------------\n"
    "experiment = exp-005\n------------------\n\n\n"
    "  \x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[2]\x1b[39m\x1b[32m, line 1\x1b[39m\n"
    "\x1b[31m    \x1b[39m\x1b[31mexperiment = exp-005\x1b[39m\n"
    "\x1b[31mSyntaxError\x1b[39m\x1b[31m:\x1b[39m leading zeros in decimal integer literals\n"
)


def test_a_cell_error_is_plain_text_with_the_error_first():
    message = failure_message(
        CellExecutionError(COLOURED, "SyntaxError", "leading zeros in decimal integer literals")
    )
    assert "\x1b" not in message
    head, rest = message.split("\n\n", 1)
    assert head == "SyntaxError: leading zeros in decimal integer literals"
    assert "experiment = exp-005" in rest and "Cell In[2], line 1" in rest


def test_a_long_error_fits_the_status_column_and_other_errors_keep_their_text():
    long = failure_message(CellExecutionError("x" * 5000, "ValueError", "bad"), limit=100)
    assert len(long) == 100 and long.startswith("ValueError: bad\n\n") and long.endswith("…")
    assert failure_message(JobParameterError("unknown parameter 'x'")) == "unknown parameter 'x'"
    assert failure_message(RuntimeError()) == "RuntimeError"


# -- real jobs ----------------------------------------------------------------------

JOB_DEADLINE_S = 180


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    """A server root with a notebook, and jupyter-scheduler's Scheduler configured as
    the image configures it, with another output folder than the default."""
    root = tmp_path / "nist"
    root.mkdir()
    write_notebook(root / "analysis.ipynb", PARAMETERS, BODY, "assert bins < 50, 'too many bins'")
    db_url = f"sqlite:///{root}/.jupyter-scheduler.sqlite"
    create_tables(db_url)
    config = Config(
        {
            "BaseScheduler": {
                "staging_path": str(root / ".jupyter-scheduler" / "staging"),
                "output_directory": "scheduled/jobs",
                "execution_manager_class": "testbed.scheduler.TestbedExecutionManager",
            }
        }
    )
    monkeypatch.setenv(scheduler.OUTPUT_DIR_ENV, "scheduled/jobs")
    sched = Scheduler(
        root_dir=str(root),
        environments_manager=CondaEnvironmentManager(),
        db_url=db_url,
        config=config,
    )
    return root, sched


def run_jobs(sched: Scheduler, *parameters: dict) -> list:
    """Create one job per parameter set (all at once), wait until each has ended."""
    ids = [
        sched.create_job(
            CreateJob(
                input_uri="analysis.ipynb",
                runtime_environment_name="notebook",
                name=f"job-{n}",
                output_formats=["ipynb", "html"],
                parameters=p,
            )
        )
        for n, p in enumerate(parameters)
    ]
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        jobs = [sched.get_job(job_id) for job_id in ids]
        if all(j.status in (Status.COMPLETED, Status.FAILED) for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [(j.status, j.status_message) for j in jobs]
        time.sleep(0.2)


def outputs(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    return "".join(
        o.get("text", "") or o.get("evalue", "") for c in nb.cells for o in c.get("outputs", [])
    )


@pytest.mark.slow
def test_jobs_run_with_parameters_and_leave_their_files_in_the_visible_folder(lab):
    root, sched = lab
    ok, failed, refused = run_jobs(
        sched, {"experiment": "exp-005", "bins": "40"}, {"bins": "60"}, {"experment": "exp-005"}
    )

    assert (ok.status, ok.status_message) == (Status.COMPLETED, None)
    # the scheduler itself finds every file where its panel links to them
    assert ok.downloaded, ok.job_files
    folder = f"scheduled/jobs/analysis-{ok.job_id}"
    paths = {f.file_format: f.file_path for f in ok.job_files}
    assert {fmt: Path(p).parent.as_posix() for fmt, p in paths.items()} == dict.fromkeys(
        ("ipynb", "html", "input"), folder
    )
    assert "exp-005 int 40" in outputs(root / paths["ipynb"])
    assert "exp-005 int 40" in (root / paths["html"]).read_text(encoding="utf-8")
    # the input is the notebook as it was submitted, without the injected cell
    assert (root / paths["input"]).read_bytes() == (root / "analysis.ipynb").read_bytes()
    # and the staging folder still holds everything (the download button copies from it)
    staged = root / ".jupyter-scheduler" / "staging" / ok.job_id
    assert sorted(p.name for p in staged.iterdir()) == sorted(Path(p).name for p in paths.values())

    # a failing cell: the error first, plain text; the output notebook shows it too
    assert failed.status == Status.FAILED
    assert failed.status_message.startswith("AssertionError: too many bins\n\n")
    assert "\x1b" not in failed.status_message
    assert failed.downloaded, failed.job_files
    failed_nb = next(f.file_path for f in failed.job_files if f.file_format == "ipynb")
    assert "too many bins" in outputs(root / failed_nb)

    # a misspelt parameter: refused before the notebook runs, with what it defines
    assert refused.status == Status.FAILED
    assert refused.status_message.startswith(
        "unknown parameter 'experment' (did you mean 'experiment'?)"
    )
    assert not (root / f"scheduled/jobs/analysis-{refused.job_id}").exists()
