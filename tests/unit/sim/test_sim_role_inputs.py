"""Bad input to the testbed_sim role fails early with a message naming the variable.

One ansible-playbook run against localhost in check mode, with every tag except the
role's asserts skipped, so nothing on this machine is touched: each case includes the
role in a block whose rescue records the failure message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SKIP = "testbed_sim_install,testbed_sim_config,testbed_sim_media,testbed_sim_service"

CASES = {
    "ports_equal": ({"testbed_sim_auth_port": 27017}, "testbed_sim_auth_port (27017) and"),
    "experiments_0": ({"testbed_sim_experiments": 0}, "testbed_sim_experiments must be 1-999"),
    "media_relative": (
        {"testbed_sim_media_dir": "srv/wavs"},
        "testbed_sim_media_dir must be an absolute path",
    ),
    "check_path": (
        {"testbed_sim_auth_check_path": "auth/check"},
        "testbed_sim_auth_check_path must be a URL path",
    ),
    "header": ({"testbed_sim_auth_user_header": "X User"}, "testbed_sim_auth_user_header"),
    "users_dup": (
        {"testbed_sim_auth_users": [{"name": "a"}, {"name": "a"}]},
        "testbed_sim_auth_users must list at least one user",
    ),
    "users_empty_pw": (
        {"testbed_sim_auth_users": [{"name": "a", "password": ""}]},
        "a password, when given, must not be empty",
    ),
    "next_param": (
        {"testbed_sim_auth_next_param": "next url"},
        'testbed_sim_auth_next_param ("next url") letters, digits',
    ),
    "mongo_every_interface": (
        {"testbed_sim_mongo_addresses": ["127.0.0.1", "0.0.0.0"]},
        "testbed_sim_mongo_addresses must list IPv4 addresses to listen on",
    ),
    "mongo_address_name": (
        {"testbed_sim_mongo_addresses": ["localhost"]},
        "testbed_sim_mongo_addresses must list IPv4 addresses",
    ),
    "state_choice": ({"testbed_sim_service_state": "running"}, "testbed_sim_service_state"),
    "user_key_typo": ({"testbed_sim_auth_users": [{"nam": "alice"}]}, "nam"),
    "defaults": ({}, None),
}


OK_FACT = "{{ results | combine({'CASE': 'ok'}) }}"
# A looped assert fails with "One or more items failed"; the text is in the items.
FAIL_FACT = (
    "{{ results | combine({'CASE': ([ansible_failed_result.msg | default('')] + "
    "(ansible_failed_result.results | default([]) | map(attribute='msg', default='') | list))"
    " | join(' ')}) }}"
)


def playbook(out: Path) -> list:
    tasks = []
    for name, (extra, _msg) in CASES.items():
        tasks.append(
            {
                "name": f"case {name}",
                "block": [
                    {"ansible.builtin.include_role": {"name": "testbed_sim"}, "vars": extra},
                    {"ansible.builtin.set_fact": {"results": OK_FACT.replace("CASE", name)}},
                ],
                "rescue": [
                    {"ansible.builtin.set_fact": {"results": FAIL_FACT.replace("CASE", name)}}
                ],
            }
        )
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
                # required; the validation does not read it (playbooks/artifacts.yml builds it)
                "testbed_sim_wheel": "/nonexistent/testbed_sim-0.2.0-py3-none-any.whl",
            },
            "tasks": tasks,
        }
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("role-inputs")
    out = tmp / "results.json"
    play = tmp / "play.yml"
    play.write_text(json.dumps(playbook(out)))
    exe = BIN / "ansible-playbook"
    if not exe.exists():
        pytest.skip("needs ansible-playbook next to the test interpreter")
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    res = subprocess.run(
        [str(exe), "-i", "localhost,", "--check", "--skip-tags", SKIP, str(play)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0 and out.exists(), res.stdout + res.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_fails_with_message(results, case):
    message = CASES[case][1]
    got = " ".join(results[case].split())
    assert got != "ok"
    assert message in got, got


def test_defaults_pass_the_checks(results):
    assert results["defaults"] == "ok"
