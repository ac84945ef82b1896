"""The batch benchmark's timings, taken inside the notebook image.

Not imported by the control node: ``python -m testbed_devtools.bench`` sends
this file on the standard input of a fresh notebook-image container
(``docker run -i ... python - NOTEBOOK --experiment ... --jobs N``), so bench
code never ships in the image. It imports only what the image has: the
``testbed.batch`` runner (for the same input checks as ``run-notebook``),
nbformat, jupyter_client and the ``papermill`` / ``run-notebook`` commands.

One invocation measures, on the same notebook and experiments:

1. per-run overhead (first, so it also warms the disk cache for both arms):
   starting and stopping a kernel with jupyter_client (start, wait until ready,
   shut down; 3 samples) and one ``papermill`` CLI run of a notebook holding
   only a parameters cell (3 samples);
2. baseline: a shell-style sequential loop, one ``papermill IN OUT -r
   experiment_id ID`` process per experiment, timed as a whole;
3. candidate: one ``run-notebook NOTEBOOK --experiment ... --jobs N`` process,
   timed as a whole (it also exports each run to HTML and writes the summary,
   work the baseline does not do);
4. our own runner without parallelism: the same ``run-notebook`` command with
   ``--jobs`` of ``--runner-baseline-jobs`` (1), so ``--jobs N`` vs ``--jobs 1``
   is measured in the same run (skipped when N is that number already).

The experiment id goes to the same parameter the batch command sets
(``experiment_id``), as a raw string (``-r``) so an id such as ``001`` stays the
string the batch command passes rather than becoming the number 1.

Prints the raw timings in seconds as one JSON object on the last line of
stdout (progress goes to stderr); the speed-up, the medians and the verdict
against the target are computed on the control node (``testbed_devtools.stats``).
Exit status: 0 both arms ran every experiment successfully, 1 some run failed,
2 bad input (nothing was run).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from testbed.batch.cli import add_experiment_option
from testbed.batch.notebook import NotebookError, inspect_notebook
from testbed.batch.runner import EXPERIMENT_PARAM, BatchError, BatchPlan, plan_batch, safe_name
from testbed.errors import TestbedError

PROG = "batch-bench"
OVERHEAD_SAMPLES = 3
KERNEL_READY_TIMEOUT_S = 60.0
RUNNER_BASELINE_ARM = "runner-baseline"


class BenchInputError(Exception):
    """The benchmark cannot start; ``problems`` says what is wrong and what to do."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class Failure:
    arm: str  # "sequential", "batch", "runner-baseline" or "overhead"
    experiment: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"arm": self.arm, "experiment": self.experiment, "error": self.error}


@dataclass(frozen=True)
class Tools:
    papermill: tuple[str, ...]
    run_notebook: tuple[str, ...]


# -- validation ------------------------------------------------------------------------


def _console_script(name: str) -> str | None:
    """``name`` next to this interpreter (same environment) or else on PATH."""
    sibling = Path(sys.executable).parent / name
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which(name)


def find_tools() -> tuple[Tools | None, list[str]]:
    problems = []
    papermill = _console_script("papermill")
    if papermill is None:
        problems.append(
            "the papermill CLI is not installed in this environment: run the benchmark in "
            "the notebook image, or install the testbed-notebook distribution"
        )
    try:
        import jupyter_client  # noqa: F401
    except ImportError:
        problems.append(
            "jupyter_client is not installed: run the benchmark in the notebook image, "
            "or install the testbed-notebook distribution"
        )
    run_notebook = _console_script("run-notebook")
    runner = (run_notebook,) if run_notebook else (sys.executable, "-m", "testbed.batch.cli")
    if papermill is None:
        return None, problems
    return Tools((papermill,), runner), problems


def validate(
    notebook: str, experiments: Sequence[str], jobs: int, workdir: str | None
) -> tuple[BatchPlan, Tools]:
    """Check everything before any run; raise :class:`BenchInputError` listing the problems."""
    problems: list[str] = []
    if not experiments:
        problems.append(
            "no experiments given: name them with --experiment ID (repeatable), e.g. "
            "--experiment exp-001 exp-002 ...; the issue's benchmark uses 20"
        )
    if workdir is not None:
        wd = Path(workdir)
        if wd.exists() and not wd.is_dir():
            problems.append(f"--workdir {wd} exists and is not a directory; choose another")
    tools, tool_problems = find_tools()
    problems += tool_problems
    if problems:
        # do not consult the database when the request is already wrong; still check the
        # notebook so every problem of the command line shows up at once
        if jobs < 1:
            problems.append(f"--jobs must be at least 1, got {jobs}")
        try:
            inspect_notebook(notebook)
        except NotebookError as exc:
            problems.insert(0, str(exc))
        raise BenchInputError(problems)
    assert tools is not None
    base = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
    try:
        plan = plan_batch(
            notebook,
            experiments=list(experiments),
            jobs=jobs,
            output_dir=base / "batch",
        )
    except BatchError as exc:  # the batch output directory is --workdir's batch/ here
        problems = [p.replace("--output-dir", "--workdir") for p in exc.problems]
        raise BenchInputError(problems) from None
    except TestbedError as exc:
        raise BenchInputError([str(exc)]) from None
    return plan, tools


