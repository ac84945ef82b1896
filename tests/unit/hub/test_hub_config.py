"""settings.json -> traitlets Config, without a hub or Docker."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from testbed_hub import config as hubconfig
from testbed_hub.auth import docker_escape, identity_to_username
from testbed_hub.config import CULLER_SCOPES, SettingsError, apply, parse_version, validate


class FakeProbe(hubconfig.Probe):
    def __init__(self, docker="20.10.24+dfsg1", interfaces=None):
        self.docker = docker
        self.interfaces = interfaces or {"br-jupyter": "172.30.0.1"}
        self.calls = []

    def docker_version(self):
        self.calls.append("docker_version")
        return parse_version(self.docker)

    def interface_ipv4(self, interface):
        self.calls.append(("interface_ipv4", interface))
        return self.interfaces[interface]


def secrets_reader(path, what):
    return {"/var/lib/jupyterhub/proxy-auth-token": "tok" * 16}[path]


@pytest.fixture
def settings():
    return {
        "hub": {
            "base_url": "/jupyter/",
            "data_dir": "/var/lib/jupyterhub",
            "ip": "127.0.0.1",
            "port": 8081,
            "gateway_ip": "172.30.0.1",
            "cookie_secret_file": "/var/lib/jupyterhub/jupyterhub_cookie_secret",
        },
        "proxy": {
            "managed": False,
            "command": ["/usr/local/bin/configurable-http-proxy"],
            "public_ip": "127.0.0.1",
            "public_port": 8000,
            "api_ip": "127.0.0.1",
            "api_port": 8001,
            "auth_token_file": "/var/lib/jupyterhub/proxy-auth-token",
        },
        "auth": {
            "user_header": "X-Authorized-User",
            "secret_header": "X-Testbed-Hub-Secret",
            "secret_file": "/etc/jupyterhub/secrets/proxy-auth-secret",
            "login_url": "/auth/login",
            "logout_url": "/auth/logout",
            "allow_all": False,
            "allowed_users": ["ue-01", "Alice@Example.org"],
            "admin_users": ["Alice@Example.org"],
            "blocked_users": [],
        },
        "spawner": {
            "image": "testbed-hub/notebook:abc123",
            "network": "jupyter",
            "bridge_interface": "br-jupyter",
            "notebook_dir": "/home/jovyan/nist",
            "user_volume_template": "jupyterhub-user-{username}",
            "shared_volume": "jupyterhub-shared",
            "media_dir": "/srv/lmr/wavs",
            "host_gateway_name": "host.docker.internal",
            "host_gateway_mode": "auto",
            "mem_limit": "2G",
            "cpu_limit": 1,
            "start_timeout": 120,
            "http_timeout": 60,
            "pids_limit": 512,
            "no_new_privileges": True,
            "capabilities": [],
            "environment": {
                "TESTBED_MONGO_URI": "mongodb://host.docker.internal:27017/",
                "TESTBED_MONGO_DB": "testbed",
            },
        },
        "culler": {
            "enabled": True,
            "timeout": 3600,
            "every": 300,
            "python": "/opt/jupyterhub/bin/python3",
        },
    }


def build(settings, probe=None):
    c = Config()
    apply(c, settings, probe=probe or FakeProbe(), read_secret=secrets_reader)
    return c


def test_hub_binds_loopback_and_gateway(settings):
    c = build(settings)
    assert "base_url" not in c.JupyterHub  # taken from bind_url's path
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:8081"
    assert c.JupyterHub.hub_connect_url == "http://172.30.0.1:8081"
    assert c.TestbedHub.extra_hub_bind_urls == ["http://172.30.0.1:8081"]
    assert c.JupyterHub.db_url == "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"
    assert c.JupyterHub.cookie_secret_file == "/var/lib/jupyterhub/jupyterhub_cookie_secret"


def test_proxy_is_external_on_loopback(settings):
    c = build(settings)
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000/jupyter/"
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.auth_token == "tok" * 16


def test_authenticator_lists_use_mapped_names(settings):
    c = build(settings)
    assert c.JupyterHub.authenticator_class == "testbed_hub.auth.HeaderAuthenticator"
    # the lists are normalised like the header: case folded by default
    alice = identity_to_username("alice@example.org")
    assert c.HeaderAuthenticator.identity_case == "fold"
    assert c.Authenticator.allowed_users == {"ue-01", alice}
    # admins: the admin role's explicit list (authoritative both ways), not admin_users
    assert "admin_users" not in c.Authenticator
    assert c.JupyterHub.load_roles[0] == {"name": "admin", "users": [alice]}
    assert c.Authenticator.allow_existing_users is False
    assert c.Authenticator.allow_all is False
    assert c.HeaderAuthenticator.external_login_url == "/auth/login"
    assert c.HeaderAuthenticator.logout_redirect_url == "/auth/logout"


def test_docker_spawner(settings):
    c = build(settings)
    d = c.DockerSpawner
    assert c.JupyterHub.spawner_class == "testbed_hub.spawner.TestbedDockerSpawner"
    assert d.image == "testbed-hub/notebook:abc123"
    assert d.pull_policy == "never"
    # a stop removes the container: the next start is on the configured image, which is
    # what the home page tells a user whose server has the previous one (templates/)
    assert d.remove is True
    assert d.network_name == "jupyter"
    assert d.use_internal_ip is True
    assert d.escape is docker_escape
    assert d.notebook_dir == "/home/jovyan/nist"
    assert d.volumes == {
        "jupyterhub-user-{username}": "/home/jovyan/nist",
        "jupyterhub-shared": "/home/jovyan/nist/share",
        "/srv/lmr/wavs": {"bind": "/home/jovyan/nist/media", "mode": "ro"},
    }
    assert d.mem_limit == "2G"
    assert d.cpu_limit == 1.0
    assert d.environment == {
        "TESTBED_MONGO_URI": "mongodb://host.docker.internal:27017/",
        "TESTBED_MONGO_DB": "testbed",
        "TESTBED_MEDIA_DIR": "/home/jovyan/nist/media",
        "TESTBED_SHARE_DIR": "/home/jovyan/nist/share",
        "JUPYTERHUB_ACTIVITY_INTERVAL": "300",
    }


def test_concurrent_starts_reach_the_spawner_and_default_to_its_own(settings):
    assert "concurrent_starts" not in build(settings).TestbedDockerSpawner
    settings["spawner"]["concurrent_starts"] = 3
    assert build(settings).TestbedDockerSpawner.concurrent_starts == 3
    settings["spawner"]["concurrent_starts"] = 0  # no limit
    assert build(settings).TestbedDockerSpawner.concurrent_starts == 0


def test_the_hub_pages_come_from_the_package(settings):
    c = build(settings)
    assert c.JupyterHub.template_paths == [hubconfig.TEMPLATES]
    assert (Path(hubconfig.TEMPLATES) / "home.html").is_file()


def test_spawner_config_is_accepted_by_dockerspawner(settings):
    from types import SimpleNamespace

    from testbed_hub.spawner import TestbedDockerSpawner

    c = build(settings)
    user = SimpleNamespace(name=identity_to_username("Alice@Example.org"), id=1, url="/u/")
    s = TestbedDockerSpawner(config=c, user=user)
    assert s.pull_policy == "never"
    assert s.object_name == f"jupyter-{user.name}"
    assert s.volume_binds == {
        f"jupyterhub-user-{user.name}": {"bind": "/home/jovyan/nist", "mode": "rw"},
        "jupyterhub-shared": {"bind": "/home/jovyan/nist/share", "mode": "rw"},
        "/srv/lmr/wavs": {"bind": "/home/jovyan/nist/media", "mode": "ro"},
    }
    assert s.mem_limit == 2 * 1024**3
    assert s.extra_host_config == {
        "auto_remove": False,
        "extra_hosts": {"host.docker.internal": "host-gateway"},
        "pids_limit": 512,
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "cap_add": [],
    }
    assert s.network_name == "jupyter"


def test_confinement_reaches_dockers_host_config(settings):
    """DockerSpawner hands extra_host_config to docker-py's create_host_config: the
    keys must be ones it knows, and land as Docker's HostConfig fields."""
    import docker

    settings["spawner"]["capabilities"] = ["NET_BIND_SERVICE"]
    extra = build(settings).DockerSpawner.extra_host_config
    hc = docker.APIClient(version="1.41").create_host_config(**extra)
    assert hc["PidsLimit"] == 512
    assert hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["CapDrop"] == ["ALL"] and hc["CapAdd"] == ["NET_BIND_SERVICE"]
    assert hc["ExtraHosts"] == ["host.docker.internal:host-gateway"]


