from pathlib import Path

import pytest

from testbed_devtools.collections_check import Finding, check, parse_version, satisfies

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("4.8.5", ">=4.0.0,<5.0.0", True),
        ("5.0.0", ">=4.0.0,<5.0.0", False),
        ("3.9.9", ">=4.0.0,<5.0.0", False),
        ("2.1.0", "==2.1.0", True),
        ("2.1.1", "2.1.0", False),
        ("11.4.2", "*", True),
        ("1.6", ">=1.6.0", True),
        ("10.0.0", "!=10.0.0", False),
    ],
)
def test_satisfies(version, spec, ok):
    assert satisfies(version, spec) is ok


def test_parse_version_rejects_garbage():
    with pytest.raises(ValueError, match="not a version"):
        parse_version("latest")


def test_check_reports_missing_and_wrong(tmp_path):
    req = tmp_path / "requirements.yml"
    req.write_text(
        "collections:\n"
        "  - name: community.docker\n    version: '>=4.0.0,<5.0.0'\n"
        "  - name: ansible.posix\n    version: '>=1.6.0'\n"
        "  - community.general\n"
    )
    found = check(req, {"community.docker": "3.13.0", "community.general": "11.4.2"})
    by = {f.name: f for f in found}
    assert not by["community.docker"].ok
    assert "WRONG VERSION" in by["community.docker"].describe()
    assert by["ansible.posix"].installed is None
    assert "ansible-galaxy collection install -r requirements.yml" in by["ansible.posix"].describe()
    assert by["community.general"].ok


def test_project_requirements_parse():
    names = {f.name for f in check(REPO / "requirements.yml", {})}
    assert {"community.docker", "community.general", "ansible.posix"} <= names
    assert all(isinstance(f, Finding) for f in check(REPO / "requirements.yml", {}))
