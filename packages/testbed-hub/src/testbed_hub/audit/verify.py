"""Walking the whole chain, rotated files included, and naming the first break."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .log import AuditError, locked, numbered, rotated
from .record import ZERO, BadLine, parse_line, where


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found. True when intact.

    ``records``/``files``: how many were read up to the first problem (all, when
    intact); ``first_seq``/``last_seq``/``last_hash``: the chain's ends as far as it is
    intact (``first_seq`` > 1 when ``rotate --keep`` dropped older files). On a problem,
    ``file`` (the file's name), ``line`` (1-based; None for a missing file), ``seq``
    (None when the line has no readable one) and ``problem`` (the full sentence).
    """

    ok: bool
    records: int
    files: int
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    problem: str | None = None
    file: str | None = None
    line: int | None = None
    seq: int | None = None

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        """One line: ``intact: 1234 records in 3 files, last seq 1234, last hash ab12…``."""
        if not self.ok:
            return f"BROKEN: {self.problem}"
        if not self.records:
            return f"intact: 0 records in {self.files} files"
        since = f" (from seq {self.first_seq}; older files dropped)" if self.first_seq != 1 else ""
        return (
            f"intact: {self.records} records in {self.files} files{since}, "
            f"last seq {self.last_seq}, last hash {self.last_hash}"
        )


class _Broken(Exception):
    def __init__(self, name: str, line: int | None, seq: int | None, what: str):
        super().__init__(what)
        self.name, self.line, self.seq, self.what = name, line, seq, what


def _dropped(files: list[Path]) -> dict[str, int]:
    """last_hash -> last_seq of every file a rotate record says ``--keep`` dropped
    (rotate records are first lines, so only those are read)."""
    out: dict[str, int] = {}
    for file in files:
        with open(file, "rb") as fh:
            first = fh.readline()
        try:
            record = parse_line(first.rstrip(b"\n"))
        except BadLine:
            continue  # the walk names it
        if record["event"] == "rotate" and isinstance(record["details"].get("dropped"), list):
            for d in record["details"]["dropped"]:
                if isinstance(d, dict) and isinstance(d.get("last_hash"), str):
                    out[d["last_hash"]] = d.get("last_seq")
    return out


