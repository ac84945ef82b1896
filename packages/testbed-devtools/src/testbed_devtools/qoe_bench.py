"""The NIST QoE benchmark's timings, taken inside the notebook image (issue 15).

Not imported by the control node to measure: ``python -m testbed_devtools.bench``
sends this file on the standard input of a fresh notebook-image container
(``docker run -i ... python - m2e exp-001`` or ``python - notebook NOTEBOOK --jobs N``),
as it sends :mod:`testbed_devtools.batch_bench`, so bench code never ships in the
image. At its top it imports only the standard library: what it times imports the
rest.

``m2e EXPERIMENT``
    ``from testbed import qoe`` (``import_s``), then ``qoe.m2e(EXPERIMENT)`` twice:
    ``first_call_s`` imports NIST's evaluation modules (``mcvqoe``, pandas) on the
    way, ``second_call_s`` does not. ``first_s`` is import + first call: what a
    fresh kernel's cell ``qoe.m2e(...)`` costs.
``notebook NOTEBOOK --jobs N``
    ``run-notebook NOTEBOOK --all --jobs N`` into a temporary folder (removed
    afterwards), timed as a whole; the rows of its ``summary.csv`` with the M2E
    records (``m2e_measured_ms``, ``m2e_truth_ms``, ``n_trials``) beside each run's
    status.

Prints the raw figures as one JSON object on the last line of stdout; the verdicts
against the targets are the control node's (``testbed_devtools.stats``). Exit
status: 0 measured (a failed notebook run is a figure: see ``returncode``), 1 the
evaluation raised, 2 bad input.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PROG = "qoe-bench"
#: The M2E notebook's records (files/notebooks/04-mouth-to-ear.ipynb) the bench reads.
RECORDS = ("n_trials", "m2e_measured_ms", "m2e_truth_ms")
CELL_TIMEOUT_S = 600


def m2e_timings(experiment: str) -> dict[str, Any]:
    """Seconds of ``from testbed import qoe`` and of two ``qoe.m2e(experiment)`` calls."""
    t0 = time.perf_counter()
    from testbed import qoe

    t1 = time.perf_counter()
    _, summary = qoe.m2e(experiment)
    t2 = time.perf_counter()
    qoe.m2e(experiment)
    t3 = time.perf_counter()
    row = summary.iloc[0]
    return {
        "experiment": experiment,
        "import_s": round(t1 - t0, 4),
        "first_call_s": round(t2 - t1, 4),
        "first_s": round(t2 - t0, 4),
        "second_call_s": round(t3 - t2, 4),
        "n_trials": int(row["n_trials"]),
        "m2e_mean_ms": float(row["m2e_mean_ms"]),
        "m2e_truth_ms": None if row["m2e_truth_ms"] is None else float(row["m2e_truth_ms"]),
    }


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def summary_rows(lines: Iterable[str]) -> list[dict[str, Any]]:
    """A run-notebook ``summary.csv``: per run its experiment, status, error and the
    M2E records as numbers (None where the run recorded none)."""
    return [
        {
            "experiment": row["experiment"],
            "status": row["status"],
            "error": (row.get("error") or "")[:200],
            **{key: _number(row.get(key)) for key in RECORDS},
        }
        for row in csv.DictReader(lines)
    ]


def run_notebook_all(notebook: str, jobs: int, workdir: Path) -> dict[str, Any]:
    """``run-notebook NOTEBOOK --all --jobs N`` timed; its summary's rows."""
    tool = shutil.which("run-notebook")
    runner = [tool] if tool else [sys.executable, "-m", "testbed.batch.cli"]
    cmd = [
        *runner,
        notebook,
        "--all",
        "--jobs",
        str(jobs),
        "--timeout",
        str(CELL_TIMEOUT_S),
        "--output-dir",
        str(workdir),
        "--progress",
        "lines",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(proc.stderr, file=sys.stderr, end="", flush=True)
    lines = proc.stdout.strip().splitlines()
    summary = Path(lines[-1]) / "summary.csv" if lines else None
    rows: list[dict[str, Any]] = []
    if summary is not None and summary.is_file():
        with summary.open(newline="", encoding="utf-8") as fh:
            rows = summary_rows(fh)
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
    return {
        "notebook": notebook,
        "jobs": jobs,
        "seconds": round(seconds, 3),
        "returncode": proc.returncode,
        "rows": rows,
        "stderr_tail": "\n".join(tail)[-600:],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m2e = sub.add_parser("m2e", help="time testbed.qoe.m2e on one experiment")
    m2e.add_argument("experiment", metavar="EXPERIMENT")
    nb = sub.add_parser("notebook", help="time run-notebook NOTEBOOK --all")
    nb.add_argument("notebook", metavar="NOTEBOOK")
    nb.add_argument("--jobs", "-j", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "m2e":
        raw = m2e_timings(args.experiment)
    else:
        if args.jobs < 1:
            print(f"{PROG}: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
            return 2
        if not Path(args.notebook).is_file():
            problem = f"{args.notebook} does not exist: is the shared volume mounted with it?"
            print(f"{PROG}: {problem}", file=sys.stderr)
            return 2
        workdir = Path(tempfile.mkdtemp(prefix="qoe-bench-"))
        try:
            raw = run_notebook_all(args.notebook, args.jobs, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(raw), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
