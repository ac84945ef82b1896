"""Running a role's input validation from pytest, without touching the machine.

One ``ansible-playbook --check`` run against localhost checks a whole table of
inventories: each case includes the role in a block whose rescue records the
failure message and the name of the task that failed, and the play writes
``{"outcome": {case: "ok" | message}, "task": {case: task name}}`` to a JSON file.
Every task of the play is tagged ``always``, so ``--tags``/``--skip-tags`` select
only the role's own tasks. Used by the role-input unit tests
(tests/unit/*/test_*role*).
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
TASK_FACT = "{{ failed_tasks | combine({'CASE': ansible_failed_task.name | default('')}) }}"
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
    and writes each case's outcome ("ok" or the failure message) and the name of the
    task that failed as JSON to ``out``."""
    tasks: list[dict] = [
        {
            "name": f"case {name}",
            # tags on the tasks, not the block: a block's tags reach the role's tasks
            "block": [
                {
                    "ansible.builtin.include_role": {"name": role},
                    "vars": dict(extra),
                    "tags": ["always"],
                },
                {
                    "ansible.builtin.set_fact": {"results": OK_FACT.replace("CASE", name)},
                    "tags": ["always"],
                },
            ],
            "rescue": [
                {
                    "ansible.builtin.set_fact": {
                        "results": FAIL_FACT.replace("CASE", name),
                        "failed_tasks": TASK_FACT.replace("CASE", name),
                    },
                    "tags": ["always"],
                }
            ],
        }
        for name, (extra, _expected) in cases.items()
    ]
    tasks.append(
        {
            "ansible.builtin.copy": {
                "content": "{{ {'outcome': results, 'task': failed_tasks} | to_json }}",
                "dest": str(out),
                "mode": "0644",
            },
            "check_mode": False,
            "tags": ["always"],
        }
    )
    return [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": True,
            "vars": {
                "results": {},
                "failed_tasks": {},
                "ansible_python_interpreter": sys.executable,
                **dict(play_vars or {}),
            },
            "tasks": tasks,
        }
    ]


def ansible_playbook(
    play: list, tmp: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``play`` (written to ``tmp/play.yml``) with the virtualenv's ansible-playbook
    against localhost, with the repository's roles. Raises AssertionError when
    ansible-playbook is not next to the test interpreter (``make venv`` puts it there)."""
    path = tmp / "play.yml"
    path.write_text(json.dumps(play))
    exe = BIN / "ansible-playbook"
    assert exe.exists(), "ansible-playbook must be next to the test interpreter (make venv)"
    env = {
        **os.environ,
        **dict(env or {}),
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


def validation_report(
    role: str,
    cases: Mapping[str, tuple[Mapping[str, Any], Any]],
    tmp: Path,
    *args: str,
    play_vars: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str], subprocess.CompletedProcess]:
    """:func:`validation_play` run in check mode with ``args`` (and extra environment
    ``env``); ``({case: outcome}, {case: name of the failed task}, the finished run)``.
    Raises AssertionError, with the run's output, when the play itself failed."""
    out = tmp / "results.json"
    res = ansible_playbook(
        validation_play(role, cases, out, play_vars), tmp, "--check", *args, env=env
    )
    assert res.returncode == 0 and out.exists(), res.stdout + res.stderr
    report = json.loads(out.read_text())
    return report["outcome"], report["task"], res


def validation_results(
    role: str,
    cases: Mapping[str, tuple[Mapping[str, Any], Any]],
    tmp: Path,
    *args: str,
    play_vars: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """:func:`validation_report`'s outcomes only: ``{case: "ok" | failure message}``."""
    return validation_report(role, cases, tmp, *args, play_vars=play_vars)[0]
