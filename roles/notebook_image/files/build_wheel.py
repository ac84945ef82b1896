#!/usr/bin/env python3
"""Build the project's wheel reproducibly; print {"path": ..., "sha256": ...} as JSON.

Usage: build_wheel.py PROJECT_DIR OUTPUT_DIR

The sources (pyproject.toml, README*, LICENSE*, src/) are copied to a temporary
folder without caches, egg-info or an old build/ tree, so a stale file never ends
up in the wheel, and SOURCE_DATE_EPOCH fixes the zip timestamps: the same sources
give the same bytes, hence the same image tag.
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
            f"{project} has no pyproject.toml and src/: not the testbed-hub project",
            file=sys.stderr,
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)
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
            + ["--wheel-dir", str(dist), str(tree)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
            return 1
        (wheel,) = dist.glob("*.whl")
        target = out / wheel.name
        shutil.copyfile(wheel, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(json.dumps({"path": str(target), "name": target.name, "sha256": digest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
