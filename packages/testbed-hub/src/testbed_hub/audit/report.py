"""Reading records back: filtered lists, and CSV for people who open spreadsheets."""

from __future__ import annotations

import csv
import datetime
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .log import AuditError, locked, numbered, rotated
from .record import EVENTS, BadLine, canonical, parse_line, utc_text, where

#: The CSV report's columns, in this order.
CSV_COLUMNS = ("time", "event", "identity", "user", "source", "object", "details")


def _bound(value: datetime.datetime | str | None, name: str) -> str | None:
    """A time bound as the records' own text. A date or naive time is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{name} {value!r} is not a date or time; e.g. {name}='2025-03-01' or "
                f"'2025-03-01T09:30:00Z'"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return utc_text(value)


def _mentions(record: dict[str, Any], experiment: str) -> bool:
    """The experiment id is the object, an item of it, a folder of its path, or listed in
    ``details["experiments"]`` (exact matches: ``e4`` does not match ``e42``)."""
    obj = record["object"]
    if isinstance(obj, str) and (obj == experiment or experiment in obj.split("/")):
        return True
    if isinstance(obj, list) and experiment in obj:
        return True
    listed = record["details"].get("experiments")
    return isinstance(listed, list) and experiment in listed


def records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record, the rotated files oldest first, then the live file (under the shared
    lock). Does not check the chain (that is :func:`verify`); ``AuditError`` (code 1)
    names a line that is not a record."""
    path = Path(path)
    out: list[dict[str, Any]] = []
    with locked(path, shared=True):
        files = [numbered(path, n) for n in reversed(rotated(path))] + [path]
        for file in files:
            if file == path and not path.exists():
                continue
            with open(file, "rb") as fh:
                for n, raw in enumerate(fh, start=1):
                    try:
                        out.append(parse_line(raw.rstrip(b"\n")))
                    except BadLine as e:
                        raise AuditError(
                            f"{where(file.name, n, e.seq)}: {e}; run verify", code=1
                        ) from e
    return out


def report(
    path: str | os.PathLike[str],
    since: datetime.datetime | str | None = None,
    until: datetime.datetime | str | None = None,
    user: str | None = None,
    identity: str | None = None,
    experiment: str | None = None,
    event: str | None = None,
) -> list[dict[str, Any]]:
    """The records matching every filter given, oldest first.

    ``since`` (inclusive) and ``until`` (exclusive): aware datetimes or ISO text
    (``2025-03-01``, ``2025-03-01T09:30:00Z``; no zone = UTC). ``user``, ``identity``,
    ``event``: exact matches. ``experiment``: see :func:`_mentions`. ``ValueError`` for
    a bad time or an unknown event.
    """
    low, high = _bound(since, "since"), _bound(until, "until")
    if event is not None and event not in EVENTS:
        raise ValueError(f"event {event!r} is not one of: {', '.join(EVENTS)}")
    return [
        r
        for r in records(path)
        if (low is None or r["time"] >= low)
        and (high is None or r["time"] < high)
        and (user is None or r["user"] == user)
        and (identity is None or r["identity"] == identity)
        and (event is None or r["event"] == event)
        and (experiment is None or _mentions(r, experiment))
    ]


#: A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else canonical(value).decode("utf-8")
    # OWASP's advice: a leading ' makes the spreadsheet show the text, not run it
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text with a header: :data:`CSV_COLUMNS`; null is empty, a non-text ``object``
    and ``details`` are canonical JSON. Rows end in CRLF (RFC 4180).

    A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    (a file named ``=HYPERLINK(...).csv``, say) gets a leading ``'``, so a spreadsheet
    opening the report shows it as text instead of running it as a formula (OWASP's
    CSV injection advice); the log itself keeps the name as it was."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in CSV_COLUMNS])
    return out.getvalue()
