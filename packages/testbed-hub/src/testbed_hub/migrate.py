"""Move hub users (and their volumes) renamed by the identifier normalisation.

Before :func:`testbed_hub.auth.normalize_identity`, ``Alice@testbed.example`` and
``alice@testbed.example`` (or an identifier sent as UTF-8 bytes) became different hub
users with different volumes. Under the normalisation each identifier has one user
name; a user created under an older name keeps its files through this migration:

``python -m testbed_hub.migrate plan [--settings FILE|-]``
    read-only: prints a JSON plan (``changes``, ``conflicts``, ``done``).
``python -m testbed_hub.migrate apply [--settings FILE|-] [--merge]``
    with the hub stopped: copies each old volume into the new user's volume
    (``cp -a``, then the SHA-256 of every file compared), renames the old hub user to
    the new name (or deletes it when the new user exists already), and records the
    move in ``<data_dir>/identity-migrations.json``. The old volume is kept, never
    deleted. When the new volume already holds files the move is refused (exit 2,
    listing each pair) unless ``--merge``: then the old files go to
    ``migrated-from-<old>/`` inside the new volume and nothing is overwritten.

Where the old names come from: the hub database keeps the identifier each user last
logged in with (``user_info.testbed_id``); users who never logged in are found from
the allowed/admin/blocked lists (the name the old code gave each entry as written).
The jupyterhub role runs ``plan`` at every run and ``apply`` (hub stopped) when the
plan has changes; a second run finds nothing to do.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed_hub.config import SettingsError, load, validate

RECORD = "identity-migrations.json"
CONTAINER_PREFIX = "jupyter"  # DockerSpawner's default name_template: {prefix}-{username}


class MigrationError(RuntimeError):
    """The migration cannot go on; the message says what to do."""


class DockerVolumes:
    """Docker volumes on this host, by name (the local driver: a folder each)."""

    def _docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)

    def path(self, name: str) -> Path | None:
        r = self._docker("volume", "inspect", "--format", "{{.Mountpoint}}", name, check=False)
        return Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None

    def create(self, name: str) -> Path:
        self._docker("volume", "create", name)
        path = self.path(name)
        if path is None:
            raise MigrationError(f"docker volume create {name} left no volume")
        return path

    def remove_container(self, name: str) -> None:
        self._docker("rm", "--force", name, check=False)


def _entries(root: Path):
    """Every file and symlink below root (symlinks to folders too, never followed)."""
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            yield Path(dirpath, name)


def manifest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every regular file (``link:<target>`` for symlinks)."""
    out: dict[str, str] = {}
    for p in _entries(root):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[rel] = h.hexdigest()
    return out


def count_files(root: Path | None) -> int:
    """Files and symlinks below root (0 for a missing volume)."""
    if root is None or not root.is_dir():
        return 0
    return sum(1 for _ in _entries(root))


@dataclass
class Move:
    old: str
    new: str
    identity: str
    old_volume: str
    new_volume: str
    old_user: bool
    new_user: bool
    old_files: int
    new_files: int
    into: str = ""  # "" = the new volume's root, else a subfolder (merge)
    sources: list[str] = field(default_factory=list)


def _db_url(settings: Mapping[str, Any]) -> str:
    hub = settings["hub"]
    return hub.get("db_url") or "sqlite:///" + os.path.join(hub["data_dir"], "jupyterhub.sqlite")


def _session(url: str):
    from jupyterhub import orm

    return orm.new_session_factory(url)()


def _record_path(settings: Mapping[str, Any]) -> Path:
    return Path(settings["hub"]["data_dir"]) / RECORD


