"""Settings (JSON written by Ansible) -> values on a traitlets ``Config``.

``/etc/jupyterhub/jupyterhub_config.py`` is only::

    import json
    from testbed_hub.config import apply
    with open("/etc/jupyterhub/settings.json") as f:
        apply(c, json.load(f))

:func:`validate` collects every problem in the settings and raises one
:class:`SettingsError` naming each key and the fix; :func:`apply` sets values on the
config and never mutates the settings it was given.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

HOST_GATEWAY_MODES = ("auto", "host-gateway", "netifaces")
#: Docker engine version from which ``host-gateway`` works in ``extra_hosts``.
HOST_GATEWAY_MIN_DOCKER = (20, 10)
SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$")
DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")

#: Scopes the idle culler needs (from jupyterhub-idle-culler's README), nothing more.
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]

# Keys of each section; anything else is a typo and is rejected.
_SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "hub": {
        "base_url": str,
        "data_dir": str,
        "ip": str,
        "port": int,
        "gateway_ip": str,
        "cookie_secret_file": str,
        "db_url": str,
        "log_level": str,
    },
    "proxy": {
        "managed": bool,
        "command": list,
        "public_ip": str,
        "public_port": int,
        "api_ip": str,
        "api_port": int,
        "auth_token_file": str,
    },
    "auth": {
        "user_header": str,
        "secret_header": str,
        "secret_file": str,
        "login_url": str,
        "logout_url": str,
        "allow_all": bool,
        "allowed_users": list,
        "admin_users": list,
        "blocked_users": list,
    },
    "spawner": {
        "image": str,
        "network": str,
        "bridge_interface": str,
        "notebook_dir": str,
        "user_volume_template": str,
        "shared_volume": str,
        "media_dir": str,
        "host_gateway_name": str,
        "host_gateway_mode": str,
        "mem_limit": str,
        "cpu_limit": (int, float),
        "start_timeout": int,
        "http_timeout": int,
        "environment": dict,
    },
    "culler": {
        "enabled": bool,
        "timeout": int,
        "every": int,
        "python": str,
    },
}
_OPTIONAL = {("hub", "db_url"), ("hub", "log_level"), ("spawner", "bridge_interface")}


class SettingsError(ValueError):
    """The settings file is invalid; ``problems`` lists each issue."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Invalid JupyterHub settings (/etc/jupyterhub/settings.json, written from the "
            "jupyterhub role's variables):\n  - " + "\n  - ".join(problems)
        )


class Probe:
    """Looks at the machine: Docker engine version, addresses of interfaces."""

    def docker_version(self) -> tuple[int, ...]:
        import docker

        client = docker.from_env(version="auto")
        try:
            version = client.version()["Version"]
        finally:
            client.close()
        return parse_version(version)

    def interface_ipv4(self, interface: str) -> str:
        import netifaces

        if interface not in netifaces.interfaces():
            raise LookupError(
                f"network interface {interface!r} does not exist (known: "
                f"{', '.join(netifaces.interfaces())}); is the Docker network created?"
            )
        addrs = netifaces.ifaddresses(interface).get(netifaces.AF_INET) or []
        if not addrs:
            raise LookupError(f"network interface {interface!r} has no IPv4 address")
        return addrs[0]["addr"]


