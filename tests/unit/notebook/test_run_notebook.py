"""run-notebook: validation before any run, parallel runs, outputs and summary."""

from __future__ import annotations

import concurrent.futures as cf
import csv
import datetime as dt
import errno
import socket
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin

import nbformat
import pytest
import zmq
from jupyter_client.connect import LocalPortCache
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError

from testbed.batch import BatchError, inspect_notebook, plan_batch, runner
from testbed.batch.cli import build_parser, main
from testbed.batch.links import SAME_TAB_SCRIPT, LabServer
from testbed.batch.notebook import NotebookError
from testbed.batch.runner import (
    KERNEL_DIED_AT_START,
    RETRIED_TEXT,
    DefaultJobs,
    RunResult,
    is_kernel_port_clash,
    jobs_from_limits,
    kernel_start_failure,
    parse_proc_cgroup,
    parse_value,
    safe_name,
    write_summary,
)

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


# -- the summary: where it names the files, how it links them ------------------------


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.found.append((dict(attrs).get("href"), dict(attrs).get("target")))


def anchors(page: str) -> list[tuple[str | None, str | None]]:
    """(href, target) of every link of an HTML page, in order."""
    parser = _Anchors()
    parser.feed(page)
    return parser.found


def two_runs(batch_dir: Path) -> list[RunResult]:
    """What execute_job leaves: a run with its notebook and HTML, and a run whose
    worker died before it wrote anything."""
    notebook = batch_dir / "experiments" / "exp-001.ipynb"
    notebook.parent.mkdir(parents=True)
    notebook.write_text("{}")
    notebook.with_suffix(".html").write_text("<!DOCTYPE html>")
    return [
        RunResult("exp-001", "ok", 1.5, "", notebook, notebook.with_suffix(".html")),
        RunResult("exp-002", "failed", 0.0, "BrokenProcessPool: ", None, None),
    ]


BATCH = Path("runs", "PTT analysis", "20250102T030405Z")  # a notebook name with a space


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative-output-dir"])
def test_summary_links_open_the_notebook_in_jupyterlab_and_the_html_beside_it(
    tmp_path, monkeypatch, relative
):
    """The server's root is tmp_path. The HTML's link is relative: it resolves
    against the base JupyterLab's HTML viewer gives the page (the page's files/ URL,
    with an _xsrf query) and in a downloaded copy. The notebook's link opens it in
    JupyterLab. Both open a new tab: the viewer's frame may show no page of the server."""
    monkeypatch.chdir(tmp_path)  # run-notebook -o runs in the server's root
    batch_dir = BATCH if relative else tmp_path / BATCH
    results = two_runs(batch_dir)
    lab = LabServer("/jupyter/user/alice/", tmp_path)

    summary = write_summary(results, batch_dir, "t", lab)

    rows = list(csv.DictReader(summary.csv.open()))
    assert [(r["notebook"], r["html"]) for r in rows] == [
        ("experiments/exp-001.ipynb", "experiments/exp-001.html"),
        ("", ""),
    ]
    page = summary.html.read_text()
    (notebook_href, notebook_target), (html_href, html_target) = anchors(page)
    assert notebook_href == (
        "/jupyter/user/alice/lab/tree/runs/PTT%20analysis/20250102T030405Z/experiments/exp-001.ipynb"
    )
    assert (
        tmp_path / unquote(notebook_href.removeprefix("/jupyter/user/alice/lab/tree/"))
    ).is_file()
    assert html_href == "experiments/exp-001.html"
    viewer_base = (
        "https://localhost:8443/jupyter/user/alice/files/runs/PTT%20analysis/20250102T030405Z/"
        "summary.html?_xsrf=2%7Cabc"
    )
    assert urljoin(viewer_base, html_href) == (
        "https://localhost:8443/jupyter/user/alice/files/runs/PTT%20analysis/20250102T030405Z/"
        "experiments/exp-001.html"
    )
    assert (tmp_path / BATCH / unquote(html_href)).is_file()  # a downloaded copy
    assert notebook_target == html_target == "_blank"
    # what to do in JupyterLab (trust it, or open summary.ipynb), and same-tab links
    # when the page is not in a frame
    assert "<b>Trust HTML</b>" in page and "<code>experiments/</code>" in page
    assert "<code>summary.ipynb</code>" in page and summary.notebook.is_file()
    assert page.count(SAME_TAB_SCRIPT) == 1


