"""The docker and ca_trust roles on the base-station instance."""

import json

import pytest

IMAGE = "testbed-hub/debian:bookworm"


def journal(host, unit):
    return host.run(f"journalctl -u {unit} --no-pager -n 40").stdout


def test_docker_service_running_and_enabled(host):
    svc = host.service("docker")
    assert svc.is_running, journal(host, "docker")
    assert svc.is_enabled


def test_daemon_json_has_live_restore_and_log_rotation(host):
    f = host.file("/etc/docker/daemon.json")
    assert f.mode == 0o644
    cfg = json.loads(f.content_string)
    assert cfg["live-restore"] is True
    assert cfg["log-opts"]["max-size"] == "10m"
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"


def test_base_image_loaded_from_tarball(host):
    out = host.check_output(f"docker image inspect {IMAGE} --format '{{{{.Id}}}}'")
    assert out.startswith("sha256:")


def test_nested_container_runs(host):
    out = host.check_output(f"docker run --rm {IMAGE} cat /etc/debian_version")
    assert out.strip().startswith("12.")


def test_host_gateway_resolves_inside_container(host):
    host.run("docker network create tb-verify >/dev/null 2>&1")
    try:
        out = host.check_output(
            "docker run --rm --network tb-verify --add-host tb-host:host-gateway "
            f"{IMAGE} getent hosts tb-host"
        )
        ip = out.split()[0]
        # host-gateway is the default bridge's gateway: an address of the host.
        addrs = host.check_output("ip -o -4 addr show docker0")
        assert f" {ip}/" in addrs
    finally:
        host.run("docker network rm tb-verify")


@pytest.mark.parametrize("cert", ["test-ca.crt"])
def test_extra_ca_is_trusted(host, cert):
    f = host.file(f"/usr/local/share/ca-certificates/testbed-hub/{cert}")
    assert f.exists and f.mode == 0o644
    pem = f.content_string.strip()
    bundle = host.file("/etc/ssl/certs/ca-certificates.crt").content_string
    assert pem in bundle
