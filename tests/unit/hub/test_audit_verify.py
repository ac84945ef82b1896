"""testbed_hub.audit: verify names the first break in the chain; rotation keeps the chain."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from testbed_hub.audit import AuditError, AuditLog, rotate, verify
from testbed_hub.audit.record import canonical, digest

from .test_audit_append import T0, fill


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rehash(line: bytes, **change) -> bytes:
    """The line with fields changed and its hash recomputed: a forger's edit."""
    record = json.loads(line) | change
    record["hash"] = digest(record)
    return canonical(record) + b"\n"


def rechain(rows: list[bytes], start: int) -> list[bytes]:
    """Recompute prev and hash from row ``start`` on: a forger who rewrites the rest."""
    out = rows[:start]
    for row in rows[start:]:
        out.append(rehash(row, prev=json.loads(out[-1])["hash"]))
    return out


def removed(rows):
    return rows[:4] + rows[5:]


def copied(rows):
    return rows[:6] + [rows[2]] + rows[6:]


def forged(rows):
    fake = rehash(rows[6], prev=json.loads(rows[5])["hash"], object="/forged", seq=7)
    return rows[:6] + [fake] + rows[6:]


def edited(rows):
    return rows[:3] + [rows[3].replace(b"alice@", b"mallory@")] + rows[4:]


def edited_rehashed(rows):
    return rows[:3] + [rehash(rows[3], identity="mallory@testbed.example")] + rows[4:]


def swapped(rows):
    return rows[:5] + [rows[6], rows[5]] + rows[7:]


def cut_mid_line(rows):
    return rows[:9] + [rows[9][:40]]


def blank(rows):
    return rows[:2] + [b"\n"] + rows[2:]


def reformatted(rows):
    return rows[:7] + [json.dumps(json.loads(rows[7])).encode() + b"\n"] + rows[8:]


def time_back(rows):
    early = rehash(rows[4], time="2025-03-01T08:59:59.000000Z")
    return rechain(rows[:4] + [early] + rows[5:], 5)


TAMPER = [
    (removed, 5, 6, "seq jumps from 4 (audit.log line 4 (seq 4)) to 6 — 1 record(s) removed"),
    (copied, 7, 3, "seq 3 follows seq 6 (audit.log line 6 (seq 6)) — a line was inserted"),
    (forged, 8, 7, "seq 7 follows seq 7 (audit.log line 7 (seq 7)) — a line was inserted"),
    (edited, 4, 4, "hash does not match its content — the line was altered"),
    (edited_rehashed, 5, 5, "prev does not match the hash of the record before it"),
    (swapped, 6, 7, "seq jumps from 5 (audit.log line 5 (seq 5)) to 7"),
    (cut_mid_line, 10, None, "the last line has no newline — the file was cut off"),
    (blank, 3, None, "the line is empty"),
    (reformatted, 8, 8, "the line is not in canonical JSON form"),
    (time_back, 5, 5, "time 2025-03-01T08:59:59.000000Z is before 2025-03-01T09:00:03.000000Z"),
]


@pytest.mark.parametrize(
    ("tamper", "line", "seq", "what"), TAMPER, ids=[t[0].__name__ for t in TAMPER]
)
def test_each_tampering_is_named_by_file_and_line(tmp_path, tamper, line, seq, what):
    path = tmp_path / "audit.log"
    fill(path, 10)
    assert verify(path).ok
    path.write_bytes(b"".join(tamper(lines(path))))
    result = verify(path)
    assert not result
    assert (result.file, result.line, result.seq) == ("audit.log", line, seq)
    named = f"audit.log line {line}" + (f" (seq {seq})" if seq else "")
    assert result.problem.startswith(named + ": "), result.problem
    assert what in result.problem, result.problem


def rotated_log(tmp_path: Path, files: int = 3) -> Path:
    """``files - 1`` rotations with 4 appends before each and after the last: seq 1..."""
    path = tmp_path / "audit.log"
    for k in range(files):
        fill(path, 4, start=10 * k)
        if k < files - 1:
            rotate(path, identity="ops-admin", now=T0 + timedelta(seconds=10 * k + 5))
    return path