# -- measurements ----------------------------------------------------------------------


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


def papermill_command(
    tools: Tools, plan: BatchPlan, source: Path, output: Path, experiment: str
) -> list[str]:
    return [
        *tools.papermill,
        str(source),
        str(output),
        "-r",
        plan.experiment_param,
        experiment,
        "-k",
        plan.kernel_name,
        "--cwd",
        str(plan.notebook.parent),
        "--no-progress-bar",
    ]


def run_sequential(
    plan: BatchPlan, tools: Tools, workdir: Path, log: Callable[[str], None]
) -> tuple[float, list[Failure]]:
    """The baseline: one papermill CLI process per experiment, one after the other."""
    out = workdir / "sequential"
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    total = len(plan.experiments)
    start = time.perf_counter()
    for i, exp in enumerate(plan.experiments, start=1):
        name = safe_name(exp)
        cmd = papermill_command(tools, plan, plan.notebook, out / f"{name}.ipynb", exp)
        t0 = time.perf_counter()
        with (out / f"{name}.log").open("wb") as fh:
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh).returncode
        status = "ok" if code == 0 else f"failed (exit {code})"
        log(f"sequential [{i}/{total}] {exp} {status} in {time.perf_counter() - t0:.1f} s")
        if code != 0:
            error = _last_line(out / f"{name}.log") or f"papermill exited {code}"
            failures.append(Failure("sequential", exp, error))
    return time.perf_counter() - start, failures


def run_batch_arm(
    plan: BatchPlan,
    tools: Tools,
    jobs: int,
    workdir: Path,
    log: Callable[[str], None],
    arm: str = "batch",
) -> tuple[float, list[Failure]]:
    """One run-notebook process over every experiment with ``--jobs``: the candidate
    (``arm`` "batch"), or our own runner's baseline (another ``arm``, its own folder)."""
    out = workdir / arm
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        *tools.run_notebook,
        str(plan.notebook),
        *(f"--experiment={exp}" for exp in plan.experiments),
        "--jobs",
        str(jobs),
        "--output-dir",
        str(out),
        "--kernel",
        plan.kernel_name,
        "--progress",
        "lines",
    ]
    if plan.experiment_param != EXPERIMENT_PARAM:
        cmd += ["--experiment-param", plan.experiment_param]
    log_path = workdir / f"{arm}.log"
    log(f"{arm}: run-notebook on {len(plan.experiments)} experiment(s) with --jobs {jobs}")
    start = time.perf_counter()
    with log_path.open("wb") as fh:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=fh, text=True
        )
    elapsed = time.perf_counter() - start
    log(f"{arm}: exit {proc.returncode} in {elapsed:.1f} s")
    lines = proc.stdout.strip().splitlines()
    summary = Path(lines[-1]) / "summary.csv" if lines else None
    if proc.returncode == 0:
        return elapsed, []
    if proc.returncode == 1 and summary is not None and summary.is_file():
        with summary.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        failures = [
            Failure(arm, row["experiment"], row["error"] or row["status"])
            for row in rows
            if row["status"] != "ok"
        ]
        if failures:
            return elapsed, failures
    error = _last_line(log_path) or "no output"
    return elapsed, [
        Failure(arm, exp, f"run-notebook exited {proc.returncode}: {error}")
        for exp in plan.experiments
    ]


def kernel_start_stop(kernel_name: str, cwd: Path) -> float:
    """Seconds to start a kernel, wait until it answers, and shut it down."""
    from jupyter_client import KernelManager

    start = time.perf_counter()
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=KERNEL_READY_TIMEOUT_S)
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel()
    return time.perf_counter() - start


def write_empty_notebook(path: Path, plan: BatchPlan) -> Path:
    cell = nbformat.v4.new_code_cell(
        f'{plan.experiment_param} = ""', metadata={"tags": ["parameters"]}
    )
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {
        "name": plan.kernel_name,
        "language": "python",
        "display_name": plan.kernel_name,
    }
    nbformat.write(nb, path)
    return path


