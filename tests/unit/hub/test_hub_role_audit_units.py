"""Role jupyterhub: the audit trail's systemd units and settings, rendered by Ansible.

The four units (collector socket and service, rotate service and timer) are rendered
from the role's defaults and checked line by line and with ``systemd-analyze verify``
(offline: it parses the units and checks that ExecStart's program exists); the hub
setting ``hub.audit_log`` is the log, or "" with auditing off.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed_devtools.roletest import ansible_playbook

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "jupyterhub"
UNITS = [
    "testbed-audit-nginx.socket",
    "testbed-audit-nginx.service",
    "testbed-audit-rotate.service",
    "testbed-audit-rotate.timer",
]


def _render(tmp: Path, extra: dict) -> tuple[dict[str, str], dict]:
    venv = Path(sys.executable).parent.parent  # ExecStart's python must exist for verify
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "tasks": [
                {
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates/etc/systemd/system" / f"{unit}.j2"),
                        "dest": str(tmp / unit),
                        "mode": "0644",
                    },
                    "vars": {"jupyterhub_venv_dir": str(venv), **extra},
                }
                for unit in UNITS
            ]
            + [
                {
                    "ansible.builtin.copy": {
                        "content": "{{ __jupyterhub_settings.hub | to_json }}",
                        "dest": str(tmp / "hub.json"),
                        "mode": "0644",
                    },
                    "vars": {
                        "jupyterhub_notebook_image": "x",
                        "__jupyterhub_gateway_ip": "172.17.0.1",
                        **extra,
                    },
                }
            ],
        }
    ]
    res = ansible_playbook(play, tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    hub = yaml.safe_load((tmp / "hub.json").read_text())
    return {u: (tmp / u).read_text() for u in UNITS}, hub


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit-units")
    units, hub = _render(
        tmp,
        {"jupyterhub_audit_rotate_keep": 6, "jupyterhub_audit_rotate_on_calendar": "weekly"},
    )
    return tmp, units, hub


def test_socket_only_nginx_and_root_may_send(rendered):
    _tmp, units, _hub = rendered
    lines = units["testbed-audit-nginx.socket"].splitlines()
    for want in (
        "ListenDatagram=/run/testbed-audit/nginx.sock",
        "SocketGroup=www-data",
        "SocketMode=0660",
        "DirectoryMode=0750",
        "ExecStartPost=/bin/chgrp www-data /run/testbed-audit",
    ):
        assert want in lines, units["testbed-audit-nginx.socket"]


def test_collector_and_rotation_run_the_hub_python_on_the_log(rendered):
    _tmp, units, _hub = rendered
    python = f"{Path(sys.executable).parent.parent}/bin/python -m testbed_hub.audit"
    collector = units["testbed-audit-nginx.service"].splitlines()
    assert (
        f"ExecStart={python} collect-nginx --log /var/log/testbed/audit.log "
        "--socket /run/testbed-audit/nginx.sock --hub-path /jupyter/ --group www-data"
    ) in collector
    rotate = units["testbed-audit-rotate.service"].splitlines()
    assert (
        f"ExecStart={python} rotate --log /var/log/testbed/audit.log --keep 6 "
        "--identity testbed-audit-rotate.timer"
    ) in rotate
    for unit in (collector, rotate):
        assert "ProtectSystem=strict" in unit and "ReadWritePaths=/var/log/testbed" in unit
        assert "NoNewPrivileges=true" in unit and "PrivateNetwork=true" in unit
    assert "OnCalendar=weekly" in units["testbed-audit-rotate.timer"].splitlines()
    assert "Persistent=true" in units["testbed-audit-rotate.timer"].splitlines()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is missing")
def test_systemd_accepts_the_units(rendered):
    tmp, _units, _hub = rendered
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp / u) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # only the units' own lines count (the host's other units may warn)
    own = [line for line in res.stderr.splitlines() if "testbed-audit" in line]
    assert own == [], res.stderr


def test_hub_setting_is_the_log_or_empty(rendered, tmp_path):
    _tmp, _units, hub = rendered
    assert hub["audit_log"] == "/var/log/testbed/audit.log"
    _u, off = _render(tmp_path, {"jupyterhub_audit_enabled": False})
    assert off["audit_log"] == ""
