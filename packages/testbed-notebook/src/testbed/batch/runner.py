"""Plan and run a papermill batch: one executed notebook per experiment.

:func:`plan_batch` validates everything (notebook, parameters, experiments,
kernel, output directory) before anything runs and raises :class:`BatchError`
listing every problem. :func:`run_batch` executes the plan in a bounded pool of
worker processes; a failing experiment never stops the others.

The batch directory, ``<output>/<notebook stem>/<UTC timestamp>/``, holds the
summary at its top and one file set per experiment below it::

    summary.ipynb  summary.csv  summary.html   written when the last run ends
    experiments/   <experiment>.ipynb  the executed notebook (written as it runs)
                   <experiment>.html   its HTML export
                   <experiment>.log    the kernel's stderr and the runner's notes on
                                       replaced kernels (only when there are any)

``summary.ipynb`` is the one to open in JupyterLab: its Markdown table links each
run's notebook and HTML, and JupyterLab opens them in its own tabs
(:mod:`testbed.batch.summary_notebook`). ``summary.html`` links them too, for
JupyterLab's HTML viewer once trusted and for a browser (:mod:`testbed.batch.links`).
Batches written before ``experiments/`` existed keep their flat layout. While it runs, a
heartbeat file (:mod:`testbed.activity.batches`) tells the JupyterLab server that
long work is going on, so the idle culler leaves the server, and the batch, alone.

Without ``--jobs`` the pool is sized by :func:`default_jobs` from the container's
CPU quota and memory limit. A run whose kernel dies at start because a port it
was given is already taken (the port race of parallel kernels) is started again
with a new kernel, at most :data:`KERNEL_START_ATTEMPTS` times; a run whose
notebook code fails is never repeated.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import datetime as dt
import difflib
import errno
import functools
import html
import json
import multiprocessing
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import nbformat

from testbed.activity.batches import heartbeat
from testbed.batch.links import SAME_TAB_SCRIPT, LabServer, relative_href
from testbed.batch.notebook import NotebookError, inspect_notebook
from testbed.batch.summary_notebook import markdown_link, summary_notebook
from testbed.errors import TestbedError
from testbed.record import read_records

EXPERIMENT_PARAM = "experiment_id"
#: The batch directory's subfolder of per-experiment files (notebook, HTML, log).
EXPERIMENTS_DIR = "experiments"
FIXED_COLUMNS = [
    "experiment",
    "status",
    "attempts",
    "run_duration_s",
    "error",
    "notebook",
    "html",
]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# -- default parallelism: the container's CPU quota and memory limit ---------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
MiB = 1024**2
# Memory one parallel run needs. Measured with the notebook image's packages: a kernel
# that has imported the testbed helpers, pandas, SciPy and Matplotlib holds about
# 175 MB (RSS) before it reads any data, and the worker process driving it with
# papermill (nbclient, nbconvert for the HTML) about 75 MB. The remaining ~150 MB are
# one experiment's events, recordings (8 kHz), figures and the HTML export. More runs
# than the limit allows at this figure get kernels killed by the out-of-memory
# killer, which papermill reports as "Kernel died" (a failed experiment).
KERNEL_MEMORY_BUDGET = 400 * MiB
# cgroup v1 writes "no limit" as 2**63 - 1 rounded down to a page; no real limit is
# anywhere near 2**62 bytes.
_V1_NO_LIMIT = 2**62


@dataclass(frozen=True)
class DefaultJobs:
    """How many runs go in parallel when ``--jobs`` is not given, and why.

    ``source`` completes "from ...", e.g. "the CPU quota of this container (1 CPU)";
    ``notes`` name cgroup files that exist but could not be understood (ignored).
    """

    jobs: int
    source: str
    notes: tuple[str, ...] = ()


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller: path}; the cgroup v2 path under key ``""``.

    Lines look like ``0::/user.slice/x.scope`` (v2) or ``4:cpu,cpuacct:/docker/<id>``
    (v1, one line per hierarchy).
    """
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _levels(base: Path, own: str) -> list[Path]:
    """``base/own`` and each enclosing cgroup up to ``base`` (their limits apply too).

    Inside a container ``base`` itself is the container's cgroup and the deeper
    paths do not exist; on a host or with the host's cgroup namespace they do.
    """
    parts = [p for p in PurePosixPath(own).parts if p not in ("/", "..", ".")]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read_limit(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None  # no such file at this level or in this cgroup version


def _cpu_quota(root: Path, own: Mapping[str, str], notes: list[str]) -> float | None:
    """CPUs the CFS quota allows (smallest over the levels), None when there is none.

    cgroup v2 ``cpu.max`` holds ``"QUOTA PERIOD"`` in microseconds, ``"max PERIOD"``
    for no quota; cgroup v1 has ``cpu/cpu.cfs_quota_us`` (``-1`` for no quota) and
    ``cpu/cpu.cfs_period_us``.
    """
    quotas: list[float] = []
    for level in _levels(root, own.get("", "/")):
        text = _read_limit(level / "cpu.max")
        if text is None:
            continue
        fields = text.split()
        if fields[:1] == ["max"]:
            continue
        try:
            quota, period = (int(f) for f in fields)
            if quota <= 0 or period <= 0:
                raise ValueError
        except ValueError:
            notes.append(f"{level / 'cpu.max'} holds {text!r}, not 'QUOTA PERIOD'")
            continue
        quotas.append(quota / period)
    for level in _levels(root / "cpu", own.get("cpu", "/")):
        quota_text = _read_limit(level / "cpu.cfs_quota_us")
        period_text = _read_limit(level / "cpu.cfs_period_us")
        if quota_text is None or period_text is None or quota_text == "-1":
            continue
        try:
            quota, period = int(quota_text), int(period_text)
            if quota <= 0 or period <= 0:
                raise ValueError
        except ValueError:
            notes.append(
                f"{level}/cpu.cfs_quota_us and cpu.cfs_period_us hold {quota_text!r} and "
                f"{period_text!r}, not microseconds"
            )
            continue
        quotas.append(quota / period)
    return min(quotas, default=None)


def _memory_limit(root: Path, own: Mapping[str, str], notes: list[str]) -> int | None:
    """Bytes the memory limit allows (smallest over the levels), None when there is none.

    cgroup v2 ``memory.max`` holds bytes or ``"max"``; cgroup v1
    ``memory/memory.limit_in_bytes`` holds bytes, about 2**63 for no limit.
    """
    limits: list[int] = []
    files = [(level / "memory.max", "max") for level in _levels(root, own.get("", "/"))]
    files += [
        (level / "memory.limit_in_bytes", None)
        for level in _levels(root / "memory", own.get("memory", "/"))
    ]
    for path, no_limit in files:
        text = _read_limit(path)
        if text is None or text == no_limit:
            continue
        try:
            limit = int(text)
            if limit <= 0:
                raise ValueError
        except ValueError:
            notes.append(f"{path} holds {text!r}, not a number of bytes")
            continue
        if limit < _V1_NO_LIMIT:
            limits.append(limit)
    return min(limits, default=None)


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def jobs_from_limits(
    cgroup_root: str | Path = CGROUP_ROOT,
    *,
    cpus: int,
    host_memory: int | None = None,
    own: Mapping[str, str] | None = None,
    kernel_memory: int = KERNEL_MEMORY_BUDGET,
) -> DefaultJobs:
    """Parallel runs the limits allow: ``max(1, min(CPU-based, memory-based))``.

    - ``cgroup_root``: where the cgroup file systems are mounted (``/sys/fs/cgroup``):
      v2 files at its top (``cpu.max``, ``memory.max``), v1 under ``cpu/`` and
      ``memory/``; missing files mean no limit, unreadable ones are ignored (noted).
    - ``cpus``: CPUs this process may run on (``len(os.sched_getaffinity(0))``).
    - ``host_memory``: physical memory in bytes, the bound when no cgroup limit is set.
    - ``own``: this process's cgroup per controller (:func:`parse_proc_cgroup`);
      default: the root, as inside a container with its own cgroup namespace.
    - ``kernel_memory``: bytes one run needs (:data:`KERNEL_MEMORY_BUDGET`).

    CPU-based: the CFS quota rounded down (1.5 CPUs -> 1), at most ``cpus``.
    Memory-based: the memory limit (else ``host_memory``) // ``kernel_memory``.
    """
    root, own, notes = Path(cgroup_root), own or {}, []
    quota = _cpu_quota(root, own, notes)
    memory = _memory_limit(root, own, notes)
    # ties go to the first: the container's own limits name the setting to change
    bounds: list[tuple[int, str]] = []
    if quota is not None:
        bounds.append(
            (int(quota), f"the CPU quota of this container ({_plural(round(quota, 2), 'CPU')})")
        )
    per_run = f"{kernel_memory / MiB:g} MiB per run"
    if memory is not None:
        bounds.append(
            (
                memory // kernel_memory,
                f"the memory limit of this container ({memory / MiB:.0f} MiB at {per_run})",
            )
        )
    elif host_memory:
        bounds.append(
            (
                host_memory // kernel_memory,
                f"the memory of this machine ({host_memory / MiB:.0f} MiB at {per_run})",
            )
        )
    bounds.append((cpus, f"the {_plural(cpus, 'CPU')} this process may use"))
    jobs, source = min(bounds, key=lambda bound: bound[0])
    return DefaultJobs(max(1, jobs), source, tuple(notes))


@functools.cache
def default_jobs() -> DefaultJobs:
    """:func:`jobs_from_limits` for this process (its cgroups, CPUs and memory)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        host_memory = None
    try:
        own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text(encoding="utf-8"))
    except OSError:
        own = {}
    return jobs_from_limits(CGROUP_ROOT, cpus=cpus, host_memory=host_memory, own=own)


class BatchError(TestbedError):
    """The batch cannot start; the message lists every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class RunJob:
    notebook: Path
    experiment: str
    parameters: dict[str, Any]
    output: Path
    kernel_name: str
    timeout: float | None
    cwd: Path


@dataclass
class RunResult:
    experiment: str
    status: str  # "ok" or "failed"
    duration_s: float
    error: str
    notebook: Path | None
    html: Path | None
    records: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1  # kernels started; more than 1 after a port clash at kernel start

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def retried(self) -> bool:
        return self.attempts > 1


@dataclass(frozen=True)
class BatchPlan:
    notebook: Path
    experiments: tuple[str, ...]
    parameters: dict[str, Any]
    kernel_name: str
    jobs: int
    timeout: float | None
    output_root: Path
    experiment_param: str = EXPERIMENT_PARAM

    def jobs_for(self, batch_dir: Path) -> list[RunJob]:
        return [
            RunJob(
                notebook=self.notebook,
                experiment=exp,
                parameters={**self.parameters, self.experiment_param: exp},
                output=batch_dir / EXPERIMENTS_DIR / f"{safe_name(exp)}.ipynb",
                kernel_name=self.kernel_name,
                timeout=self.timeout,
                cwd=self.notebook.parent,
            )
            for exp in self.experiments
        ]


def safe_name(text: str) -> str:
    """A file name for an experiment id (ids may hold characters paths cannot)."""
    return _SAFE_NAME.sub("_", text).strip("._") or "experiment"


def parse_value(text: str) -> Any:
    """A ``-p`` value: JSON when it parses (numbers, true/false, null, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_query(text: str) -> dict[str, Any]:
    try:
        query = json.loads(text)
    except ValueError as exc:
        raise BatchError(
            [
                f"--query is not valid JSON ({exc}); quote it for the shell, e.g. "
                '--query \'{"channel.packet_loss_pct": {"$gte": 1}}\''
            ]
        ) from None
    if not isinstance(query, dict):
        raise BatchError(
            [f"--query must be a JSON object (a MongoDB filter), got {type(query).__name__}"]
        )
    return query


def unknown_parameter(name: str, defined: Sequence[str], notebook: str) -> str:
    """The message for a parameter ``name`` that the parameters cell of ``notebook``
    (a file name) does not set, with the closest defined name as a hint."""
    close = difflib.get_close_matches(name, list(defined), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown parameter {name!r}{hint}: the parameters cell of {notebook} "
        f"defines {', '.join(defined) or 'nothing'}"
    )


def _kernel_problem(name: str) -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = sorted(KernelSpecManager().find_kernel_specs())
        return (
            f"kernel {name!r} is not installed here (installed: {', '.join(known) or 'none'}); "
            "pass --kernel NAME"
        )
    return None


def plan_batch(
    notebook: str | Path,
    *,
    experiments: Sequence[str] | None = None,
    all_experiments: bool = False,
    query: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    output_dir: str | Path = "runs",
    kernel_name: str | None = None,
    experiment_param: str = EXPERIMENT_PARAM,
    available: Callable[[Mapping[str, Any] | None], list[str]] | None = None,
) -> BatchPlan:
    """Validate a batch; raise :class:`BatchError` naming every problem, run nothing.

    ``available(query)`` returns the experiment ids in the database (default:
    :func:`testbed.data.experiment_ids`).
    """
    problems: list[str] = []
    parameters = dict(parameters or {})
    path = Path(notebook)

    chosen = sum(
        [experiments is not None and len(experiments) > 0, all_experiments, query is not None]
    )
    if chosen != 1:
        problems.append("choose the experiments with exactly one of --experiment, --all, --query")
    if jobs is not None and jobs < 1:
        problems.append(f"--jobs must be at least 1, got {jobs}")
    if timeout is not None and timeout <= 0:
        problems.append(f"--timeout must be a positive number of seconds, got {timeout}")

    info = None
    try:
        info = inspect_notebook(path)
    except NotebookError as exc:
        problems.append(str(exc))
    if info is not None:
        defined = list(info.parameters)
        shown = ", ".join(defined) or "nothing"
        if experiment_param not in defined:
            problems.append(
                f"the parameters cell of {path} does not define {experiment_param!r} "
                f'(it defines: {shown}); add a line like {experiment_param} = "exp-001"'
            )
        for name in parameters:
            if name == experiment_param:
                problems.append(
                    f"-p {name} is set per run from the selected experiments; "
                    "use --experiment instead"
                )
            elif name not in defined:
                problems.append(unknown_parameter(name, defined, path.name))
    kernel = kernel_name or (info.kernel_name if info else None) or "python3"
    kernel_problem = _kernel_problem(kernel)
    if kernel_problem:
        problems.append(kernel_problem)

    selected: list[str] = []
    if chosen == 1:
        if available is None:
            from testbed.data import experiment_ids as available
        try:
            if query is not None:
                selected = available(dict(query))
                if not selected:
                    problems.append(f"--query {json.dumps(query)} matches no experiment")
            else:
                known = available(None)
                if all_experiments:
                    selected = known
                    if not selected:
                        problems.append("--all: the database holds no experiments")
                else:
                    from testbed.data import unknown_experiment

                    known_set = set(known)
                    for exp in dict.fromkeys(experiments or []):
                        if exp in known_set:
                            selected.append(exp)
                        else:
                            problems.append(str(unknown_experiment(exp, known)))
        except TestbedError as exc:
            problems.append(str(exc))
        names = [safe_name(e) for e in selected]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            problems.append(f"experiment ids map to the same file name: {', '.join(clashes)}")

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        problems.append(f"--output-dir {out} exists and is not a directory")
    elif not os.access(_existing_parent(out), os.W_OK):
        problems.append(f"--output-dir {out} is not writable; choose another with --output-dir")

    if problems:
        raise BatchError(problems)
    return BatchPlan(
        notebook=path.resolve(),
        experiments=tuple(selected),
        parameters=parameters,
        kernel_name=kernel,
        jobs=jobs or default_jobs().jobs,
        timeout=timeout,
        output_root=out,
        experiment_param=experiment_param,
    )


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def batch_directory(plan: BatchPlan, now: dt.datetime | None = None) -> Path:
    """Create ``<output>/<notebook-stem>/<UTC timestamp>[-N]`` and return it."""
    now = now or dt.datetime.now(dt.UTC)
    base = plan.output_root / plan.notebook.stem
    base.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        candidate = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise TestbedError(f"cannot create a new batch directory under {base}")


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename is not None:  # papermill.PapermillExecutionError
        cell = getattr(exc, "exec_count", None)
        where = f" (cell {cell})" if cell else ""
        return f"{ename}: {getattr(exc, 'evalue', '')}{where}".strip()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _export_html(notebook: Path, target: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    target.write_text(body, encoding="utf-8")


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Append file descriptor 2 (inherited by the kernel process) to ``path``.

    Safe because a worker process runs one job at a time. An empty log is removed.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
    if path.stat().st_size == 0:
        path.unlink()


# -- kernels that lose the port race -------------------------------------------------
#
# jupyter_client picks the kernel's five ports by binding port 0 and closing the
# socket, then starts ipykernel with those numbers; another kernel (or any process)
# of a parallel batch can take one in between. ipykernel then fails in
# IPKernelApp.init_sockets with "zmq.error.ZMQError: Address already in use
# (addr='tcp://127.0.0.1:PORT')" on its stderr (our experiments/<experiment>.log)
# and exits, and jupyter_client's wait_for_ready raises RuntimeError("Kernel died
# before replying to kernel_info"), which nbclient and papermill pass on unchanged.
KERNEL_START_ATTEMPTS = 3
# seconds before the next kernel start, drawn at random so that workers which
# clashed do not start their kernels in step again
RETRY_DELAY_S = (0.5, 2.0)
KERNEL_DIED_AT_START = "Kernel died before replying to kernel_info"
ADDRESS_IN_USE = "Address already in use"
#: jupyter_client's wait_for_ready when a live kernel never answered kernel_info
#: within the start timeout (papermill's start_timeout, 60 s)
KERNEL_NO_REPLY_RE = re.compile(r"Kernel didn't respond in \d+ seconds")


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_kernel_port_clash(exc: BaseException, kernel_stderr: str) -> bool:
    """Did the kernel fail to *start* because a port it was given was taken?

    ``exc`` is what ``papermill.execute_notebook`` raised, ``kernel_stderr`` what the
    kernel wrote to its stderr during that call. An error of the notebook's own code
    (``PapermillExecutionError``, which has ``ename``) is never a port clash, whatever
    its text; nor is a kernel that dies later ("Kernel died", DeadKernelError).
    """
    from zmq import ZMQError  # pyzmq comes with jupyter_client

    if getattr(exc, "ename", None) is not None:
        return False
    for link in _exception_chain(exc):
        if isinstance(link, ZMQError) and link.errno == errno.EADDRINUSE:
            return True  # a bind in this process (not the usual case, but the same race)
    return (
        isinstance(exc, RuntimeError)
        and str(exc) == KERNEL_DIED_AT_START
        and ADDRESS_IN_USE in kernel_stderr
    )


def kernel_start_failure(exc: BaseException, kernel_stderr: str) -> str | None:
    """Why the kernel failed to *start*, when another kernel may well succeed; None for
    every other failure (the notebook's own errors, a kernel that dies later, a kernel
    that cannot start at all, e.g. on an import error).

    Two kinds, both seen with six kernels starting at once: a port clash
    (:func:`is_kernel_port_clash`), and a kernel that is alive but never answers
    ``kernel_info`` within the start timeout (1 of 180 kernels in the full-stack soak
    of thirty batches at ``--jobs 6``). Returns the words for the log.
    """
    if is_kernel_port_clash(exc, kernel_stderr):
        return f"could not bind a port ({ADDRESS_IN_USE})"
    if (
        getattr(exc, "ename", None) is None
        and isinstance(exc, RuntimeError)
        and KERNEL_NO_REPLY_RE.fullmatch(str(exc))
    ):
        return f"did not answer at start ({exc})"
    return None


def _text_after(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _note(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"run-notebook: {text}\n")


def execute_job(job: RunJob) -> RunResult:
    """Run one notebook with papermill (in a worker process); never raises.

    A kernel that fails to start in a way another kernel may not
    (:func:`kernel_start_failure`: a port clash, no answer at start) is replaced, up
    to :data:`KERNEL_START_ATTEMPTS` kernels in all.
    """
    import papermill

    start = time.monotonic()
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error = f"cannot create {job.output.parent}: {exc.strerror or exc}"
        return RunResult(job.experiment, "failed", 0.0, error, None, None)
    log_path = job.output.with_suffix(".log")
    attempts = 0
    while True:
        attempts += 1
        status, error = "ok", ""
        offset = _size(log_path)
        try:
            with _stderr_to(log_path):  # kernel chatter goes to <experiment>.log
                papermill.execute_notebook(
                    str(job.notebook),
                    str(job.output),
                    parameters=job.parameters,
                    kernel_name=job.kernel_name,
                    progress_bar=False,
                    log_output=False,
                    execution_timeout=job.timeout,
                    cwd=str(job.cwd),
                )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a summary row
            status, error = "failed", _error_text(exc)
            reason = kernel_start_failure(exc, _text_after(log_path, offset))
            if reason is not None:
                if attempts < KERNEL_START_ATTEMPTS:
                    delay = random.uniform(*RETRY_DELAY_S)  # noqa: S311 - jitter, not a secret
                    _note(
                        log_path,
                        f"kernel {attempts} of {KERNEL_START_ATTEMPTS} {reason}; "
                        f"starting another in {delay:.1f} s",
                    )
                    time.sleep(delay)
                    continue
                if is_kernel_port_clash(exc, _text_after(log_path, offset)):
                    what = "a port it was given was already in use"
                else:
                    what = "it did not answer at start"
                error = (
                    f"the kernel could not start: {what}, {attempts} times in a row "
                    f"({log_path.parent.name}/{log_path.name} has the kernel's error); run "
                    "fewer at a time (--jobs) or retry"
                )
        break
    duration = time.monotonic() - start
    notebook = job.output if job.output.is_file() else None
    html_path = None
    records: dict[str, Any] = {}
    if notebook is not None:
        try:
            records = read_records(notebook)
        except (OSError, ValueError) as exc:
            error = (error + "; " if error else "") + f"cannot read records: {exc}"
        target = job.output.with_suffix(".html")
        try:
            _export_html(notebook, target)
            html_path = target
        except Exception as exc:  # noqa: BLE001 - the run result matters more than its HTML
            error = (error + "; " if error else "") + f"HTML export failed: {_error_text(exc)}"
    return RunResult(
        job.experiment, status, round(duration, 3), error, notebook, html_path, records, attempts
    )


RETRIED_TEXT = "retried after their kernel failed to start (a port race, no answer)"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


SUMMARY_NOTE = (
    "Each experiment's executed notebook and its HTML are in the folder "
    f"<code>{EXPERIMENTS_DIR}/</code> next to this page. The links open a new browser "
    "tab. In JupyterLab's HTML viewer click <b>Trust HTML</b> in its toolbar first: "
    "JupyterLab blocks the links of HTML it does not trust. Or open "
    "<code>summary.ipynb</code> next to this page in JupyterLab: its links work "
    "without trust."
)


class SummaryFiles(NamedTuple):
    """The summary's files at the top of a batch folder."""

    csv: Path
    html: Path
    notebook: Path


def _in_batch(path: Path | None, batch_dir: Path) -> str:
    """``path`` relative to the batch directory, as the summary names it."""
    return Path(os.path.relpath(path, batch_dir)).as_posix() if path is not None else ""


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}" target="_blank">{html.escape(text)}</a>'


