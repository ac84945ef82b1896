"""Role prometheus without Docker: bad variables are refused naming the variable (check
mode, nothing touched); the configuration, the alert rules and the probes it renders
with its defaults say what they should (parsed as YAML; also ``promtool check`` when
promtool is on this machine: it ships in Debian's prometheus package, which the
Molecule scenario ``monitoring`` installs and where the role itself runs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed_devtools.roletest import ansible_playbook, validation_results

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "prometheus"

CASES = {
    "defaults": ({}, None),
    "no_certificate_probe": ({"prometheus_certificate_probe_url": ""}, None),
    "retention": ({"prometheus_retention": "30 days"}, "prometheus_retention"),
    "retention_hint": ({"prometheus_retention": "thirty"}, "e.g. prometheus_retention: 30d"),
    "scrape_interval": ({"prometheus_scrape_interval": "15"}, "prometheus_scrape_interval"),
    "hub_down_for": ({"prometheus_hub_down_for": "1 minute"}, "prometheus_hub_down_for"),
    "same_ports": ({"prometheus_node_exporter_port": 9090}, "three different ports"),
    "port_range": ({"prometheus_blackbox_port": 70000}, "prometheus_blackbox_port 70000"),
    "port_type": ({"prometheus_port": "ninety"}, "prometheus_port"),
    "threshold_high": ({"prometheus_disk_free_threshold": 150}, "prometheus_disk_free_threshold"),
    "threshold_zero": ({"prometheus_disk_free_threshold": 0}, "from 1 to 99"),
    "audit_dir_relative": (
        {"prometheus_audit_log_dir": "var/log/testbed"},
        "prometheus_audit_log_dir",
    ),
    "audit_dir_off": ({"prometheus_audit_log_dir": ""}, None),
    "metrics_path": (
        {"prometheus_jupyterhub_metrics_path": "/jupyter/hub"},
        "prometheus_jupyterhub_metrics_path",
    ),
    "target_url": (
        {"prometheus_jupyterhub_target": "http://127.0.0.1:8081"},
        "prometheus_jupyterhub_target",
    ),
    "auth_url": ({"prometheus_auth_probe_url": "127.0.0.1:9000/auth/check"}, "auth_probe_url"),
    "certificate_http": (
        {"prometheus_certificate_probe_url": "http://127.0.0.1/"},
        "prometheus_certificate_probe_url",
    ),
    "interval": ({"prometheus_container_metrics_interval": 1}, "5 seconds or more"),
    "enabled_type": (
        {"prometheus_container_metrics_enabled": "maybe"},
        "prometheus_container_metrics_enabled",
    ),
}

#: The role's defaults and internal values, as the templates see them.
RENDER_VARS = {
    **yaml.safe_load((ROLE / "defaults/main.yml").read_text()),
    "prometheus_certificate_server_name": "basestation.testbed.example",
    "__prometheus_volumes_mount": {"stdout": "/var/lib/docker\n"},
    "__prometheus_audit_mount": {"stdout": "/\n"},
}
TEMPLATES = {
    "prometheus.yml": "etc/prometheus/prometheus.yml.j2",
    "testbed.yml": "etc/prometheus/rules/testbed.yml.j2",
    "blackbox.yml": "etc/prometheus/blackbox.yml.j2",
    "prometheus": "etc/default/prometheus.j2",
    "prometheus-node-exporter": "etc/default/prometheus-node-exporter.j2",
    "prometheus-blackbox-exporter": "etc/default/prometheus-blackbox-exporter.j2",
    "timer": "etc/systemd/system/testbed-container-metrics.timer.j2",
    "service": "etc/systemd/system/testbed-container-metrics.service.j2",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return validation_results(
        "prometheus",
        CASES,
        tmp_path_factory.mktemp("prometheus-inputs"),
        "--tags",
        "prometheus_validate",
    )


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_is_refused_naming_the_variable(results, case):
    got = " ".join(results[case].split())
    assert got != "ok"
    assert CASES[case][1] in got, got


@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][1]])
def test_good_input_passes(results, case):
    assert results[case] == "ok"


def _render(tmp: Path, extra: dict | None = None) -> dict[str, str]:
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "vars" / "main.yml")],
            "vars": {**RENDER_VARS, **(extra or {}), "ansible_python_interpreter": sys.executable},
            "tasks": [
                {
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / src),
                        "dest": str(tmp / name),
                        "mode": "0644",
                    }
                }
                for name, src in TEMPLATES.items()
            ],
        }
    ]
    res = ansible_playbook(play, tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    return {name: (tmp / name).read_text() for name in TEMPLATES}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus-render")
    return tmp, _render(tmp)


def test_every_listener_is_on_loopback(rendered):
    _tmp, files = rendered
    assert "--web.listen-address=127.0.0.1:9090" in files["prometheus"]
    assert "--storage.tsdb.retention.time=30d" in files["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in files["prometheus"]
    assert "--web.listen-address=127.0.0.1:9100" in files["prometheus-node-exporter"]
    assert (
        "--collector.textfile.directory=/var/lib/prometheus/node-exporter"
        in files["prometheus-node-exporter"]
    )
    assert "--web.listen-address=127.0.0.1:9115" in files["prometheus-blackbox-exporter"]
    assert "--config.file=/etc/prometheus/blackbox.yml" in files["prometheus-blackbox-exporter"]
    for name in ("prometheus", "prometheus-node-exporter", "prometheus-blackbox-exporter"):
        args = [line for line in files[name].splitlines() if line.startswith("ARGS=")]
        assert len(args) == 1, files[name]
        assert "0.0.0.0" not in args[0] and "--web.listen-address=:" not in args[0]


def test_scrape_configuration(rendered):
    _tmp, files = rendered
    conf = yaml.safe_load(files["prometheus.yml"])
    assert conf["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}
    assert conf["rule_files"] == ["/etc/prometheus/rules/testbed.yml"]
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert list(jobs) == ["prometheus", "node", "jupyterhub", "blackbox"]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]
    assert jobs["node"]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]
    hub = jobs["jupyterhub"]
    assert hub["metrics_path"] == "/jupyter/hub/metrics"
    assert hub["static_configs"] == [{"targets": ["127.0.0.1:8081"]}]
    assert hub["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/jupyterhub-token",
    }
    box = jobs["blackbox"]
    assert box["metrics_path"] == "/probe"
    assert box["static_configs"] == [
        {
            "targets": ["http://127.0.0.1:9000/auth/check"],
            "labels": {"probe": "auth", "__param_module": "testbed_auth"},
        },
        {
            "targets": ["https://127.0.0.1:443/"],
            "labels": {"probe": "certificate", "__param_module": "testbed_certificate"},
        },
    ]
    assert box["relabel_configs"][-1] == {
        "target_label": "__address__",
        "replacement": "127.0.0.1:9115",
    }


def test_no_certificate_probe_when_the_url_is_empty(tmp_path):
    files = _render(tmp_path, {"prometheus_certificate_probe_url": ""})
    conf = yaml.safe_load(files["prometheus.yml"])
    box = next(j for j in conf["scrape_configs"] if j["job_name"] == "blackbox")
    assert [c["labels"]["probe"] for c in box["static_configs"]] == ["auth"]


def test_probes(rendered):
    _tmp, files = rendered
    modules = yaml.safe_load(files["blackbox.yml"])["modules"]
    assert modules["testbed_auth"]["http"]["valid_status_codes"] == [200, 401]
    assert modules["testbed_auth"]["http"]["no_follow_redirects"] is True
    cert = modules["testbed_certificate"]["http"]
    assert cert["fail_if_not_ssl"] is True
    assert cert["tls_config"] == {
        "insecure_skip_verify": True,
        "server_name": "basestation.testbed.example",
    }


def test_alert_rules(rendered):
    _tmp, files = rendered
    groups = yaml.safe_load(files["testbed.yml"])["groups"]
    rules = {r["alert"]: r for r in groups[0]["rules"]}
    assert list(rules) == [
        "JupyterHubDown",
        "AuthServiceFailing",
        "SpawnFailures",
        "VolumesDiskFilling",
        "AuditLogDiskFilling",
        "CertificateExpiringSoon",
    ]
    assert rules["JupyterHubDown"]["expr"] == 'up{job="jupyterhub"} == 0'
    assert rules["JupyterHubDown"]["for"] == "1m"
    assert rules["AuthServiceFailing"]["expr"] == 'probe_success{job="blackbox", probe="auth"} == 0'
    # JupyterHub's own histogram (jupyterhub/metrics.py): status="error" is a spawn
    # that broke; "failure" is a refusal (already pending, throttled, a bad form)
    assert (
        'jupyterhub_server_spawn_duration_seconds_count{job="jupyterhub", status="error"}'
        in rules["SpawnFailures"]["expr"]
    )
    disk = " ".join(rules["VolumesDiskFilling"]["expr"].split())
    assert disk == (
        '100 * node_filesystem_avail_bytes{job="node", mountpoint="/var/lib/docker"} '
        '/ (node_filesystem_avail_bytes{job="node", mountpoint="/var/lib/docker"} '
        '+ node_filesystem_size_bytes{job="node", mountpoint="/var/lib/docker"} '
        '- node_filesystem_free_bytes{job="node", mountpoint="/var/lib/docker"}) < 10'
    )  # df's Use% convention: avail / (used + avail), reserved blocks count as neither
    cert = rules["CertificateExpiringSoon"]["expr"]
    assert 'probe_ssl_earliest_cert_expiry{job="blackbox", probe="certificate"}' in cert
    assert cert.endswith("/ 86400 < 14")
    # Prometheus's own templating reaches the file untouched by Jinja
    assert "{{ $labels.instance }}" in rules["JupyterHubDown"]["annotations"]["summary"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _rules(files: dict[str, str]) -> dict[str, dict]:
    return {r["alert"]: r for r in yaml.safe_load(files["testbed.yml"])["groups"][0]["rules"]}


def test_the_audit_trails_own_filesystem_has_its_alert(rendered):
    _tmp, files = rendered
    rules = _rules(files)
    audit = " ".join(rules["AuditLogDiskFilling"]["expr"].split())
    volumes = " ".join(rules["VolumesDiskFilling"]["expr"].split())
    # the same df figure and threshold, on the trail's mount point
    assert audit == volumes.replace('mountpoint="/var/lib/docker"', 'mountpoint="/"')
    assert "/var/log/testbed" in rules["AuditLogDiskFilling"]["annotations"]["description"]
    assert "audit trail" not in rules["VolumesDiskFilling"]["annotations"]["description"]


@pytest.mark.parametrize(
    ("extra", "volumes_mention_it"),
    [
        # on the volumes' filesystem: one alert says both
        ({"__prometheus_audit_mount": {"stdout": "/var/lib/docker\n"}}, True),
        # auditing off
        ({"prometheus_audit_log_dir": ""}, False),
    ],
    ids=["same_filesystem", "auditing_off"],
)
def test_no_second_alert_for_the_same_filesystem_or_without_auditing(
    tmp_path, extra, volumes_mention_it
):
    rules = _rules(_render(tmp_path, extra))
    assert "AuditLogDiskFilling" not in rules
    description = rules["VolumesDiskFilling"]["annotations"]["description"]
    assert ("the audit trail (/var/log/testbed" in description) is volumes_mention_it


def test_container_metrics_timer(rendered):
    _tmp, files = rendered
    assert "OnUnitActiveSec=30s" in files["timer"]
    assert (
        "ExecStart=/opt/jupyterhub/bin/python -m testbed_hub.metrics_docker --output "
        "/var/lib/prometheus/node-exporter/testbed_user_containers.prom"
    ) in files["service"]


def test_promtool_accepts_the_files_when_it_is_here(rendered):
    """promtool is not installed on the development machines (make host does not
    install Debian's prometheus); there this checks nothing more than the tests above.
    The role validates both files with promtool on the station."""
    tmp, _files = rendered
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    for kind, name in (("rules", "testbed.yml"), ("config", "prometheus.yml")):
        args = [promtool, "check", kind, *(["--syntax-only"] if kind == "config" else [])]
        res = subprocess.run([*args, str(tmp / name)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
