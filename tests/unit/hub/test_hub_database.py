"""The hub database: its schema revision every run, and the upgrade with a checked backup.

The old database is a real one: ``data/jupyterhub-5.5.4.sql``, written by JupyterHub
5.5.4's own start-up (``data/make_jupyterhub5_db.py`` says how), rebuilt here with
sqlite3. The installed JupyterHub (the current release) refuses to open it until
``testbed_hub.database upgrade`` has run JupyterHub's own upgrade on it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jupyterhub
import pytest
from jupyterhub import orm

from testbed_hub import database

DATA = Path(__file__).with_name("data")
OLD_HEAD = "4621fec11365"  # JupyterHub 5.5.4's newest alembic revision
# revisions JupyterHub 6 added after 5.5.4 (jupyterhub/alembic/versions)
NEW_IN_6 = {"be8ecf03ddac", "afd65840b69e", "ff1860e38070", "f460b0348206"}


def old_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript((DATA / "jupyterhub-5.5.4.sql").read_text(encoding="utf-8"))
    con.close()
    return path


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed_hub.database", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_the_fixture_is_jupyterhub_5_and_this_jupyterhub_refuses_it(tmp_path):
    path = old_db(tmp_path / "jupyterhub.sqlite")
    head = database.status(url(path))["head"]
    assert jupyterhub.version_info[0] >= 6 and head in NEW_IN_6
    with pytest.raises(orm.DatabaseSchemaMismatch, match="upgrade-db"):
        orm.new_session_factory(url(path))


def test_status_of_the_previous_release_database_says_upgrade(tmp_path):
    path = old_db(tmp_path / "jupyterhub.sqlite")
    before = path.read_bytes()
    got = database.status(url(path))
    assert got["state"] == "upgrade", got
    assert got["revision"] == OLD_HEAD
    assert got["db_url"] == url(path)
    assert path.read_bytes() == before  # read-only
    assert not Path(f"{path}-journal").exists()


def test_status_of_a_missing_or_new_database_says_absent(tmp_path):
    missing = tmp_path / "nothing-here.sqlite"
    got = database.status(url(missing))
    assert (got["state"], got["revision"]) == ("absent", None)
    assert not missing.exists()  # not created by looking
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    assert database.status(url(empty))["state"] == "absent"


def test_status_of_a_current_database(tmp_path):
    path = tmp_path / "jupyterhub.sqlite"
    orm.new_session_factory(url(path))().close()  # as this JupyterHub creates it
    got = database.status(url(path))
    assert got["state"] == "current" and got["revision"] == got["head"]


def test_a_revision_this_jupyterhub_does_not_know_is_a_downgrade(tmp_path):
    path = old_db(tmp_path / "jupyterhub.sqlite")
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = 'abcdef123456'")
    con.commit()
    con.close()
    got = database.status(url(path))
    assert got["state"] == "unknown" and got["revision"] == "abcdef123456"
    assert f"JupyterHub {jupyterhub.__version__}" in got["message"]
    assert "cannot downgrade" in got["message"]
    before = path.read_bytes()
    with pytest.raises(database.DatabaseError, match="cannot downgrade"):
        database.upgrade(url(path), tmp_path / "backups")
    assert path.read_bytes() == before
    assert not (tmp_path / "backups").exists()


def test_upgrade_backs_up_then_upgrades_keeping_users_and_admin_flags(tmp_path):
    path = old_db(tmp_path / "jupyterhub.sqlite")
    original = path.read_bytes()
    backups = tmp_path / "backups"
    now = datetime(2026, 11, 30, 7, 5, 6, tzinfo=UTC)

    done = database.upgrade(url(path), backups, now=now)

    head = database.status(url(path))["head"]
    assert done["from"] == OLD_HEAD and done["to"] == head
    copy = backups / f"jupyterhub.sqlite.{OLD_HEAD}.20261130T070506Z"
    assert done["backup"] == str(copy)
    assert copy.read_bytes() == original
    assert done["backup_sha256"] == database.sha256(copy)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert [p.name for p in backups.iterdir()] == [copy.name]  # no partial copy left
    assert database.status(url(path))["state"] == "current"
    # this JupyterHub opens it now, with the users, the admin flag and role, the state
    db = orm.new_session_factory(url(path))()
    try:
        users = {u.name: u for u in db.query(orm.User)}
        assert set(users) == {"alice", "bob"}
        assert users["alice"].admin and not users["bob"].admin
        assert {r.name for r in users["alice"].roles} == {"user", "admin"}
        assert {r.name for r in users["bob"].roles} == {"user"}
        assert users["alice"].orm_spawners[""].state["object_name"] == "jupyter-alice"
    finally:
        db.close()
    # a second upgrade has nothing to do, and copies nothing
    again = database.upgrade(url(path), backups)
    assert again == {"from": head, "to": head, "backup": None, "backup_sha256": None}
    assert len(list(backups.iterdir())) == 1


def test_upgrade_refuses_a_database_with_a_hot_journal(tmp_path):
    path = old_db(tmp_path / "jupyterhub.sqlite")
    Path(f"{path}-journal").write_bytes(b"\0" * 512)
    with pytest.raises(database.DatabaseError, match="did not close its database cleanly"):
        database.upgrade(url(path), tmp_path / "backups")
    assert database.status(url(path))["revision"] == OLD_HEAD


def test_upgrade_of_a_server_database_needs_the_operators_backup(monkeypatch):
    pg = "postgresql://hub:s3cret@db.example:5432/jupyterhub"
    monkeypatch.setattr(
        database,
        "status",
        lambda u: {"state": "upgrade", "revision": OLD_HEAD, "head": "x", "message": ""},
    )
    with pytest.raises(database.DatabaseError) as e:
        database.upgrade(pg, None)
    msg = str(e.value)
    assert "not a SQLite file" in msg and "jupyterhub upgrade-db" in msg and "--backed-up" in msg
    assert "s3cret" not in msg
    assert database.masked(pg) == "postgresql://hub:***@db.example:5432/jupyterhub"


def test_the_url_comes_from_the_settings_as_the_hub_configures_it():
    assert database.db_url({"hub": {"data_dir": "/var/lib/jupyterhub"}}) == (
        "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"
    )
    other = "sqlite:////srv/hub.sqlite"
    assert database.db_url({"hub": {"data_dir": "/x", "db_url": other}}) == other
    with pytest.raises(database.DatabaseError, match="jupyterhub_data_dir"):
        database.db_url({"hub": {"data_dir": "relative"}})


def test_cli_status_and_upgrade_print_json_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = old_db(data / "jupyterhub.sqlite")
    settings = json.dumps({"hub": {"data_dir": str(data)}})
    r = cli("status", "--settings", "-", stdin=settings)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "upgrade"
    r = cli("upgrade", "--settings", "-", "--backup-dir", str(tmp_path / "b"), stdin=settings)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)  # alembic's log went to stderr
    assert got["from"] == OLD_HEAD and Path(got["backup"]).read_bytes()
    assert "Running upgrade" in r.stderr
    assert json.loads(cli("status", "--db-url", url(path)).stdout)["state"] == "current"


def test_cli_refuses_while_the_hub_runs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = old_db(data / "jupyterhub.sqlite")
    (data / "jupyterhub.pid").write_text(f"{os.getpid()}\n")
    settings = json.dumps({"hub": {"data_dir": str(data)}})
    r = cli("upgrade", "--settings", "-", "--backup-dir", str(tmp_path / "b"), stdin=settings)
    assert r.returncode == 2
    assert "JupyterHub is running" in r.stderr and "systemctl stop jupyterhub" in r.stderr
    assert database.status(url(path))["revision"] == OLD_HEAD
    assert not (tmp_path / "b").exists()


def test_cli_names_unreadable_settings(tmp_path):
    r = cli("status", "--settings", str(tmp_path / "missing.json"))
    assert r.returncode == 2
    assert "cannot read the settings" in r.stderr and "missing.json" in r.stderr
