"""Role jupyterhub: bad variables fail in validation, naming the variable, and change nothing.

Runs the real role on localhost with ``--tags validate-only``: only the tasks tagged
``always`` run, that is the argument spec validation and tasks/assert.yml, which
renders settings.json on the control node and checks it with the hub's own
validator (``python -m testbed_hub.config``). No Docker needed, nothing installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")

#: The tasks that may refuse input; anything failing later would mean a bad value got
#: past validation.
VALIDATION_TASKS = (
    "Validating arguments against arg spec 'main'",
    "Assert the hub settings are valid",
    "Assert the network subnet is an IPv4 CIDR when given",
)

pytestmark = pytest.mark.skipif(not PLAYBOOK_BIN.exists(), reason="ansible-playbook not in venv")


@pytest.fixture
def good(tmp_path):
    wheel = tmp_path / "testbed_hub-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"not used: only the validation runs")
    return {
        "jupyterhub_notebook_image": "testbed-hub/notebook:0123456789ab",
        "jupyterhub_allow_all": True,
        "jupyterhub_wheel": str(wheel),
        # places the role would create first; they must still be absent afterwards
        "jupyterhub_config_dir": str(tmp_path / "etc-jupyterhub"),
        "jupyterhub_data_dir": str(tmp_path / "var-lib-jupyterhub"),
        "jupyterhub_venv_dir": str(tmp_path / "opt-jupyterhub"),
    }


def run_role(tmp_path, extra_vars):
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: true\n"
        "  roles:\n"
        "    - role: jupyterhub\n"
    )
    varsfile = tmp_path / "vars.json"
    varsfile.write_text(json.dumps({**extra_vars, "ansible_python_interpreter": sys.executable}))
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        TMPDIR=str(scratch),  # where the rendered settings are validated
        PATH=f"{PLAYBOOK_BIN.parent}:{os.environ.get('PATH', '')}",
    )
    return subprocess.run(
        [
            str(PLAYBOOK_BIN),
            "-i",
            "localhost,",
            str(play),
            "-e",
            f"@{varsfile}",
            "--tags",
            "validate-only",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def failed_task(out: str) -> str | None:
    """Name of the task whose result was ``fatal``."""
    name = None
    for line in out.splitlines():
        m = re.match(r"^TASK \[(?:jupyterhub : )?(.*)\] \*+", line)
        if m:
            name = m.group(1)
        elif line.startswith(("fatal: ", "failed: ")):
            return name
    return None


def assert_nothing_changed(tmp_path, good, out):
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", out), out
    for key in ("jupyterhub_config_dir", "jupyterhub_data_dir", "jupyterhub_venv_dir"):
        assert not Path(good[key]).exists(), f"{good[key]} was created"
    # the rendered settings were removed from the control node again
    assert list((tmp_path / "tmp").iterdir()) == []


def test_good_variables_pass_validation_and_change_nothing(tmp_path, good):
    r = run_role(tmp_path, good)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "failed=0" in r.stdout
    assert "TASK [jupyterhub : Validate them with testbed_hub.config]" in out
    assert_nothing_changed(tmp_path, good, out)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # argument specs: types, choices, required, unknown keys
        (
            {"jupyterhub_notebook_image": None},
            "missing required arguments: jupyterhub_notebook_image",
        ),
        ({"jupyterhub_allow_all": None}, "missing required arguments: jupyterhub_allow_all"),
        (
            {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "pull": "always"}},
            "jupyterhub_spawner.pull. Supported parameters include: capabilities, cpu_limit, "
            "http_timeout",
        ),
        ({"jupyterhub_host_gateway_mode": "magic"}, "jupyterhub_host_gateway_mode must be one of"),
        ({"jupyterhub_hub_port": "eighty"}, "jupyterhub_hub_port"),
        ({"jupyterhub_identity_case": "lower"}, "jupyterhub_identity_case must be one of"),
        ({"jupyterhub_identity_merge": "perhaps"}, "jupyterhub_identity_merge"),
        # testbed_hub.config on the control node: everything that goes into settings.json
        ({"jupyterhub_notebook_image": " "}, "jupyterhub_notebook_image (spawner.image) is empty"),
        (
            {"jupyterhub_media_dir": ""},
            'jupyterhub_media_dir (spawner.media_dir) "" must be an absolute path',
        ),
        (
            {"jupyterhub_media_dir": "wavs"},
            'jupyterhub_media_dir (spawner.media_dir) "wavs" must be an absolute path',
        ),
        (
            {"jupyterhub_user_volume_template": "jupyterhub-user"},
            'jupyterhub_user_volume_template (spawner.user_volume_template) "jupyterhub-user" '
            "must contain {username}",
        ),
        (
            {"jupyterhub_spawner": {"mem_limit": "lots", "cpu_limit": 1.0}},
            'jupyterhub_spawner.mem_limit (spawner.mem_limit) "lots" is not a size',
        ),
        (
            {"jupyterhub_allow_all": False},
            "jupyterhub_allow_all (auth.allow_all) is false and jupyterhub_allowed_users "
            "(auth.allowed_users) is empty",
        ),
        (
            {"jupyterhub_base_url": "/jupyter"},
            'jupyterhub_base_url (hub.base_url) "/jupyter" must start and end with',
        ),
        ({"jupyterhub_proxy_port": 8081}, "must be three different ports, got 8081, 8081, 8001"),
        (
            {"jupyterhub_network_bridge": "br-jupyter-far-too-long"},
            'jupyterhub_network_bridge (spawner.bridge_interface) "br-jupyter-far-too-long"',
        ),
        (
            {"jupyterhub_culler_timeout": 30},
            "jupyterhub_culler_timeout (culler.timeout) 30 must be 60 seconds or more",
        ),
        (
            {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "pids_limit": 10}},
            "jupyterhub_spawner.pids_limit (spawner.pids_limit) 10 must be 64 to 1048576",
        ),
        (
            {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "capabilities": ["ALL"]}},
            "ALL and SYS_ADMIN give a user the station",
        ),
        (
            {"jupyterhub_host_gateway_mode": "docker0"},
            "jupyterhub_host_gateway_mode must be one of",
        ),
        # tasks/assert.yml: what is not a setting
        ({"jupyterhub_network_subnet": "172.30.0.0"}, 'jupyterhub_network_subnet "172.30.0.0"'),
    ],
)
def test_bad_variables_fail_in_validation_naming_the_variable(tmp_path, good, override, message):
    extra = {**good, **override}
    extra = {k: v for k, v in extra.items() if v is not None}
    r = run_role(tmp_path, extra)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    # messages are folded by YAML and the callback; compare without line breaks
    assert " ".join(message.split()) in " ".join(out.split()), out
    task = failed_task(r.stdout)
    assert task is not None and task.startswith(VALIDATION_TASKS), task
    assert_nothing_changed(tmp_path, good, out)
