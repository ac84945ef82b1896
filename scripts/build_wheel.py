#!/usr/bin/env python3
"""Build one of the project's wheels reproducibly on the control node; print it as JSON.

Usage: build_wheel.py PACKAGE_DIR OUTPUT_DIR

PACKAGE_DIR is one distribution of the repository (packages/testbed-hub,
packages/testbed-notebook, packages/testbed-sim). The one wheel builder: the
artefacts play (playbooks/artifacts.yml) calls it and hands the wheels to the
roles that install them. The sources (pyproject.toml, README*, LICENSE*,
src/) are copied to a temporary folder without caches, egg-info or an old
build/ tree, so a stale file never ends up in the wheel, and SOURCE_DATE_EPOCH
fixes the zip timestamps: the same sources give the same bytes, hence the same
image tag and no reinstall. The wheel in OUTPUT_DIR is replaced only when its
bytes differ (its mtime stays stable) and older wheels of the same
distribution there are removed. OUTPUT_DIR/.sources.json records the digest of
the sources the wheel was built from: when the sources are unchanged, pip is
not run again.
Prints ``{"path": ..., "name": ..., "sha256": ...}`` on one line.
Exit 2: PACKAGE_DIR is not a distribution folder; 1: pip failed.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    project, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    if not (project / "pyproject.toml").is_file() or not (project / "src").is_dir():
        print(
            f"{project} has no pyproject.toml and src/: give one of the repository's "
            "packages/<distribution> folders",
            file=sys.stderr,
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)
    sources = sources_digest(project)
    stamp = out / ".sources.json"
    try:
        last = json.loads(stamp.read_text())
    except (OSError, ValueError):
        last = {}
    if last.get("sources") == sources and (out / last.get("name", "-")).is_file():
        data = (out / last["name"]).read_bytes()
        if hashlib.sha256(data).hexdigest() == last.get("sha256"):
            print(json.dumps({"path": str(out / last["name"]), **_info(last)}))
            return 0
    env = dict(os.environ, SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    with tempfile.TemporaryDirectory(prefix="testbed-wheel-") as tmp:
        tree, dist = Path(tmp) / "tree", Path(tmp) / "dist"
        tree.mkdir()
        for item in project.iterdir():
            if item.name == "pyproject.toml" or item.name.startswith(("README", "LICENSE")):
                if item.is_file():
                    shutil.copy2(item, tree / item.name)
        shutil.copytree(project / "src", tree / "src", ignore=IGNORE)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
            + ["--disable-pip-version-check", "--wheel-dir", str(dist), str(tree)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
            return 1
        (wheel,) = dist.glob("*.whl")
        data = wheel.read_bytes()
        target = out / wheel.name
        if not target.is_file() or target.read_bytes() != data:
            partial = out / (wheel.name + ".tmp")
            partial.write_bytes(data)
            partial.replace(target)
    dist_prefix = target.name.split("-", 1)[0] + "-"
    for old in out.glob(dist_prefix + "*.whl"):
        if old.name != target.name:
            old.unlink()
    digest = hashlib.sha256(data).hexdigest()
    stamp.write_text(json.dumps({"sources": sources, "name": target.name, "sha256": digest}))
    print(json.dumps({"path": str(target), "name": target.name, "sha256": digest}))
    return 0


def _info(last: dict) -> dict:
    return {"name": last["name"], "sha256": last["sha256"]}


def _included(project: Path) -> list[Path]:
    top = [
        p
        for p in project.iterdir()
        if p.is_file() and (p.name == "pyproject.toml" or p.name.startswith(("README", "LICENSE")))
    ]
    tree = [
        p
        for p in (project / "src").rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and ".pytest_cache" not in p.parts
        and not any(part.endswith(".egg-info") for part in p.parts)
        and p.suffix != ".pyc"
    ]
    return sorted(top + tree)


def sources_digest(project: Path) -> str:
    """sha256 over the relative path and bytes of every file the wheel is built from."""
    h = hashlib.sha256()
    for path in _included(project):
        h.update(str(path.relative_to(project)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
