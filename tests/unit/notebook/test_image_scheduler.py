"""roles/notebook_image: with jupyter-scheduler (notebook_image_scheduler_enabled), the
image's server settings run its jobs through testbed.scheduler and deliver their files
to the visible ``jobs/`` folder, and the Dockerfile tells testbed.scheduler the same
folder; without it, neither. Rendered by Ansible itself from the role's defaults, vars,
the server-settings expression of tasks/build.yml and the Dockerfile template, without
Docker.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from jupyter_scheduler.executors import ExecutionManager
from traitlets.utils.importstring import import_item

from testbed import scheduler
from testbed_devtools.roletest import ansible_playbook

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "notebook_image"
DOCKERFILE = ROLE / "templates/var/lib/testbed-hub/notebook-image/Dockerfile.j2"
NOTEBOOK_DIR = "/home/jovyan/nist"


def playbook(out: Path) -> list[dict]:
    """Set the server settings with tasks/build.yml's own expression and vars, then
    write them and the rendered Dockerfile to ``out``."""
    tasks = yaml.safe_load((ROLE / "tasks" / "build.yml").read_text())
    (compute,) = [t for t in tasks if t["name"] == "Compute the content-hash tag"]
    return [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")],
            "tasks": [
                {
                    "name": "Set the server settings as tasks/build.yml does",
                    "ansible.builtin.set_fact": {
                        "__notebook_image_server_config": compute["ansible.builtin.set_fact"][
                            "__notebook_image_server_config"
                        ]
                    },
                    "vars": {
                        "__notebook_image_scheduler_config": compute["vars"][
                            "__notebook_image_scheduler_config"
                        ]
                    },
                },
                {
                    "name": "Write the settings and the Dockerfile",
                    "ansible.builtin.copy": {
                        "content": "{{ {'config': __notebook_image_server_config, "
                        f"'dockerfile': lookup('ansible.builtin.template', '{DOCKERFILE}')}}"
                        " | to_json }}",
                        "dest": str(out),
                        "mode": "0644",
                    },
                },
            ],
        }
    ]


def render(tmp_path: Path, **extra) -> dict:
    out = tmp_path / f"rendered-{len(list(tmp_path.iterdir()))}.json"
    work = tmp_path / f"play-{out.stem}"
    work.mkdir()
    extra = {"__notebook_image_wheel_name": "testbed_notebook-0.2.0-py3-none-any.whl", **extra}
    proc = ansible_playbook(
        playbook(out),
        work,
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        json.dumps(extra),
        env={"ANSIBLE_LOCAL_TEMP": str(work / "tmp")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scheduler")
    return {
        "default": render(tmp),
        "off": render(tmp, notebook_image_scheduler_enabled=False),
    }


def env_lines(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if scheduler.OUTPUT_DIR_ENV in line]


def test_jobs_run_through_testbed_scheduler_and_deliver_to_jobs(rendered):
    config = rendered["default"]["config"]
    assert config["SchedulerApp"] == {
        "db_url": f"sqlite:///{NOTEBOOK_DIR}/.jupyter-scheduler.sqlite"
    }
    settings = config["BaseScheduler"]
    # the database and the staging folder stay where earlier images put them
    assert settings["staging_path"] == f"{NOTEBOOK_DIR}/.jupyter-scheduler/staging"
    assert settings["output_directory"] == "jobs"
    # the configured name is the class this package ships, and jupyter-scheduler takes it
    manager = import_item(settings["execution_manager_class"])
    assert manager is scheduler.TestbedExecutionManager
    assert issubclass(manager, ExecutionManager)
    # the execution manager is told the same folder, in the environment
    assert env_lines(rendered["default"]["dockerfile"]) == [
        f"ENV {scheduler.OUTPUT_DIR_ENV}={settings['output_directory']}"
    ]


def test_without_the_scheduler_there_are_no_scheduler_settings(rendered):
    off = rendered["off"]
    assert set(off["config"]) == {"ServerApp", "HubOAuth", "ResourceUseDisplay"}
    assert env_lines(off["dockerfile"]) == []


def _steps(dockerfile: str) -> list[str]:
    """The Dockerfile's RUN instructions, continuation lines joined."""
    return [s for s in dockerfile.replace("\\\n", " ").splitlines() if s.startswith("RUN ")]


def test_the_create_job_form_filler_is_enabled_with_the_scheduler_only(rendered):
    (on,) = [s for s in _steps(rendered["default"]["dockerfile"]) if "job_parameters" in s]
    # the server extension's switch file, and the build fails unless both extensions load
    assert '{"testbed.job_parameters": true}' in on
    assert "grep -q 'testbed.job_parameters .*OK'" in on
    assert "grep -q '@testbed/job-parameters .*enabled.*OK'" in on
    assert "labextension disable" not in on
    off = _steps(rendered["off"]["dockerfile"])
    assert not [s for s in off if "job_parameters" in s]
    (disabled,) = [s for s in off if "@testbed/job-parameters" in s]
    assert "jupyter labextension disable --level=sys_prefix @testbed/job-parameters" in disabled