def parse_version(version: str) -> tuple[int, ...]:
    """``'20.10.24+dfsg1'`` -> ``(20, 10, 24)``."""
    nums = re.findall(r"\d+", version.split("+")[0].split("-")[0])
    if not nums:
        raise ValueError(f"cannot read a version number from {version!r}")
    return tuple(int(n) for n in nums[:3])


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def validate(settings: Mapping[str, Any]) -> None:  # noqa: C901 - one flat checklist
    """Raise :class:`SettingsError` listing every problem in ``settings``."""
    problems: list[str] = []
    if not isinstance(settings, Mapping):
        raise SettingsError([f"the settings must be a JSON object, got {type(settings).__name__}"])
    for extra in sorted(set(settings) - set(_SECTIONS)):
        problems.append(f"unknown section {extra!r}: allowed are {', '.join(_SECTIONS)}")
    for section, keys in _SECTIONS.items():
        data = settings.get(section)
        if not isinstance(data, Mapping):
            problems.append(f"section {section!r} is missing or not an object")
            continue
        for extra in sorted(set(data) - set(keys)):
            problems.append(
                f"unknown option {section}.{extra}: allowed are {', '.join(sorted(keys))}"
            )
        for key, typ in keys.items():
            if key not in data:
                if (section, key) not in _OPTIONAL:
                    problems.append(f"{section}.{key} is missing")
                continue
            value = data[key]
            if isinstance(value, bool) and typ is not bool:
                problems.append(f"{section}.{key} must be {_tname(typ)}, got a boolean")
            elif not isinstance(value, typ):
                problems.append(
                    f"{section}.{key} must be {_tname(typ)}, got {type(value).__name__} {value!r}"
                )
    if problems:
        raise SettingsError(problems)

    hub, proxy, auth, spawner, culler = (settings[s] for s in _SECTIONS)
    base_url = hub["base_url"]
    if not (base_url.startswith("/") and base_url.endswith("/")):
        problems.append(f"hub.base_url {base_url!r} must start and end with '/', e.g. '/jupyter/'")
    for section, key in (("hub", "ip"), ("hub", "gateway_ip"), ("proxy", "public_ip")):
        if not _is_ip(settings[section][key]):
            problems.append(f"{section}.{key} {settings[section][key]!r} is not an IP address")
    if not _is_ip(proxy["api_ip"]):
        problems.append(f"proxy.api_ip {proxy['api_ip']!r} is not an IP address")
    for section, key in (
        ("hub", "port"),
        ("proxy", "public_port"),
        ("proxy", "api_port"),
    ):
        port = settings[section][key]
        if not 1 <= port <= 65535:
            problems.append(f"{section}.{key} {port} is not a TCP port (1-65535)")
    for section, key in (
        ("hub", "data_dir"),
        ("hub", "cookie_secret_file"),
        ("proxy", "auth_token_file"),
        ("auth", "secret_file"),
        ("spawner", "notebook_dir"),
        ("spawner", "media_dir"),
        ("culler", "python"),
    ):
        if not os.path.isabs(settings[section][key]):
            problems.append(f"{section}.{key} {settings[section][key]!r} must be an absolute path")
    if proxy["managed"] and not proxy["command"]:
        problems.append("proxy.command must name the configurable-http-proxy executable")
    if not all(isinstance(x, str) and x for x in proxy["command"]):
        problems.append("proxy.command must be a list of non-empty strings")
    for key in ("allowed_users", "admin_users", "blocked_users"):
        if not all(isinstance(x, str) and x.strip() for x in auth[key]):
            problems.append(f"auth.{key} must be a list of non-empty testbed identifiers")
    if not auth["allow_all"] and not auth["allowed_users"]:
        problems.append(
            "auth.allow_all is false and auth.allowed_users is empty: nobody could log in; "
            "set allow_all: true (everyone the testbed lets in) or list the allowed users"
        )
    if "{username}" not in spawner["user_volume_template"]:
        problems.append(
            f"spawner.user_volume_template {spawner['user_volume_template']!r} must contain "
            "'{username}', e.g. 'jupyterhub-user-{username}', or all users share one volume"
        )
    elif not DOCKER_NAME_RE.match(spawner["user_volume_template"].replace("{username}", "x")):
        problems.append(
            f"spawner.user_volume_template {spawner['user_volume_template']!r} is not a valid "
            "Docker volume name (letters, digits, '_', '.', '-')"
        )
    for key in ("network", "shared_volume"):
        if not DOCKER_NAME_RE.match(spawner[key]):
            problems.append(f"spawner.{key} {spawner[key]!r} is not a valid Docker name")
    if not spawner["image"].strip():
        problems.append("spawner.image is empty: pass the notebook image reference")
    if spawner["host_gateway_mode"] not in HOST_GATEWAY_MODES:
        problems.append(
            f"spawner.host_gateway_mode {spawner['host_gateway_mode']!r} must be one of "
            f"{', '.join(HOST_GATEWAY_MODES)}"
        )
    elif spawner["host_gateway_mode"] != "host-gateway" and not spawner.get("bridge_interface"):
        problems.append(
            f"spawner.bridge_interface is required with host_gateway_mode "
            f"{spawner['host_gateway_mode']!r} (the jupyter network's bridge, e.g. 'br-jupyter')"
        )
    if not HOSTNAME_RE.match(spawner["host_gateway_name"]):
        problems.append(
            f"spawner.host_gateway_name {spawner['host_gateway_name']!r} is not a host name"
        )
    if not SIZE_RE.match(spawner["mem_limit"]):
        problems.append(
            f"spawner.mem_limit {spawner['mem_limit']!r} is not a size: use a number with "
            "K, M, G or T, e.g. '2G'"
        )
    if not spawner["cpu_limit"] > 0:
        problems.append(f"spawner.cpu_limit {spawner['cpu_limit']} must be greater than 0")
    for key in ("start_timeout", "http_timeout"):
        if spawner[key] < 1:
            problems.append(f"spawner.{key} {spawner[key]} must be 1 second or more")
    for name, value in spawner["environment"].items():
        if not ENV_NAME_RE.match(name) or not isinstance(value, str):
            problems.append(
                f"spawner.environment[{name!r}] must be an UPPER_CASE name with a string value"
            )
    for key in ("timeout", "every"):
        if culler[key] < 1:
            problems.append(f"culler.{key} {culler[key]} must be 1 second or more")
    if problems:
        raise SettingsError(problems)


