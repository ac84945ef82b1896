"""Molecule ``default``: Prometheus on the converged demo station (the same instance
as the full-stack and browser tests; the tests that stop a service start it again and
wait until it is healthy).

Prometheus and the exporters listen on loopback only; every target is up; the hub's
own metrics and the users' container CPU and memory are in Prometheus; stopping the
hub fires JupyterHubDown within (for + evaluation interval + scrape interval +
margin); ``playbooks/check.yml`` passes on the healthy station and names the auth
service when it is stopped; the check and the disk alert count free space as df does;
the CPU the hub spends on being scraped is recorded.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from testbed_devtools.hubclient import HubSession
from testbed_devtools.molecule_run import flat, run_playbook
from testbed_devtools.waiting import poll
from testbed_hub.auth import identity_to_username

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
INSTANCE = "tb-default"
USER_ID = "bob@testbed.example"
USER = identity_to_username(USER_ID)
PORTS = {"prometheus": 9090, "prometheus-node-exporter": 9100, "prometheus-blackbox-exporter": 9115}
JOBS = {"prometheus", "node", "jupyterhub", "blackbox"}


def journal(host, unit: str) -> str:
    return host.run(f"journalctl -u {unit} -n 40 --no-pager").stdout


def api(host, path: str, **params) -> dict:
    """GET Prometheus's API from inside the instance (it listens on loopback only)."""
    url = f"http://127.0.0.1:9090{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    code = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    out = host.check_output(f"python3 -c {json.dumps(code)}")
    body = json.loads(out)
    assert body["status"] == "success", body
    return body["data"]


def query(host, expr: str) -> list[dict]:
    return api(host, "/api/v1/query", query=expr)["result"]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d)", duration))


@pytest.mark.parametrize(("unit", "port"), PORTS.items())
def test_listens_on_loopback_only(host, unit, port):
    assert host.service(unit).is_running, journal(host, unit)
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, journal(host, unit)
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(f":{port}")]
    assert listening == [f"tcp://127.0.0.1:{port}"], listening


def test_every_target_is_up(host):
    def healthy():
        targets = api(host, "/api/v1/targets", state="active")["activeTargets"]
        health = {(t["labels"]["job"], t["labels"].get("probe", "")): t["health"] for t in targets}
        return health if {j for j, _ in health} == JOBS and set(health.values()) == {"up"} else None

    health = poll("every target up", healthy, timeout=120)
    assert set(health) == {
        ("prometheus", ""),
        ("node", ""),
        ("jupyterhub", ""),
        ("blackbox", "auth"),
        ("blackbox", "certificate"),
    }
    # the probes themselves succeed, not only the exporter
    probes = poll("probes succeed", lambda: query(host, "probe_success == 1"), timeout=60)
    assert {p["metric"]["probe"] for p in probes} == {"auth", "certificate"}, probes


def test_the_hubs_metrics_are_in_prometheus(host):
    got = poll("jupyterhub_total_users", lambda: query(host, "jupyterhub_total_users"), 60)
    assert got[0]["metric"]["job"] == "jupyterhub"
    assert float(got[0]["value"][1]) >= 1  # the demo's admin at least
    expiry = query(host, 'probe_ssl_earliest_cert_expiry{probe="certificate"} - time()')
    assert float(expiry[0]["value"][1]) > 14 * 86400, expiry


