"""roles/notebook_image: notebook_image_collaboration puts jupyter-collaboration in the
image's requirements, and so in the content-hash tag (tasks/build.yml hashes the
rendered requirements.txt); off, it is not installed. Rendered by Ansible itself (the
role's defaults, vars and template), without Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "notebook_image"
TEMPLATE = ROLE / "templates/var/lib/testbed-hub/notebook-image/requirements.txt.j2"
PLAYBOOK = f"""
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: ["{ROLE}/defaults/main.yml", "{ROLE}/vars/main.yml"]
  tasks:
    - name: Render the requirements
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{TEMPLATE}') }}}}"
        dest: "{{{{ out }}}}"
        mode: "0644"
"""


def requirements(tmp_path: Path, **extra) -> list[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / f"requirements-{len(list(tmp_path.iterdir()))}.txt"
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            json.dumps({"out": str(out), **extra}),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [x for x in out.read_text().splitlines() if x and not x.startswith("#")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collab")
    return {
        "default": requirements(tmp),
        "off": requirements(tmp, notebook_image_collaboration=False),
    }


def test_collaboration_is_installed_by_default_with_jupyterlab_resolved_together(rendered):
    lines = rendered["default"]
    assert "jupyter-collaboration>=5.0.4,<6" in lines
    # one requirements file: pip resolves JupyterLab (>=4.2,<5) and jupyter-collaboration
    # 5 (jupyterlab>=4.6) together
    assert "jupyterlab>=4.2,<5" in lines


def test_off_it_is_not_installed_and_the_tag_changes(rendered):
    off = rendered["off"]
    assert not [x for x in off if x.startswith("jupyter-collaboration")]
    assert set(rendered["default"]) - set(off) == {"jupyter-collaboration>=5.0.4,<6"}
    # the content-hash tag hashes this text (tasks/build.yml): a different text, a new tag
    build = (ROLE / "tasks" / "build.yml").read_text()
    assert "[__notebook_image_dockerfile, __notebook_image_requirements," in build
