"""The hub database's schema revision, and its upgrade with a checked backup first.

A JupyterHub version with a new database schema refuses to start on the old schema
("Backup your database and run `jupyterhub upgrade-db`"). The jupyterhub role runs,
after installing JupyterHub and before the hub starts again:

``python -m testbed_hub.database status [--settings FILE|-] [--db-url URL]``
    read-only: prints ``{"db_url", "revision", "head", "state", "message"}`` as JSON.
    ``revision`` is the database's alembic revision (null for a new database),
    ``head`` the installed JupyterHub's newest one; ``state`` is ``absent`` (no
    database yet: JupyterHub creates it), ``current``, ``upgrade`` (an older schema
    this JupyterHub upgrades) or ``unknown`` (a revision this JupyterHub does not know:
    a newer JupyterHub wrote it, and JupyterHub cannot downgrade; ``message`` says so).
``python -m testbed_hub.database upgrade --backup-dir DIR [--settings FILE|-] [--db-url URL]``
    with the hub stopped: copies the SQLite file to
    ``DIR/<file name>.<revision>.<UTC time YYYYmmddTHHMMSSZ>`` (mode 0600, checked by
    SHA-256), then upgrades the schema with JupyterHub's own
    :func:`jupyterhub.dbutil.upgrade` (what ``jupyterhub upgrade-db`` runs) and
    prints ``{"from", "to", "backup", "backup_sha256"}``. Nothing to do (``current``,
    ``absent``): ``"backup": null``. A database that is not a SQLite file is not
    copied: back it up yourself, then pass ``--backed-up``.

The database comes from the hub's settings (``hub.db_url``, else
``<hub.data_dir>/jupyterhub.sqlite``, as :func:`testbed_hub.config.apply` sets it) or
``--db-url``. Exit codes: 0 done (status: printed, whatever the state); 1 the
upgrade failed (the message names the backup to restore); 2 refused or bad input,
nothing changed (message on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

SETTINGS = "/etc/jupyterhub/settings.json"
SQLITE = "sqlite:///"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"


class DatabaseError(RuntimeError):
    """Refused or failed; the message names what is wrong and what to do."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def db_url(settings: Mapping[str, Any]) -> str:
    """The hub's database URL, as :func:`testbed_hub.config.apply` configures it."""
    hub = settings.get("hub") if isinstance(settings, Mapping) else None
    if not isinstance(hub, Mapping):
        raise DatabaseError("the settings have no hub section (settings.json: run the playbook)")
    if hub.get("db_url"):
        return str(hub["db_url"])
    data_dir = hub.get("data_dir")
    if not isinstance(data_dir, str) or not os.path.isabs(data_dir):
        raise DatabaseError(
            f"hub.data_dir {json.dumps(data_dir)} in the settings must be an absolute path "
            "(jupyterhub_data_dir)"
        )
    return SQLITE + os.path.join(data_dir, "jupyterhub.sqlite")


def masked(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its credentials
        return url.split("://", 1)[0] + "://***"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; None for other databases (and ``:memory:``)."""
    if not url.startswith(SQLITE):
        return None
    path = url[len(SQLITE) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _scripts():
    """JupyterHub's alembic scripts, loaded as :func:`jupyterhub.orm.check_db_revision` does."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from jupyterhub import dbutil

    with tempfile.TemporaryDirectory() as tmp:
        ini = os.path.join(tmp, "alembic.ini")
        dbutil.write_alembic_ini(ini, "sqlite://")
        return ScriptDirectory.from_config(Config(ini))


def _read_revision(url: str) -> tuple[bool, str | None]:
    """(the database has JupyterHub's tables, its alembic revision); changes nothing."""
    from jupyterhub import orm
    from sqlalchemy import create_engine, inspect, text

    path = sqlite_path(url)
    if path is not None:
        # the SQLite file opened read-only: reading never creates or changes it
        ro = f"file:{quote(str(path))}?mode=ro"
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(ro, uri=True))
    else:
        engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if not tables & set(orm.Base.metadata.tables):
            return False, None
        if "alembic_version" not in tables:
            return True, None
        with engine.connect() as conn:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return True, row[0] if row else None
    finally:
        engine.dispose()