@pytest.mark.parametrize(
    "lab",
    [None, LabServer("/jupyter/user/alice/", Path("/elsewhere"))],
    ids=["outside-jupyterhub", "batch-outside-the-server-root"],
)
def test_summary_links_are_relative_when_jupyterlab_cannot_open_the_notebook(tmp_path, lab):
    results = two_runs(tmp_path / BATCH)
    links = anchors(write_summary(results, tmp_path / BATCH, "t", lab).html.read_text())
    assert links == [
        ("experiments/exp-001.ipynb", "_blank"),
        ("experiments/exp-001.html", "_blank"),
    ]
    assert all((tmp_path / BATCH / href).is_file() for href, _ in links)


# -- a real batch: 3 experiments, 2 workers, one deliberate failure -----------------


@pytest.mark.slow
def test_batch_runs_all_reports_failure_and_summarises(
    capsys, tiny, tmp_path, seed_data, monkeypatch, read_summary_notebook
):
    # run in a JupyterLab terminal of alice's server, whose root is tmp_path
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/jupyter/user/alice/")
    monkeypatch.setenv("JUPYTERHUB_ROOT_DIR", str(tmp_path))
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
    # stdout is the batch folder only; stderr names the summary to open
    assert out.strip() == str(batch)
    assert (
        f"summary: {batch}/summary.ipynb (open it in JupyterLab), also {batch}/summary.csv "
        f"and {batch}/summary.html"
    ) in err

    # the summary at the top, each experiment's files in experiments/
    assert sorted(p.name for p in batch.iterdir()) == [
        "experiments",
        "summary.csv",
        "summary.html",
        "summary.ipynb",
    ]
    # (and each kernel's stderr in <experiment>.log when it wrote any)
    assert {p.name for p in (batch / "experiments").iterdir()} - {f"{e}.log" for e in exps} == {
        f"{exp}.{ext}" for exp in exps for ext in ("html", "ipynb")
    }
    for exp in exps:
        html = (batch / "experiments" / f"{exp}.html").read_text()
        assert html.startswith("<!DOCTYPE html>") and exp in html
    executed = nbformat.read(batch / "experiments" / "exp-003.ipynb", as_version=4)
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
    assert failed["n_events"] == "" and failed["notebook"] == "experiments/exp-002.ipynb"
    assert failed["html"] == "experiments/exp-002.html"
    summary_html = (batch / "summary.html").read_text()
    assert summary_html.count('<tr class="failed">') == 1
    assert summary_html.count('<tr class="ok">') == 2
    assert "2 of 3 runs succeeded" in summary_html
    # notebooks open in alice's JupyterLab, the HTML by a relative link, in new tabs
    lab_tree = f"/jupyter/user/alice/lab/tree/runs/tiny/{batch.name}/experiments"
    assert anchors(summary_html) == [
        (href, "_blank")
        for exp in exps
        for href in (f"{lab_tree}/{exp}.ipynb", f"experiments/{exp}.html")
    ]

    # summary.ipynb: the same runs and values; relative links, which JupyterLab opens
    summary = read_summary_notebook(batch)  # validated with nbformat
    assert summary.notebook.metadata["testbed"] == {"generated_by": "run-notebook"}
    assert summary.markdown.headings == [f"tiny.ipynb: {batch.name}"]
    started = dt.datetime.strptime(batch.name, "%Y%m%dT%H%M%SZ")  # the folder's UTC time
    assert f"started {started:%Y-%m-%d %H:%M:%S} UTC" in summary.notebook.cells[0].source
    table = summary.markdown.table
    assert [row["experiment"].text for row in table] == exps
    assert [row["status"].text for row in table] == ["ok", "failed", "ok"]
    for row in table:
        exp = row["experiment"].text
        assert row["scaled"].text == by_exp[exp]["scaled"]
        assert row["experiment"].hrefs == row["notebook"].hrefs == [f"experiments/{exp}.ipynb"]
        assert row["html"].hrefs == [f"experiments/{exp}.html"]
        assert all((batch / href).is_file() for href in row["notebook"].hrefs + row["html"].hrefs)
    assert table[1]["error"].text.startswith("RuntimeError: deliberate failure on exp-002")


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


