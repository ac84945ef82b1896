"""testbed_hub.audit.nginx: nginx's audit lines -> file_read / export records.

The classification table (which GETs are reads, which are not), the syslog framing,
malformed datagrams dropped without stopping the collector, and a real unix datagram
socket round trip into a temporary audit log whose chain verifies afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from testbed_hub.audit import AuditLog, report, verify
from testbed_hub.audit.nginx import Malformed, bind, classify, handle, parse_datagram, serve

HUB = "/jupyter/"


def entry(uri: str, args: str = "", **kw) -> dict[str, str]:
    base = {
        "time": "2026-11-30T17:40:00+00:00",
        "remote_addr": "192.0.2.10",
        "identity": "alice@testbed.example",
        "method": "GET",
        "uri": uri,
        "args": args,
        "status": "200",
        "body_bytes_sent": "1234",
    }
    return base | kw


def datagram(e: dict[str, str]) -> bytes:
    """What nginx sends: ``<PRI>TIMESTAMP TAG: MSG`` (nohostname)."""
    return b"<190>Nov 30 17:40:00 testbed_audit: " + json.dumps(e).encode()


# (uri, args, kw) -> (event, object, selected details) or None
TABLE = [
    # files/: every 200 GET of a path is a read; download flag from ?download
    (
        ("/jupyter/user/alice/files/nist/e42/take1.wav", "", {}),
        ("file_read", "nist/e42/take1.wav", {"via": "files", "download": False, "server": ""}),
    ),
    (
        ("/jupyter/user/alice/files/data/r.csv", "download=1&_xsrf=x", {}),
        ("file_read", "data/r.csv", {"download": True, "bytes": 1234}),
    ),
    (("/jupyter/user/alice/files/a b/ü.txt", "", {}), ("file_read", "a b/ü.txt", {})),
    # a folder called files on the default server, not a server called files
    (
        ("/jupyter/user/alice/files/files/x.csv", "", {}),
        ("file_read", "files/x.csv", {"server": ""}),
    ),
    # named server
    (("/jupyter/user/alice/gpu/files/x.csv", "", {}), ("file_read", "x.csv", {"server": "gpu"})),
    (("/jupyter/user/alice/files/", "", {}), None),
    # contents API: file content only
    (
        ("/jupyter/user/alice/api/contents/e42/run.ipynb", "type=notebook&content=1", {}),
        ("file_read", "e42/run.ipynb", {"via": "contents", "type": "notebook"}),
    ),
    (
        ("/jupyter/user/alice/api/contents/e42/notes", "type=file&format=text&content=1", {}),
        ("file_read", "e42/notes", {"type": "file", "format": "text"}),
    ),
    (
        ("/jupyter/user/alice/api/contents/e42/r.csv", "", {}),
        ("file_read", "e42/r.csv", {"via": "contents"}),
    ),
    (
        ("/jupyter/user/alice/api/contents/e42/r.csv", "content=1&hash=0", {}),
        ("file_read", "e42/r.csv", {}),
    ),
    (
        ("/jupyter/user/alice/lab2/api/contents/r.csv", "type=file", {}),
        ("file_read", "r.csv", {"server": "lab2"}),
    ),
    # JupyterLab's file browser listing (no type, no suffix): not recorded
    (("/jupyter/user/alice/api/contents/e42", "content=1", {}), None),
    (("/jupyter/user/alice/api/contents/", "content=1", {}), None),
    (("/jupyter/user/alice/api/contents/e42", "type=directory&content=1", {}), None),
    # metadata checks (JupyterLab before saving): not recorded
    (("/jupyter/user/alice/api/contents/e42/run.ipynb", "type=notebook&content=0", {}), None),
    (("/jupyter/user/alice/api/contents/e42/r.csv", "content=0", {}), None),
    # the rule's known limit: a folder with a dot, listed without type, counts as a read
    (("/jupyter/user/alice/api/contents/run.2025", "content=1", {}), ("file_read", "run.2025", {})),
    # nbconvert: export
    (
        ("/jupyter/user/alice/nbconvert/html/e42/run.ipynb", "download=true", {}),
        ("export", "e42/run.ipynb", {"format": "html", "download": True, "via": "nbconvert"}),
    ),
    (("/jupyter/user/alice/nbconvert/html/", "", {}), None),
    # real-time collaboration: a content=0 check, then the session PUT (200 or 201)
    (
        ("/jupyter/user/alice/api/collaboration/session/e42/run.ipynb", "", {"method": "PUT"}),
        ("file_read", "e42/run.ipynb", {"via": "collaboration", "server": ""}),
    ),
    (
        (
            "/jupyter/user/alice/gpu/api/collaboration/session/a b/ü.txt",
            "",
            {"method": "PUT", "status": "201"},
        ),
        ("file_read", "a b/ü.txt", {"via": "collaboration", "server": "gpu"}),
    ),
    (
        (
            "/jupyter/user/alice/api/collaboration/session/x.txt",
            "",
            {"method": "PUT", "status": "404"},
        ),
        None,
    ),
    (("/jupyter/user/alice/api/collaboration/session/x.txt", "", {}), None),  # GET
    (("/jupyter/user/alice/api/collaboration/session/", "", {"method": "PUT"}), None),
    (("/jupyter/user/alice/api/collaboration/room/json:notebook:1", "", {}), None),
    (("/jupyter/user/alice/files/x.csv", "", {"method": "PUT"}), None),
    # range requests: 206 Partial Content, whole files in pieces
    (
        ("/jupyter/user/alice/files/e42/a.wav", "", {"status": "206", "range": "bytes=0-"}),
        ("file_read", "e42/a.wav", {"via": "files", "partial": True, "range": "bytes=0-"}),
    ),
    (
        ("/jupyter/user/alice/nbconvert/html/r.ipynb", "", {"status": "206", "range": "bytes=5-9"}),
        ("export", "r.ipynb", {"partial": True, "range": "bytes=5-9"}),
    ),
    # a revalidation: the browser shows its cached copy again
    (
        ("/jupyter/user/alice/files/x.csv", "", {"status": "304", "body_bytes_sent": "0"}),
        ("file_read", "x.csv", {"not_modified": True, "bytes": 0}),
    ),
    # not a read status or method, or not a read URL
    (("/jupyter/user/alice/files/x.csv", "", {"status": "404"}), None),
    (("/jupyter/user/alice/files/x.csv", "", {"status": "416"}), None),
    (("/jupyter/user/alice/files/x.csv", "", {"status": "201"}), None),
    (("/jupyter/user/alice/files/x.csv", "", {"method": "HEAD"}), None),
    (("/jupyter/user/alice/api/contents/x.csv", "", {"method": "PUT"}), None),
    (("/jupyter/user/alice/lab/tree/x.csv", "", {}), None),
    (("/jupyter/hub/api/users", "", {}), None),
    (("/other/user/alice/files/x.csv", "", {}), None),
]


@pytest.mark.parametrize(("given", "expected"), TABLE, ids=[f"{g[0]}?{g[1]}" for g, _ in TABLE])
def test_classification(given, expected):
    uri, args, kw = given
    got = classify(entry(uri, args, **kw), HUB)
    if expected is None:
        assert got is None
        return
    event, obj, details = expected
    assert (got["event"], got["object"], got["user"]) == (event, obj, "alice")
    assert (got["identity"], got["source"]) == ("alice@testbed.example", "192.0.2.10")
    assert got["details"]["time"] == "2026-11-30T17:40:00+00:00"
    assert {k: got["details"][k] for k in details} == details


def test_plain_read_has_no_partial_or_cache_details():
    got = classify(entry("/jupyter/user/alice/files/x.csv"), HUB)
    assert not {"partial", "not_modified", "range", "server_owner"} & set(got["details"])


def test_token_request_credits_no_one_and_log_takes_it(tmp_path):
    # bob's token on alice's shared server: the URL names the owner, not the holder
    got = classify(entry("/jupyter/user/alice/files/x.csv", identity=""), HUB)
    assert (got["identity"], got["user"]) == ("(api token)", "alice")
    assert got["details"]["server_owner"] == "alice"
    record = AuditLog(tmp_path / "audit.log").append(
        got["event"],
        got["identity"],
        **{k: got[k] for k in ("user", "source", "object", "details")},
    )
    assert record["identity"] == "(api token)" and record["seq"] == 1
    assert classify(entry("/jupyter/user/alice/files/x.csv", identity="-"), HUB)["identity"] == (
        "(api token)"
    )


def test_other_hub_path_and_bad_address():
    got = classify(entry("/lab/hub/user/alice/files/x", remote_addr="unix:"), "/lab/hub/")
    assert got["object"] == "x" and got["source"] is None
    assert got["details"]["remote_addr"] == "unix:"
    assert classify(entry("/jupyter/user/alice/files/x"), "/lab/hub/") is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b'<190>Nov 30 17:40:00 other_tag: {"time": "x"}',
        b"<190>Nov 30 17:40:00 testbed_audit: {not json",
        b"<190>Nov 30 17:40:00 testbed_audit: [1, 2]",
        b'<190>Nov 30 17:40:00 testbed_audit: {"time": "x"}',
        b"<190>Nov 30 17:40:00 testbed_audit: \xff\xfe",
    ],
)
def test_malformed_datagrams_are_refused(data):
    with pytest.raises(Malformed):
        parse_datagram(data)


def test_parse_strips_the_syslog_header():
    e = entry("/jupyter/user/alice/files/x")
    assert parse_datagram(datagram(e) + b"\n") == e


def test_parse_keeps_the_optional_range():
    e = entry("/jupyter/user/alice/files/x", range="bytes=0-99")
    assert parse_datagram(datagram(e))["range"] == "bytes=0-99"
    with pytest.raises(Malformed):
        parse_datagram(datagram(e | {"range": 5}))


def test_malformed_and_refused_are_reported_and_dropped(tmp_path, capsys):
    log = AuditLog(tmp_path / "audit.log")
    assert handle(b"junk", log, HUB) is None
    bad_bytes = datagram(entry("/jupyter/user/alice/files/x", body_bytes_sent="lots"))
    assert handle(bad_bytes, log, HUB) is None
    err = capsys.readouterr().err
    assert err.count("dropped a malformed datagram") == 2, err
    # a damaged log refuses the append: reported loudly, not raised
    (tmp_path / "audit.log").write_bytes(b"torn")
    assert handle(datagram(entry("/jupyter/user/alice/files/x")), log, HUB) is None
    err = capsys.readouterr().err
    assert "ERROR: could not append to" in err and str(tmp_path / "audit.log") in err
    assert "'object': 'x'" in err


def test_socket_round_trip_into_the_log(tmp_path):
    folder = tmp_path / "run"
    path = folder / "nginx.sock"
    log = AuditLog(tmp_path / "log" / "audit.log")
    sock = bind(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    stop = threading.Event()
    seen: list = []
    done = threading.Condition()

    def on_record(record):
        with done:
            seen.append(record)
            done.notify_all()

    t = threading.Thread(target=serve, args=(sock, log, HUB, stop, on_record), daemon=True)
    t.start()
    sends = [
        datagram(entry("/jupyter/user/alice/files/e42/a.wav")),
        b"garbage",
        datagram(entry("/jupyter/user/alice/api/contents/e42", "content=1")),  # a listing
        datagram(entry("/jupyter/user/bob/nbconvert/pdf/r.ipynb", identity="")),
    ] + [datagram(entry(f"/jupyter/user/carol/files/f{i}.csv")) for i in range(30)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        for data in sends:
            client.sendto(data, str(path))
    with done:
        assert done.wait_for(lambda: len(seen) == len(sends), timeout=60), len(seen)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive()
    sock.close()
    rows = report(log.path)
    assert [r["event"] for r in rows] == ["file_read", "export"] + ["file_read"] * 30
    assert (rows[0]["identity"], rows[0]["object"]) == ("alice@testbed.example", "e42/a.wav")
    assert (rows[1]["identity"], rows[1]["user"]) == ("(api token)", "bob")
    assert rows[1]["details"]["server_owner"] == "bob"
    assert [r["object"] for r in rows[2:]] == [f"f{i}.csv" for i in range(30)]
    result = verify(log.path)
    assert result and result.records == 32, result.summary()
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def wait_for_a_record(proc: subprocess.Popen, log, deadline: float) -> None:
    """Until the collector ``proc`` has written a whole line to ``log``; fails with its
    stderr when it exits or ``deadline`` (monotonic) passes."""
    while not (log.exists() and log.read_bytes().endswith(b"\n")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)


def test_cli_collects_until_sigterm(tmp_path):
    sock = tmp_path / "run" / "nginx.sock"
    log = tmp_path / "audit.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed_hub.audit", "collect-nginx", "--log", str(log)]
        + ["--socket", str(sock), "--hub-path", HUB],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.is_socket():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(datagram(entry("/jupyter/user/alice/files/x.csv")), str(sock))
        wait_for_a_record(proc, log, deadline)
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
    assert rc == 0, proc.stderr.read()
    assert not sock.exists()
    assert [r["object"] for r in report(log)] == ["x.csv"]
    assert verify(log)


def test_cli_takes_the_socket_from_systemd_and_leaves_it(tmp_path):
    """Socket activation: fd 3 with LISTEN_PID/LISTEN_FDS, as systemd passes it."""
    path = tmp_path / "nginx.sock"
    log = tmp_path / "audit.log"
    sock = bind(path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"', "sh"]
        + [sys.executable, "-m", "testbed_hub.audit", "collect-nginx", "--log", str(log)]
        + ["--socket", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        pass_fds=(3,),
        preexec_fn=lambda: os.dup2(sock.fileno(), 3),  # noqa: PLW1509 - test only
    )
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(datagram(entry("/jupyter/user/alice/files/y.csv")), str(path))
        wait_for_a_record(proc, log, time.monotonic() + 60)
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
    err = proc.stderr.read()
    assert rc == 0 and "from systemd" in err, err
    assert path.is_socket(), "the socket belongs to systemd: left in place"
    assert [r["object"] for r in report(log)] == ["y.csv"]
    sock.close()


class BrokenSocket:
    """A socket whose every receive fails, as a closed or broken one does."""

    def __init__(self):
        self.calls = 0

    def settimeout(self, _):
        pass

    def recv(self, _):
        self.calls += 1
        raise OSError(9, "Bad file descriptor")


def test_reader_waits_between_repeated_errors(tmp_path, capsys):
    sock, stop = BrokenSocket(), threading.Event()
    t = threading.Thread(target=serve, args=(sock, AuditLog(tmp_path / "a.log"), HUB, stop))
    t.start()
    time.sleep(0.5)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive()
    err = capsys.readouterr().err
    assert sock.calls <= 2 and err.count("receiving failed") <= 2, (sock.calls, err[:300])
    assert "retrying in 1 s" in err
