"""The nginx-log collector: file reads and exports through nginx into the audit log.

nginx (roles/reverse_proxy, ``reverse_proxy_audit_socket``) sends one syslog datagram
per GET of a user's ``files/``, ``api/contents/`` or ``nbconvert/`` URL answered 200,
206 or 304, and per PUT of ``api/collaboration/session/`` answered 200 or 201, to a
unix datagram socket; :func:`serve` (``python -m testbed_hub.audit collect-nginx``,
the unit ``testbed-audit-nginx.service``) receives them, :func:`parse_datagram` strips
the syslog header (``<PRI>TIMESTAMP testbed_audit: ``) and reads the JSON line, and
:func:`classify` decides, as a pure function, what (if anything) is recorded:

``GET <hub>user/<name>[/<server>]/files/<path>``, 200, 206 or 304
    ``file_read``, object ``<path>`` (relative to the server's root, the user's home);
    details ``server`` ("" = default), ``via`` "files", ``bytes``, ``download``.
    ``download`` means only that the query asked for an attachment
    (``?download=1|true``); JupyterLab 4's "Download" menu item fetches
    ``files/<path>?_xsrf=...`` without it, so a download may read ``false``.
``GET <hub>user/<name>[/<server>]/api/contents/<path>``, 200
    ``file_read`` (details ``via`` "contents", ``type``, ``format``) only for a
    file's content: ``type=file`` or ``type=notebook``, or no ``type`` and the last
    path segment has a suffix (``results.csv``); never with ``content=0`` (a
    metadata check, e.g. JupyterLab's before saving) nor ``type=directory``.
    JupyterLab's file browser lists folders with no ``type`` every few seconds; the
    suffix rule keeps those out. Its limits: a file without a suffix read without
    ``type`` is not recorded, and a folder whose name has a dot (``run.2025``)
    listed without ``type`` is recorded as a read.
``PUT <hub>user/<name>[/<server>]/api/collaboration/session/<path>``, 200 or 201
    ``file_read`` (details ``via`` "collaboration"): with real-time collaboration
    (jupyter-collaboration, on in the notebook image) JupyterLab opens a notebook or
    text file with a ``content=0`` contents check (not recorded) and this request;
    the content then travels over the document's websocket, which nginx cannot see.
    The handler answers 200 (file known) or 201 (file newly indexed); the object is
    the document path as nginx decoded it (JupyterLab sends it percent-encoded).
``GET <hub>user/<name>[/<server>]/nbconvert/<format>/<path>``, 200, 206 or 304
    ``export`` of ``<path>`` (details ``format``, ``bytes``, ``download``).
anything else (another status, method or path)
    nothing.

Partial and cached reads: ``files/`` is tornado's static file handler, which
answers a ``Range`` request (an audio element, a seek, a download manager) with
206 Partial Content; such a read is recorded with details ``partial: true`` and
``range`` (the request's ``Range`` header, also kept on a 200 that ignored it), one
record per range request. A 304 (the browser revalidating its cached copy, e.g.
reopening a file: ``files/`` sends ``Cache-Control: no-cache``) is recorded with
``not_modified: true`` and ``bytes`` 0: the file is shown again from the
browser's cache.

A server named ``files``, ``api`` or ``nbconvert`` cannot be told from the default
server's paths: its URLs are read as the default server's.

The record's identity is the testbed identity nginx got from the auth check, or
``(api token)`` for a request that came with a JupyterHub API token and no testbed
session: nginx knows no identity then (the hub checked the token), and the URL's
user is only the server's owner, not the token's holder (bob's token on alice's
shared server); details ``server_owner`` repeats that user. ``user`` is the
user name in the URL, ``source`` the client's address, ``details["time"]`` nginx's
own time of the request.

Failure policy: a malformed datagram, or a record the log refuses, is reported on
stderr (the journal) and dropped; the collector never stops for one. nginx sends
without waiting: while the collector is down (or its queue is full), nginx logs
``connect() failed`` / ``send() failed`` in its error log, serves the request and
the read is not recorded.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import json
import os
import posixpath
import queue
import re
import socket
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .log import AuditError, AuditLog

#: The syslog tag nginx's access_log uses (``tag=testbed_audit``).
TAG = "testbed_audit"
#: The fields of nginx's ``reverse_proxy_audit`` log_format.
ENTRY_FIELDS = (
    "time",
    "remote_addr",
    "identity",
    "method",
    "uri",
    "args",
    "status",
    "body_bytes_sent",
)
#: Fields read when present (older site configurations do not send them).
OPTIONAL_FIELDS = ("range",)
#: The identity of a request on the API-token route (no testbed identity from nginx).
TOKEN_IDENTITY = "(api token)"  # noqa: S105 - a label, not a secret
#: Seconds the reader waits after a failed receive before trying again.
RETRY_SECONDS = 1.0
_READ_STATUSES = {"GET": ("200", "206", "304"), "PUT": ("200", "201")}
_HEADER = re.compile(rb"<\d{1,3}>[^{]{0,80}?\b" + TAG.encode() + rb": ", re.S)
_TRUE = {"1", "true", "yes"}


class Malformed(ValueError):
    """A datagram that is not one of nginx's audit lines; the message says why."""


