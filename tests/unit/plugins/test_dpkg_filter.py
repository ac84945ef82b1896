"""plugins/filter/dpkg.py: dpkg_lacks_any decides whether a role runs apt."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("dpkg_filter", ROOT / "plugins/filter/dpkg.py")
dpkg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dpkg)


def result(rc, *lines):
    return {"rc": rc, "stdout": "\n".join(lines), "stdout_lines": list(lines)}


@pytest.mark.parametrize(
    ("registered", "lacks"),
    [
        (result(0, "ii ", "ii "), False),  # every package installed
        (result(0, "ii ", "hi "), False),  # one held: installed, apt would change nothing
        (result(0, "ii", "ii"), False),  # trailing blanks stripped on the way
        (result(0, "ii ", "rc "), True),  # removed, its configuration files left
        (result(0, "ii ", "iU "), True),  # unpacked, not configured
        (result(0, "ii ", "iHR"), True),  # half-installed, reinstall required
        (result(0, "un "), True),  # known to dpkg, not installed
        (result(1, "ii "), True),  # a name dpkg does not know (or a pin, pkg=1.2*)
        (result(0), True),  # nothing printed
        ({"rc": 0, "stdout": "ii \nii "}, False),  # stdout alone
    ],
)
def test_lacks_any(registered, lacks):
    assert dpkg.dpkg_lacks_any(registered) is lacks


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"changed": False, "skipped": True}, "['changed', 'skipped']"),
        ("ii ", "str"),
        (None, "NoneType"),
    ],
)
def test_anything_but_a_registered_result_is_named(value, named):
    with pytest.raises(
        dpkg.DpkgLacksAnyError, match=f"wants the registered result.*got {re.escape(named)}"
    ):
        dpkg.dpkg_lacks_any(value)


def test_ansible_finds_the_filter_through_the_projects_config():
    """ansible.cfg's filter_plugins: the roles' `when:` resolves it by its short name."""
    results = "[{'rc': 0, 'stdout_lines': ['ii ']}, {'rc': 1, 'stdout_lines': []}]"
    expr = "{{ " + results + " | map('dpkg_lacks_any') | list }}"
    out = subprocess.run(
        ["ansible", "localhost", "-m", "ansible.builtin.debug", "-a", f"msg={expr}", "-o"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        },
    )
    assert out.returncode == 0, out.stdout + out.stderr
    payload = json.loads(out.stdout.split("=>", 1)[1])
    assert payload["msg"] == [False, True]