def write_summary(
    results: Sequence[RunResult],
    batch_dir: Path,
    title: str,
    lab: LabServer | None = None,
    *,
    started: dt.datetime | None = None,
    notebook: Path | None = None,
) -> SummaryFiles:
    """Write ``summary.csv``, ``summary.html`` and ``summary.ipynb``; return their paths.

    The ``notebook`` and ``html`` columns hold the run's files relative to
    ``batch_dir`` (``experiments/exp-001.ipynb``). In the HTML they are links
    (:mod:`testbed.batch.links`): a notebook opens in JupyterLab on ``lab`` when
    given and the notebook lies below its root, else (as an HTML file always) by a
    relative link. In ``summary.ipynb`` (:mod:`testbed.batch.summary_notebook`) the
    links are relative, and the experiment's name links its notebook too.
    ``started`` and ``notebook`` (the batch's start, the notebook it ran) go into
    the notebook's heading.
    """
    record_names: list[str] = []
    for res in results:
        for name in res.records:
            if name not in record_names:
                record_names.append(name)
    # a record named like a fixed column ("status") gets the column "record_status"
    headers = {n: f"record_{n}" if n in FIXED_COLUMNS else n for n in record_names}
    columns = FIXED_COLUMNS + list(headers.values())
    rows = []
    links: list[dict[str, str]] = []
    md_links: list[dict[str, str]] = []
    for res in results:
        row = {
            "experiment": res.experiment,
            "status": res.status,
            "attempts": str(res.attempts),
            "run_duration_s": f"{res.duration_s:.3f}",
            "error": res.error,
            "notebook": _in_batch(res.notebook, batch_dir),
            "html": _in_batch(res.html, batch_dir),
        }
        row.update({headers[n]: _fmt(res.records.get(n)) for n in record_names})
        rows.append(row)
        cells = {}
        if res.notebook is not None:
            href = lab.notebook_url(res.notebook) if lab is not None else None
            cells["notebook"] = _link(
                href or relative_href(res.notebook, batch_dir), res.notebook.name
            )
        if res.html is not None:
            cells["html"] = _link(relative_href(res.html, batch_dir), res.html.name)
        links.append(cells)
        # Relative links in a Markdown cell: JupyterLab opens them itself, no trust
        # needed (rendermime's handleAnchor -> the linkHandler's handleLink ->
        # docManager.openOrReveal; see testbed.batch.summary_notebook).
        md_cells = {}
        if res.notebook is not None:
            href = relative_href(res.notebook, batch_dir)
            md_cells["experiment"] = markdown_link(res.experiment, href)
            md_cells["notebook"] = markdown_link(row["notebook"], href)
        if res.html is not None:
            md_cells["html"] = markdown_link(row["html"], relative_href(res.html, batch_dir))
        md_links.append(md_cells)
    csv_path = batch_dir / "summary.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    ok = sum(r.ok for r in results)
    retried = sum(r.retried for r in results)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row, cells in zip(rows, links, strict=True):
        tds = "".join(f"<td>{cells.get(c) or html.escape(row[c])}</td>" for c in columns)
        body.append(f'<tr class="{html.escape(row["status"])}">{tds}</tr>')
    html_path = batch_dir / "summary.html"
    html_path.write_text(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;text-align:left}"
        "tr.failed{background:#fdd}tr.ok{background:#efe}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{ok} of {len(results)} runs succeeded; "
        f"{retried} {RETRIED_TEXT}.</p><p>{SUMMARY_NOTE}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{SAME_TAB_SCRIPT}</body></html>\n",
        encoding="utf-8",
    )

    nb = summary_notebook(
        title,
        columns,
        rows,
        md_links,
        counts=f"{ok} of {len(results)} runs ok, {len(results) - ok} failed; "
        f"{retried} {RETRIED_TEXT}.",
        started=started,
        notebook=str(notebook) if notebook is not None else None,
    )
    nbformat.validate(nb)
    notebook_path = batch_dir / "summary.ipynb"
    nbformat.write(nb, notebook_path)
    return SummaryFiles(csv_path, html_path, notebook_path)