# -- default --jobs: the container's CPU quota and memory limit ----------------------

GiB = 1024**3
V1_NO_LIMIT = "9223372036854771712"  # what cgroup v1 shows for "no memory limit"


@pytest.mark.parametrize(
    ("files", "jobs", "source"),
    [
        pytest.param(
            {"cpu.max": "100000 100000", "memory.max": str(2 * GiB)},
            1,
            "the CPU quota of this container (1 CPU)",
            id="v2-one-cpu-2GiB",
        ),
        pytest.param(
            {"cpu.max": "max 100000", "memory.max": "max"},
            16,
            "the 16 CPUs this process may use",
            id="v2-unlimited",
        ),
        pytest.param(
            {"cpu.max": "150000 100000"},
            1,
            "the CPU quota of this container (1.5 CPUs)",
            id="v2-fractional",
        ),
        pytest.param(
            {"cpu.max": "50000 100000"},
            1,
            "the CPU quota of this container (0.5 CPUs)",
            id="v2-half-cpu",
        ),
        pytest.param(
            {"cpu.max": "max 100000", "memory.max": str(2 * GiB)},
            5,  # 2048 MiB // 400 MiB
            "the memory limit of this container (2048 MiB at 400 MiB per run)",
            id="v2-memory-bound",
        ),
        pytest.param(
            {"cpu.max": "800000 100000", "memory.max": str(256 * 1024**2)},
            1,
            "the memory limit of this container (256 MiB",
            id="v2-memory-below-one-run",
        ),
        pytest.param(
            {
                "cpu/cpu.cfs_quota_us": "200000",
                "cpu/cpu.cfs_period_us": "100000",
                "memory/memory.limit_in_bytes": V1_NO_LIMIT,
            },
            2,
            "the CPU quota of this container (2 CPUs)",
            id="v1-two-cpus",
        ),
        pytest.param(
            {
                "cpu/cpu.cfs_quota_us": "-1",
                "cpu/cpu.cfs_period_us": "100000",
                "memory/memory.limit_in_bytes": V1_NO_LIMIT,
            },
            16,
            "the 16 CPUs this process may use",
            id="v1-unlimited",
        ),
        pytest.param(
            {
                "cpu/cpu.cfs_quota_us": "-1",
                "cpu/cpu.cfs_period_us": "100000",
                "memory/memory.limit_in_bytes": str(GiB),
            },
            2,
            "the memory limit of this container (1024 MiB",
            id="v1-memory-bound",
        ),
        pytest.param({}, 16, "the 16 CPUs this process may use", id="no-cgroup-files"),
        pytest.param(
            {"cpu.max": "100000 100000\n"},
            1,
            "the CPU quota",
            id="v2-trailing-newline",
        ),
    ],
)
def test_default_jobs_from_cgroup_limits(tmp_path, files, jobs, source):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    got = jobs_from_limits(tmp_path, cpus=16)
    assert (got.jobs, got.notes) == (jobs, ())
    assert got.source.startswith(source), got.source


@pytest.mark.parametrize(
    ("files", "notes"),
    [
        pytest.param({"cpu.max": "lots", "memory.max": "2G"}, 2, id="v2-words"),
        pytest.param({"cpu.max": "", "memory.max": "-5"}, 2, id="v2-empty-negative"),
        pytest.param({"cpu.max": "100000 0"}, 1, id="v2-zero-period"),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "abc", "cpu/cpu.cfs_period_us": "100000"}, 1, id="v1-quota"
        ),
        pytest.param({"memory/memory.limit_in_bytes": "\x00\x01"}, 1, id="v1-memory"),
    ],
)
def test_unreadable_cgroup_files_fall_back_to_the_cpu_count(tmp_path, files, notes):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    got = jobs_from_limits(tmp_path, cpus=3)
    assert (got.jobs, got.source) == (3, "the 3 CPUs this process may use")
    assert len(got.notes) == notes and all(str(tmp_path) in n for n in got.notes), got.notes