def status(url: str) -> dict[str, Any]:
    """The database's revision next to the installed JupyterHub's head, and the verdict."""
    import jupyterhub

    scripts = _scripts()
    head = scripts.get_current_head()
    known = {s.revision for s in scripts.walk_revisions()}
    out: dict[str, Any] = {"db_url": masked(url), "revision": None, "head": head}
    path = sqlite_path(url)
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        return {**out, "state": "absent", "message": f"no database at {path} yet"}
    try:
        tables, revision = _read_revision(url)
    except Exception as e:  # noqa: BLE001 - any driver error: name the database and the cause
        raise DatabaseError(
            f"cannot read the hub database {masked(url)}: {type(e).__name__}: {e}"
        ) from e
    out["revision"] = revision
    where = f"the hub database {masked(url)}"
    if not tables:
        return {**out, "state": "absent", "message": f"{where} has no JupyterHub tables yet"}
    if revision == head:
        return {**out, "state": "current", "message": f"{where} is at revision {head}"}
    if revision in known:
        return {
            **out,
            "state": "upgrade",
            "message": f"{where} is at revision {revision}; JupyterHub "
            f"{jupyterhub.__version__} upgrades it to {head}",
        }
    if revision is None:
        problem = "has JupyterHub tables but no schema revision (alembic_version)"
    else:
        problem = (
            f"has schema revision {revision}, which JupyterHub {jupyterhub.__version__} "
            f"(newest revision {head}) does not know: a newer JupyterHub wrote it, and "
            "JupyterHub cannot downgrade its database"
        )
    return {**out, "state": "unknown", "message": f"{where} {problem}"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup(path: Path, backup_dir: Path, revision: str, now: datetime.datetime) -> tuple[Path, str]:
    """Copy the SQLite file to ``backup_dir`` (0700, file 0600); (copy, SHA-256) once equal."""
    for suffix in ("-journal", "-wal"):
        journal = Path(f"{path}{suffix}")
        if journal.exists() and journal.stat().st_size > 0:
            raise DatabaseError(
                f"{journal} exists: the hub did not close its database cleanly, and a copy of "
                f"{path} alone could miss data. Start the hub once (systemctl start jupyterhub), "
                "stop it again and re-run; nothing was changed"
            )
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = now.astimezone(datetime.UTC).strftime(TIME_FORMAT)
    dest = backup_dir / f"{path.name}.{revision}.{stamp}"
    original = sha256(path)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with open(path, "rb") as src, open(tmp, "xb") as out:
            os.fchmod(out.fileno(), 0o600)
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        copied = sha256(tmp)
        if copied != original or sha256(path) != original:
            raise DatabaseError(
                f"the copy {tmp} of {path} differs from it (SHA-256 {copied} != {original}); "
                f"is something writing to the database? Stop the hub and re-run; nothing "
                "was changed"
            )
        if dest.exists():
            raise DatabaseError(f"{dest} exists already; wait a second and re-run")
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest, original


@contextlib.contextmanager
def _alembic_on_path() -> Iterator[None]:
    """``alembic`` (run by :func:`jupyterhub.dbutil.upgrade`) from this Python's bin folder;
    its output goes to stderr, keeping stdout for the JSON answer."""
    old_path = os.environ.get("PATH")
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + (os.pathsep + old_path if old_path else "")
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        if old_path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old_path


def hub_running(settings: Mapping[str, Any] | None) -> int | None:
    """The PID of a running hub (``<data_dir>/jupyterhub.pid``), else None."""
    hub = (settings or {}).get("hub") or {}
    if not isinstance(hub.get("data_dir"), str):
        return None
    try:
        pid = int((Path(hub["data_dir"]) / "jupyterhub.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def upgrade(
    url: str,
    backup_dir: Path | None,
    *,
    backed_up: bool = False,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Back up the database, then upgrade it to the installed JupyterHub's schema."""
    from jupyterhub import dbutil

    before = status(url)
    if before["state"] == "unknown":
        raise DatabaseError(before["message"])
    if before["state"] in ("absent", "current"):
        rev = before["revision"]
        return {"from": rev, "to": rev, "backup": None, "backup_sha256": None}
    path = sqlite_path(url)
    copy: Path | None = None
    digest: str | None = None
    if path is not None:
        if backup_dir is None:
            raise DatabaseError("--backup-dir is required: the database is copied there first")
        now = now or datetime.datetime.now(datetime.UTC)
        copy, digest = backup(path, backup_dir, before["revision"], now)
    elif not backed_up:
        raise DatabaseError(
            f"the hub database {masked(url)} is not a SQLite file, so it is not copied here: "
            "back it up with your database's own tools, then run "
            "`jupyterhub upgrade-db -f /etc/jupyterhub/jupyterhub_config.py` yourself, or "
            "re-run this with --backed-up; nothing was changed"
        )
    restore = (
        f"restore the backup: cp {copy} {path}" if copy else "restore your backup of the database"
    )
    try:
        with _alembic_on_path():
            dbutil.upgrade(url)
    except (subprocess.CalledProcessError, OSError) as e:
        raise DatabaseError(
            f"JupyterHub's upgrade of {masked(url)} from revision {before['revision']} to "
            f"{before['head']} failed ({e}; alembic's output is above). The database may be "
            f"partly upgraded: keep the hub stopped, {restore}, and install the JupyterHub "
            "version that wrote it (jupyterhub_version) until the cause is fixed",
            code=1,
        ) from e
    after = status(url)
    if after["state"] != "current":
        raise DatabaseError(
            f"after JupyterHub's upgrade {after['message']}, not {before['head']}; keep the hub "
            f"stopped and {restore}",
            code=1,
        )
    return {
        "from": before["revision"],
        "to": after["revision"],
        "backup": str(copy) if copy else None,
        "backup_sha256": digest,
    }


def _read_settings(source: str) -> dict[str, Any]:
    try:
        if source == "-":
            return json.load(sys.stdin)
        with open(source, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise DatabaseError(f"cannot read the settings {source}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise DatabaseError(f"the settings {source} are not valid JSON: {e}") from e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m testbed_hub.database",
        description="Show the hub database's schema revision (status), or back it up and "
        "upgrade it to the installed JupyterHub's schema (upgrade; the hub must be stopped).",
    )
    ap.add_argument("action", choices=["status", "upgrade"])
    ap.add_argument("--settings", default=SETTINGS, help="the hub's settings.json, or - (stdin)")
    ap.add_argument("--db-url", help="the database URL (instead of the settings')")
    ap.add_argument("--backup-dir", type=Path, help="upgrade: folder for the copy of the file")
    ap.add_argument(
        "--backed-up",
        action="store_true",
        help="upgrade a database that is not a SQLite file (you backed it up yourself)",
    )
    args = ap.parse_args(argv)
    try:
        settings = None if args.db_url else _read_settings(args.settings)
        url = args.db_url or db_url(settings)
        if args.action == "status":
            print(json.dumps(status(url)))
            return 0
        pid = hub_running(settings)
        if pid is not None:
            pid_file = Path(settings["hub"]["data_dir"]) / "jupyterhub.pid"
            raise DatabaseError(
                f"JupyterHub is running (pid {pid}, {pid_file}): systemctl stop jupyterhub "
                "first (or remove that file if the process is not JupyterHub); nothing was "
                "changed"
            )
        done = upgrade(url, args.backup_dir, backed_up=args.backed_up)
    except DatabaseError as e:
        print(f"testbed_hub.database: {e}", file=sys.stderr)
        return e.code
    print(json.dumps(done))
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m testbed_hub.database
    sys.exit(main())
