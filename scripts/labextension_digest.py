#!/usr/bin/env python3
"""Print the sha256 of the JupyterLab extension's sources: the relative path and bytes
of package.json, package-lock.json and every file under src/ of the folder given.

Usage: labextension_digest.py SOURCE_DIR
scripts/build-labextension.sh writes it to SOURCE_DIR/built-from.sha256; the unit
tests recompute it to prove the committed build matches the sources.
"""

import hashlib
import sys
from pathlib import Path


def digest(folder: Path) -> str:
    files = [folder / "package.json", folder / "package-lock.json"]
    files += sorted(p for p in (folder / "src").rglob("*") if p.is_file())
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "package.json").is_file():
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(digest(Path(sys.argv[1])))
