"""Appending to the audit log and rotating it, under one lock shared by every writer."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .record import (
    ZERO,
    BadLine,
    canonical,
    check_fields,
    digest,
    parse_line,
    utc_text,
    where,
)


class AuditError(RuntimeError):
    """Refused; nothing was written. ``code`` is the CLI's exit status: 1 the log is damaged
    (the message names the file and line), 2 anything else (missing files, interrupted
    rotation)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def lock_path(path: Path) -> Path:
    """The sibling lock file every writer locks: ``audit.log`` -> ``audit.log.lock``."""
    return path.with_name(path.name + ".lock")


def rotated(path: Path) -> list[int]:
    """The numbers N of the rotated files ``<path>.N`` that exist, ascending (1 = newest)."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]*)\Z")
    if not path.parent.is_dir():
        return []
    return sorted(int(m[1]) for p in path.parent.iterdir() if (m := pattern.match(p.name)))


def numbered(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``flock`` on the lock file: exclusive for writers, shared for readers.

    Writers create the folder (0700) and the lock file (0600). A reader that may not
    create the lock file (read-only access to the folder) reads without the lock.
    """
    lock = lock_path(path)
    fd: int | None = None
    if shared:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            with contextlib.suppress(OSError):
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if fd is None:
            yield
            return
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _line_count(fd: int, end: int) -> int:
    """Newlines in the first ``end`` bytes (only for naming a bad line: reads the file)."""
    count, offset = 0, 0
    while offset < end:
        block = os.pread(fd, min(1 << 20, end - offset), offset)
        if not block:
            break
        count += block.count(b"\n")
        offset += len(block)
    return count


def last_record(fd: int, name: str) -> dict[str, Any] | None:
    """The last record of the open file, read backwards from its end; None if it is empty.

    ``AuditError`` (code 1) names the line when the file does not end in a whole, valid
    record: a torn write or an edit.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start, end, tail = size, size, b""
    while start > 0:
        start = max(0, start - 4096)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        if cut >= 0:
            tail = tail[cut + 1 :]
            break
    try:
        if not tail.endswith(b"\n"):
            raise BadLine("the last line has no newline — a write was torn or the file was cut")
        return parse_line(tail[:-1])
    except BadLine as e:
        line_no = _line_count(fd, size) + (0 if tail.endswith(b"\n") else 1)
        raise AuditError(
            f"{where(name, line_no, e.seq)}: {e}. Nothing was written; run "
            f"`python -m testbed_hub.audit verify --log {name}` and keep the file as evidence",
            code=1,
        ) from e


def _open_tail(path: Path) -> tuple[int, dict[str, Any] | None]:
    """An O_APPEND fd on the live file (created 0600) and its last record, checked."""
    if not path.exists():
        older = rotated(path)
        if older:
            new = path.with_name(path.name + ".new")
            hint = f": `mv {new} {path}` finishes it" if new.exists() else ""
            raise AuditError(
                f"{path} is missing while {numbered(path, older[0])} exists: a rotation was "
                f"interrupted{hint}, or the file was removed; run verify. Nothing was written"
            )
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        return fd, last_record(fd, str(path))
    except BaseException:
        os.close(fd)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _next(last: dict[str, Any] | None, fields: dict[str, Any], now: datetime.datetime | None):
    """The new record after ``last``: seq, prev, a time that never goes back, and its hash.

    If the clock is behind the last record (stepped back), the record keeps the last
    record's time and notes the clock's own in ``details["clock"]``.
    """
    time = utc_text(now or datetime.datetime.now(datetime.UTC))
    if last is not None and time < last["time"]:
        fields = {**fields, "details": {**fields["details"], "clock": time}}
        time = last["time"]
    record = {
        **fields,
        "seq": last["seq"] + 1 if last else 1,
        "time": time,
        "prev": last["hash"] if last else ZERO,
    }
    record["hash"] = digest(record)
    return record


class AuditLog:
    """The audit log at ``path`` (e.g. ``/var/log/testbed/audit.log``), for appending.

    Holds no file open between calls: every :meth:`append` locks, opens, writes and
    closes, so :func:`rotate` can rename the file at any time between two appends.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def append(
        self,
        event: str,
        identity: str,
        *,
        user: str | None = None,
        source: str | None = None,
        object: Any = None,  # the record's field name (shadows the builtin here only)
        details: dict[str, Any] | None = None,
        now: datetime.datetime | None = None,
    ) -> dict[str, Any]:
        """Append one record and return it (with its ``seq``, ``time``, ``prev``, ``hash``).

        ``event`` one of :data:`~testbed_hub.audit.record.EVENTS` (not ``rotate``);
        ``identity`` the testbed identity; ``user`` the hub user name; ``source`` the
        client's IP address; ``object`` what was touched (any JSON value); ``details`` a
        JSON dict; ``now`` an aware datetime (default: the clock, read under the lock).

        Raises ``ValueError`` for a bad field (the log is not touched), ``AuditError``
        when the log's last line is not a valid record (code 1, names the line) or the
        live file is missing next to rotated ones, ``OSError`` when writing fails (a
        short write is cut off again, so the log stays whole).
        """
        fields = check_fields(event, identity, user, source, object, details)
        if now is not None:
            utc_text(now)  # refuse a naive time before anything is touched
        with locked(self.path):
            fd, last = _open_tail(self.path)
            try:
                record = _next(last, fields, now)
                line = canonical(record) + b"\n"
                size = os.fstat(fd).st_size
                if size == 0:
                    os.fchmod(fd, 0o600)
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError(f"short write to {self.path} (disk full?)")
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, size)  # no torn line left behind for the next writer
                    raise
            finally:
                os.close(fd)
            if size == 0:
                _fsync_dir(self.path.parent)
        return record


