"""roles/notebook_image refuses bad input in its first tasks, with the variable and the
fix in the message, before anything is written or built (run in check mode against
localhost; no Docker needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: notebook_image
"""

CASES = [
    (
        {"notebook_image_name": "Testbed/Notebook:1"},
        'notebook_image_name ("Testbed/Notebook:1") must be a lower-case repository without a tag',
    ),
    (
        {"notebook_image_jupyterlab_version": ">=3,<4"},
        'notebook_image_jupyterlab_version (">=3,<4") a JupyterLab 4 specifier',
    ),
    (
        {"notebook_image_pip_packages": ["--index-url=http://elsewhere"]},
        'no options starting with "-"',
    ),
    (
        {"notebook_image_pip_remove": ["--yes", "rfc3987-syntax"]},
        'notebook_image_pip_remove (["--yes", "rfc3987-syntax"]) bare distribution names',
    ),
    (
        {"notebook_image_notebook_dir": "/srv/nb"},
        'notebook_image_notebook_dir ("/srv/nb") must be a folder under /home/jovyan',
    ),
    (
        {"notebook_image_base_archive": "images/debian.tar"},
        'notebook_image_base_archive ("images/debian.tar") must be an absolute path',
    ),
    (
        {"notebook_image_ca_certificates": ["/etc/hostname"]},
        'notebook_image_ca_certificates item "/etc/hostname" is not a readable PEM certificate',
    ),
    (
        {"notebook_image_wheel": "/nonexistent/testbed.whl"},
        'notebook_image_wheel ("/nonexistent/testbed.whl") must be the path of a .whl file',
    ),
    (
        {"notebook_image_build_timeout": "soon"},
        "argument 'notebook_image_build_timeout' is of type str",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "message"), CASES, ids=[next(iter(c[0])) for c in CASES])
def test_bad_variable_is_named_and_nothing_runs(tmp_path, extra, message):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--check",
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            json.dumps(extra),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    out = proc.stdout.replace('\\"', '"')
    assert proc.returncode == 2, out
    assert message in out, out
    # failed in validation: no wheel build, no Docker task started
    assert "Build the project wheel" not in out
    assert "Load the base image" not in out
