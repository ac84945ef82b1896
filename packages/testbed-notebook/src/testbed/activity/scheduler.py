"""jupyter-scheduler jobs in progress, read from the scheduler's own database.

jupyter-scheduler runs each job in a process of its own, started by the server
(``Scheduler.create_job``), and records it in the ``jobs`` table of its SQLite
database: ``status`` ``IN_PROGRESS`` from the moment the job's process starts
(``ExecutionManager.before_start``) until it ends (``on_complete``,
``on_failure``), and the process id in ``pid``. Its public API
(``Scheduler.list_jobs``) does not give the process id, so the table is read
directly, read-only.

A job whose process died with an earlier server (the server was stopped or the
container restarted while it ran) stays ``IN_PROGRESS`` in the database for
ever; it must not keep every later server alive. A job counts only while a
process with its pid runs that started between the job's creation and its start
(both recorded by jupyter-scheduler, in milliseconds).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.activity import procs

IN_PROGRESS = "IN_PROGRESS"
#: Seconds of tolerance when matching a process's start to the job's times
#: (the boot time behind the process's start is kept in whole seconds).
SLACK_S = 2.0
_SQLITE = "sqlite:///"


@dataclass(frozen=True)
class SchedulerJob:
    job_id: str
    name: str
    pid: int


def database_path(db_url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (``SchedulerApp.db_url``); None for other databases."""
    if not db_url.startswith(_SQLITE):
        return None
    path = db_url[len(_SQLITE) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def running_jobs(
    database: Path,
    *,
    start_time: Callable[[int], float | None] = procs.start_time,
    now: Callable[[], float] = time.time,
) -> list[SchedulerJob]:
    """Jobs in progress whose process still runs; [] when the database does not exist yet.

    Raises :class:`sqlite3.Error` when the database cannot be read.
    """
    if not database.is_file():
        return []
    # read-only: never create the database, never take a write lock
    con = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
    try:
        rows = con.execute(
            "SELECT job_id, name, pid, create_time, start_time FROM jobs WHERE status = ?",
            (IN_PROGRESS,),
        ).fetchall()
    finally:
        con.close()
    jobs = []
    for job_id, name, pid, created_ms, started_ms in rows:
        if not isinstance(pid, int):
            continue
        began = start_time(pid)
        if began is None:
            continue  # its process has ended (or died with an earlier server)
        earliest = (created_ms / 1000 if isinstance(created_ms, int) else 0.0) - SLACK_S
        latest = (started_ms / 1000 if isinstance(started_ms, int) else now()) + SLACK_S
        if earliest <= began <= latest:
            jobs.append(SchedulerJob(str(job_id), str(name or job_id), pid))
    return jobs
