"""What counts as long work, and recording it as the server's activity.

:class:`LongWorkMonitor` needs only the server's settings (a mapping with the
``kernel_manager`` and, when jupyter-scheduler is loaded, its ``scheduler``), so
it is tested without a server; :mod:`testbed.activity.extension` runs it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Float, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from testbed.activity import scheduler as sched
from testbed.activity.batches import Batch, batches_dir, running_batches
from testbed.activity.scheduler import SchedulerJob

#: Our key in ``settings["last_activity_times"]``, which jupyter_server's
#: ``ServerWebApplication.last_activity()`` counts with the API, kernel and
#: terminal activity ("a place for extensions to register activity").
ACTIVITY_KEY = "testbed.activity"
#: Longest time between two checks; shorter when the hub wants activity more often.
DEFAULT_INTERVAL_S = 30.0


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _names(names: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(names))


@dataclass(frozen=True)
class LongWork:
    """What was running at one check."""

    busy_kernels: int = 0
    batches: tuple[Batch, ...] = ()
    jobs: tuple[SchedulerJob, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.busy_kernels or self.batches or self.jobs)

    @property
    def reasons(self) -> list[str]:
        """One phrase per kind of work running.

        E.g. ``["1 busy kernel", "2 run-notebook batches (a.ipynb, b.ipynb)"]``.
        """
        out = []
        if self.busy_kernels:
            out.append(_plural(self.busy_kernels, "busy kernel"))
        if self.batches:
            out.append(
                f"{_plural(len(self.batches), 'run-notebook batch', 'run-notebook batches')} "
                f"({_names(b.notebook_name for b in self.batches)})"
            )
        if self.jobs:
            out.append(
                f"{_plural(len(self.jobs), 'jupyter-scheduler job')} "
                f"({_names(j.name for j in self.jobs)})"
            )
        return out


def busy_kernels(kernel_manager: Any) -> int:
    """Kernels of this server whose execution state is ``busy`` (running a cell).

    jupyter_server's kernel manager follows each kernel's status messages on
    IOPub, whoever sent the request (a browser tab, or a client that is gone).
    """
    return sum(1 for k in kernel_manager.list_kernels() if k.get("execution_state") == "busy")


def _interval_default(environ: MutableMapping[str, str] | None = None) -> float:
    """30 s, or half the hub's activity interval when that is shorter (at least 1 s).

    The single-user server sends its last activity to the hub every
    ``JUPYTERHUB_ACTIVITY_INTERVAL`` seconds; checking twice as often keeps what
    it sends at most half an interval old.
    """
    environ = os.environ if environ is None else environ
    try:
        hub_interval = float(environ.get("JUPYTERHUB_ACTIVITY_INTERVAL", ""))
    except ValueError:
        return DEFAULT_INTERVAL_S
    if hub_interval <= 0:
        return DEFAULT_INTERVAL_S
    return max(1.0, min(DEFAULT_INTERVAL_S, hub_interval / 2))


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LongWorkMonitor(LoggingConfigurable):
    """Checks for long work every ``interval`` seconds and records it as activity."""

    interval = Float(
        DEFAULT_INTERVAL_S,
        help="Seconds between two checks for long work (busy kernels, run-notebook "
        "batches, jupyter-scheduler jobs). Default: 30, or half of "
        "$JUPYTERHUB_ACTIVITY_INTERVAL when that is shorter.",
    ).tag(config=True)

    @default("interval")
    def _default_interval(self) -> float:
        return _interval_default()

    @validate("interval")
    def _check_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise TraitError(
                f"LongWorkMonitor.interval must be a number of seconds above 0, got {value!r}; "
                "leave it unset for 30 s (or half of $JUPYTERHUB_ACTIVITY_INTERVAL)"
            )
        return value

    batches_dir = Unicode(
        help="Folder of the heartbeat files of running run-notebook batches. Default: "
        "$XDG_STATE_HOME/testbed/batches, else ~/.local/state/testbed/batches "
        "(where run-notebook writes them).",
    ).tag(config=True)

    @default("batches_dir")
    def _default_batches_dir(self) -> str:
        return str(batches_dir())

    def __init__(
        self,
        settings: MutableMapping[str, Any],
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.settings = settings
        self.clock = clock
        self.last_work = LongWork()
        self.last_checked: dt.datetime | None = None
        self._warned: set[str] = set()

    # -- the three kinds of long work, each failing on its own ------------------

    def _kernels(self) -> int:
        manager = self.settings.get("kernel_manager")
        if manager is None:
            return 0
        try:
            return busy_kernels(manager)
        except Exception as exc:  # noqa: BLE001 - one broken source must not hide the others
            self._warn_once("kernels", f"cannot list the kernels: {exc!r}")
            return 0

    def _batches(self) -> tuple[Batch, ...]:
        try:
            return tuple(running_batches(Path(self.batches_dir), log=self.log))
        except Exception as exc:  # noqa: BLE001
            self._warn_once("batches", f"cannot read the batch heartbeats: {exc!r}")
            return ()

    def _jobs(self) -> tuple[SchedulerJob, ...]:
        scheduler = self.settings.get("scheduler")
        if scheduler is None:
            return ()  # jupyter-scheduler is not installed or not loaded
        url = str(getattr(scheduler, "db_url", "") or "")
        path = sched.database_path(url)
        if path is None:
            self._warn_once(
                "scheduler-url",
                f"jupyter-scheduler's database {url!r} is not a SQLite file: its jobs do not "
                "keep the server active",
            )
            return ()
        try:
            return tuple(sched.running_jobs(path))
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, a changed schema, ...
            self._warn_once(
                "scheduler", f"cannot read jupyter-scheduler's jobs from {path}: {exc!r}"
            )
            return ()

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning("testbed.activity: %s", text)

    # -- one check ---------------------------------------------------------------

    def find(self) -> LongWork:
        """What long work runs now (changes nothing but stale heartbeat files)."""
        return LongWork(self._kernels(), self._batches(), self._jobs())

    def tick(self) -> LongWork:
        """Check, and while there is long work record now as the server's activity."""
        work = self.find()
        now = self.clock()
        if work.active:
            self.settings.setdefault("last_activity_times", {})[ACTIVITY_KEY] = now
        previous, self.last_work, self.last_checked = self.last_work, work, now
        if work.reasons != previous.reasons:
            if work.active:
                self.log.info(
                    "testbed.activity: keeping the server active: %s", ", ".join(work.reasons)
                )
            else:
                self.log.info(
                    "testbed.activity: no long work any more (was: %s); the idle culler may "
                    "stop the server once it has been idle for its timeout",
                    ", ".join(previous.reasons),
                )
        else:
            self.log.debug("testbed.activity: %s", ", ".join(work.reasons) or "no long work")
        return work

    def report(self, work: LongWork, last_activity: dt.datetime | None) -> dict[str, Any]:
        """The JSON answer of ``GET /testbed/activity``."""
        return {
            "active": work.active,
            "reasons": work.reasons,
            "busy_kernels": work.busy_kernels,
            "batches": [
                {
                    "pid": b.pid,
                    "notebook": b.notebook,
                    "experiments": b.experiments,
                    "started": b.started,
                }
                for b in work.batches
            ],
            "scheduler_jobs": [{"job_id": j.job_id, "name": j.name} for j in work.jobs],
            "recorded": _iso(self.settings.get("last_activity_times", {}).get(ACTIVITY_KEY)),
            "last_activity": _iso(last_activity),
            "checked": _iso(self.last_checked),
            "interval_s": self.interval,
        }
