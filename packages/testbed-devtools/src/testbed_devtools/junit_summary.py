"""Add up JUnit XML reports (unit tests, every Molecule verify, e2e) into one line.

Prints ``tests: N passed, N failed, N skipped`` so CI logs end with one total
across all the pytest runs of ``make test``, and every skipped test with its
skip reason. Exits 1 when anything failed or errored, when no report holds a
test, or when a test was skipped that the allow-list (``tests/skips.yml``)
does not name: a skip is a decision with a reason, not a side effect of a
missing package or service.

The allow-list is a YAML list of ``{test: <pattern>, reason: <why it may skip>}``.
``test`` is matched against the test's id as printed here, a pytest node id
such as ``tests/unit/proxy/test_x.py::test_y[param]``; ``*`` matches any run of
characters, everything else (``[``, ``]``, ``.``) only itself.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - our own pytest output
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_ALLOW_LIST = Path("tests/skips.yml")


@dataclass
class Skip:
    test: str  # pytest node id, rebuilt from the JUnit classname and name
    message: str
    report: str


@dataclass
class Totals:
    tests: int = 0
    failed: int = 0
    skipped: int = 0
    skips: list[Skip] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.tests - self.failed - self.skipped

    def add(self, other: Totals) -> None:
        self.tests += other.tests
        self.failed += other.failed
        self.skipped += other.skipped
        self.skips.extend(other.skips)


@dataclass
class Allowed:
    test: str
    reason: str

    def matches(self, test_id: str) -> bool:
        pattern = ".*".join(re.escape(part) for part in self.test.split("*"))
        return re.fullmatch(pattern, test_id) is not None


def node_id(classname: str, name: str) -> str:
    """The pytest node id of a JUnit test case.

    ``tests.unit.x.test_y.TestZ`` + ``test_a[p]`` -> ``tests/unit/x/test_y.py::TestZ::test_a[p]``:
    pytest's JUnit classname is the node id's path with ``/`` -> ``.`` and without
    ``.py``, then the class names (which start with a capital letter).
    """
    parts = [p for p in classname.split(".") if p]
    first_class = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    module, classes = parts[:first_class], parts[first_class:]
    path = ["/".join(module) + ".py"] if module else []
    return "::".join([*path, *classes, name])


def read(path: Path) -> Totals:
    root = ET.parse(path).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    t = Totals()
    for s in suites:
        t.tests += int(s.get("tests", 0))
        t.failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        t.skipped += int(s.get("skipped", 0))
        for case in s.iter("testcase"):
            skipped = case.find("skipped")
            if skipped is None:
                continue
            message = skipped.get("message") or (skipped.text or "").strip() or "(no reason given)"
            t.skips.append(
                Skip(node_id(case.get("classname", ""), case.get("name", "")), message, path.name)
            )
    unnamed = t.skipped - len(t.skips)
    if unnamed > 0:
        t.skips.append(
            Skip(f"<{unnamed} skipped test(s) without a testcase entry>", "unknown", path.name)
        )
    return t


def load_allow_list(path: Path) -> list[Allowed]:
    """The allowed skips; ValueError naming the file and the entry when it is malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the skip allow-list {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"the skip allow-list {path} is not valid YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a list of {{test: ..., reason: ...}} entries")
    allowed = []
    for i, entry in enumerate(data, 1):
        ok = isinstance(entry, dict) and set(entry) == {"test", "reason"}
        if not ok or not all(isinstance(entry[k], str) and entry[k].strip() for k in entry):
            raise ValueError(
                f"{path}: entry {i} must have exactly a non-empty 'test' (node id or pattern) "
                f"and a non-empty 'reason', got {entry!r}"
            )
        allowed.append(Allowed(entry["test"].strip(), entry["reason"].strip()))
    return allowed


def check_skips(skips: list[Skip], allowed: list[Allowed], allow_list: Path) -> list[str]:
    """Print every skip; return the error lines for the skips the allow-list lacks."""
    errors = []
    for skip in skips:
        entry = next((a for a in allowed if a.matches(skip.test)), None)
        if entry is not None:
            print(f"skipped (allowed: {entry.reason}): {skip.test}: {skip.message}")
        else:
            errors.append(
                f"skipped, not allowed: {skip.test} ({skip.report}): {skip.message}\n"
                f"  fix what made it skip, or add it with the reason it may skip to {allow_list}"
                f" (- test: {skip.test!r}, reason: ...)"
            )
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument(
        "--allowed-skips",
        type=Path,
        default=DEFAULT_ALLOW_LIST,
        help=f"YAML list of skips allowed, with their reasons (default {DEFAULT_ALLOW_LIST})",
    )
    args = ap.parse_args(argv)
    try:
        allowed = load_allow_list(args.allowed_skips)
    except ValueError as exc:
        print(f"junit_summary: {exc}", file=sys.stderr)
        return 2
    total = Totals()
    for p in args.reports:
        t = read(p)
        print(f"{p.stem}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped")
        total.add(t)
    errors = check_skips(total.skips, allowed, args.allowed_skips)
    print(f"tests: {total.passed} passed, {total.failed} failed, {total.skipped} skipped")
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        print(
            f"junit_summary: {len(errors)} skipped test(s) not in {args.allowed_skips}",
            file=sys.stderr,
        )
    return 1 if total.failed or total.tests == 0 or errors else 0


if __name__ == "__main__":
    sys.exit(main())
