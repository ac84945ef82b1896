"""Heartbeat files of running ``run-notebook`` batches.

A batch writes ``<pid>-<random>.json`` into :func:`batches_dir` when it starts
and removes it when it ends, whatever the outcome (:func:`heartbeat`). The
server extension counts the files whose process still runs
(:func:`running_batches`) and removes the others: those of a batch that was
killed (``kill -9``, the out-of-memory killer) before it could clean up.

The folder is in the container's home, not on the user's volume: a new
container starts without heartbeats, as it starts without batches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from testbed.activity import procs

SUFFIX = ".json"


def batches_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/testbed/batches``, by default ``~/.local/state/testbed/batches``."""
    environ = os.environ if environ is None else environ
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or str(Path.home()), ".local", "state"
    )
    return Path(state) / "testbed" / "batches"


@dataclass(frozen=True)
class Batch:
    """A running batch, as its heartbeat describes it."""

    pid: int
    notebook: str
    experiments: int
    started: str  # ISO 8601, UTC
    path: Path

    @property
    def notebook_name(self) -> str:
        return Path(self.notebook).name


def _warn(text: str) -> None:
    print(f"run-notebook: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def heartbeat(
    notebook: str | Path,
    experiments: int,
    *,
    directory: Path | None = None,
    warn: Callable[[str], None] = _warn,
) -> Iterator[Path | None]:
    """Keep a heartbeat file while the ``with`` block runs; yield its path.

    When it cannot be written the batch runs all the same: ``warn`` says so and
    the block gets None (the idle culler may then stop the server during a long
    batch, as it did before heartbeats existed).
    """
    directory = batches_dir() if directory is None else directory
    pid = os.getpid()
    record = {
        "pid": pid,
        "start_ticks": procs.start_ticks(pid),
        "notebook": str(notebook),
        "experiments": int(experiments),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    target = directory / f"{pid}-{secrets.token_hex(4)}{SUFFIX}"
    partial = directory / f".{target.name}.partial"
    path: Path | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(partial, target)  # the reader never sees half a file
        path = target
    except OSError as exc:
        warn(
            f"cannot write the batch's heartbeat in {directory} ({exc.strerror or exc}); "
            "the batch runs, but the idle culler does not know about it and may stop "
            "the server if the batch outlasts its timeout"
        )
        with contextlib.suppress(OSError):
            partial.unlink()
    try:
        yield path
    finally:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _read(path: Path) -> tuple[int, int | None, dict]:
    record = json.loads(path.read_text(encoding="utf-8"))
    pid = record["pid"]
    ticks = record.get("start_ticks")
    if not isinstance(pid, int) or not (ticks is None or isinstance(ticks, int)):
        raise ValueError(f"pid {pid!r} or start_ticks {ticks!r} is not an integer")
    return pid, ticks, record


def running_batches(
    directory: Path | None = None,
    *,
    start_ticks: Callable[[int], int | None] = procs.start_ticks,
    log: logging.Logger | None = None,
) -> list[Batch]:
    """The batches whose process still runs, oldest file name first.

    A heartbeat whose process has ended, or that another process now holds its
    pid, is stale: it is removed (and logged at info). So is one that cannot be
    read as a heartbeat.
    """
    directory = batches_dir() if directory is None else directory
    log = log or logging.getLogger(__name__)
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except FileNotFoundError:
        return []  # no batch has run in this container yet
    except OSError as exc:
        log.warning("testbed.activity: cannot read the batch heartbeats in %s (%s)", directory, exc)
        return []
    running: list[Batch] = []
    for path in paths:
        try:
            pid, ticks, record = _read(path)
        except FileNotFoundError:
            continue  # the batch ended while we looked
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            _remove(path, log, f"it is not a heartbeat ({exc})")
            continue
        now = start_ticks(pid)
        if now is None or (ticks is not None and now != ticks):
            _remove(path, log, f"process {pid} of that batch no longer runs")
            continue
        running.append(
            Batch(
                pid=pid,
                notebook=str(record.get("notebook", "")),
                experiments=int(record.get("experiments") or 0),
                started=str(record.get("started", "")),
                path=path,
            )
        )
    return running


def _remove(path: Path, log: logging.Logger, why: str) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("testbed.activity: cannot remove the stale batch heartbeat %s (%s)", path, exc)
        return
    log.info("testbed.activity: removed the stale batch heartbeat %s: %s", path, why)
