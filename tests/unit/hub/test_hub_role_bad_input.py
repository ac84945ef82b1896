"""Role jupyterhub: bad variables fail in validation, naming the variable, and change nothing.

One ansible-playbook run on localhost in check mode with ``--tags validate-only``
checks the whole table (testbed_devtools.roletest): only the tasks tagged ``always``
run, that is the argument spec validation and tasks/assert.yml, which renders
settings.json on the control node and checks it with the hub's own validator
(``python -m testbed_hub.config``). No Docker needed, nothing installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed_devtools.roletest import validation_report

#: The tasks that may refuse input; anything failing later would mean a bad value got
#: past validation.
VALIDATION_TASKS = (
    "Validating arguments against arg spec 'main'",
    "Assert the hub settings are valid",
    "Assert the network subnet is an IPv4 CIDR when given",
    "Assert jupyterhub_version is not older than the installed JupyterHub",
    "Assert jupyterhub_logo_src is a file on the control node",
    "Assert the audit log is a path in a folder of its own",
    "Assert the collector's socket is in a folder of its own under /run",
    "Assert the audit rotation keeps at least one file",
    "Assert jupyterhub_audit_rotate_on_calendar is a systemd calendar expression",
    "Assert jupyterhub_npm_checksum is a checksum",
)

#: (override of the good variables, part of the expected message); None removes one.
BAD = [
    # argument specs: types, choices, required, unknown keys
    (
        {"jupyterhub_notebook_image": None},
        "missing required arguments: jupyterhub_notebook_image",
    ),
    ({"jupyterhub_allow_all": None}, "missing required arguments: jupyterhub_allow_all"),
    (
        {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "pull": "always"}},
        "jupyterhub_spawner.pull. Supported parameters include: capabilities, "
        "concurrent_starts, cpu_limit, http_timeout",
    ),
    ({"jupyterhub_host_gateway_mode": "magic"}, "jupyterhub_host_gateway_mode must be one of"),
    # scale-out: the station's address is required, and checked by the hub's validator
    (
        {"jupyterhub_swarm_enabled": True},
        'jupyterhub_swarm_station_address (swarm.station_ip) "" must be the station\'s IP address',
    ),
    (
        {
            "jupyterhub_swarm_enabled": True,
            "jupyterhub_swarm_station_address": "10.0.0.2",
            "jupyterhub_swarm_share_dir": "station",
        },
        'jupyterhub_swarm_share_dir (swarm.share_dir) "station" must be an absolute folder',
    ),
    ({"jupyterhub_swarm_placement": "manager"}, "jupyterhub_swarm_placement must be one of"),
    ({"jupyterhub_hub_port": "eighty"}, "jupyterhub_hub_port"),
    ({"jupyterhub_identity_case": "lower"}, "jupyterhub_identity_case must be one of"),
    ({"jupyterhub_identity_merge": "perhaps"}, "jupyterhub_identity_merge"),
    ({"jupyterhub_sharing_enabled": "perhaps"}, "jupyterhub_sharing_enabled"),
    ({"jupyterhub_sharing_enabled": [True]}, "jupyterhub_sharing_enabled"),
    (
        {"jupyterhub_logo_src": "/nonexistent/logo.svg"},
        'jupyterhub_logo_src "/nonexistent/logo.svg" is not an image file (.png, .svg, .jpg, '
        ".jpeg, .gif, .webp) on the control node",
    ),
    (
        {"jupyterhub_logo_src": "no-such-logo.svg"},
        'jupyterhub_logo_src "no-such-logo.svg" is not an image file',
    ),
    ({"jupyterhub_logo_src": __file__}, "is not an image file (.png, .svg"),
    ({"jupyterhub_logo_src": ".svg"}, 'jupyterhub_logo_src ".svg" is not an image file'),
    (
        {"jupyterhub_site_title": "x" * 81},
        "jupyterhub_site_title (hub.site_title) ",
    ),
    (
        {"jupyterhub_npm_checksum": "3a7506f37e85c1ba"},
        'jupyterhub_npm_checksum must be "sha512:<hex digest>" (or sha256) of npm-10.9.4.tgz',
    ),
    (
        {"jupyterhub_npm_version": "latest"},
        'and jupyterhub_npm_version an exact version such as 10.9.4; got "sha512:',
    ),
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
        {"jupyterhub_activity_interval": 2400},
        "jupyterhub_activity_interval (hub.activity_interval) 2400 must be at most half of "
        "jupyterhub_culler_timeout (culler.timeout) 3600",
    ),
    ({"jupyterhub_activity_interval": "often"}, "jupyterhub_activity_interval"),
    (
        {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "pids_limit": 10}},
        "jupyterhub_spawner.pids_limit (spawner.pids_limit) 10 must be 64 to 1048576",
    ),
    (
        {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "concurrent_starts": -2}},
        "jupyterhub_spawner.concurrent_starts (spawner.concurrent_starts) -2 must be 0 (no limit)",
    ),
    (
        {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "capabilities": ["ALL"]}},
        "ALL and SYS_ADMIN give a user the station",
    ),
    (
        {"jupyterhub_host_gateway_mode": "docker0"},
        "jupyterhub_host_gateway_mode must be one of",
    ),
    # resource profiles and named servers (issue 16): the hub's validator, naming the variable
    (
        {
            "jupyterhub_profiles": [
                {"name": "standard", "mem_limit": "2G", "cpu_limit": 1.0, "default": True},
                {"name": "standard", "mem_limit": "4G", "cpu_limit": 2.0},
            ]
        },
        "jupyterhub_profiles (spawner.profiles): names must be unique, standard repeated",
    ),
    (
        {
            "jupyterhub_profiles": [
                {"name": "standard", "mem_limit": "2G", "cpu_limit": 1.0, "default": True},
                {"name": "audio", "mem_limit": "64G", "cpu_limit": 2.0},
            ],
            "jupyterhub_profile_ceiling": {"mem_limit": "8G", "cpu_limit": 4},
        },
        'jupyterhub_profiles (spawner.profiles) "audio": mem_limit 64G is more than '
        "jupyterhub_profile_ceiling.mem_limit (spawner.max_mem_limit) 8G",
    ),
    (
        {"jupyterhub_profiles": [{"name": "audio", "memory": "4G", "cpu_limit": 2.0}]},
        "jupyterhub_profiles",
    ),
    (
        {"jupyterhub_named_server_limit": 50},
        "jupyterhub_named_server_limit (spawner.named_server_limit) 50 must be 0",
    ),
    # tasks/assert.yml: what is not a setting
    ({"jupyterhub_network_subnet": "172.30.0.0"}, 'jupyterhub_network_subnet "172.30.0.0"'),
    # the audit trail
    ({"jupyterhub_audit_enabled": "perhaps"}, "jupyterhub_audit_enabled"),
    ({"jupyterhub_audit_rotate_keep": "many"}, "jupyterhub_audit_rotate_keep"),
    (
        {"jupyterhub_audit_rotate_keep": 0},
        "jupyterhub_audit_rotate_keep (0) must be a whole number >= 1",
    ),
    (
        {"jupyterhub_audit_log": "audit.log"},
        # the hub's settings check (testbed_hub.config) sees it first
        'jupyterhub_audit_log (hub.audit_log) "audit.log" must be the absolute path of a file',
    ),
    (
        {"jupyterhub_audit_log": "/var/log/audit.log"},
        'jupyterhub_audit_log "/var/log/audit.log" must be an absolute path of letters, digits, '
        '".", "_", "-" in a folder of its own',
    ),
    (
        {"jupyterhub_audit_nginx_socket": "/tmp/nginx.sock"},
        'jupyterhub_audit_nginx_socket "/tmp/nginx.sock" must be /run/<folder>/<name>',
    ),
    (
        {"jupyterhub_audit_rotate_on_calendar": "every full moon"},
        'jupyterhub_audit_rotate_on_calendar "every full moon" is not a systemd calendar '
        "expression (Failed to parse",
    ),
    (
        {"jupyterhub_audit_rotate_on_calendar": "monthly\nExecStart=/bin/sh"},
        "jupyterhub_audit_rotate_on_calendar",
    ),
    # tasks/assert.yml: a downgrade (the hub virtualenv "VENV <version>" holds a newer one)
    (
        {"jupyterhub_version": "5.5.4", "jupyterhub_venv_dir": "VENV 6.1.1"},
        "jupyterhub_version 5.5.4 is older than the JupyterHub 6.1.1 installed on localhost",
    ),
]

#: Places the role would create first; they must still be absent afterwards.
PLACES = ("jupyterhub_config_dir", "jupyterhub_data_dir", "jupyterhub_venv_dir")


def good_vars(tmp):
    wheel = tmp / "testbed_hub-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"not used: only the validation runs")
    return {
        "jupyterhub_notebook_image": "testbed-hub/notebook:0123456789ab",
        "jupyterhub_allow_all": True,
        "jupyterhub_wheel": str(wheel),
        "jupyterhub_config_dir": str(tmp / "etc-jupyterhub"),
        "jupyterhub_data_dir": str(tmp / "var-lib-jupyterhub"),
        "jupyterhub_venv_dir": str(tmp / "opt-jupyterhub"),
    }


def task_lines(out: str):
    """``(task name, result line)`` for every result line of the default callback."""
    name = ""
    for line in out.splitlines():
        if line.startswith("TASK ["):
            name = line[len("TASK [") :].split("]")[0]
        elif line.startswith(("ok:", "changed:", "fatal:", "failed:", "skipping:")):
            yield name, line


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub-inputs")
    good = good_vars(tmp)
    cases = {"good": (good, None)}
    for i, (override, message) in enumerate(BAD):
        extra = {k: v for k, v in {**good, **override}.items() if v is not None}
        venv = str(override.get("jupyterhub_venv_dir", ""))
        if venv.startswith("VENV "):
            python = tmp / f"venv{i}" / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text(f"#!/bin/sh\necho {venv[5:]}\n")
            python.chmod(0o755)
            extra["jupyterhub_venv_dir"] = str(python.parent.parent)
        cases[f"bad{i}"] = (extra, message)
    scratch = tmp / "settings-tmp"
    scratch.mkdir()
    outcome, task, run = validation_report(
        "jupyterhub",
        cases,
        tmp,
        "--tags",
        "validate-only",
        # where the rendered settings are validated; it must be empty afterwards
        env={"TMPDIR": str(scratch), "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp")},
    )
    return outcome, task, run, good, scratch


def test_good_variables_pass_validation_and_change_nothing(report):
    outcome, _task, run, good, scratch = report
    assert outcome["good"] == "ok", outcome["good"]
    assert "TASK [jupyterhub : Validate them with testbed_hub.config]" in run.stdout
    # the only change of the whole run is the play writing its own results file
    changed = [t for t, line in task_lines(run.stdout) if line.startswith("changed:")]
    assert changed == ["ansible.builtin.copy"], changed
    for key in PLACES:
        assert not Path(good[key]).exists(), f"{good[key]} was created"
    # the rendered settings were removed from the control node again, for every case
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(("index", "message"), [(i, m) for i, (_o, m) in enumerate(BAD)])
def test_bad_variables_fail_in_validation_naming_the_variable(report, index, message):
    outcome, task, _run, _good, _scratch = report
    got = outcome[f"bad{index}"]
    assert got != "ok", f"{BAD[index][0]} was accepted"
    # messages are folded by YAML and the callback; compare without line breaks
    assert " ".join(message.split()) in " ".join(got.split()), got
    assert task[f"bad{index}"].startswith(VALIDATION_TASKS), task[f"bad{index}"]
