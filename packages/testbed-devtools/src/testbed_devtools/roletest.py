"""Running a role's input validation from pytest, without touching the machine.

One ``ansible-playbook --check`` run against localhost checks a whole table of
inventories: each case includes the role in a block whose rescue records the
failure message and the name of the task that failed, and the play writes
``{"outcome": {case: "ok" | message}, "task": {case: task name}}`` to a JSON file.
Every task of the play is tagged ``always``, so ``--tags``/``--skip-tags`` select
only the role's own tasks. Used by the role-input unit tests
(tests/unit/*/test_*role*).

:func:`inventory_report` checks a whole table of inventories against a real
playbook (site.yml's pre-flight) in one run instead: each case is a host of its
own (connection local) with the case's variables, and the JSON callback tells
which task refused which host, with what message, and what changed.
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


def _ansible_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        **dict(env or {}),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        # one local "host", dozens of validation runs: Mitogen on the local connection
        # too (plugins/strategy/mitogen_linear.py; the hub's table 33 s instead of 87 s)
        "TESTBED_MITOGEN_LOCAL": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }


def _exe() -> Path:
    exe = BIN / "ansible-playbook"
    assert exe.exists(), "ansible-playbook must be next to the test interpreter (make venv)"
    return exe


def ansible_playbook(
    play: list, tmp: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``play`` (written to ``tmp/play.yml``) with the virtualenv's ansible-playbook
    against localhost, with the repository's roles. Raises AssertionError when
    ansible-playbook is not next to the test interpreter (``make venv`` puts it there)."""
    path = tmp / "play.yml"
    path.write_text(json.dumps(play))
    return subprocess.run(
        [str(_exe()), "-i", "localhost,", *args, str(path)],
        capture_output=True,
        text=True,
        env=_ansible_env(env),
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


def _failure_message(result: Mapping[str, Any]) -> str:
    """A failed task result's message; a looped task's text is in its items."""
    items = [r.get("msg", "") for r in result.get("results", []) if r.get("failed")]
    return " ".join([str(result.get("msg", "")), *map(str, items)]).strip()


def playbook_json(res: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON callback's document in a run's output (other callbacks, such as
    profile_tasks, may print lines before and after it)."""
    start = res.stdout.find("\n{") + 1 if not res.stdout.startswith("{") else 0
    assert res.stdout[start : start + 1] == "{", res.stdout[-3000:] + res.stderr[-3000:]
    return json.JSONDecoder().raw_decode(res.stdout[start:])[0]


def inventory_report(
    playbook: Path,
    hosts: Mapping[str, Mapping[str, Any]],
    tmp: Path,
    *args: str,
    group: str = "basestation",
    all_vars: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: int = 900,
) -> tuple[dict[str, dict[str, Any]], subprocess.CompletedProcess]:
    """Run ``playbook`` once against an inventory of ``hosts`` (``{name: host vars}``,
    all in ``group``, connection local, no become), ``all_vars`` for every host and
    localhost. Returns ``({host: report}, the finished run)``, where a report is
    ``{"failed": bool, "play": …, "task": …, "msg": …}`` for the first task that
    failed the host (empty strings when none did), ``"changed"``: the names of the
    tasks that reported a change on it, and ``"stats"``: its recap counters."""
    inventory = {
        "all": {
            "vars": dict(all_vars or {}),
            "children": {
                group: {
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                        "ansible_become": False,
                    },
                    "hosts": {name: dict(v) for name, v in hosts.items()},
                }
            },
        }
    }
    inv = tmp / "inventory.json"
    inv.write_text(json.dumps(inventory))
    run_env = _ansible_env(
        {
            # Dozens of "hosts" on one control node: Ansible's own strategy (94 s
            # for tests/unit/preflight alone) beats Mitogen's, which starts an
            # interpreter per host (130 s); one real host gains from Mitogen.
            "ANSIBLE_STRATEGY": "linear",
            **dict(env or {}),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        }
    )
    res = subprocess.run(
        [str(_exe()), "-i", str(inv), *args, str(playbook)],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    data = playbook_json(res)
    report: dict[str, dict[str, Any]] = {
        h: {"failed": False, "play": "", "task": "", "msg": "", "changed": []} for h in hosts
    }
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if host not in report:
                    continue
                if result.get("changed"):
                    report[host]["changed"].append(task["task"]["name"])
                if result.get("failed") and not report[host]["failed"]:
                    report[host].update(
                        failed=True,
                        play=play["play"]["name"],
                        task=task["task"]["name"],
                        msg=_failure_message(result),
                    )
    for host, stats in data.get("stats", {}).items():
        if host in report:
            report[host]["stats"] = stats
    return report, res


def assert_refused(
    outcome: str, task: str, expected: str, *, spec_task: str, by_spec: bool
) -> None:
    """One bad case of :func:`validation_report`: refused (``outcome`` is not ``"ok"``)
    with ``expected`` in its message (whitespace folded), and by the role's
    argument-specs task (named ``spec_task``) exactly when ``by_spec``, else by a later
    assert. Raises AssertionError naming what differs."""
    got = " ".join(outcome.split())
    assert got != "ok", f"accepted, expected a refusal with {expected!r}"
    assert expected in got, got
    assert (task == spec_task) is by_spec, f"refused by {task!r}"
