"""playbooks/audit-report.yml against local audit logs (connection local, no station).

One ansible-playbook run, one host per case: bad arguments are refused by the first
task (nothing runs on the station), a good log is printed, filtered and written as
CSV on the control node, a log with an edited line fails naming that line.
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testbed_devtools.roletest import ROOT, inventory_report, playbook_json
from testbed_hub.audit import EVENTS, AuditLog

PLAYBOOK = ROOT / "playbooks" / "audit-report.yml"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

BAD = {
    "bad-since": ({"since": "yesterday"}, 'since "yesterday" is not a UTC date or time'),
    "bad-until": ({"until": "2026-13"}, 'until "2026-13" is not a UTC date or time'),
    "bad-event": ({"event": "hack"}, 'event "hack" is not one of login, logout'),
    "bad-user": ({"user": "al ice"}, 'user "al ice" is not a hub user name'),
    "bad-experiment": ({"experiment": "e 42"}, 'experiment "e 42" is not an experiment id'),
    "bad-csv": (
        {"audit_csv": "/nonexistent/folder/a.csv"},
        "the folder /nonexistent/folder does not exist on the control node",
    ),
}


def _fill(path: Path) -> None:
    log = AuditLog(path)
    log.append("login", "alice@testbed.example", user="alice", source="192.0.2.10", now=T0)
    log.append(
        "file_read",
        "alice@testbed.example",
        user="alice",
        source="192.0.2.10",
        object="e42/take1.wav",
        details={"bytes": 10},
        now=T0 + timedelta(hours=1),
    )
    log.append("file_read", "token:bob", user="bob", object="e7/r.csv", now=T0 + timedelta(days=2))
    log.append("playbook_run", "operator", object=["all"], now=T0 + timedelta(days=3))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit-report")
    venv = str(Path(sys.executable).parent.parent)
    hosts = {}
    for name in ("good", "broken", *BAD):
        (tmp / name).mkdir()
        _fill(tmp / name / "audit.log")
        hosts[name] = {"jupyterhub_audit_log": str(tmp / name / "audit.log")}
    hosts["good"] |= {"user": "alice", "since": "2026-11-02", "audit_csv": str(tmp / "a.csv")}
    broken = tmp / "broken" / "audit.log"
    lines = broken.read_bytes().splitlines(keepends=True)
    broken.write_bytes(
        b"".join(lines[:2] + [lines[2].replace(b"e7/r.csv", b"e7/x.csv")] + lines[3:])
    )
    for name, (extra, _msg) in BAD.items():
        hosts[name] |= extra
    report, res = inventory_report(
        PLAYBOOK, hosts, tmp, all_vars={"jupyterhub_venv_dir": venv}, timeout=300
    )
    return tmp, report, playbook_json(res)


def _task_msgs(data: dict, host: str, task: str) -> list:
    return [
        t["hosts"][host].get("msg")
        for p in data["plays"]
        for t in p["tasks"]
        if t["task"]["name"] == task and host in t["hosts"]
    ]


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_are_refused_before_anything_runs(run, case):
    _tmp, report, data = run
    assert report[case]["failed"] and report[case]["task"] == "Refuse bad report arguments"
    msg = " ".join(report[case]["msg"].split())
    assert BAD[case][1] in msg, msg
    assert "Nothing was run on the station" in msg


def test_good_log_is_printed_filtered_and_fetched_as_csv(run):
    tmp, report, data = run
    assert not report["good"]["failed"], report["good"]
    assert report["good"]["changed"] == ["Write the CSV on the control node"]
    (printed,) = _task_msgs(data, "good", "Print the records")
    assert len(printed) == 2, printed
    assert printed[0].startswith("#1 2026-11-02T09:00:00.000000Z login alice@testbed.example")
    assert "user=alice from=192.0.2.10 e42/take1.wav" in printed[1]
    (summary,) = _task_msgs(data, "good", "Print the chain's state")
    assert summary.startswith("intact: 4 records in 1 files"), summary
    # several stations: one file each, named after the host
    with open(tmp / "a.csv.good", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["event"], r["object"]) for r in rows] == [
        ("login", ""),
        ("file_read", "e42/take1.wav"),
    ]


def test_broken_chain_fails_naming_the_line(run):
    _tmp, report, _data = run
    assert report["broken"]["failed"]
    assert report["broken"]["task"] == "Fail when the log is damaged or cannot be read"
    assert "audit.log line 3 (seq 3)" in report["broken"]["msg"], report["broken"]["msg"]


def test_events_agree_with_the_audit_module():
    import yaml

    play = yaml.safe_load(PLAYBOOK.read_text())[0]
    assert play["vars"]["__audit_events"] == list(EVENTS)
