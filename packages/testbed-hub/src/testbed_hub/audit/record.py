"""One audit record: its fields, their checks, its canonical line and its hash."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import math
import re
from typing import Any

#: The closed set of events, and what each one records.
EVENTS: dict[str, str] = {
    "login": "a testbed identity logged in to the hub",
    "logout": "a hub user logged out",
    "login_refused": "the hub refused a login (identity not allowed, blocked, bad header)",
    "server_start": "a user's notebook server started (object: the server name)",
    "server_stop": "a user's notebook server stopped (object: the server name)",
    "batch_start": "a batch run of notebooks started (object: the experiment ids)",
    "batch_end": "a batch run of notebooks ended (object: the experiment ids)",
    "file_read": "a file was read through the hub: a download, files/ or the contents API "
    "(object: the path)",
    "export": "data left the testbed as an export (object: the path or experiment ids)",
    "playbook_run": "an operator ran the playbook (identity: the operator; object: the tags)",
    "rotate": "the log was rotated: written by rotate() only, first record of every file",
}
#: The fields of a record, in the order the CSV report and the docs list them.
FIELDS = ("seq", "time", "event", "identity", "user", "source", "object", "details", "prev", "hash")
ZERO = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class BadLine(ValueError):
    """A line of the log that is not a valid record; the message says what is wrong,
    ``seq`` is the line's seq when it has a readable one."""

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


def canonical(value: Any) -> bytes:
    """The canonical JSON of ``value``: sorted keys, no spaces, UTF-8 (not ASCII-escaped)."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def digest(record: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``record`` without its ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def utc_text(when: datetime.datetime) -> str:
    """An aware datetime as UTC RFC 3339 with microseconds: ``2025-03-01T09:30:00.000000Z``."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"time {when.isoformat()} has no timezone: pass an aware datetime, "
            "e.g. datetime.now(datetime.UTC)"
        )
    return when.astimezone(datetime.UTC).strftime(TIME_FORMAT)


def _check_json(value: Any, where: str, example: str) -> None:
    """Refuse what canonical JSON cannot carry unchanged (the hash must survive a re-read)."""
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot hold; e.g. {example}")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(
                f"{where} is not valid Unicode text ({e.reason}); e.g. {example}"
            ) from e
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", example)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"{where} has the key {key!r} ({type(key).__name__}): keys must be text; "
                    f"e.g. {example}"
                )
            _check_json(item, f"{where}[{key!r}]", example)
        return
    raise ValueError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which is not JSON "
        f"(use text, numbers, true/false/null, lists and dicts); e.g. {example}"
    )


def check_fields(
    event: Any, identity: Any, user: Any, source: Any, obj: Any, details: Any
) -> dict[str, Any]:
    """The caller's fields checked (``ValueError`` naming the field and an example otherwise),
    as plain JSON values (tuples become lists, ``details`` None becomes ``{}``)."""
    if event not in EVENTS or event == "rotate":
        known = ", ".join(e for e in EVENTS if e != "rotate")
        why = " (rotate records are written by rotate())" if event == "rotate" else ""
        raise ValueError(f"event {event!r} is not one of: {known}{why}; e.g. event='login'")
    if not isinstance(identity, str) or not identity.strip():
        raise ValueError(
            f"identity {identity!r} is missing: give the testbed identity, e.g. "
            "identity='alice@testbed.example' (for playbook_run the operator's name)"
        )
    if user is not None and (not isinstance(user, str) or not user):
        raise ValueError(f"user {user!r} must be a JupyterHub user name or None; e.g. user='alice'")
    if source is not None:
        try:
            source = str(ipaddress.ip_address(source))
        except ValueError:
            raise ValueError(
                f"source {source!r} is not an IP address: give the client's address or None, "
                "e.g. source='192.0.2.10'"
            ) from None
    details = {} if details is None else details
    if not isinstance(details, dict):
        raise ValueError(
            f"details {details!r} must be a dict or None; e.g. details={{'experiments': ['e42']}}"
        )
    _check_json(identity, "identity", "identity='alice@testbed.example'")
    _check_json(user, "user", "user='alice'")
    _check_json(obj, "object", "object='/home/jovyan/nist/e42/results.csv'")
    _check_json(details, "details", "details={'experiments': ['e42'], 'bytes': 1024}")
    fields = {"event": event, "identity": identity, "user": user, "source": source}
    fields.update(object=obj, details=details)
    return json.loads(canonical(fields))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def where(name: str, line: int, seq: int | None) -> str:
    """``audit.log.1 line 17 (seq 4711)``: how messages name a line."""
    return f"{name} line {line}" + (f" (seq {seq})" if seq is not None else "")


def parse_line(raw: bytes) -> dict[str, Any]:
    """The record a line holds (``raw`` without its newline); ``BadLine`` says why it is not one."""
    if not raw.strip():
        raise BadLine("the line is empty — a line was inserted or blanked")
    try:
        record = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except ValueError as e:  # UnicodeDecodeError, JSONDecodeError, NaN
        raise BadLine(f"the line is not a JSON record ({e}) — it was torn or edited") from e
    if not isinstance(record, dict):
        raise BadLine(f"the line holds a JSON {type(record).__name__}, not a record")
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise BadLine(f"seq {seq!r} is not a positive integer")
    if set(record) != set(FIELDS):
        raise BadLine(f"the line has the fields {sorted(record)}, not {sorted(FIELDS)}", seq)
    for key in ("prev", "hash"):
        if not isinstance(record[key], str) or not _HEX64.match(record[key]):
            raise BadLine(f"{key} {record[key]!r} is not a hex SHA-256", seq)
    if not isinstance(record["time"], str) or not _TIME.match(record["time"]):
        raise BadLine(f"time {record['time']!r} is not UTC RFC 3339 with microseconds", seq)
    if digest(record) != record["hash"]:
        raise BadLine("hash does not match its content — the line was altered", seq)
    if canonical(record) != raw:
        raise BadLine("the line is not in canonical JSON form — it was rewritten", seq)
    return record
