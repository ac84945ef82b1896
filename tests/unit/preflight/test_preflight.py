"""site.yml's pre-flight: a bad inventory is refused before any role changes anything.

One ``ansible-playbook site.yml --check --tags validate-only`` run checks the whole
table (testbed_devtools.roletest.inventory_report): every case is a host of its own
(connection local) whose variables are a good inventory (inventory/production's
group_vars, with this machine's temporary folders) plus the case's bad value. Each
case must be refused by a task of the pre-flight play, with a message naming the
variable; no host may report a change, the provisioning play must run nothing, and
the folders the roles would create must still be absent. Three good inventories
(production-like, the demo's with the simulator on, and an upgrade: a station whose
hub virtualenv holds the previous JupyterHub) must pass. The station's installed
JupyterHub is a stand-in ``bin/python`` that prints a version. No Docker needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed_devtools.roletest import ROOT, inventory_report, playbook_json

PREFLIGHT_PLAY = "Pre-flight - refuse bad input before anything changes"
PROVISION_PLAY = "Provision the testbed base station"
MONGO = {"database": "testbed", "user": "", "password": ""}

#: name: (override of the good variables (None removes one), part of the expected message)
BAD: dict[str, tuple[dict, str]] = {
    # argument specs: types, choices, required, unknown keys (short messages)
    "hub_port_type": (
        {"jupyterhub_hub_port": "eighty"},
        'You set jupyterhub_hub_port: "eighty", e.g. jupyterhub_hub_port: 8081.',
    ),
    "allow_all_missing": (
        {"jupyterhub_allow_all": None},
        "missing required arguments: jupyterhub_allow_all. You did not set jupyterhub_allow_all, "
        "e.g. jupyterhub_allow_all: true.",
    ),
    "identity_case_choice": ({"jupyterhub_identity_case": "lower"}, "jupyterhub_identity_case"),
    "tls_enabled_type": ({"reverse_proxy_tls_enabled": "maybe"}, "reverse_proxy_tls_enabled"),
    "daemon_options_type": ({"docker_daemon_options": "live-restore"}, "docker_daemon_options"),
    "spawner_unknown_key": (
        {"jupyterhub_spawner": {"mem_limit": "2G", "cpu_limit": 1.0, "pull": "always"}},
        "jupyterhub_spawner.pull. Supported parameters include: capabilities",
    ),
    "egress_enabled_type": ({"notebook_egress_enabled": "perhaps"}, "notebook_egress_enabled"),
    "auth_timeout_type": ({"reverse_proxy_auth_timeout": "soon"}, "reverse_proxy_auth_timeout"),
    # a string where a list belongs (type: list would split it)
    "allowed_users_string": (
        {"jupyterhub_allow_all": False, "jupyterhub_allowed_users": "alice@x.org,bob@x.org"},
        "jupyterhub_allowed_users must be a YAML list",
    ),
    "admin_users_string": (
        {"jupyterhub_admin_users": "alice@testbed.example"},
        "jupyterhub_admin_users must be a YAML list",
    ),
    "blocked_users_string": (
        {"jupyterhub_blocked_users": "mallory@testbed.example"},
        "jupyterhub_blocked_users must be a YAML list",
    ),
    "server_names_string": (
        {"reverse_proxy_server_names": "hub.example.org"},
        "reverse_proxy_server_names must be a YAML list",
    ),
    "listen_addresses_string": (
        {"reverse_proxy_listen_addresses": "0.0.0.0"},
        "reverse_proxy_listen_addresses must be a YAML list",
    ),
    "ca_certificates_string": ({"ca_trust_certificates": "/tmp/ca.pem"}, "ca_trust_certificates"),
    "egress_allow_string": ({"notebook_egress_allow": "10.1.2.3"}, "notebook_egress_allow"),
    # paths on the station
    "data_dir_relative": (
        {"jupyterhub_data_dir": "var/lib/jupyterhub"},
        "jupyterhub_data_dir must be an absolute path",
    ),
    "tls_dir_relative": ({"reverse_proxy_tls_dir": "tls"}, "reverse_proxy_tls_dir"),
    "config_dir_relative": ({"jupyterhub_config_dir": "etc/jupyterhub"}, "jupyterhub_config_dir"),
    "media_dir_relative": ({"jupyterhub_media_dir": "wavs"}, "jupyterhub_media_dir"),
    "media_dir_missing": ({"jupyterhub_media_dir": "MISSING"}, "does not exist"),
    "media_dir_a_file": ({"jupyterhub_media_dir": "A_FILE"}, "is not a folder"),
    # relations between the roles
    "base_url_root": ({"jupyterhub_base_url": "/"}, 'jupyterhub_base_url "/"'),
    "base_url_no_slash": ({"jupyterhub_base_url": "/jupyter"}, "jupyterhub_base_url"),
    "hub_path_differs": ({"reverse_proxy_hub_path": "/hub/"}, 'reverse_proxy_hub_path "/hub/"'),
    "proxy_port_80": (
        {"jupyterhub_proxy_port": 80},
        "jupyterhub_proxy_port and reverse_proxy_http_port share port 80",
    ),
    "proxy_port_hub_port": (
        {"jupyterhub_proxy_port": 8081},
        "jupyterhub_hub_port and jupyterhub_proxy_port share port 8081",
    ),
    "https_port_proxy_port": (
        {"reverse_proxy_https_port": 8000},
        "jupyterhub_proxy_port and reverse_proxy_https_port share port 8000",
    ),
    "upstream_wrong_port": (
        {"reverse_proxy_hub_upstream": "http://127.0.0.1:8001"},
        "reverse_proxy_hub_upstream",
    ),
    "user_header_differs": (
        {"reverse_proxy_hub_user_header": "X-Remote-User"},
        "reverse_proxy_hub_user_header",
    ),
    "secret_header_differs": (
        {"reverse_proxy_hub_secret_header": "X-Other-Secret"},
        "reverse_proxy_hub_secret_header",
    ),
    "secret_file_elsewhere": (
        {"reverse_proxy_hub_secret_file": "/etc/nginx/hub-secret"},
        'reverse_proxy_hub_secret_file "/etc/nginx/hub-secret"',
    ),
    "mongo_uri_no_scheme": (
        {"jupyterhub_mongo": {"uri": "host.docker.internal:27017", **MONGO}},
        "jupyterhub_mongo.uri",
    ),
    "mongo_uri_http": (
        {"jupyterhub_mongo": {"uri": "http://10.1.2.3:27017/", **MONGO}},
        "must be a MongoDB connection string",
    ),
    "mongo_host_name": (
        {"jupyterhub_mongo": {"uri": "mongodb://mongo.lab:27017/", **MONGO}},
        "jupyterhub_mongo.uri names mongo.lab",
    ),
    # each role's own checks, run by the pre-flight
    "image_name": ({"notebook_image_name": "Testbed/Notebook:1"}, "notebook_image_name"),
    "subnet": ({"jupyterhub_network_subnet": "172.30.0.0"}, "jupyterhub_network_subnet"),
    "culler_timeout": ({"jupyterhub_culler_timeout": 30}, "jupyterhub_culler_timeout"),
    "auth_url": ({"reverse_proxy_auth_url": "127.0.0.1:9000/auth/check"}, "reverse_proxy_auth_url"),
    "bridge_name": ({"jupyterhub_network_bridge": "br jupyter"}, "jupyterhub_network_bridge"),
    "ca_trust_dir": ({"ca_trust_dir": "/etc/ssl/certs/site"}, "ca_trust_dir"),
    "load_images": (
        {"docker_load_images": [{"name": "Debian", "archive": "debian.tar"}]},
        "docker_load_images",
    ),
    "hub_secret_short": ({"reverse_proxy_hub_secret": "short"}, "reverse_proxy_hub_secret"),
    "nobody_allowed": ({"jupyterhub_allow_all": False}, "jupyterhub_allow_all"),
    # the monitoring (role prometheus)
    "prometheus_port_type": (
        {"prometheus_port": "ninety"},
        'You set prometheus_port: "ninety", e.g. prometheus_port: 9090.',
    ),
    "prometheus_port_hub_port": (
        {"prometheus_port": 8081},
        "jupyterhub_hub_port and prometheus_port share port 8081",
    ),
    "blackbox_port_proxy_port": (
        {"prometheus_blackbox_port": 8000},
        "jupyterhub_proxy_port and prometheus_blackbox_port share port 8000",
    ),
    "prometheus_retention": (
        {"prometheus_retention": "30 days"},
        'prometheus_retention "30 days" is not a Prometheus duration',
    ),
    "prometheus_scrape_interval": (
        {"prometheus_scrape_interval": "15"},
        "prometheus_scrape_interval",
    ),
    "disk_free_threshold": (
        {"prometheus_disk_free_threshold": 150},
        "prometheus_disk_free_threshold 150 must be a percentage",
    ),
    "container_metrics_enabled_type": (
        {"prometheus_container_metrics_enabled": "maybe"},
        "prometheus_container_metrics_enabled",
    ),
    # the station: a JupyterHub cannot downgrade its database
    "jupyterhub_downgrade": (
        {"jupyterhub_version": "5.5.4", "jupyterhub_venv_dir": "VENV 6.1.1"},
        "jupyterhub_version 5.5.4 is older than the JupyterHub 6.1.1 installed on "
        "jupyterhub_downgrade",
    ),
}

#: Folders the roles would create; they must still be absent after the run.
PLACES = ("jupyterhub_config_dir", "jupyterhub_data_dir", "jupyterhub_venv_dir")


def _fake_venv(root: Path, version: str) -> str:
    """A hub virtualenv whose python answers the installed-version question with version."""
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho {version}\n")
    python.chmod(0o755)
    return str(root)


def _group_vars(name: str) -> dict:
    return yaml.safe_load((ROOT / "inventory" / name / "group_vars/all/main.yml").read_text())


@pytest.fixture(scope="module")
def preflight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("preflight")
    wheels = {}
    for dist in ("testbed-hub", "testbed-notebook", "testbed-sim"):
        wheel = tmp / f"{dist.replace('-', '_')}-0.2.0-py3-none-any.whl"
        wheel.write_bytes(b"not used: only the pre-flight runs")
        wheels[dist] = str(wheel)
    media = tmp / "media"
    media.mkdir()
    (tmp / "a-file").write_text("not a folder\n")
    places = {
        "jupyterhub_config_dir": str(tmp / "etc-jupyterhub"),
        "jupyterhub_data_dir": str(tmp / "var-lib-jupyterhub"),
        "jupyterhub_venv_dir": str(tmp / "opt-jupyterhub"),
    }
    good = {**_group_vars("production"), **places, "jupyterhub_media_dir": str(media)}
    demo = {**_group_vars("demo"), **places, "testbed_sim_media_dir": str(tmp / "sim-media")}
    demo["jupyterhub_media_dir"] = demo["testbed_sim_media_dir"]  # the simulator makes it
    # an upgrade: the station has the previous JupyterHub, the inventory the current one
    upgrade = {**good, "jupyterhub_venv_dir": _fake_venv(tmp / "venv-5.5.4", "5.5.4")}
    hosts = {"good-production": good, "good-demo": demo, "good-upgrade": upgrade}
    for name, (override, _message) in BAD.items():
        override = dict(override)
        venv = override.get("jupyterhub_venv_dir", "")
        if venv.startswith("VENV "):
            override["jupyterhub_venv_dir"] = _fake_venv(tmp / f"venv-{name}", venv[5:])
        if override.get("jupyterhub_media_dir") == "MISSING":
            override["jupyterhub_media_dir"] = str(tmp / "no-such-folder")
        if override.get("jupyterhub_media_dir") == "A_FILE":
            override["jupyterhub_media_dir"] = str(tmp / "a-file")
        merged = {**good, **override}
        hosts[name] = {k: v for k, v in merged.items() if v is not None}
    report, run = inventory_report(
        ROOT / "site.yml",
        hosts,
        tmp,
        "--check",
        "--tags",
        "validate-only",
        all_vars={"testbed_wheels": wheels},
        env={"ANSIBLE_FORKS": "6", "TMPDIR": str(tmp)},
    )
    return report, run, places


def test_good_inventories_pass(preflight):
    report, run, _places = preflight
    for host in ("good-production", "good-demo", "good-upgrade"):
        assert not report[host]["failed"], (host, report[host], run.stderr[-3000:])
        assert report[host]["stats"]["ok"] > 40, report[host]


def test_the_run_refuses_and_nothing_changes(preflight):
    report, run, places = preflight
    assert run.returncode != 0
    changed = {h: r["changed"] for h, r in report.items() if r["changed"]}
    assert changed == {}
    assert all(r["stats"]["changed"] == 0 for r in report.values())
    for path in places.values():
        assert not Path(path).exists(), f"{path} was created"


def test_validate_only_runs_only_the_preflight(preflight):
    _report, run, _places = preflight
    data = playbook_json(run)
    plays = {p["play"]["name"]: [t["task"]["name"] for t in p["tasks"]] for p in data["plays"]}
    assert PREFLIGHT_PLAY in plays
    # the provisioning play ends before its first role: no role task ran
    assert all(
        not t.startswith(tuple(f"{r} :" for r in ("docker", "jupyterhub")))
        for t in plays.get(PROVISION_PLAY, [])
    )
    assert len(plays.get(PROVISION_PLAY, [])) <= 1, plays.get(PROVISION_PLAY)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inventory_is_refused_in_the_preflight_naming_the_variable(preflight, case):
    report, _run, _places = preflight
    got = report[case]
    assert got["failed"], f"{BAD[case][0]} was accepted"
    assert got["play"] == PREFLIGHT_PLAY, got
    msg = " ".join(got["msg"].split())
    assert BAD[case][1] in msg, msg
    # short: no argument-spec dump
    assert len(msg) < 1500, msg


def test_preflight_passes_what_site_yml_passes():
    """The pre-flight stands in for every value site.yml hands from one role to another."""
    site = yaml.safe_load((ROOT / "site.yml").read_text())
    play = next(p for p in site if p.get("name") == PROVISION_PLAY)
    passed = {k for r in play["roles"] for k in r.get("vars", {})}
    preflight = yaml.safe_load((ROOT / "playbooks/preflight.yml").read_text())[0]
    assert set(preflight["vars"]["__preflight_passed"]) == passed
    assert passed <= set(preflight["vars"])