def _tname(typ: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true/false", list: "a list"}
    names[dict] = "an object"
    if isinstance(typ, tuple):
        return "a number"
    return names.get(typ, typ.__name__)


def resolve_host_gateway(spawner: Mapping[str, Any], probe: Probe) -> str:
    """What ``host_gateway_name`` maps to in the containers' /etc/hosts.

    ``host-gateway`` (Docker >= 20.10 resolves it to the host) or the IPv4 address of
    the jupyter network's bridge interface, read with netifaces (older Docker).
    """
    mode = spawner["host_gateway_mode"]
    if mode == "auto":
        version = probe.docker_version()
        mode = "host-gateway" if version[:2] >= HOST_GATEWAY_MIN_DOCKER else "netifaces"
    if mode == "host-gateway":
        return "host-gateway"
    return probe.interface_ipv4(spawner["bridge_interface"])


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise SettingsError([f"cannot read the {what} from {path}: {e.strerror}"]) from e
    if not value:
        raise SettingsError([f"the {what} file {path} is empty"])
    return value


def apply(
    c: Any,
    settings: Mapping[str, Any],
    *,
    probe: Probe | None = None,
    read_secret: Callable[[str, str], str] = _read_secret,
) -> None:
    """Set the hub's configuration on ``c`` from ``settings`` (validated first)."""
    validate(settings)
    s = copy.deepcopy(dict(settings))
    probe = probe or Probe()
    hub, proxy, auth, spawner, culler = (s[k] for k in _SECTIONS)

    # -- hub ----------------------------------------------------------------
    # base_url comes from the path of bind_url (setting both makes JupyterHub warn)
    c.JupyterHub.hub_bind_url = f"http://{hub['ip']}:{hub['port']}"
    gateway_url = f"http://{hub['gateway_ip']}:{hub['port']}"
    c.JupyterHub.hub_connect_url = gateway_url
    c.TestbedHub.extra_hub_bind_urls = [gateway_url]
    c.JupyterHub.cookie_secret_file = hub["cookie_secret_file"]
    c.JupyterHub.db_url = hub.get("db_url") or (
        "sqlite:///" + os.path.join(hub["data_dir"], "jupyterhub.sqlite")
    )
    c.JupyterHub.pid_file = os.path.join(hub["data_dir"], "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.log_level = hub.get("log_level", "INFO")

    # -- proxy --------------------------------------------------------------
    c.JupyterHub.bind_url = f"http://{proxy['public_ip']}:{proxy['public_port']}{hub['base_url']}"
    c.ConfigurableHTTPProxy.api_url = f"http://{proxy['api_ip']}:{proxy['api_port']}"
    c.ConfigurableHTTPProxy.should_start = proxy["managed"]
    c.ConfigurableHTTPProxy.command = list(proxy["command"])
    c.ConfigurableHTTPProxy.pid_file = os.path.join(hub["data_dir"], "proxy.pid")
    c.ConfigurableHTTPProxy.auth_token = read_secret(proxy["auth_token_file"], "proxy auth token")

    # -- authenticator ------------------------------------------------------
    from testbed_hub.auth import docker_escape, identity_to_username

    c.JupyterHub.authenticator_class = "testbed_hub.auth.HeaderAuthenticator"
    c.HeaderAuthenticator.user_header = auth["user_header"]
    c.HeaderAuthenticator.secret_header = auth["secret_header"]
    c.HeaderAuthenticator.secret_file = auth["secret_file"]
    c.HeaderAuthenticator.external_login_url = auth["login_url"]
    c.HeaderAuthenticator.logout_redirect_url = auth["logout_url"]
    c.Authenticator.allow_all = auth["allow_all"]
    c.Authenticator.allowed_users = {identity_to_username(u) for u in auth["allowed_users"]}
    c.Authenticator.admin_users = {identity_to_username(u) for u in auth["admin_users"]}
    c.Authenticator.blocked_users = {identity_to_username(u) for u in auth["blocked_users"]}

    # -- spawner ------------------------------------------------------------
    nb = spawner["notebook_dir"].rstrip("/")
    c.JupyterHub.spawner_class = "testbed_hub.spawner.TestbedDockerSpawner"
    c.DockerSpawner.image = spawner["image"]
    c.DockerSpawner.pull_policy = "never"
    c.DockerSpawner.remove = True
    c.DockerSpawner.escape = docker_escape
    c.DockerSpawner.network_name = spawner["network"]
    c.DockerSpawner.use_internal_ip = True
    c.DockerSpawner.notebook_dir = nb
    c.DockerSpawner.volumes = {
        spawner["user_volume_template"]: nb,
        spawner["shared_volume"]: f"{nb}/share",
        spawner["media_dir"]: {"bind": f"{nb}/media", "mode": "ro"},
    }
    c.DockerSpawner.extra_host_config = {
        "extra_hosts": {spawner["host_gateway_name"]: resolve_host_gateway(spawner, probe)}
    }
    c.DockerSpawner.mem_limit = spawner["mem_limit"]
    c.DockerSpawner.cpu_limit = float(spawner["cpu_limit"])
    c.DockerSpawner.start_timeout = spawner["start_timeout"]
    c.DockerSpawner.http_timeout = spawner["http_timeout"]
    env = dict(spawner["environment"])
    env.setdefault("TESTBED_MEDIA_DIR", f"{nb}/media")
    env.setdefault("TESTBED_SHARE_DIR", f"{nb}/share")
    c.DockerSpawner.environment = env

    # -- idle culler --------------------------------------------------------
    if culler["enabled"]:
        c.JupyterHub.load_roles = [
            {"name": "idle-culler", "scopes": list(CULLER_SCOPES), "services": ["idle-culler"]}
        ]
        c.JupyterHub.services = [
            {
                "name": "idle-culler",
                "command": [
                    culler["python"],
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={culler['timeout']}",
                    f"--cull-every={culler['every']}",
                ],
            }
        ]
    else:
        c.JupyterHub.load_roles = []
        c.JupyterHub.services = []


def load(path: str = "/etc/jupyterhub/settings.json") -> dict[str, Any]:
    """Read the settings file, with an operator-friendly error."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise SettingsError([f"cannot read {path}: {e.strerror}; run the playbook"]) from e
    except json.JSONDecodeError as e:
        raise SettingsError([f"{path} is not valid JSON ({e}); run the playbook"]) from e


if __name__ == "__main__":  # pragma: no cover - manual check: python -m testbed_hub.config
    from traitlets.config import Config

    cfg = Config()
    try:
        apply(cfg, load(*sys.argv[1:2]))
    except SettingsError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    print("settings OK")
