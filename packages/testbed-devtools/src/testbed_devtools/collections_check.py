"""Check that the installed Ansible collections satisfy requirements.yml.

Ansible Galaxy may be out of reach (this test bed, air-gapped sites); the
collections then come from PyPI's ``ansible`` package. This proves that what is
installed fits the ranges the project declares, so a Galaxy install and a PyPI
install are interchangeable.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

_OPS = ("==", "!=", ">=", "<=", ">", "<")


def parse_version(text: str) -> tuple[int, ...]:
    m = re.match(r"^\s*(\d+(?:\.\d+)*)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def satisfies(version: str, spec: str) -> bool:
    """True when ``version`` meets a Galaxy range such as ``>=4.0.0,<5.0.0``."""
    if spec in ("", "*"):
        return True
    have = parse_version(version)
    for clause in (c.strip() for c in spec.split(",")):
        op = next((o for o in _OPS if clause.startswith(o)), "==")
        want = parse_version(clause[len(op) :] if clause.startswith(op) else clause)
        ok = {
            "==": have == want,
            "!=": have != want,
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Finding:
    name: str
    wanted: str
    installed: str | None

    @property
    def ok(self) -> bool:
        return self.installed is not None and satisfies(self.installed, self.wanted)

    def describe(self) -> str:
        if self.installed is None:
            return (
                f"MISSING {self.name} {self.wanted}: not installed; run "
                "`ansible-galaxy collection install -r requirements.yml` or install the "
                "pinned `ansible` package (`make venv`)"
            )
        state = "ok" if self.ok else "WRONG VERSION"
        return f"{state} {self.name} {self.installed} (wanted {self.wanted})"


def required(requirements_file: Path) -> dict[str, str]:
    data = yaml.safe_load(requirements_file.read_text()) or {}
    out: dict[str, str] = {}
    for item in data.get("collections", []):
        if isinstance(item, str):
            out[item] = "*"
        else:
            out[item["name"]] = str(item.get("version", "*"))
    return out


def installed() -> dict[str, str]:
    """Collections Ansible sees, first path wins (as Ansible resolves them)."""
    raw = subprocess.run(
        ["ansible-galaxy", "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, str] = {}
    for _path, colls in json.loads(raw).items():
        for name, meta in colls.items():
            found.setdefault(name, meta.get("version", "0"))
    return found


def check(requirements_file: Path, have: dict[str, str]) -> list[Finding]:
    return [Finding(n, spec, have.get(n)) for n, spec in required(requirements_file).items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("requirements", nargs="?", default="requirements.yml", type=Path)
    args = ap.parse_args(argv)
    findings = check(args.requirements, installed())
    for f in findings:
        print(f.describe())
    bad = [f for f in findings if not f.ok]
    if bad:
        print(f"{len(bad)} collection(s) do not satisfy {args.requirements}", file=sys.stderr)
        return 1
    print(f"all {len(findings)} collections satisfy {args.requirements}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
