"""Running a role's input validation from pytest, without touching the machine.

One ``ansible-playbook --check`` run against localhost checks a whole table of
inventories: each case includes the role in a block whose rescue records the
failure message, and the play writes ``{case: "ok" | message}`` to a JSON file.
Used by the role-input unit tests (tests/unit/*/test_*role*).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent

OK_FACT = "{{ results | combine({'CASE': 'ok'}) }}"
# A looped assert fails with "One or more items failed"; the text is in the items.
FAIL_FACT = (
    "{{ results | combine({'CASE': ([ansible_failed_result.msg | default('')] + "
    "(ansible_failed_result.results | default([]) | map(attribute='msg', default='') | list))"
    " | join(' ')}) }}"
)


def validation_play(
    role: str,
    cases: Mapping[str, tuple[Mapping[str, Any], Any]],
    out: Path,
    play_vars: Mapping[str, Any] | None = None,
) -> list[dict]:
    """A play that includes ``role`` once per case (``{name: (extra_vars, expected)}``)
    and writes each case's outcome ("ok" or the failure message) as JSON to ``out``."""
    tasks: list[dict] = [
        {
            "name": f"case {name}",
            "block": [
                {"ansible.builtin.include_role": {"name": role}, "vars": dict(extra)},
                {"ansible.builtin.set_fact": {"results": OK_FACT.replace("CASE", name)}},
            ],
            "rescue": [{"ansible.builtin.set_fact": {"results": FAIL_FACT.replace("CASE", name)}}],
        }
        for name, (extra, _expected) in cases.items()
    ]
    tasks.append(
        {
            "ansible.builtin.copy": {
                "content": "{{ results | to_json }}",
                "dest": str(out),
                "mode": "0644",
            },
            "check_mode": False,
        }
    )
    return [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": True,
            "vars": {
                "results": {},
                "ansible_python_interpreter": sys.executable,
                **dict(play_vars or {}),
            },
            "tasks": tasks,
        }
    ]


def ansible_playbook(play: list, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``play`` (written to ``tmp/play.yml``) with the virtualenv's ansible-playbook
    against localhost, with the repository's roles. Raises AssertionError when
    ansible-playbook is not next to the test interpreter (``make venv`` puts it there)."""
    path = tmp / "play.yml"
    path.write_text(json.dumps(play))
    exe = BIN / "ansible-playbook"
    assert exe.exists(), "ansible-playbook must be next to the test interpreter (make venv)"
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(exe), "-i", "localhost,", *args, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def validation_results(
    role: str,
    cases: Mapping[str, tuple[Mapping[str, Any], Any]],
    tmp: Path,
    *args: str,
    play_vars: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """:func:`validation_play` run in check mode with ``args``; ``{case: outcome}``."""
    out = tmp / "results.json"
    res = ansible_playbook(validation_play(role, cases, out, play_vars), tmp, "--check", *args)
    assert res.returncode == 0 and out.exists(), res.stdout + res.stderr
    return json.loads(out.read_text())
