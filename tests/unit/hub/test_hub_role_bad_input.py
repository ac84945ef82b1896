"""Role jupyterhub: bad variables fail in validation, naming the variable.

Runs the real role on localhost with ``--tags validate-only``: only the tasks tagged
``always`` (argument spec validation and tasks/assert.yml) run, so nothing on this
machine changes. No Docker needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")

GOOD = {
    "jupyterhub_notebook_image": "testbed-hub/notebook:0123456789ab",
    "jupyterhub_allow_all": True,
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
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="default",
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
        timeout=300,
        check=False,
    )


pytestmark = pytest.mark.skipif(not PLAYBOOK_BIN.exists(), reason="ansible-playbook not in venv")


def test_good_variables_pass_validation_and_change_nothing(tmp_path):
    r = run_role(tmp_path, GOOD)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "changed=0" in r.stdout
    assert "failed=0" in r.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"jupyterhub_notebook_image": None},
            "missing required arguments: jupyterhub_notebook_image",
        ),
        ({"jupyterhub_allow_all": None}, "missing required arguments: jupyterhub_allow_all"),
        ({"jupyterhub_media_dir": ""}, 'jupyterhub_media_dir "" must be the absolute path'),
        ({"jupyterhub_media_dir": "wavs"}, 'jupyterhub_media_dir "wavs" must be the absolute'),
        (
            {"jupyterhub_user_volume_template": "jupyterhub-user"},
            'jupyterhub_user_volume_template "jupyterhub-user" must\ncontain {username}',
        ),
        (
            {"jupyterhub_spawner": {"mem_limit": "lots", "cpu_limit": 1.0}},
            'jupyterhub_spawner.mem_limit "lots" must be a size',
        ),
        (
            {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "pull": "always"}},
            "jupyterhub_spawner.pull. Supported parameters include: cpu_limit, http_timeout",
        ),
        ({"jupyterhub_host_gateway_mode": "magic"}, "jupyterhub_host_gateway_mode must be one of"),
        ({"jupyterhub_allow_all": False}, "jupyterhub_allowed_users is empty"),
        ({"jupyterhub_base_url": "/jupyter"}, 'jupyterhub_base_url "/jupyter" must start and end'),
        ({"jupyterhub_proxy_port": 8081}, "must be three different ports"),
    ],
)
def test_bad_variables_fail_naming_the_variable(tmp_path, override, message):
    extra = {**GOOD, **override}
    extra = {k: v for k, v in extra.items() if v is not None}
    r = run_role(tmp_path, extra)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    # fail_msg text is folded by YAML; compare without line breaks
    assert " ".join(message.split()) in " ".join(out.split()), out
    assert "changed=0" in out