def _done(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        return json.loads(_record_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


def plan(settings: Mapping[str, Any], db, volumes, *, merge: bool = False) -> dict[str, Any]:
    """The moves the current settings call for, and the conflicts among them."""
    from jupyterhub import orm

    from testbed_hub.auth import identity_to_username, normalize_identity

    auth, template = settings["auth"], settings["spawner"]["user_volume_template"]
    fold = auth.get("identity_case", "fold") == "fold"
    done = {(d["old"], d["new"]) for d in _done(settings)}
    users = {u.name: u for u in db.query(orm.User)} if db is not None else {}
    wanted: dict[str, tuple[str, str]] = {}  # old -> (new, identity)
    for name, user in users.items():
        # user_info: JupyterHub 6's auth model record (5.x has none)
        identity = (getattr(user, "user_info", None) or {}).get("testbed_id")
        if isinstance(identity, str) and identity.strip():
            # recorded from the header by the old code: the header's normalisation
            canonical = normalize_identity(identity, fold_case=fold, header=True)
            new = identity_to_username(canonical)
            if new != name:
                wanted[name] = (new, canonical)
    for key in ("allowed_users", "admin_users", "blocked_users"):
        for raw in auth[key]:
            canonical = normalize_identity(raw, fold_case=fold)
            old, new = identity_to_username(raw), identity_to_username(canonical)
            if old != new and old not in wanted:
                wanted[old] = (new, canonical)
    moves: list[Move] = []
    for old, (new, identity) in sorted(wanted.items()):
        if (old, new) in done:
            continue
        old_vol, new_vol = template.format(username=old), template.format(username=new)
        old_files = count_files(volumes.path(old_vol))
        if old not in users and not old_files:
            continue  # nothing of the old name left
        moves.append(
            Move(
                old=old,
                new=new,
                identity=identity,
                old_volume=old_vol,
                new_volume=new_vol,
                old_user=old in users,
                new_user=new in users,
                old_files=old_files,
                new_files=count_files(volumes.path(new_vol)),
            )
        )
    conflicts = []
    by_new: dict[str, list[Move]] = {}
    for m in moves:
        by_new.setdefault(m.new, []).append(m)
    for new, group in by_new.items():
        with_files = [m for m in group if m.old_files]
        if with_files and (group[0].new_files or len(with_files) > 1):
            if merge:
                for m in with_files:
                    m.into = f"migrated-from-{m.old}"
            else:
                conflicts.append(
                    {
                        "new": new,
                        "new_volume": group[0].new_volume,
                        "new_files": group[0].new_files,
                        "old": [{"name": m.old, "files": m.old_files} for m in with_files],
                    }
                )
    return {
        "changes": [asdict(m) for m in moves],
        "conflicts": conflicts,
        "message": conflict_message(conflicts) if conflicts else "",
    }


def conflict_message(conflicts: list[dict[str, Any]]) -> str:
    pairs = "; ".join(
        ", ".join(f"{o['name']} ({o['files']} files)" for o in c["old"])
        + f" -> {c['new']} ({c['new_volume']}: {c['new_files']} files)"
        for c in conflicts
    )
    return (
        "hub users renamed by the identifier normalisation (jupyterhub_identity_case) "
        f"cannot be moved without mixing files: {pairs}. Nothing was changed. Move the "
        "files yourself, or run the playbook again with -e jupyterhub_identity_merge=true "
        "(each old volume is copied into migrated-from-OLD/ in the new one, nothing is "
        "overwritten, the old volume is kept); on the station: systemctl stop jupyterhub "
        "&& /opt/jupyterhub/bin/python -m testbed_hub.migrate apply --merge && "
        "systemctl start jupyterhub"
    )


def _hub_running(settings: Mapping[str, Any]) -> bool:
    pid_file = Path(settings["hub"]["data_dir"]) / "jupyterhub.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _copy(src: Path, dest: Path) -> dict[str, str]:
    dest.mkdir(parents=True, exist_ok=True)
    before = manifest(src)
    subprocess.run(["cp", "-a", "--no-clobber", f"{src}/.", f"{dest}/"], check=True)
    after = manifest(dest)
    missing = sorted(k for k, v in before.items() if after.get(k) != v)
    if missing:
        raise MigrationError(
            f"copy of {src} into {dest} differs in {len(missing)} files "
            f"(first: {missing[:3]}); the old volume is unchanged, nothing else was changed "
            "for this user"
        )
    return before


def apply(settings: Mapping[str, Any], db, volumes, *, merge: bool = False) -> list[dict]:
    """Carry out the plan (the hub must be stopped). Returns the records written."""
    from jupyterhub import orm
    from jupyterhub.utils import new_token

    p = plan(settings, db, volumes, merge=merge)
    if p["conflicts"]:
        raise MigrationError(conflict_message(p["conflicts"]))
    records = _done(settings)
    written = []
    for m in (Move(**c) for c in p["changes"]):
        for name in (m.old, m.new):
            volumes.remove_container(f"{CONTAINER_PREFIX}-{name}")
        checked: dict[str, str] = {}
        if m.old_files:
            src = volumes.path(m.old_volume)
            dest = volumes.path(m.new_volume) or volumes.create(m.new_volume)
            checked = _copy(src, dest / m.into if m.into else dest)
        old = orm.User.find(db, m.old) if db is not None else None
        if old is not None:
            if orm.User.find(db, m.new) is not None:
                db.delete(old)
            else:
                old.name = m.new
                old.cookie_id = new_token()
                if hasattr(old, "user_info"):  # JupyterHub 6 and later
                    old.user_info = {**(old.user_info or {}), "testbed_id": m.identity}
                for sp in old._orm_spawners:
                    if sp.server is not None:
                        db.delete(sp.server)
                    sp.state = {}
            db.commit()
        digest = hashlib.sha256(json.dumps(checked, sort_keys=True).encode()).hexdigest()
        rec = {
            "old": m.old,
            "new": m.new,
            "identity": m.identity,
            "old_volume": m.old_volume,
            "new_volume": m.new_volume,
            "into": m.into,
            "files": len(checked),
            "manifest_sha256": digest,
            "hub_user": "deleted" if m.new_user and m.old_user else "renamed" if m.old_user else "",
            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        records.append(rec)
        written.append(rec)
        path = _record_path(settings)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return written


def _read_settings(source: str) -> dict[str, Any]:
    if source == "-":
        return json.load(sys.stdin)
    return load(source)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done (plan: printed); 2 refused or invalid (message on stderr)."""
    ap = argparse.ArgumentParser(prog="python -m testbed_hub.migrate", description=__doc__)
    ap.add_argument("action", choices=["plan", "apply"])
    ap.add_argument("--settings", default="/etc/jupyterhub/settings.json", help="file, or -")
    ap.add_argument("--merge", action="store_true", help="copy into migrated-from-OLD/")
    args = ap.parse_args(argv)
    try:
        settings = _read_settings(args.settings)
        validate(settings)
    except (SettingsError, json.JSONDecodeError) as e:
        print(e, file=sys.stderr)
        return 2
    url = _db_url(settings)
    exists = not url.startswith("sqlite:///") or Path(url[len("sqlite:///") :]).exists()
    db = _session(url) if exists else None
    volumes = DockerVolumes()
    try:
        if args.action == "plan":
            print(json.dumps(plan(settings, db, volumes, merge=args.merge), ensure_ascii=False))
            return 0
        if _hub_running(settings):
            print("JupyterHub is running: systemctl stop jupyterhub first", file=sys.stderr)
            return 2
        done = apply(settings, db, volumes, merge=args.merge)
    except MigrationError as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps({"migrated": done}, ensure_ascii=False))
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m testbed_hub.migrate
    sys.exit(main())
