"""Is a process still the one that was started? Read from ``/proc`` (Linux).

A process id alone says little: a pid is reused after its process ended, and a
new container numbers its processes from 1 again. So the heartbeats of this
package record when their process started (clock ticks after boot, field 22 of
``/proc/<pid>/stat``), and a process counts as the same only when that still
matches. An ended process that its parent has not reaped yet (a zombie) counts
as ended.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
#: ``/proc/<pid>/stat`` states of a process that has ended.
_ENDED = frozenset("ZXx")


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When process ``pid`` started, in clock ticks after boot; None when it does not run."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # "PID (COMMAND) STATE PPID ...": the command may hold spaces and parentheses
    fields = text.rpartition(")")[2].split()
    try:
        if fields[0] in _ENDED:
            return None
        return int(fields[19])  # field 22 of the line, the 20th after the command
    except (IndexError, ValueError):
        return None


def boot_time(proc: Path = PROC) -> float | None:
    """When the machine booted, in seconds since the epoch (``btime`` in ``/proc/stat``)."""
    try:
        lines = (proc / "stat").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("btime "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def start_time(pid: int, proc: Path = PROC) -> float | None:
    """When process ``pid`` started, in seconds since the epoch; None when it does not run.

    Accurate to about a second (the boot time is kept in whole seconds).
    """
    ticks = start_ticks(pid, proc)
    booted = boot_time(proc)
    if ticks is None or booted is None:
        return None
    return booted + ticks / os.sysconf("SC_CLK_TCK")
