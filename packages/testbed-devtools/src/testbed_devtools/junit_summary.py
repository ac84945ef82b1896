"""Add up JUnit XML reports (unit tests, every Molecule verify, e2e) into one line.

Prints ``tests: N passed, N failed, N skipped`` so CI logs end with one total
across all the pytest runs of ``make test``; exits 1 when anything failed or
errored, or when no report holds a test.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - our own pytest output
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Totals:
    tests: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def passed(self) -> int:
        return self.tests - self.failed - self.skipped

    def add(self, other: Totals) -> None:
        self.tests += other.tests
        self.failed += other.failed
        self.skipped += other.skipped


def read(path: Path) -> Totals:
    root = ET.parse(path).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    t = Totals()
    for s in suites:
        t.tests += int(s.get("tests", 0))
        t.failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        t.skipped += int(s.get("skipped", 0))
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    args = ap.parse_args(argv)
    total = Totals()
    for p in args.reports:
        t = read(p)
        print(f"{p.stem}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped")
        total.add(t)
    print(f"tests: {total.passed} passed, {total.failed} failed, {total.skipped} skipped")
    return 1 if total.failed or total.tests == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