def test_no_new_privileges_can_be_switched_off(settings):
    settings["spawner"]["no_new_privileges"] = False
    assert build(settings).DockerSpawner.extra_host_config["security_opt"] == []


def test_gateway_mode_maps_the_host_to_the_jupyter_gateway_without_probing(settings):
    """The default: the name resolves to the jupyter network's gateway (where the hub
    listens and MongoDB must listen), not docker0's as host-gateway does."""
    settings["spawner"]["host_gateway_mode"] = "gateway"
    del settings["spawner"]["bridge_interface"]  # not needed in this mode
    probe = FakeProbe(docker="19.03.15")  # any engine version
    c = build(settings, probe)
    assert c.DockerSpawner.extra_host_config["extra_hosts"] == {
        "host.docker.internal": "172.30.0.1"
    }
    assert probe.calls == []


@pytest.mark.parametrize(
    ("docker", "expected"),
    [("20.10.24+dfsg1", "host-gateway"), ("28.1.1", "host-gateway"), ("19.03.15", "172.30.0.1")],
)
def test_auto_host_gateway_depends_on_docker_version(settings, docker, expected):
    c = build(settings, FakeProbe(docker=docker))
    assert c.DockerSpawner.extra_host_config["extra_hosts"] == {"host.docker.internal": expected}


