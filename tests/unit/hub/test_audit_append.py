"""testbed_hub.audit: the record format, appending (checks, lock, modes), the size figure."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed_hub.audit import EVENTS, FIELDS, AuditError, AuditLog, rotate, verify
from testbed_hub.audit.record import ZERO, canonical

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def fill(path: Path, n: int, start: int = 0) -> list[dict]:
    """``n`` records, one second apart from ``T0 + start`` seconds."""
    log = AuditLog(path)
    return [
        log.append(
            "file_read",
            "alice@testbed.example",
            user="alice",
            source="192.0.2.10",
            object=f"/home/jovyan/nist/e42/take{i}.wav",
            now=T0 + timedelta(seconds=i),
        )
        for i in range(start, start + n)
    ]


def test_records_are_canonical_chained_lines(tmp_path):
    path = tmp_path / "audit.log"
    first, second = fill(path, 2)
    lines = path.read_bytes().split(b"\n")
    assert lines[2] == b"" and len(lines) == 3
    for line, record in zip(lines, (first, second), strict=False):
        assert json.loads(line) == record
        assert line == json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        body = {k: v for k, v in record.items() if k != "hash"}
        assert record["hash"] == hashlib.sha256(canonical(body)).hexdigest()
    assert set(first) == set(FIELDS)
    assert (first["seq"], first["prev"]) == (1, ZERO)
    assert (second["seq"], second["prev"]) == (2, first["hash"])
    assert first["time"] == "2025-03-01T09:00:00.000000Z"
    assert first["details"] == {}


def test_text_is_utf8_not_escaped_and_tuples_become_lists(tmp_path):
    path = tmp_path / "audit.log"
    rec = AuditLog(path).append(
        "batch_start", "josé@testbed.example", object=("e41", "e42"), details={"n": 2}, now=T0
    )
    assert rec["object"] == ["e41", "e42"]
    assert "josé".encode() in path.read_bytes()
    assert verify(path)


def test_every_documented_event_but_rotate_can_be_appended(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i, event in enumerate(e for e in EVENTS if e != "rotate"):
        log.append(event, "operator", now=T0 + timedelta(seconds=i))
    result = verify(path)
    assert result and result.records == len(EVENTS) - 1


BAD = [
    ({"event": "lgin"}, "event 'lgin' is not one of: login, logout, .*; e.g. event='login'"),
    ({"event": "rotate"}, r"rotate records are written by rotate\(\)"),
    ({"identity": ""}, "identity '' is missing: .* e.g. identity='alice@testbed.example'"),
    ({"identity": None}, "identity None is missing"),
    ({"user": ""}, "user '' must be a JupyterHub user name or None; e.g. user='alice'"),
    ({"source": "localhost"}, "source 'localhost' is not an IP address.*source='192.0.2.10'"),
    ({"details": ["e42"]}, r"details \['e42'\] must be a dict or None; e.g. details="),
    (
        {"details": {"when": T0}},
        r"details\['when'\] is a datetime.datetime, which is not JSON .*; e.g. details=",
    ),
    ({"details": {"x": float("nan")}}, r"details\['x'\] is nan, which JSON cannot hold"),
    ({"object": {1: "x"}}, r"object has the key 1 \(int\): keys must be text; e.g. object="),
    ({"object": "\udcff"}, "object is not valid Unicode text"),
    ({"now": datetime(2025, 3, 1, 9, 0)}, "has no timezone: pass an aware datetime"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[str(c) for c, _ in BAD])
def test_bad_input_is_refused_by_name_and_the_file_does_not_change(tmp_path, change, message):
    path = tmp_path / "audit.log"
    fill(path, 3)
    before = path.read_bytes()
    args = {"event": "login", "identity": "alice@testbed.example", "now": T0} | change
    with pytest.raises(ValueError, match=message):
        AuditLog(path).append(args.pop("event"), args.pop("identity"), **args)
    assert path.read_bytes() == before
    fresh = tmp_path / "new" / "audit.log"
    with pytest.raises(ValueError, match=message):
        args = {"event": "login", "identity": "alice@testbed.example", "now": T0} | change
        AuditLog(fresh).append(args.pop("event"), args.pop("identity"), **args)
    assert not fresh.parent.exists()


def test_ipv6_source_is_kept_in_its_short_form(tmp_path):
    rec = AuditLog(tmp_path / "a.log").append("login", "a@t", source="2001:DB8::0:1", now=T0)
    assert rec["source"] == "2001:db8::1"


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        (lambda b: b + b'{"seq":4,"ti', "audit.log line 4: the last line has no newline"),
        (
            lambda b: b.replace(b"take2", b"take9"),
            "audit.log line 3 (seq 3): hash does not match its content",
        ),
        (lambda b: b + b"\n", "audit.log line 4: the line is empty"),
    ],
    ids=["torn", "edited", "blank"],
)
def test_append_and_rotate_refuse_a_damaged_tail(tmp_path, damage, where):
    path = tmp_path / "audit.log"
    fill(path, 3)
    path.write_bytes(damage(path.read_bytes()))
    before = path.read_bytes()
    for attempt in (lambda: fill(path, 1, start=3), lambda: rotate(path)):
        with pytest.raises(AuditError) as e:
            attempt()
        assert where in str(e.value)
        assert "Nothing was written; run `python -m testbed_hub.audit verify" in str(e.value)
        assert e.value.code == 1
        assert path.read_bytes() == before
    assert not (tmp_path / "audit.log.1").exists()


def test_the_tail_is_found_across_read_blocks(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    big = log.append("export", "a@t", details={"files": ["x" * 50] * 400}, now=T0)
    assert len(canonical(big)) > 3 * 4096
    nxt = log.append("export", "a@t", now=T0)
    assert (nxt["seq"], nxt["prev"]) == (2, big["hash"])


def test_append_reads_only_the_tail(tmp_path, monkeypatch):
    path = tmp_path / "audit.log"
    fill(path, 300)
    assert path.stat().st_size > 80_000
    read = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: read.append(n) or real(fd, n, at))
    rec = fill(path, 1, start=300)[0]
    assert rec["seq"] == 301
    assert 0 < sum(read) <= 4096


def test_a_clock_behind_the_log_keeps_time_from_going_back(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append("login", "a@t", now=T0 + timedelta(seconds=10))
    rec = log.append("logout", "a@t", details={"why": "idle"}, now=T0)
    assert rec["time"] == "2025-03-01T09:00:10.000000Z"
    assert rec["details"] == {"why": "idle", "clock": "2025-03-01T09:00:00.000000Z"}
    assert verify(path)


def test_files_are_private(tmp_path):
    folder = tmp_path / "audit"
    path = folder / "audit.log"
    old = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        fill(path, 2)
        rotate(path, now=T0 + timedelta(seconds=5))
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("audit.log", "audit.log.1", "audit.log.lock"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


def _writer(path: str, worker: int) -> None:
    log = AuditLog(path)
    for i in range(50):
        log.append("file_read", f"w{worker}@testbed.example", object=f"/data/{worker}/{i}")


def test_concurrent_writers_serialise(tmp_path):
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    result = verify(path)
    assert result, result.problem
    assert (result.records, result.last_seq) == (200, 200)
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 201))
    for w in range(4):
        mine = [r["object"] for r in records if r["identity"] == f"w{w}@testbed.example"]
        assert mine == [f"/data/{w}/{i}" for i in range(50)]


def realistic(i: int) -> tuple[str, str, dict]:
    """A testbed day's mix: logins, servers, reads of recordings, batches, exports, playbooks."""
    who = ["alice", "bob", "carol", "dmitri"][i % 4]
    identity = f"{who}@testbed.example"
    exp = f"m2e-2025-03-{1 + i % 28:02d}-{i:03d}"
    net = {"user": who, "source": f"10.20.{i % 7}.{10 + i % 200}"}
    kinds = [
        ("login", {**net, "details": {"header": "X-Testbed-Identity"}}),
        ("server_start", {**net, "object": f"{who}/", "details": {"image": "testbed-nb:1.4"}}),
        (
            "file_read",
            {**net, "object": f"/home/jovyan/nist/{exp}/rx/Rx_F1_b15_s7_{i}.wav"},
        ),
        ("file_read", {**net, "object": f"/home/jovyan/nist/{exp}/results.csv"}),
        ("batch_start", {**net, "object": [exp, f"m2e-ref-{i:03d}"], "details": {"notebooks": 3}}),
        ("batch_end", {**net, "object": [exp, f"m2e-ref-{i:03d}"], "details": {"status": "ok"}}),
        ("export", {**net, "object": f"/srv/exports/{exp}.zip", "details": {"bytes": 48213344}}),
        ("server_stop", {**net, "object": f"{who}/", "details": {"reason": "idle"}}),
        ("logout", net),
        (
            "playbook_run",
            {"object": ["jupyterhub", "reverse_proxy"], "details": {"check": False}},
        ),
    ]
    event, kw = kinds[i % len(kinds)]
    return event, ("ops-admin" if event == "playbook_run" else identity), kw


def test_one_hundred_realistic_records_stay_under_40_kb(tmp_path, record_property):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i in range(100):
        event, identity, kw = realistic(i)
        log.append(event, identity, now=T0 + timedelta(seconds=37 * i), **kw)
    size = path.stat().st_size
    record_property("bytes_per_100", size)
    print(f"bytes per 100 realistic audit records: {size}")
    assert verify(path).records == 100
    assert size < 40_000  # measured: 34_790 bytes (about 350 a record; 128 are the two hashes)