def test_rotating_twice_keeps_the_chain(tmp_path):
    path = rotated_log(tmp_path, files=3)
    result = verify(path)
    assert result, result.problem
    assert (result.records, result.files, result.first_seq, result.last_seq) == (14, 3, 1, 14)
    assert result.summary() == (
        f"intact: 14 records in 3 files, last seq 14, last hash {result.last_hash}"
    )
    first = json.loads(lines(path)[0])
    end_of_1 = json.loads(lines(tmp_path / "audit.log.1")[-1])
    assert first["event"] == "rotate" and first["identity"] == "ops-admin"
    assert first["prev"] == end_of_1["hash"]
    assert first["object"] == {"file": "audit.log.1", "last_seq": 9, "last_hash": end_of_1["hash"]}
    assert [json.loads(x)["seq"] for x in lines(tmp_path / "audit.log.2")] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("gone", "problem"),
    [
        ("audit.log.1", "audit.log.1: audit.log.1 is missing, but the older audit.log.2 exists"),
        ("audit.log", "audit.log: audit.log is missing, but the older audit.log.1 exists"),
    ],
)
def test_a_deleted_file_names_the_missing_link(tmp_path, gone, problem):
    path = rotated_log(tmp_path, files=3)
    (tmp_path / gone).unlink()
    result = verify(path)
    assert (result.ok, result.file, result.line) == (False, gone, None)
    assert result.problem.startswith(problem), result.problem


def test_a_deleted_middle_file_of_four(tmp_path):
    path = rotated_log(tmp_path, files=4)
    (tmp_path / "audit.log.2").unlink()
    result = verify(path)
    assert result.problem.startswith(
        "audit.log.2: audit.log.2 is missing, but the older audit.log.3 exists — the chain has "
        "no link there"
    ), result.problem


def test_a_deleted_oldest_file_is_not_mistaken_for_the_start(tmp_path):
    path = rotated_log(tmp_path, files=3)
    (tmp_path / "audit.log.2").unlink()
    result = verify(path)
    assert (result.file, result.line, result.seq) == ("audit.log.1", 1, 5)
    assert "the chain starts here, linked to seq 4" in result.problem
    assert "an older rotated file was deleted" in result.problem


def test_a_rotated_file_cut_short_at_a_line_end(tmp_path):
    path = rotated_log(tmp_path, files=3)
    one = tmp_path / "audit.log.1"
    one.write_bytes(b"".join(lines(one)[:-1]))
    result = verify(path)
    assert (result.file, result.line, result.seq) == ("audit.log", 1, 10)
    assert "the rotate record links to seq 9" in result.problem
    assert "the file before it ends at audit.log.1 line 4 (seq 8)" in result.problem


def test_an_edit_in_a_rotated_file(tmp_path):
    path = rotated_log(tmp_path, files=3)
    one = tmp_path / "audit.log.1"
    one.write_bytes(one.read_bytes().replace(b"take12", b"take99"))
    result = verify(path)
    assert result.problem.startswith(
        "audit.log.1 line 4 (seq 8): hash does not match its content — the line was altered"
    ), result.problem


def test_a_file_whose_rotate_record_was_removed(tmp_path):
    path = rotated_log(tmp_path, files=2)
    path.write_bytes(b"".join(lines(path)[1:]))
    result = verify(path)
    assert (result.file, result.line, result.seq) == ("audit.log", 1, 6)
    assert "a file_read record starts this file, where the rotate record" in result.problem


def test_keep_drops_old_files_and_says_so(tmp_path):
    path = tmp_path / "audit.log"
    for k in range(4):
        fill(path, 2, start=10 * k)
        rotate(path, keep=2, now=T0 + timedelta(seconds=10 * k + 5))
    assert sorted(p.name for p in tmp_path.glob("audit.log.*")) == [
        "audit.log.1",
        "audit.log.2",
        "audit.log.lock",
    ]
    last = json.loads(lines(path)[0])
    assert last["details"]["dropped"][0]["file"] == "audit.log.3"
    result = verify(path)
    assert result, result.problem
    assert (result.first_seq, result.last_seq, result.records, result.files) == (6, 12, 7, 3)
    assert "(from seq 6; older files dropped)" in result.summary()
    (tmp_path / "audit.log.2").unlink()  # by hand: not recorded anywhere
    assert "the chain starts here" in verify(path).problem


def test_appends_after_a_rotation_continue_the_chain(tmp_path):
    path = rotated_log(tmp_path, files=2)
    rec = AuditLog(path).append("logout", "alice@testbed.example", now=T0 + timedelta(minutes=5))
    assert rec["seq"] == 10
    assert verify(path).last_hash == rec["hash"]


def test_rotating_nothing(tmp_path):
    assert rotate(tmp_path / "audit.log") is None
    assert not (tmp_path / "audit.log").exists()
    with pytest.raises(AuditError, match="no audit log at"):
        verify(tmp_path / "audit.log")
    with pytest.raises(ValueError, match="keep 0 must be a whole number >= 1"):
        rotate(tmp_path / "audit.log", keep=0)


def test_an_interrupted_rotation_is_refused_with_the_fix(tmp_path):
    path = rotated_log(tmp_path, files=2)
    path.rename(tmp_path / "audit.log.new")  # as if the last rename never happened
    with pytest.raises(AuditError, match=r"audit.log.new .*audit.log` finishes it"):
        fill(path, 1, start=50)
    assert not path.exists()
    assert "audit.log is missing" in verify(path).problem