def test_forced_netifaces_mode_reads_the_bridge_address_for_real(settings):
    # the real netifaces on the loopback interface: no Docker involved
    settings["spawner"]["host_gateway_mode"] = "netifaces"
    settings["spawner"]["bridge_interface"] = "lo"
    c = build(settings, hubconfig.Probe())
    assert c.DockerSpawner.extra_host_config["extra_hosts"] == {"host.docker.internal": "127.0.0.1"}


def test_netifaces_mode_with_missing_interface_explains(settings):
    settings["spawner"]["host_gateway_mode"] = "netifaces"
    settings["spawner"]["bridge_interface"] = "br-nonexist0"
    with pytest.raises(LookupError, match="br-nonexist0.*does not exist.*Docker network"):
        build(settings, hubconfig.Probe())


def test_host_gateway_mode_does_not_probe(settings):
    settings["spawner"]["host_gateway_mode"] = "host-gateway"
    probe = FakeProbe()
    build(settings, probe)
    assert probe.calls == []


def test_culler_service_with_minimal_scopes(settings):
    c = build(settings)
    assert c.JupyterHub.services == [
        {
            "name": "idle-culler",
            "command": [
                "/opt/jupyterhub/bin/python3",
                "-m",
                "jupyterhub_idle_culler",
                "--timeout=3600",
                "--cull-every=300",
            ],
        }
    ]
    assert c.JupyterHub.load_roles[1:] == [
        {"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]}
    ]
    assert "admin:users" not in CULLER_SCOPES and "admin" not in CULLER_SCOPES


def test_culler_disabled(settings):
    settings["culler"]["enabled"] = False
    c = build(settings)
    assert c.JupyterHub.services == []
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["admin"]


def test_activity_interval_defaults_to_jupyterhubs(settings):
    """Without hub.activity_interval (a settings.json from before it): JupyterHub's 300 s."""
    assert "activity_interval" not in settings["hub"]
    c = build(settings)
    assert c.JupyterHub.last_activity_interval == 300
    assert c.DockerSpawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"


def test_activity_interval_sets_the_hub_and_the_servers(settings):
    """One setting for both ends: how often the hub reads the proxy's activity and how
    often each server reports its own (what the idle culler sees)."""
    settings["hub"]["activity_interval"] = 10
    settings["culler"]["timeout"] = 60
    c = build(settings)
    assert c.JupyterHub.last_activity_interval == 10
    assert c.DockerSpawner.environment["JUPYTERHUB_ACTIVITY_INTERVAL"] == "10"
    # the other variables of the containers are unchanged
    assert c.DockerSpawner.environment["TESTBED_MONGO_DB"] == "testbed"


@pytest.mark.parametrize(
    ("interval", "timeout", "enabled", "message"),
    [
        (
            4,
            3600,
            True,
            "jupyterhub_activity_interval (hub.activity_interval) 4 must be 5 seconds or more",
        ),
        (0, 3600, False, "(hub.activity_interval) 0 must be 5 seconds or more"),
        (
            31,
            60,
            True,
            "jupyterhub_activity_interval (hub.activity_interval) 31 must be at most half of "
            "jupyterhub_culler_timeout (culler.timeout) 60: the hub learns of a server's "
            "activity up to an interval late",
        ),
        (True, 3600, True, "(hub.activity_interval) must be an integer, got a boolean"),
    ],
)
def test_bad_activity_interval_is_refused(settings, interval, timeout, enabled, message):
    settings["hub"]["activity_interval"] = interval
    settings["culler"].update(timeout=timeout, enabled=enabled)
    with pytest.raises(SettingsError) as err:
        validate(settings)
    assert message in str(err.value)


def test_activity_interval_is_not_bound_by_a_disabled_culler(settings):
    settings["hub"]["activity_interval"] = 600
    settings["culler"].update(timeout=60, enabled=False)
    validate(settings)
    settings["culler"]["enabled"] = True
    with pytest.raises(SettingsError, match="at most half of"):
        validate(settings)
    settings["hub"]["activity_interval"] = 30  # exactly half: accepted
    validate(settings)


@pytest.mark.parametrize(
    ("case", "allowed", "admins"),
    [
        # fold: the three spellings of alice are one user; NFD and NFC josé are one
        ("fold", {"alice@x.org", "jos\u00e9@x.org"}, ["alice@x.org"]),
        ("keep", {"Alice@x.org", "ALICE@x.org", "alice@x.org", "jos\u00e9@x.org"}, ["Alice@x.org"]),
    ],
)
def test_lists_are_normalised_like_the_header(settings, case, allowed, admins):
    settings["auth"]["identity_case"] = case
    settings["auth"]["allowed_users"] = [
        "Alice@x.org",
        " ALICE@x.org",
        "alice@x.org ",
        "jose\u0301@x.org",
        "jos\u00e9@x.org",
    ]
    settings["auth"]["admin_users"] = ["Alice@x.org"]
    c = build(settings)
    assert c.HeaderAuthenticator.identity_case == case
    assert c.Authenticator.allowed_users == {identity_to_username(i) for i in allowed}
    assert c.JupyterHub.load_roles[0]["users"] == [identity_to_username(i) for i in admins]


def test_blocked_admin_is_no_admin(settings):
    settings["auth"]["blocked_users"] = ["alice@example.org"]
    c = build(settings)
    alice = identity_to_username("alice@example.org")
    assert c.Authenticator.blocked_users == {alice}
    assert c.JupyterHub.load_roles[0] == {"name": "admin", "users": []}


def test_identity_case_is_validated(settings):
    settings["auth"]["identity_case"] = "lower"
    with pytest.raises(
        SettingsError,
        match=r'jupyterhub_identity_case \(auth.identity_case\) "lower" must be one of fold, keep',
    ):
        validate(settings)


def test_apply_does_not_mutate_settings(settings):
    before = copy.deepcopy(settings)
    c = build(settings)
    c.DockerSpawner.volumes["x"] = "y"
    c.DockerSpawner.environment["X"] = "y"
    assert settings == before


def test_settings_round_trip_through_json(settings):
    c = build(json.loads(json.dumps(settings)))
    assert c.DockerSpawner.image == "testbed-hub/notebook:abc123"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("spawner", "user_volume_template"),
            "jupyterhub-user",
            'jupyterhub_user_volume_template (spawner.user_volume_template) "jupyterhub-user" '
            "must contain {username}",
        ),
        (
            ("spawner", "user_volume_template"),
            "jupyterhub-shared{username}",
            "without {username} is jupyterhub_shared_volume",
        ),
        (
            ("spawner", "mem_limit"),
            "2 gigs",
            'jupyterhub_spawner.mem_limit (spawner.mem_limit) "2 gigs" is not a size',
        ),
        (("spawner", "mem_limit"), "2", "is not a size"),
        (
            ("spawner", "cpu_limit"),
            0,
            "jupyterhub_spawner.cpu_limit (spawner.cpu_limit) 0 must be greater than 0",
        ),
        (
            ("spawner", "cpu_limit"),
            True,
            "jupyterhub_spawner.cpu_limit (spawner.cpu_limit) must be a number, got a boolean",
        ),
        (("spawner", "host_gateway_mode"), "magic", "must be one of gateway, auto, host-gateway"),
        (
            ("spawner", "concurrent_starts"),
            -1,
            "jupyterhub_spawner.concurrent_starts (spawner.concurrent_starts) -1 must be 0 "
            "(no limit) or a number of servers starting at once",
        ),
        (
            ("spawner", "concurrent_starts"),
            "2",
            "jupyterhub_spawner.concurrent_starts (spawner.concurrent_starts) must be an "
            "integer, got str",
        ),
        (
            ("spawner", "pids_limit"),
            10,
            "jupyterhub_spawner.pids_limit (spawner.pids_limit) 10 must be 64 to 1048576",
        ),
        (
            ("spawner", "pids_limit"),
            "512",
            "jupyterhub_spawner.pids_limit (spawner.pids_limit) must be an integer, got str",
        ),
        (
            ("spawner", "no_new_privileges"),
            "yes",
            "jupyterhub_spawner.no_new_privileges (spawner.no_new_privileges) must be true/false",
        ),
        (
            ("spawner", "capabilities"),
            ["cap_net_raw"],
            'jupyterhub_spawner.capabilities (spawner.capabilities) ["cap_net_raw"] must be a '
            "list of capability names",
        ),
        (
            ("spawner", "capabilities"),
            ["SYS_ADMIN"],
            "ALL and SYS_ADMIN give a user the station",
        ),
        (
            ("spawner", "capabilities"),
            "NET_RAW",
            "jupyterhub_spawner.capabilities (spawner.capabilities) must be a list, got str",
        ),
        (
            ("spawner", "media_dir"),
            "wavs",
            'jupyterhub_media_dir (spawner.media_dir) "wavs" must be an absolute path',
        ),
        (("spawner", "image"), " ", "jupyterhub_notebook_image (spawner.image) is empty"),
        (
            ("spawner", "environment"),
            {"lower": "x"},
            "jupyterhub_mongo (spawner.environment)['lower'] must be an UPPER_CASE name",
        ),
        (("spawner", "bridge_interface"), "br-jupyter-too-long", "at most 15"),
        (
            ("spawner", "shared_volume"),
            "bad name!",
            'jupyterhub_shared_volume (spawner.shared_volume) "bad name!" is not a valid',
        ),
        (("spawner", "pull"), "always", "unknown option spawner.pull"),
        (
            ("hub", "base_url"),
            "/jupyter",
            "jupyterhub_base_url (hub.base_url) \"/jupyter\" must start and end with '/'",
        ),
        (("hub", "base_url"), "//", "must start and end with '/' without empty segments"),
        (("hub", "gateway_ip"), "gateway", 'hub.gateway_ip "gateway" is not an IP address'),
        (("hub", "port"), 70000, "jupyterhub_hub_port (hub.port) 70000 is not a TCP port"),
        (("hub", "port"), 8000, "must be three different ports, got 8000, 8000, 8001"),
        (("hub", "port"), "8081", "jupyterhub_hub_port (hub.port) must be an integer, got str"),
        (
            ("auth", "allow_all"),
            "yes",
            "jupyterhub_allow_all (auth.allow_all) must be true/false",
        ),
        (
            ("auth", "user_header"),
            "X_User",
            'jupyterhub_user_header (auth.user_header) "X_User" is not an HTTP header name',
        ),
        (
            ("auth", "login_url"),
            "auth/login",
            'jupyterhub_login_url (auth.login_url) "auth/login" must be a path',
        ),
        (
            ("culler", "timeout"),
            59,
            "jupyterhub_culler_timeout (culler.timeout) 59 must be 60 seconds",
        ),
        (
            ("culler", "every"),
            0,
            "jupyterhub_culler_every (culler.every) 0 must be 1 seconds or more",
        ),
    ],
)
def test_bad_settings_name_the_variable_and_change_nothing(settings, path, value, message):
    section, key = path
    settings[section][key] = value
    c = Config()
    with pytest.raises(SettingsError) as err:
        apply(c, settings, probe=FakeProbe(), read_secret=secrets_reader)
    assert message in str(err.value)
    assert c == Config()


