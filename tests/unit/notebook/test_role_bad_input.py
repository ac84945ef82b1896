"""roles/notebook_image refuses bad input in its first tasks, naming the variable and the
fix, and changes nothing.

Each case runs the whole role for real against localhost (no check mode, no tag
filter), with DOCKER_HOST pointing at a socket that does not exist: if a bad value got
past validation, the next task (a Docker call) would fail instead, and the test would
see that the failing task is not a validation task. The build folder the role creates
first lives in tmp_path and must still be absent afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "notebook_image"
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: notebook_image
"""
#: Tasks that may refuse input: argument spec validation and tasks/assert.yml.
VALIDATION_TASKS = ("Validating arguments against arg spec 'main'",) + tuple(
    t["name"] for t in yaml.safe_load((ROLE / "tasks" / "assert.yml").read_text())
)

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
        {"notebook_image_jupyterlab_version": ">=4.2,<4.6"},
        'notebook_image_jupyterlab_version (">=4.2,<4.6") excludes JupyterLab 4.6, which '
        "notebook_image_collaboration (jupyter-collaboration 5) needs",
    ),
    (
        {"notebook_image_jupyterlab_version": "==4.5.*"},
        'notebook_image_jupyterlab_version ("==4.5.*") excludes JupyterLab 4.6',
    ),
    (
        {"notebook_image_collaboration": "perhaps"},
        "argument 'notebook_image_collaboration' is of type str",
    ),
    (
        {"notebook_image_hub_auth_cache_seconds": 3600},
        "notebook_image_hub_auth_cache_seconds must be a whole number of seconds from 0 to 300",
    ),
    (
        {"notebook_image_pip_packages": ["--index-url=http://elsewhere"]},
        'notebook_image_pip_packages (["--index-url=http://elsewhere"]) pip requirements',
    ),
    (
        {"notebook_image_pip_remove": ["--yes", "rfc3987-syntax"]},
        'notebook_image_pip_remove (["--yes", "rfc3987-syntax"]) bare distribution names',
    ),
    (
        {"notebook_image_apt_packages": ["-y"]},
        'notebook_image_apt_packages (["-y"]) must be Debian package names',
    ),
    (
        {"notebook_image_notebook_dir": "/srv/nb"},
        'notebook_image_notebook_dir ("/srv/nb") must be a folder under /home/jovyan',
    ),
    (
        {"notebook_image_build_dir": "/var/lib"},
        'notebook_image_build_dir ("/var/lib") a dedicated absolute folder',
    ),
    (
        {"notebook_image_base_archive": "images/debian.tar"},
        'notebook_image_base_archive ("images/debian.tar") must be an absolute path',
    ),
    (
        {"notebook_image_archive_dir": "cache/images"},
        'notebook_image_archive_dir ("cache/images") must be an absolute folder',
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
    ({"notebook_image_build_timeout": 30}, "notebook_image_build_timeout (30) must be"),
    ({"notebook_image_keep_previous": -1}, "notebook_image_keep_previous (-1) must be"),
    (
        {"notebook_image_keep_previous": "all"},
        "argument 'notebook_image_keep_previous' is of type str",
    ),
    (
        {"notebook_image_build_args": {"http_proxy": 3128}},
        'notebook_image_build_args values must be strings (got {"http_proxy": 3128})',
    ),
]


@pytest.fixture
def wheel(tmp_path):
    path = tmp_path / "testbed_notebook-0.2.0-py3-none-any.whl"
    path.write_bytes(b"only its name and checksum are read")
    return path


def run(tmp_path, extra, *args):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        # every Docker call fails: nothing can reach this machine's engine
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
    )
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            json.dumps(extra),
            str(playbook),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def failed_task(out: str) -> str | None:
    name = None
    for line in out.splitlines():
        m = re.match(r"^TASK \[(?:notebook_image : )?(.*)\] \*+", line)
        if m:
            name = m.group(1)
        elif line.startswith(("fatal: ", "failed: ")):
            return name
    return None


@pytest.mark.parametrize(
    "more",
    [
        {},
        # an older JupyterLab is fine without real-time collaboration
        {"notebook_image_jupyterlab_version": ">=4.2,<4.6", "notebook_image_collaboration": False},
        {"notebook_image_jupyterlab_version": "==4.6.*"},
    ],
    ids=["defaults", "older-lab-without-collaboration", "lab-4.6"],
)
def test_good_input_passes_validation(tmp_path, wheel, more):
    extra = {
        "notebook_image_wheel": str(wheel),
        "notebook_image_build_dir": str(tmp_path / "build"),
        **more,
    }
    proc = run(tmp_path, extra, "--tags", "validate-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "message"), CASES, ids=[next(iter(c[0])) for c in CASES])
def test_bad_variable_is_named_and_nothing_changes(tmp_path, wheel, extra, message):
    build_dir = tmp_path / "build"
    extra = {
        "notebook_image_wheel": str(wheel),
        "notebook_image_build_dir": str(build_dir),
        **extra,
    }
    proc = run(tmp_path, extra)
    out = proc.stdout.replace('\\"', '"')
    assert proc.returncode != 0, out
    assert message in " ".join(out.split()), out
    # refused by a validation task, not by a later one
    task = failed_task(proc.stdout)
    assert task is not None and task.startswith(VALIDATION_TASKS), f"failed in {task!r}:\n{out}"
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", out), out
    if extra["notebook_image_build_dir"] == str(build_dir):
        assert not build_dir.exists(), "the build folder was created"
