"""``run-notebook``: run a notebook over experiments with papermill.

Examples::

    run-notebook ~/nist/share/02-ptt-performance.ipynb --all --jobs 2
    run-notebook analysis.ipynb --experiment exp-001 --experiment exp-002 -p bins 40
    run-notebook analysis.ipynb --query '{"channel.packet_loss_pct": {"$gte": 2}}'

Without ``--jobs`` as many runs go in parallel as the container's CPU quota and
memory limit allow (see ``--help`` for the figure and its source). A run whose
kernel could not bind its ports at start is started again with a new kernel.

Inside the hub it records the batch in the station's audit trail (who ran which
notebook on which experiments, and how it ended: testbed.batch.audit); when the hub
cannot record it, one warning and the runs go on.

Exit status: 0 all runs succeeded, 1 at least one run failed, 2 bad input
(nothing was run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from testbed.batch.audit import BatchAudit
from testbed.batch.runner import (
    KERNEL_START_ATTEMPTS,
    RETRIED_TEXT,
    BatchError,
    DefaultJobs,
    RunResult,
    default_jobs,
    iter_pairs,
    parse_query,
    plan_batch,
    run_batch,
)
from testbed.errors import TestbedError

PROG = "run-notebook"


def add_experiment_option(group, **extra) -> None:
    """``--experiment/-e ID ...`` (repeatable), shared with the batch benchmark."""
    group.add_argument(
        "--experiment",
        "-e",
        metavar="ID",
        action="extend",
        nargs="+",
        dest="experiments",
        help="experiment id(s); repeatable",
        **extra,
    )


def jobs_help(default: DefaultJobs) -> str:
    """``--jobs`` help: the default this container gets and where it comes from."""
    text = (
        f"runs in parallel (default: {default.jobs}, from {default.source}); a run whose "
        f"kernel cannot bind its ports at start gets up to {KERNEL_START_ATTEMPTS} kernels"
    )
    if default.notes:
        text += f" [ignored: {'; '.join(default.notes)}]"
    return text.replace("%", "%%")  # argparse formats help with %


def build_parser(jobs_default: DefaultJobs | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a notebook once per experiment with papermill. In a new batch "
        "folder (printed at the end) it writes the summary of the values each run "
        "recorded with testbed.record(name, value): summary.ipynb (open it in JupyterLab "
        "and click an experiment to open its executed notebook), summary.csv and "
        "summary.html; and in its subfolder experiments/ the executed notebooks and "
        "their HTML.",
        epilog="Exit status: 0 all runs ok, 1 some run failed, 2 bad input (nothing ran).",
    )
    parser.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to run")
    select = parser.add_mutually_exclusive_group(required=True)
    add_experiment_option(select)
    select.add_argument("--all", action="store_true", help="every experiment in the database")
    select.add_argument(
        "--query",
        metavar="JSON",
        help="MongoDB filter on experiments, e.g. '{\"channel.delay_ms\": 40}'",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        dest="parameters",
        help="set a parameter of the notebook's 'parameters' cell (VALUE parsed as JSON when "
        "it can be: 3, 0.5, true, null; otherwise a string); repeatable",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help=jobs_help(jobs_default or default_jobs()),
    )
    parser.add_argument(
        "--output-dir",
        "-o",
        default="runs",
        help="where the batch folder <notebook>/<timestamp>/ goes (default: ./runs)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a single cell may run (default: no limit)",
    )
    parser.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    parser.add_argument(
        "--experiment-param",
        default="experiment_id",
        help="the parameter that receives the experiment id (default: experiment_id)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines"),
        default="auto",
        help="progress bar on a terminal, plain lines otherwise (default: auto)",
    )
    return parser


class Progress:
    """tqdm bar on a terminal, one plain line per finished run otherwise."""

    def __init__(self, total: int, mode: str, stream: TextIO):
        self.stream = stream
        use_bar = mode == "bar" or (mode == "auto" and stream.isatty())
        self.bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", file=stream, dynamic_ncols=True)

    def __call__(self, result: RunResult, done: int, total: int) -> None:
        line = f"[{done}/{total}] {result.experiment} {result.status} in {result.duration_s:.1f} s"
        if result.retried:
            line += f" (kernel {result.attempts}: the earlier ones failed to start)"
        if result.error:
            line += f": {result.error}"
        if self.bar is not None:
            if not result.ok:
                self.bar.write(f"{PROG}: {line}", file=self.stream)
            self.bar.set_postfix_str(result.experiment)
            self.bar.update(1)
        else:
            print(f"{PROG}: {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    try:
        query = parse_query(args.query) if args.query is not None else None
        plan = plan_batch(
            args.notebook,
            experiments=args.experiments,
            all_experiments=args.all,
            query=query,
            parameters=iter_pairs(args.parameters),
            jobs=args.jobs,
            timeout=args.timeout,
            output_dir=args.output_dir,
            kernel_name=args.kernel,
            experiment_param=args.experiment_param,
        )
    except BatchError as exc:
        print(f"{PROG}: nothing was run:\n{exc}", file=err)
        return 2
    except TestbedError as exc:
        print(f"{PROG}: nothing was run: {exc}", file=err)
        return 2

    at_once = f"{min(plan.jobs, len(plan.experiments))} at a time"
    if args.jobs is None:
        at_once += f" (default --jobs {plan.jobs}, from {default_jobs().source})"
    print(
        f"{PROG}: {plan.notebook.name} on {len(plan.experiments)} experiment(s), {at_once}",
        file=err,
        flush=True,
    )
    audit = BatchAudit(stream=err, prog=PROG)  # the station's audit trail, via the hub
    notebook = str(plan.notebook)
    audit.start(plan.experiments, notebook=notebook, jobs=plan.jobs)
    progress = Progress(len(plan.experiments), args.progress, err)
    try:
        outcome = run_batch(plan, progress)
    except BaseException as exc:
        audit.end(plan.experiments, notebook=notebook, error=type(exc).__name__)
        raise
    finally:
        progress.close()
    failed = outcome.failed
    audit.end(
        plan.experiments,
        notebook=notebook,
        ok=len(outcome.results) - len(failed),
        failed=len(failed),
        output=str(outcome.directory),
    )
    print(
        f"{PROG}: {len(outcome.results) - len(failed)} ok, {len(failed)} failed in "
        f"{outcome.duration_s:.1f} s; {len(outcome.retried)} {RETRIED_TEXT}; "
        f"summary: {outcome.summary_notebook} (open it in JupyterLab), also "
        f"{outcome.summary_csv} and {outcome.summary_html}",
        file=err,
    )
    print(outcome.directory)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