def _link_problem(
    n: int, rec: dict[str, Any], last: dict[str, Any] | None, last_at: str, dropped
) -> str | None:
    """What is wrong with ``rec`` (line ``n`` of its file) following ``last`` (at
    ``last_at``), or None."""
    seq, prev = rec["seq"], rec["prev"]
    if last is None:  # the first record present
        if (prev == ZERO and seq == 1) or (
            n == 1 and rec["event"] == "rotate" and dropped.get(prev) == seq - 1
        ):
            return None
        return (
            f"the chain starts here, linked to seq {seq - 1} (prev {prev[:12]}…), but no older "
            "file holds that record and no rotate record says --keep dropped it — an older "
            "rotated file was deleted"
        )
    if n == 1 and rec["event"] != "rotate":
        return (
            f"a {rec['event']} record starts this file, where the rotate record linking it to "
            f"{last_at} belongs — the file's start was removed or the file replaced"
        )
    if n == 1:
        obj = rec["object"] if isinstance(rec["object"], dict) else {}
        link = (prev, obj.get("last_hash"), obj.get("last_seq"))
        if link != (last["hash"], last["hash"], last["seq"]):
            return (
                f"the rotate record links to seq {obj.get('last_seq')} (hash "
                f"{str(obj.get('last_hash'))[:12]}…), but the file before it ends at {last_at} "
                f"(hash {last['hash'][:12]}…) — a rotated file between them is missing, was "
                "replaced or was cut short"
            )
    elif rec["event"] == "rotate":
        return "a rotate record inside a file — lines were moved"
    if seq > last["seq"] + 1:
        return (
            f"seq jumps from {last['seq']} ({last_at}) to {seq} — "
            f"{seq - last['seq'] - 1} record(s) removed, or lines were moved"
        )
    if seq <= last["seq"]:
        return (
            f"seq {seq} follows seq {last['seq']} ({last_at}) — a line was inserted, copied "
            "or moved"
        )
    if prev != last["hash"]:
        return (
            f"prev does not match the hash of the record before it ({last_at}) — that record "
            "was replaced, or this one was"
        )
    if rec["time"] < last["time"]:
        return (
            f"time {rec['time']} is before {last['time']} of the record before it ({last_at}) "
            "— lines were moved, or the record was forged"
        )
    return None


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check the whole chain: the rotated files oldest first (``audit.log.N`` ...
    ``audit.log.1``), then ``audit.log``.

    Every line must be a whole record in canonical form whose ``hash`` matches its
    content; ``seq`` must rise by one, ``prev`` be the previous record's ``hash``, ``time``
    never go back; each later file must start with the ``rotate`` record that links it to
    the previous file's last record, and no rotated file number may be missing. Reads
    under a shared lock (writers wait until it is done). Returns a :class:`VerifyResult`
    naming the first problem; raises ``AuditError`` if there is no log at ``path``.

    What it cannot see: records cut off the end of the live file (keep the printed last
    seq and hash elsewhere to compare), and a chain rewritten from some point on with
    freshly computed hashes by someone with write access (SHA-256 without a key proves
    order and completeness, not authorship).
    """
    path = Path(path)
    with locked(path, shared=True):
        numbers = rotated(path)
        if not path.exists() and not numbers:
            raise AuditError(f"no audit log at {path} (nor rotated {path.name}.N files)")
        files = [numbered(path, n) for n in reversed(numbers)] + [path]
        count = nfiles = 0
        first_seq: int | None = None
        last: dict[str, Any] | None = None
        try:
            missing = [n for n in range(1, numbers[-1] + 1) if n not in numbers] if numbers else []
            if missing or not path.exists():
                gone = numbered(path, missing[0]) if missing else path
                older = numbered(path, min(n for n in numbers if n > (missing or [0])[0]))
                raise _Broken(
                    gone.name,
                    None,
                    None,
                    f"{gone.name} is missing, but the older {older.name} exists — the chain has "
                    "no link there: a rotated file was deleted or renamed",
                )
            dropped = _dropped(files)
            last_at = ""
            for file in files:
                nfiles += 1
                n = 0
                with open(file, "rb") as fh:
                    for n, raw in enumerate(fh, start=1):
                        if not raw.endswith(b"\n"):
                            raise _Broken(
                                file.name,
                                n,
                                None,
                                "the last line has no newline — the file was cut off or a "
                                "write was torn",
                            )
                        try:
                            rec = parse_line(raw[:-1])
                        except BadLine as e:
                            raise _Broken(file.name, n, e.seq, str(e)) from e
                        if what := _link_problem(n, rec, last, last_at, dropped):
                            raise _Broken(file.name, n, rec["seq"], what)
                        first_seq = first_seq or rec["seq"]
                        last, count = rec, count + 1
                        last_at = where(file.name, n, rec["seq"])
                if n == 0 and file != files[0]:
                    raise _Broken(
                        file.name,
                        None,
                        None,
                        "the file is empty: its rotate record, linking it to the file before "
                        "it, is missing",
                    )
        except _Broken as b:
            return VerifyResult(
                ok=False,
                records=count,
                files=nfiles,
                first_seq=first_seq,
                last_seq=last["seq"] if last else None,
                last_hash=last["hash"] if last else None,
                problem=f"{where(b.name, b.line, b.seq) if b.line else b.name}: {b.what}",
                file=b.name,
                line=b.line,
                seq=b.seq,
            )
    return VerifyResult(
        ok=True,
        records=count,
        files=nfiles,
        first_seq=first_seq,
        last_seq=last["seq"] if last else None,
        last_hash=last["hash"] if last else None,
    )