def test_default_jobs_bounds_by_host_memory_and_enclosing_cgroups(tmp_path):
    # no cgroup limit: the machine's memory still bounds the kernels
    got = jobs_from_limits(tmp_path, cpus=16, host_memory=2 * GiB)
    assert (got.jobs, got.source) == (5, "the memory of this machine (2048 MiB at 400 MiB per run)")
    # the host's cgroup namespace: the limit is on this process's cgroup or a parent
    scope = tmp_path / "system.slice" / "docker-abc.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.max").write_text("max 100000")
    (tmp_path / "system.slice" / "cpu.max").write_text("200000 100000")
    own = parse_proc_cgroup("0::/system.slice/docker-abc.scope\n")
    assert own == {"": "/system.slice/docker-abc.scope"}
    assert jobs_from_limits(tmp_path, cpus=16, own=own).jobs == 2
    assert jobs_from_limits(tmp_path, cpus=16).jobs == 16  # the root has no limit
    v1 = parse_proc_cgroup("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    assert v1 == {"memory": "/docker/abc", "cpu": "/docker/abc", "cpuacct": "/docker/abc", "": "/"}


def help_text(parser) -> str:
    return " ".join(parser.format_help().split())  # argparse wraps to the terminal


def test_help_shows_the_default_jobs_and_where_it_comes_from(tmp_path, capsys, monkeypatch):
    (tmp_path / "cpu.max").write_text("100000 100000")
    (tmp_path / "memory.max").write_text(str(2 * GiB))
    text = help_text(build_parser(jobs_from_limits(tmp_path, cpus=16)))
    assert "default: 1, from the CPU quota of this container (1 CPU)" in text
    assert "up to 3 kernels" in text
    (tmp_path / "cpu.max").write_text("100%")  # a note with a % must not break argparse
    text = help_text(build_parser(jobs_from_limits(tmp_path, cpus=16)))
    assert "default: 5, from the memory limit of this container" in text
    assert "cpu.max holds '100%'" in text
    # run-notebook --help asks this process's limits
    monkeypatch.setattr(
        "testbed.batch.cli.default_jobs", lambda: DefaultJobs(7, "the limits of a test")
    )
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "default: 7, from the limits of a test" in " ".join(capsys.readouterr().out.split())


# -- a kernel that loses the port race is started again; notebook errors are not ---------


def zmq_in_use() -> zmq.ZMQError:
    err = zmq.ZMQError(errno.EADDRINUSE)
    err.strerror += " (addr='tcp://127.0.0.1:5555')"
    return err


KERNEL_STDERR = (
    '  File ".../ipykernel/kernelapp.py", line 373, in init_sockets\n'
    "zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:5555')\n"
)


def chained_zmq() -> RuntimeError:
    try:
        raise zmq_in_use()
    except zmq.ZMQError as exc:
        try:
            raise RuntimeError("could not start") from exc
        except RuntimeError as outer:
            return outer


@pytest.mark.parametrize(
    ("exc", "stderr", "clash"),
    [
        pytest.param(RuntimeError(KERNEL_DIED_AT_START), KERNEL_STDERR, True, id="kernel-died"),
        pytest.param(RuntimeError(KERNEL_DIED_AT_START), "ImportError: x\n", False, id="other"),
        pytest.param(zmq_in_use(), "", True, id="zmq-here"),
        pytest.param(chained_zmq(), "", True, id="zmq-chained"),
        pytest.param(zmq.ZMQError(errno.ECONNREFUSED), KERNEL_STDERR, False, id="zmq-other"),
        pytest.param(DeadKernelError("Kernel died"), KERNEL_STDERR, False, id="died-later"),
        pytest.param(
            RuntimeError("Kernel didn't respond in 60 seconds"), KERNEL_STDERR, False, id="slow"
        ),
        pytest.param(
            PapermillExecutionError(
                2, 2, "bind()", "ZMQError", "Address already in use", ["ZMQError: ..."]
            ),
            KERNEL_STDERR,
            False,
            id="notebook-code",
        ),
    ],
)
def test_port_clash_is_recognised_only_at_kernel_start(exc, stderr, clash):
    assert is_kernel_port_clash(exc, stderr) is clash


@pytest.mark.parametrize(
    ("exc", "stderr", "retried"),
    [
        pytest.param(RuntimeError(KERNEL_DIED_AT_START), KERNEL_STDERR, True, id="port-clash"),
        pytest.param(RuntimeError("Kernel didn't respond in 60 seconds"), "", True, id="no-answer"),
        pytest.param(RuntimeError(KERNEL_DIED_AT_START), "ImportError: x\n", False, id="dies"),
        pytest.param(DeadKernelError("Kernel died"), KERNEL_STDERR, False, id="died-later"),
        pytest.param(
            RuntimeError("Kernel didn't respond in 60 seconds, and then some"),
            "",
            False,
            id="other-words",
        ),
        pytest.param(
            PapermillExecutionError(
                1, 1, "x", "RuntimeError", "Kernel didn't respond in 60 seconds", ["..."]
            ),
            "",
            False,
            id="notebook-code",
        ),
    ],
)
def test_a_kernel_start_failure_is_told_from_other_failures(exc, stderr, retried):
    assert (kernel_start_failure(exc, stderr) is not None) is retried


def test_a_run_whose_folder_cannot_be_made_fails_alone(tmp_path):
    nb = write_notebook(tmp_path / "n.ipynb", 'experiment_id = "exp-001"', "x = 1")
    plan = plan_batch(nb, experiments=["exp-001"], jobs=1, output_dir=tmp_path / "runs")
    (tmp_path / "experiments").write_text("a file where the runs' folder goes")
    result = runner.execute_job(plan.jobs_for(tmp_path)[0])
    assert (result.status, result.notebook, result.html) == ("failed", None, None)
    assert result.error.startswith(f"cannot create {tmp_path / 'experiments'}: ")


def test_a_kernel_that_does_not_answer_at_start_is_replaced(tmp_path, monkeypatch):
    """jupyter_client's "Kernel didn't respond in 60 seconds" at start: the next kernel
    runs the notebook, the summary counts two kernels and the log says why."""
    import papermill

    real = papermill.execute_notebook
    calls = []

    def first_does_not_answer(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", first_does_not_answer)
    monkeypatch.setattr(runner, "RETRY_DELAY_S", (0.01, 0.02))
    nb = write_notebook(tmp_path / "n.ipynb", 'experiment_id = "exp-001"', "x = 1")
    plan = plan_batch(nb, experiments=["exp-001"], jobs=1, output_dir=tmp_path / "runs")
    result = runner.execute_job(plan.jobs_for(tmp_path)[0])
    assert (result.status, result.attempts, result.error) == ("ok", 2, "")
    log = (tmp_path / "experiments/exp-001.log").read_text()
    assert "run-notebook: kernel 1 of 3 did not answer at start (Kernel didn't respond" in log


RACY_BODY = """
import errno, sys
import zmq
from testbed import record
if experiment_id == fail_on:
    # the notebook's own code fails with the very words of a port clash: not retried
    print("zmq.error.ZMQError: Address already in use", file=sys.__stderr__, flush=True)
    raise zmq.ZMQError(errno.EADDRINUSE)
record("ran", experiment_id)
"""


@pytest.fixture()
def port_taken(monkeypatch):
    """Hand the next kernel(s) a port another process already listens on.

    jupyter_client picks kernel ports with LocalPortCache.find_available_port; the
    real ipykernel then fails to bind it and exits, as when a parallel kernel wins
    the race. ``state["clashes"]`` says how many kernels get the taken port.
    """
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    state = {"port": held.getsockname()[1], "clashes": 1, "handed_out": 0}
    real = LocalPortCache.find_available_port

    def find_available_port(self, ip):
        if state["handed_out"] < state["clashes"]:
            state["handed_out"] += 1
            return state["port"]  # the shell port: the kernel dies binding it
        return real(self, ip)

    monkeypatch.setattr(LocalPortCache, "find_available_port", find_available_port)
    monkeypatch.setattr(runner, "RETRY_DELAY_S", (0.01, 0.05))
    yield state
    held.close()


def in_process_pool(max_workers, mp_context=None):
    """One worker thread instead of spawned processes: the patched port cache applies."""
    return cf.ThreadPoolExecutor(max_workers=1)


@pytest.mark.slow
def test_kernel_port_clash_is_retried_and_notebook_errors_are_not(
    capsys, tmp_path, monkeypatch, port_taken
):
    racy = write_notebook(
        tmp_path / "racy.ipynb", 'experiment_id = "exp-001"\nfail_on = ""', RACY_BODY
    )
    monkeypatch.setattr(runner.cf, "ProcessPoolExecutor", in_process_pool)
    one = DefaultJobs(1, "the CPU quota of this container (1 CPU)")
    monkeypatch.setattr(runner, "default_jobs", lambda: one)
    monkeypatch.setattr("testbed.batch.cli.default_jobs", lambda: one)
    code, out, err = run_cli(
        capsys,
        racy,
        "-e",
        "exp-001",
        "exp-002",
        "-p",
        "fail_on",
        "exp-002",
        "-o",
        tmp_path / "runs",
        "--progress",
        "lines",
    )
    assert code == 1, err
    assert port_taken["handed_out"] == 1  # exactly one kernel got the taken port
    assert "1 at a time (default --jobs 1, from the CPU quota of this container" in err
    assert "1 ok, 1 failed in" in err and f"; 1 {RETRIED_TEXT}; summary:" in err
    assert "exp-001 ok in" in err and "(kernel 2: the earlier ones failed to start)" in err

    batch = Path(out.strip().splitlines()[-1])
    rows = {r["experiment"]: r for r in csv.DictReader((batch / "summary.csv").open())}
    assert (rows["exp-001"]["status"], rows["exp-001"]["attempts"]) == ("ok", "2")
    assert rows["exp-001"]["error"] == "" and rows["exp-001"]["ran"] == "exp-001"
    assert (rows["exp-002"]["status"], rows["exp-002"]["attempts"]) == ("failed", "1")
    assert rows["exp-002"]["error"].startswith("ZMQError: Address already in use")
    # the kernel's stderr even holds the words of a clash: the cell failed, not the start
    assert "Address already in use" in (batch / "experiments/exp-002.log").read_text()
    log = (batch / "experiments/exp-001.log").read_text()
    assert f"Address already in use (addr='tcp://127.0.0.1:{port_taken['port']}')" in log
    assert "run-notebook: kernel 1 of 3 could not bind a port" in log
    assert f"1 of 2 runs succeeded; 1 {RETRIED_TEXT}." in (batch / "summary.html").read_text()


@pytest.mark.slow
def test_kernel_port_clash_is_retried_a_bounded_number_of_times(tmp_path, port_taken):
    port_taken["clashes"] = 99
    nb = write_notebook(tmp_path / "n.ipynb", 'experiment_id = "exp-001"', "x = 1")
    plan = plan_batch(nb, experiments=["exp-001"], jobs=1, output_dir=tmp_path / "runs")
    job = plan.jobs_for(tmp_path)[0]
    result = runner.execute_job(job)
    assert (result.status, result.attempts) == ("failed", runner.KERNEL_START_ATTEMPTS)
    log = (tmp_path / "experiments/exp-001.log").read_text()
    assert log.count("zmq.error.ZMQError: Address already in use") == 3  # one per kernel
    assert "a port it was given was already in use, 3 times in a row" in result.error
    assert "(experiments/exp-001.log has the kernel's error)" in result.error