def test_nobody_allowed_is_rejected(settings):
    settings["auth"]["allowed_users"] = []
    with pytest.raises(SettingsError) as err:
        validate(settings)
    assert err.value.problems == [
        "jupyterhub_allow_all (auth.allow_all) is false and jupyterhub_allowed_users "
        "(auth.allowed_users) is empty: nobody could log in; set jupyterhub_allow_all: true "
        "(everyone the testbed lets in) or list testbed identifiers in jupyterhub_allowed_users"
    ]


def test_every_variable_named_is_a_jupyterhub_role_variable():
    """The messages name variables the role has (argument specs are the source)."""
    import yaml

    root = Path(__file__).resolve().parents[3]
    spec = yaml.safe_load((root / "roles/jupyterhub/meta/argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    for var in hubconfig.VARIABLES.values():
        top, _, sub = var.partition(".")
        assert top in options, var
        assert not sub or sub in options[top]["options"], var


def test_missing_section_and_key_are_all_reported(settings):
    del settings["culler"]
    del settings["spawner"]["image"]
    settings["extra"] = {}
    with pytest.raises(SettingsError) as err:
        validate(settings)
    assert err.value.problems == [
        "unknown section 'extra': allowed are hub, proxy, auth, spawner, culler, swarm",
        "jupyterhub_notebook_image (spawner.image) is missing",
        "section 'culler' is missing or not an object",
    ]


def test_cli_validates_a_file_and_changes_nothing(settings, tmp_path):
    """``python -m testbed_hub.config FILE``: the role's ``validate:`` command."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(settings))
    bad_settings = copy.deepcopy(settings)
    bad_settings["spawner"]["media_dir"] = "wavs"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_settings))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def run(path):
        return subprocess.run(
            [sys.executable, "-m", "testbed_hub.config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = run(good)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"{good}: settings OK\n"
    refused = run(bad)
    assert refused.returncode == 2
    assert 'jupyterhub_media_dir (spawner.media_dir) "wavs" must be an absolute path' in (
        refused.stderr
    )
    assert refused.stdout == ""
    missing = run(tmp_path / "nope.json")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_unreadable_token_file_is_reported(settings, tmp_path):
    settings["proxy"]["auth_token_file"] = str(tmp_path / "missing")
    c = Config()
    with pytest.raises(SettingsError, match="cannot read the proxy auth token from .*missing"):
        apply(c, settings, probe=FakeProbe())


def test_load_reports_bad_json(tmp_path):
    f = tmp_path / "settings.json"
    f.write_text("{not json")
    with pytest.raises(SettingsError, match="is not valid JSON"):
        hubconfig.load(str(f))
    with pytest.raises(SettingsError, match="cannot read .*nope.json"):
        hubconfig.load(str(tmp_path / "nope.json"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20.10.24+dfsg1", (20, 10, 24)), ("28.0.1", (28, 0, 1)), ("19.03.15-ce", (19, 3, 15))],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


# -- the audit trail (hub.audit_log) ----------------------------------------------------


def test_audit_log_reaches_the_hub(settings):
    settings["hub"]["audit_log"] = "/var/log/testbed/audit.log"
    assert build(settings).TestbedHub.audit_log == "/var/log/testbed/audit.log"


@pytest.mark.parametrize("value", ["", None])
def test_audit_log_empty_or_unset_is_off(settings, value):
    if value is not None:
        settings["hub"]["audit_log"] = value
    assert build(settings).TestbedHub.audit_log == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "audit.log",
            'jupyterhub_audit_log (hub.audit_log) "audit.log" must be the absolute path of a '
            "file, e.g. /var/log/testbed/audit.log (or empty: auditing off)",
        ),
        ("/var/log/testbed/", '"/var/log/testbed/" must be the absolute path of a file'),
        (True, "jupyterhub_audit_log (hub.audit_log) must be a string, got a boolean"),
        (["/a"], "jupyterhub_audit_log (hub.audit_log) must be a string, got list"),
    ],
)
def test_bad_audit_log_names_the_variable(settings, value, message):
    settings["hub"]["audit_log"] = value
    c = Config()
    with pytest.raises(SettingsError) as err:
        apply(c, settings, probe=FakeProbe(), read_secret=secrets_reader)
    assert message in str(err.value)
    assert c == Config()


# -- scale-out: servers as Swarm services (README: Scaling out) -----------------------


SWARM = {
    "enabled": True,
    "station_ip": "10.20.0.2",
    "network": "jupyterhub-swarm",
    "placement": "workers",
    "share_dir": "/srv/station",
}


def test_no_swarm_section_or_a_disabled_one_is_the_single_station(settings):
    alone = build(settings)
    off = build({**settings, "swarm": {**SWARM, "enabled": False}})
    for c in (alone, off):
        assert c.JupyterHub.spawner_class == "testbed_hub.spawner.TestbedDockerSpawner"
        assert c.JupyterHub.hub_connect_url == "http://172.30.0.1:8081"
        assert "TestbedSwarmSpawner" not in c


def test_swarm_servers_reach_the_hub_and_database_at_the_station(settings):
    settings["spawner"]["capabilities"] = ["NET_BIND_SERVICE"]
    c = build({**settings, "swarm": SWARM})
    assert c.JupyterHub.spawner_class == "testbed_hub.swarm.TestbedSwarmSpawner"
    # the hub API where the workers reach the station; still on the bridge's gateway
    assert c.JupyterHub.hub_connect_url == "http://10.20.0.2:8081"
    assert c.TestbedHub.extra_hub_bind_urls == ["http://172.30.0.1:8081", "http://10.20.0.2:8081"]
    s = c.TestbedSwarmSpawner
    assert s.network_name == "jupyterhub-swarm"
    assert s.placement == "workers"
    assert s.station_volume_template == "jupyterhub-user-{username}"
    assert s.pids_limit == 512
    nb = "/home/jovyan/nist"
    assert s.volumes == {
        "/srv/station/volumes/jupyterhub-user-{username}/_data": nb,
        "/srv/station/volumes/jupyterhub-shared/_data": f"{nb}/share",
        "/srv/station/media": {"bind": f"{nb}/media", "mode": "ro"},
    }
    assert s.extra_container_spec == {
        "hosts": {"host.docker.internal": "10.20.0.2"},
        "cap_drop": ["ALL"],
        "cap_add": ["NET_BIND_SERVICE"],
        "command": ["setpriv", "--no-new-privs", "tini", "-g", "--"],
    }
    # the rest is the station's: image, limits, environment, choices
    assert c.DockerSpawner.image == "testbed-hub/notebook:abc123"
    assert c.DockerSpawner.mem_limit == "2G"
    env = c.DockerSpawner.environment
    assert env["TESTBED_MONGO_URI"] == "mongodb://host.docker.internal:27017/"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"station_ip": "station.lan"},
            'jupyterhub_swarm_station_address (swarm.station_ip) "station.lan" must be the '
            "station's IP address",
        ),
        ({"station_ip": "0.0.0.0"}, "must be the station's IP address"),
        (
            {"placement": "manager"},
            'jupyterhub_swarm_placement (swarm.placement) "manager" must be one of any, workers',
        ),
        ({"network": "my net"}, 'jupyterhub_swarm_network (swarm.network) "my net" is not'),
        ({"share_dir": "srv/station"}, "jupyterhub_swarm_share_dir (swarm.share_dir)"),
        ({"share_dir": "/"}, "must be an absolute folder below /"),
        ({"enabled": "yes"}, "jupyterhub_swarm_enabled (swarm.enabled) must be true/false"),
        ({"nodes": 3}, "unknown option swarm.nodes"),
    ],
)
def test_bad_swarm_settings_are_named(settings, change, message):
    with pytest.raises(SettingsError) as err:
        validate({**settings, "swarm": {**SWARM, **change}})
    assert message in str(err.value)


def test_a_disabled_swarm_section_is_not_checked_further(settings):
    validate({**settings, "swarm": {**SWARM, "enabled": False, "placement": "anywhere"}})
