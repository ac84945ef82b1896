"""testbed_hub.container: the one description of a notebook container (mounts,
environment, host mapping), shared by the spawner, run-notebooks.yml and the bench."""

from __future__ import annotations

import json
import subprocess
import sys

from testbed_hub import container
from testbed_hub.config import SettingsError, validate

from .test_hub_config import FakeProbe, build, settings  # noqa: F401 - fixture


def test_mounts_for_one_user(settings):  # noqa: F811
    got = container.mounts(settings["spawner"], "alice")
    assert got == [
        container.Mount("volume", "jupyterhub-user-alice", "/home/jovyan/nist"),
        container.Mount("volume", "jupyterhub-shared", "/home/jovyan/nist/share"),
        container.Mount("bind", "/srv/lmr/wavs", "/home/jovyan/nist/media", read_only=True),
    ]


def test_spawner_gets_the_same_mounts_and_environment(settings):  # noqa: F811
    c = build(settings)
    assert c.DockerSpawner.volumes == {
        "jupyterhub-user-{username}": "/home/jovyan/nist",
        "jupyterhub-shared": "/home/jovyan/nist/share",
        "/srv/lmr/wavs": {"bind": "/home/jovyan/nist/media", "mode": "ro"},
    }
    spec = container.spec(settings, "alice", FakeProbe())
    # plus how often the single-user server reports activity to the hub (a batch
    # container runs no server)
    assert c.DockerSpawner.environment == {**spec["env"], "JUPYTERHUB_ACTIVITY_INTERVAL": "300"}
    assert c.DockerSpawner.extra_host_config == {
        "auto_remove": False,  # DockerSpawner removes on stop (container.host_config)
        "extra_hosts": spec["etc_hosts"],
        **{k: spec[k] for k in ("pids_limit", "security_opt", "cap_drop", "cap_add")},
    }
    assert spec["pids_limit"] == 512 and spec["cap_drop"] == ["ALL"]
    assert spec["security_opt"] == ["no-new-privileges"] and spec["cap_add"] == []
    assert spec["env"]["TESTBED_MEDIA_DIR"] == "/home/jovyan/nist/media"
    assert spec["env"]["TESTBED_MONGO_DB"] == "testbed"
    assert spec["working_dir"] == "/home/jovyan/nist"
    assert spec["network"] == "jupyter" and spec["image"] == "testbed-hub/notebook:abc123"


def test_old_docker_maps_the_host_to_the_bridge_address(settings):  # noqa: F811
    probe = FakeProbe(docker="19.03.15")
    assert container.extra_hosts(settings["spawner"], probe) == {
        "host.docker.internal": "172.30.0.1"
    }
    assert probe.calls == ["docker_version", ("interface_ipv4", "br-jupyter")]


def test_gateway_mode_maps_the_host_to_the_hubs_gateway_address(settings):  # noqa: F811
    settings["spawner"]["host_gateway_mode"] = "gateway"
    probe = FakeProbe()
    spec = container.spec(settings, "alice", probe)
    assert spec["etc_hosts"] == {"host.docker.internal": settings["hub"]["gateway_ip"]}
    assert probe.calls == []


def test_gateway_mode_without_an_address_explains():
    spawner = {"host_gateway_mode": "gateway", "host_gateway_name": "host.docker.internal"}
    try:
        container.extra_hosts(spawner, FakeProbe(), None)
    except LookupError as e:
        assert "hub.gateway_ip" in str(e)
    else:
        raise AssertionError("no gateway address accepted")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "testbed_hub.container_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_the_spec(settings, tmp_path):  # noqa: F811
    settings["spawner"]["host_gateway_mode"] = "host-gateway"  # no Docker probe
    validate(settings)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    proc = run_cli("--settings", str(path), "--user", "bob")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mounts"][0] == {
        "type": "volume",
        "source": "jupyterhub-user-bob",
        "target": "/home/jovyan/nist",
        "read_only": False,
    }
    assert out["etc_hosts"] == {"host.docker.internal": "host-gateway"}
    assert out["pids_limit"] == 512 and out["cap_drop"] == ["ALL"]


def test_cli_refuses_an_identity_instead_of_a_user_name(settings, tmp_path):  # noqa: F811
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    proc = run_cli("--settings", str(path), "--user", "Bob@testbed.example")
    assert proc.returncode == 2
    assert "--user 'Bob@testbed.example' is not a JupyterHub user name" in proc.stderr
    assert proc.stdout == ""


def test_cli_refuses_bad_settings(settings, tmp_path):  # noqa: F811
    settings["spawner"]["shared_volume"] = "bad name!"
    try:
        validate(settings)
    except SettingsError:
        pass
    else:  # the validator must reject it for this test to mean anything
        raise AssertionError("validate accepted a bad volume name")
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    proc = run_cli("--settings", str(path), "--user", "bob")
    assert proc.returncode == 2
    assert "shared_volume" in proc.stderr and proc.stdout == ""