@pytest.fixture(scope="module")
def user_server():
    """Log in from the control node through nginx, as a browser would; the server starts."""
    ip = subprocess.run(
        ["docker", "inspect", INSTANCE, "--format", "{{.NetworkSettings.IPAddress}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    session = HubSession(f"https://{ip}")
    session.login_to_lab(USER_ID, USER)
    return session


def test_container_cpu_and_memory_of_a_running_server(host, user_server):
    sel = f'{{user="{USER}",server=""}}'
    mem = poll(
        "memory series", lambda: query(host, f"testbed_user_container_memory_bytes{sel} > 0"), 120
    )
    assert float(mem[0]["value"][1]) > 10 * 2**20, mem  # a running JupyterLab
    cpu = query(host, f"testbed_user_container_cpu_seconds_total{sel}")
    assert cpu and float(cpu[0]["value"][1]) > 0, cpu
    assert query(host, "testbed_user_container_metrics_up == 1"), journal(
        host, "testbed-container-metrics"
    )


def test_a_user_sees_their_memory_use_against_their_limit(user_server):
    """JupyterLab's memory indicator (jupyter-resource-usage) reads the server's own
    figures: the processes' RSS and, as the limit, the resource profile's memory (the
    demo's default profile: 2G, DockerSpawner's MEM_LIMIT)."""
    r = user_server.api("GET", "metrics/v1")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    got = r.json()
    assert got["rss"] > 10 * 2**20, got  # a running JupyterLab
    assert got["limits"]["memory"]["rss"] == 2 * 2**30, got


def test_check_playbook_passes_on_a_healthy_station():
    res = run_playbook(PLAYBOOKS / "check.yml")
    assert res.returncode == 0, flat(res)[-3000:]
    assert "all ok" in flat(res)


def df_free_percent(host, path: str = "/var/lib/docker") -> float:
    """Free space as df's Use% column counts it: avail / (used + avail), in percent."""
    avail, used = map(
        int, host.check_output(f"df -B1 --output=avail,used {path} | tail -1").split()
    )
    return 100 * avail / (avail + used)


def test_disk_figure_is_dfs_own_in_the_check_and_the_alert(host):
    """The check playbook and VolumesDiskFilling both count free space as df does:
    blocks reserved for another user (ext4's reserved blocks; on this machine's disk
    most of its size) are neither used nor free. A threshold of 99 % makes the check
    report the figure; the alert's expression is evaluated by Prometheus on
    node-exporter's samples. Each must lie between df's figures read just before and
    just after it (other work writes to the disk meanwhile), within 0.2 %."""

    def between(figure: float, before: float, after: float) -> bool:
        return min(before, after) - 0.2 <= figure <= max(before, after) + 0.2

    before = df_free_percent(host)
    res = run_playbook(PLAYBOOKS / "check.yml", "-e", "prometheus_disk_free_threshold=99")
    after = df_free_percent(host)
    out = flat(res)
    assert res.returncode != 0, out[-3000:]
    found = re.search(r"disk: ([0-9.]+)% free on (\S+) \(Docker volumes\), below 99%", out)
    assert found, out[-3000:]
    assert between(float(found.group(1)), before, after), (found.group(0), before, after)

    # The audit trail (/var/log/testbed) lies on a filesystem of its own on this
    # instance (Molecule's platform), so AuditLogDiskFilling watches it with the same
    # figure.
    rules = api(host, "/api/v1/rules", type="alert")["groups"]
    watched = {"VolumesDiskFilling": "/var/lib/docker", "AuditLogDiskFilling": "/var/log/testbed"}
    assert host.check_output("findmnt -n -o TARGET --target /var/log/testbed") == "/var/log/testbed"
    figures = {
        name: next(r for g in rules for r in g["rules"] if r["name"] == name)["query"].rsplit(
            "<", 1
        )[0]  # the figure, without its threshold
        for name in watched
    }
    for name, path in watched.items():  # each rule reads its own filesystem
        assert figures[name].count(f'mountpoint="{path}"') == 4, (name, figures[name])
    before = {name: df_free_percent(host, path) for name, path in watched.items()}
    time.sleep(20)  # node-exporter's sample is up to one scrape interval (15 s) old
    for name, expr in figures.items():
        value = poll(f"node-exporter's samples for {name}", lambda e=expr: query(host, e), 60)
        after = df_free_percent(host, watched[name])
        assert between(float(value[0]["value"][1]), before[name], after), (name, value)


def test_check_playbook_names_the_stopped_auth_service(host):
    host.check_output("systemctl stop testbed-sim-auth")
    try:
        res = run_playbook(PLAYBOOKS / "check.yml")
    finally:
        host.check_output("systemctl start testbed-sim-auth")
    out = flat(res)
    assert res.returncode != 0, out[-3000:]
    assert "service testbed-sim-auth: inactive" in out, out[-3000:]
    assert "problem(s)" in out


def test_hub_down_fires_within_its_interval(host):
    rules = api(host, "/api/v1/rules", type="alert")["groups"]
    rule = next(r for g in rules for r in g["rules"] if r["name"] == "JupyterHubDown")
    conf = api(host, "/api/v1/status/config")["yaml"]
    scrape = seconds(re.search(r"scrape_interval: (\S+)", conf).group(1))
    evaluation = seconds(re.search(r"evaluation_interval: (\S+)", conf).group(1))
    budget = rule["duration"] + evaluation + scrape + 30  # + margin for this 2-core machine

    def firing():
        alerts = api(host, "/api/v1/alerts")["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "JupyterHubDown" and a["state"] == "firing"
        ]

    assert not firing()
    host.check_output("systemctl stop jupyterhub")
    try:
        poll("JupyterHubDown firing", firing, timeout=budget, every=2)
    finally:
        host.check_output("systemctl start jupyterhub")
    poll(
        "hub healthy again",
        lambda: (
            host.run(
                'python3 -c "import urllib.request; urllib.request.urlopen('
                "'http://127.0.0.1:8081/jupyter/hub/health')\""
            ).rc
            == 0
        ),
        120,
    )