def parse_datagram(data: bytes) -> dict[str, str]:
    """The JSON line of one syslog datagram from nginx, as ``{field: text}``.

    ``<190>Nov 30 17:40:00 testbed_audit: {"time": ...}`` -> the dict. Raises
    :class:`Malformed` for anything else (no header, not JSON, missing fields).
    """
    m = _HEADER.match(data)
    if not m:
        raise Malformed(f"no '<PRI>... {TAG}: ' syslog header: {data[:120]!r}")
    body = data[m.end() :].rstrip(b"\n")
    try:
        entry = json.loads(body.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError, JSONDecodeError
        raise Malformed(f"not a JSON line ({e}): {body[:200]!r}") from e
    if not isinstance(entry, dict):
        raise Malformed(f"a JSON {type(entry).__name__}, not an object: {body[:200]!r}")
    missing = [f for f in ENTRY_FIELDS if not isinstance(entry.get(f), str)]
    if missing:
        raise Malformed(f"fields {missing} missing or not text: {body[:200]!r}")
    out = {f: entry[f] for f in ENTRY_FIELDS}
    for f in OPTIONAL_FIELDS:
        if f in entry:
            if not isinstance(entry[f], str):
                raise Malformed(f"field {f!r} is not text: {body[:200]!r}")
            out[f] = entry[f]
    return out


def _url_pattern(hub_path: str) -> re.Pattern[str]:
    # lazy server group: /user/a/files/files/x is the default server's files/x
    return re.compile(
        "^" + re.escape(hub_path) + r"user/(?P<user>[^/]+)/(?:(?P<server>[^/]+)/)??"
        r"(?P<kind>files|api/contents|api/collaboration/session|nbconvert)(?:/(?P<rest>.*))?\Z",
        re.S,
    )


def _flag(args: Mapping[str, list[str]], name: str) -> bool:
    return (args.get(name) or [""])[-1].lower() in _TRUE


def _contents_is_file_read(path: str, args: Mapping[str, list[str]]) -> bool:
    """The contents-API rule (module docstring): a file's content, not a listing."""
    content = (args.get("content") or [""])[-1]
    if content == "0":
        return False
    kind = (args.get("type") or [""])[-1]
    if kind in ("file", "notebook"):
        return True
    if kind:
        return False  # directory, or anything else
    return bool(path) and posixpath.splitext(posixpath.basename(path))[1] not in ("", ".")


def classify(entry: Mapping[str, str], hub_path: str = "/jupyter/") -> dict[str, Any] | None:
    """What one nginx line records: ``{"event", "identity", "user", "source", "object",
    "details"}`` for :meth:`AuditLog.append`, or None (not a read or export).

    ``hub_path`` is the hub's base URL (``/jupyter/``). Raises :class:`Malformed` for a
    line whose numbers are not numbers.
    """
    method, status = entry.get("method", ""), entry.get("status", "")
    if status not in _READ_STATUSES.get(method, ()):
        return None
    m = _url_pattern(hub_path).match(entry.get("uri", ""))
    if not m:
        return None
    user, server, kind = m["user"], m["server"] or "", m["kind"]
    if (method == "PUT") != (kind == "api/collaboration/session"):
        return None
    path = (m["rest"] or "").strip("/")
    args = parse_qs(entry.get("args", ""), keep_blank_values=True)
    try:
        size = int(entry.get("body_bytes_sent") or 0)
    except ValueError:
        raise Malformed(
            f"body_bytes_sent {entry.get('body_bytes_sent')!r} is not a number"
        ) from None
    details: dict[str, Any] = {"server": server, "bytes": size, "time": entry.get("time", "")}
    if status == "206":
        details["partial"] = True
    elif status == "304":
        details["not_modified"] = True
    if entry.get("range"):
        details["range"] = entry["range"]
    if kind == "files":
        if not path:
            return None
        event = "file_read"
        details |= {"via": "files", "download": _flag(args, "download")}
    elif kind == "api/contents":
        if not _contents_is_file_read(path, args):
            return None
        event = "file_read"
        details |= {"via": "contents"}
        for name in ("type", "format"):
            if args.get(name):
                details[name] = args[name][-1]
    elif kind == "api/collaboration/session":
        if not path:
            return None
        event = "file_read"
        details |= {"via": "collaboration"}
    else:
        fmt, _, path = path.partition("/")
        path = path.strip("/")
        if not fmt or not path:
            return None
        event = "export"
        details |= {"via": "nbconvert", "format": fmt, "download": _flag(args, "download")}
    identity = entry.get("identity", "")
    if identity in ("", "-"):
        identity = TOKEN_IDENTITY
        details["server_owner"] = user
    source: str | None = entry.get("remote_addr") or None
    try:
        source = str(ipaddress.ip_address(source)) if source else None
    except ValueError:
        details["remote_addr"] = source
        source = None
    return {
        "event": event,
        "identity": identity,
        "user": user,
        "source": source,
        "object": path,
        "details": details,
    }


def _warn(message: str) -> None:
    print(f"testbed_hub.audit collect-nginx: {message}", file=sys.stderr, flush=True)


def handle(data: bytes, log: AuditLog, hub_path: str) -> dict[str, Any] | None:
    """Parse, classify and append one datagram; the appended record, or None.

    Never raises for bad input or a failed write: both are reported on stderr (the
    journal) and the datagram is dropped.
    """
    try:
        fields = classify(parse_datagram(data), hub_path)
    except Malformed as e:
        _warn(f"dropped a malformed datagram: {e}")
        return None
    if fields is None:
        return None
    try:
        rest = {k: v for k, v in fields.items() if k not in ("event", "identity")}
        return log.append(fields["event"], fields["identity"], **rest)
    except (AuditError, OSError, ValueError) as e:
        _warn(f"ERROR: could not append to {log.path}: {e}; the record was {fields!r}")
        return None


def bind(path: str | os.PathLike[str], group: str | None = None) -> socket.socket:
    """The collector's datagram socket at ``path``: its folder 0750 and the socket 0660,
    both owned by ``group`` (nginx's workers' group, e.g. www-data) when given, so
    only root and that group can send. A stale socket file is replaced. The folder is
    left as it is unless it is the collector's own (same owner, no sticky bit)."""
    path = Path(path)
    gid = grp.getgrnam(group).gr_gid if group else -1
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    folder = path.parent.stat()
    # a folder of its own (systemd's RuntimeDirectory), never a shared one like /tmp
    if folder.st_uid == os.geteuid() and not folder.st_mode & stat.S_ISVTX:
        if gid != -1:
            os.chown(path.parent, -1, gid)
        os.chmod(path.parent, 0o750)  # noqa: S103 - the group (nginx) must reach the socket
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if gid != -1:
        os.chown(path, -1, gid)
    return sock


def serve(
    sock: socket.socket,
    log: AuditLog,
    hub_path: str = "/jupyter/",
    stop: threading.Event | None = None,
    on_record: Callable[[dict[str, Any] | None], None] | None = None,
) -> None:
    """Receive datagrams on ``sock`` until ``stop`` is set (forever without one).

    A reader thread drains the socket into a queue at once, so a slow append (one
    fsync per record) does not fill the socket's queue (nginx would drop lines);
    this thread appends. ``on_record`` is called after each datagram (tests).
    """
    stop = stop or threading.Event()
    pending: queue.Queue[bytes | None] = queue.Queue()
    sock.settimeout(0.5)

    def read() -> None:
        while not stop.is_set():
            try:
                pending.put(sock.recv(1 << 16))
            except TimeoutError:
                continue
            except OSError as e:
                if stop.is_set():
                    break
                _warn(f"receiving failed: {e}; retrying in {RETRY_SECONDS:g} s")
                # a persistent error (a closed socket) would otherwise warn in a tight loop
                stop.wait(RETRY_SECONDS)
        pending.put(None)

    reader = threading.Thread(target=read, name="collect-nginx-reader", daemon=True)
    reader.start()
    while (data := pending.get()) is not None:
        record = handle(data, log, hub_path)
        if on_record is not None:
            on_record(record)
    reader.join()