def measure_overhead(
    plan: BatchPlan, tools: Tools, workdir: Path, log: Callable[[str], None]
) -> tuple[list[float], list[float], list[Failure]]:
    """Samples of a kernel start+stop and of a papermill CLI run of an empty notebook.

    A failed sample stops that probe: its list is then shorter than ``OVERHEAD_SAMPLES``.
    """
    out = workdir / "overhead"
    out.mkdir(parents=True, exist_ok=True)
    failures: list[Failure] = []
    kernel: list[float] = []
    for i in range(OVERHEAD_SAMPLES):
        try:
            kernel.append(kernel_start_stop(plan.kernel_name, plan.notebook.parent))
        except Exception as exc:  # noqa: BLE001 - reported as a failed probe, not a crash
            failures.append(Failure("overhead", f"kernel-start-{i + 1}", f"{exc!r}"[:300]))
            break
    log(f"overhead: kernel start+stop {', '.join(f'{s:.2f}' for s in kernel)} s")

    empty = write_empty_notebook(out / "empty.ipynb", plan)
    runs: list[float] = []
    for i in range(OVERHEAD_SAMPLES):
        log_path = out / f"empty-{i + 1}.log"
        cmd = papermill_command(
            tools, plan, empty, out / f"empty-{i + 1}.out.ipynb", plan.experiments[0]
        )
        t0 = time.perf_counter()
        with log_path.open("wb") as fh:
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh).returncode
        if code != 0:
            error = _last_line(log_path) or f"papermill exited {code}"
            failures.append(Failure("overhead", f"empty-run-{i + 1}", error))
            break
        runs.append(time.perf_counter() - t0)
    log(f"overhead: empty papermill run {', '.join(f'{s:.2f}' for s in runs)} s")
    return kernel, runs, failures


# -- command line ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Time run-notebook --jobs N against a sequential loop of the papermill "
        "CLI over the same experiments, and the per-run overhead (kernel start, empty run).",
        epilog="Exit status: 0 every run of both arms succeeded, 1 some run failed, "
        "2 bad input (nothing ran). The last line of stdout is the raw timings as JSON.",
    )
    parser.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to run")
    add_experiment_option(parser, default=[])
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        help=f"run-notebook --jobs (default: cores, {os.cpu_count()})",
    )
    parser.add_argument(
        "--runner-baseline-jobs",
        type=int,
        default=1,
        metavar="N",
        help="also time run-notebook with --jobs N, our own runner's baseline "
        "(default: %(default)s; skipped when --jobs is N)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        default=None,
        help="keep executed notebooks and logs here (default: a temporary directory, "
        "removed unless a run failed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = sys.stderr
    experiments = list(dict.fromkeys(args.experiments))
    try:
        if args.runner_baseline_jobs < 1:
            raise BenchInputError(
                [f"--runner-baseline-jobs must be at least 1, got {args.runner_baseline_jobs}"]
            )
        plan, tools = validate(args.notebook, experiments, args.jobs, args.workdir)
    except BenchInputError as exc:
        print(f"{PROG}: nothing was run:\n{exc}", file=err)
        return 2

    def log(line: str) -> None:
        print(f"{PROG}: {line}", file=err, flush=True)

    keep = args.workdir is not None
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="batch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"{plan.notebook.name} on {len(plan.experiments)} experiment(s); files in {workdir}")
    log(f"baseline: {' '.join(tools.papermill)}; candidate: {' '.join(tools.run_notebook)}")

    kernel_s, empty_s, failures = measure_overhead(plan, tools, workdir, log)
    sequential_s, seq_failures = run_sequential(plan, tools, workdir, log)
    batch_s, batch_failures = run_batch_arm(plan, tools, args.jobs, workdir, log)
    failures += seq_failures + batch_failures
    runner_baseline_s: float | None = None
    if args.runner_baseline_jobs != args.jobs:
        runner_baseline_s, base_failures = run_batch_arm(
            plan, tools, args.runner_baseline_jobs, workdir, log, arm=RUNNER_BASELINE_ARM
        )
        failures += base_failures

    if failures and not keep:
        log(f"some runs failed; their notebooks and logs stay in {workdir}")
    elif not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    raw = {
        "notebook": str(plan.notebook),
        "experiments": len(plan.experiments),
        "jobs": args.jobs,
        "cores": os.cpu_count(),
        "overhead_samples": OVERHEAD_SAMPLES,
        "kernel_start_s": [round(s, 4) for s in kernel_s],
        "empty_run_s": [round(s, 4) for s in empty_s],
        "sequential_s": round(sequential_s, 4),
        "batch_s": round(batch_s, 4),
        "runner_baseline_jobs": args.runner_baseline_jobs,
        "runner_baseline_s": None if runner_baseline_s is None else round(runner_baseline_s, 4),
        "failed_runs": [f.as_dict() for f in failures],
    }
    print(json.dumps(raw), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