def _operator() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def rotate(
    path: str | os.PathLike[str],
    keep: int | None = None,
    *,
    identity: str | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any] | None:
    """Rotate ``audit.log`` to ``audit.log.1`` (older ones shift to ``.2``, ``.3`` ...) and
    start a new ``audit.log`` with a ``rotate`` record that continues the chain.

    The rotate record's ``prev`` is the rotated file's last hash and its ``object`` is
    ``{"file": "audit.log.1", "last_seq": N, "last_hash": H}``. With ``keep`` (>= 1), the
    rotated files beyond ``audit.log.<keep>`` are deleted and listed in its
    ``details["dropped"]`` (file, last_seq, last_hash), so :func:`verify` can tell a
    dropped file from a deleted one; by default every rotated file is kept. ``identity``
    defaults to the user running this. Returns the rotate record, or None if the live
    file is empty or absent (nothing to rotate).

    Why not logrotate: ``copytruncate`` copies the file and then truncates it, so a
    record appended in between is lost and the new file's first record has no link to
    the old file — the chain breaks (and a lost record is what this log must detect).
    logrotate's ``create`` mode (rename) would work with our writers, which hold no
    file open, but it cannot write the linking ``rotate`` record and does not take our
    lock. So a systemd timer runs ``python -m testbed_hub.audit rotate`` instead; keep
    logrotate away from this folder.

    Crash safety: the new file is written and synced as ``audit.log.new`` first, then
    the renames; if they are interrupted, :meth:`AuditLog.append` refuses and says to
    ``mv audit.log.new audit.log``. Raises ``AuditError`` as :meth:`AuditLog.append`
    does (a damaged tail is never rotated away), ``ValueError`` for ``keep`` < 1.
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep {keep!r} must be a whole number >= 1 (or None: keep all)")
    path = Path(path)
    identity = identity or _operator()
    check_fields("login", identity, None, None, None, None)  # the identity's checks
    with locked(path):
        if not path.exists() and not rotated(path):
            return None
        fd, last = _open_tail(path)  # refuses a damaged tail, or a missing file
        os.close(fd)
        if last is None:
            return None
        older = rotated(path)
        dropped = []
        for n in older:
            if keep is not None and n + 1 > keep:
                with open(numbered(path, n), "rb") as fh:
                    end = last_record(fh.fileno(), str(numbered(path, n)))
                if end is not None:
                    dropped.append(
                        {"file": numbered(path, n + 1).name, "last_seq": end["seq"]}
                        | {"last_hash": end["hash"]}
                    )
        obj = {"file": numbered(path, 1).name, "last_seq": last["seq"], "last_hash": last["hash"]}
        fields = {"event": "rotate", "identity": identity, "user": None, "source": None}
        fields.update(object=obj, details={"dropped": dropped} if dropped else {})
        record = _next(last, fields, now)
        new = path.with_name(path.name + ".new")
        try:
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise AuditError(
                f"{new} exists: an earlier rotation was interrupted. Run verify, then remove "
                f"it if {path} starts with the same rotate record; nothing was rotated"
            ) from None
        try:
            os.fchmod(fd, 0o600)
            line = canonical(record) + b"\n"
            if os.write(fd, line) != len(line):
                raise OSError(f"short write to {new} (disk full?)")
            os.fsync(fd)
        except BaseException:
            os.unlink(new)
            raise
        finally:
            os.close(fd)
        for n in reversed(older):
            os.rename(numbered(path, n), numbered(path, n + 1))
        os.rename(path, numbered(path, 1))
        os.rename(new, path)
        _fsync_dir(path.parent)
        for n in older:
            if keep is not None and n + 1 > keep:
                os.unlink(numbered(path, n + 1))
        return record