@dataclass
class BatchOutcome:
    directory: Path
    results: list[RunResult]
    summary_csv: Path
    summary_html: Path
    summary_notebook: Path
    duration_s: float

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]

    @property
    def retried(self) -> list[RunResult]:
        """Runs that needed another kernel after a port clash (ok or not in the end)."""
        return [r for r in self.results if r.retried]


def run_batch(
    plan: BatchPlan,
    progress: Callable[[RunResult, int, int], None] | None = None,
    *,
    batch_dir: Path | None = None,
) -> BatchOutcome:
    """Execute ``plan``; results are in the plan's experiment order."""
    start = time.monotonic()
    started = dt.datetime.now(dt.UTC)
    batch_dir = batch_dir or batch_directory(plan, started)
    jobs = plan.jobs_for(batch_dir)
    results: dict[str, RunResult] = {}
    workers = max(1, min(plan.jobs, len(jobs)))
    # spawn: workers start clean (no inherited MongoClient threads or kernel sockets)
    context = multiprocessing.get_context("spawn")
    # the heartbeat keeps the JupyterLab server (and so this batch) from the idle culler
    with (
        heartbeat(plan.notebook, len(jobs)),
        cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
    ):
        futures = {pool.submit(execute_job, job): job for job in jobs}
        for done, future in enumerate(cf.as_completed(futures), start=1):
            job = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker fails its run only
                result = RunResult(job.experiment, "failed", 0.0, _error_text(exc), None, None)
            results[job.experiment] = result
            if progress is not None:
                progress(result, done, len(jobs))
    ordered = [results[e] for e in plan.experiments]
    title = f"{plan.notebook.name}: {batch_dir.name}"
    summary = write_summary(
        ordered,
        batch_dir,
        title,
        LabServer.from_environ(),
        started=started,
        notebook=plan.notebook,
    )
    return BatchOutcome(
        batch_dir, ordered, summary.csv, summary.html, summary.notebook, time.monotonic() - start
    )


def iter_pairs(values: Iterable[Sequence[str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs to a dict (later values win)."""
    return {name: parse_value(value) for name, value in (values or [])}
