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
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from testbed_hub import container
from testbed_hub.container import HOST_GATEWAY_MIN_DOCKER, Probe, parse_version  # noqa: F401
from testbed_hub.identity import IDENTITY_CASES, normalize_identity

HOST_GATEWAY_MODES = ("gateway", "auto", "host-gateway", "netifaces")
#: Modes that read the bridge interface's address (netifaces).
BRIDGE_MODES = ("auto", "netifaces")
CAPABILITY_RE = re.compile(r"^[A-Z][A-Z_]*$")
SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$")
DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")
HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")
BASE_URL_RE = re.compile(r"^/([^/]+/)*$")
URL_RE = re.compile(r"^(/|https?://)[^\s\"']*$")
#: The hub's page templates (home.html: the server's image after an upgrade), in the package.
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

#: Scopes the idle culler needs (from jupyterhub-idle-culler's README), nothing more.
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
#: What every user may do besides their own things ("self") when sharing is on
#: (JupyterHub's "Sharing access to your server" tutorial): manage the shares of their
#: own servers. Not ``read:users:name``: the home page shares through
#: ``/hub/api/testbed/shares`` (testbed_hub.sharing), which maps the identifier itself.
SHARING_SCOPES = ["self", "shares!user"]
#: The JupyterHub service Prometheus scrapes <base_url>hub/metrics as, and its only scope.
METRICS_SERVICE = "prometheus"
METRICS_SCOPES = ["read:metrics"]
#: Seconds between two activity reports of a server to the hub (and of the proxy's
#: routes), when settings.json does not say: JupyterHub's own default.
DEFAULT_ACTIVITY_INTERVAL = 300
#: The hub pages' title (``jupyterhub_site_title``) when the settings give none.
DEFAULT_SITE_TITLE = "MCV testbed JupyterHub"
#: Logo files JupyterHub serves at /hub/logo with the right content type.
LOGO_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")

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
        "activity_interval": int,
        "sharing_enabled": bool,
        "site_title": str,
        "logo_file": str,
        "metrics_token_file": str,
        "audit_log": str,
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
        "identity_case": str,
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
        "concurrent_starts": int,
        "pids_limit": int,
        "no_new_privileges": bool,
        "capabilities": list,
        "environment": dict,
        "images": list,
        "profiles": list,
        "max_mem_limit": str,
        "max_cpu_limit": (int, float),
        "named_server_limit": int,
        "image_notice_file": str,
    },
    "culler": {
        "enabled": bool,
        "timeout": int,
        "every": int,
        "python": str,
    },
    # Optional: absent (or enabled false) is the single station of today.
    "swarm": {
        "enabled": bool,
        "station_ip": str,
        "network": str,
        "placement": str,
        "share_dir": str,
    },
}
#: Sections a settings file may leave out.
_OPTIONAL_SECTIONS = {"swarm"}
_OPTIONAL = {
    ("hub", "db_url"),
    ("hub", "activity_interval"),
    ("hub", "log_level"),
    ("hub", "sharing_enabled"),
    ("hub", "site_title"),
    ("hub", "logo_file"),
    ("hub", "metrics_token_file"),
    ("hub", "audit_log"),
    ("spawner", "bridge_interface"),
    ("spawner", "concurrent_starts"),
    ("auth", "identity_case"),
    ("spawner", "images"),
    ("spawner", "profiles"),
    ("spawner", "max_mem_limit"),
    ("spawner", "max_cpu_limit"),
    ("spawner", "named_server_limit"),
    ("spawner", "image_notice_file"),
}

#: The jupyterhub role variable each setting is written from (roles/jupyterhub/vars/main.yml
#: builds settings.json as ``__jupyterhub_settings``); messages name it. Settings the role
#: fixes itself (addresses on 127.0.0.1, the gateway address it reads) have none.
VARIABLES = {
    "hub.base_url": "jupyterhub_base_url",
    "hub.data_dir": "jupyterhub_data_dir",
    "hub.port": "jupyterhub_hub_port",
    "hub.cookie_secret_file": "jupyterhub_data_dir",
    "hub.log_level": "jupyterhub_log_level",
    "hub.activity_interval": "jupyterhub_activity_interval",
    "hub.sharing_enabled": "jupyterhub_sharing_enabled",
    "hub.site_title": "jupyterhub_site_title",
    "hub.logo_file": "jupyterhub_logo_src",
    "hub.metrics_token_file": "jupyterhub_metrics_service_enabled",
    "hub.audit_log": "jupyterhub_audit_log",
    "proxy.command": "jupyterhub_chp_prefix",
    "proxy.public_port": "jupyterhub_proxy_port",
    "proxy.api_port": "jupyterhub_proxy_api_port",
    "proxy.auth_token_file": "jupyterhub_data_dir",
    "auth.user_header": "jupyterhub_user_header",
    "auth.secret_header": "jupyterhub_secret_header",
    "auth.secret_file": "jupyterhub_config_dir",
    "auth.login_url": "jupyterhub_login_url",
    "auth.logout_url": "jupyterhub_logout_url",
    "auth.allow_all": "jupyterhub_allow_all",
    "auth.allowed_users": "jupyterhub_allowed_users",
    "auth.admin_users": "jupyterhub_admin_users",
    "auth.blocked_users": "jupyterhub_blocked_users",
    "auth.identity_case": "jupyterhub_identity_case",
    "spawner.image": "jupyterhub_notebook_image",
    "spawner.network": "jupyterhub_network_name",
    "spawner.bridge_interface": "jupyterhub_network_bridge",
    "spawner.notebook_dir": "jupyterhub_notebook_dir",
    "spawner.user_volume_template": "jupyterhub_user_volume_template",
    "spawner.shared_volume": "jupyterhub_shared_volume",
    "spawner.media_dir": "jupyterhub_media_dir",
    "spawner.host_gateway_name": "jupyterhub_host_gateway_name",
    "spawner.host_gateway_mode": "jupyterhub_host_gateway_mode",
    "spawner.mem_limit": "jupyterhub_spawner.mem_limit",
    "spawner.cpu_limit": "jupyterhub_spawner.cpu_limit",
    "spawner.start_timeout": "jupyterhub_spawner.start_timeout",
    "spawner.http_timeout": "jupyterhub_spawner.http_timeout",
    "spawner.concurrent_starts": "jupyterhub_spawner.concurrent_starts",
    "spawner.pids_limit": "jupyterhub_spawner.pids_limit",
    "spawner.no_new_privileges": "jupyterhub_spawner.no_new_privileges",
    "spawner.capabilities": "jupyterhub_spawner.capabilities",
    "spawner.environment": "jupyterhub_mongo",
    "spawner.images": "jupyterhub_previous_images",
    "spawner.profiles": "jupyterhub_profiles",
    "spawner.max_mem_limit": "jupyterhub_profile_ceiling.mem_limit",
    "spawner.max_cpu_limit": "jupyterhub_profile_ceiling.cpu_limit",
    "spawner.named_server_limit": "jupyterhub_named_server_limit",
    "culler.enabled": "jupyterhub_culler_enabled",
    "culler.timeout": "jupyterhub_culler_timeout",
    "culler.every": "jupyterhub_culler_every",
    "culler.python": "jupyterhub_venv_dir",
    "swarm.enabled": "jupyterhub_swarm_enabled",
    "swarm.station_ip": "jupyterhub_swarm_station_address",
    "swarm.network": "jupyterhub_swarm_network",
    "swarm.placement": "jupyterhub_swarm_placement",
    "swarm.share_dir": "jupyterhub_swarm_share_dir",
}


class SettingsError(ValueError):
    """The settings file is invalid; ``problems`` lists each issue."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Invalid JupyterHub settings (settings.json, written by the jupyterhub role from "
            "its variables; fix the variable named and run the playbook again):\n  - "
            + "\n  - ".join(problems)
        )


def _name(section: str, key: str) -> str:
    """``jupyterhub_media_dir (spawner.media_dir)``: the variable, then the setting."""
    var = VARIABLES.get(f"{section}.{key}")
    return f"{var} ({section}.{key})" if var else f"{section}.{key}"


def _q(value: Any) -> str:
    """A value as the operator wrote it in YAML/JSON: ``"wavs"``, ``8081``."""
    return json.dumps(value, ensure_ascii=False)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_types(settings: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for extra in sorted(set(settings) - set(_SECTIONS)):
        problems.append(f"unknown section {extra!r}: allowed are {', '.join(_SECTIONS)}")
    for section, keys in _SECTIONS.items():
        data = settings.get(section)
        if data is None and section in _OPTIONAL_SECTIONS:
            continue
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
                    problems.append(f"{_name(section, key)} is missing")
                continue
            value = data[key]
            if isinstance(value, bool) and typ is not bool:
                problems.append(f"{_name(section, key)} must be {_tname(typ)}, got a boolean")
            elif not isinstance(value, typ):
                problems.append(
                    f"{_name(section, key)} must be {_tname(typ)}, "
                    f"got {type(value).__name__} {value!r}"
                )
    return problems


def validate(settings: Mapping[str, Any]) -> None:  # noqa: C901 - one flat checklist
    """Raise :class:`SettingsError` listing every problem in ``settings``.

    The one validator of the hub's settings: the jupyterhub role runs it on the
    control node before anything changes, as the ``validate:`` of settings.json on
    the host, and the hub runs it at start (:func:`apply`). Each message names the
    role variable the setting is written from.
    """
    if not isinstance(settings, Mapping):
        raise SettingsError([f"the settings must be a JSON object, got {type(settings).__name__}"])
    problems = _check_types(settings)
    if problems:
        raise SettingsError(problems)

    hub, proxy, auth, spawner, culler = (settings[s] for s in _SECTIONS if s != "swarm")
    n = _name
    if not BASE_URL_RE.match(hub["base_url"]):
        problems.append(
            f"{n('hub', 'base_url')} {_q(hub['base_url'])} must start and end with '/' "
            "without empty segments, e.g. '/jupyter/'"
        )
    for section, key in (
        ("hub", "ip"),
        ("hub", "gateway_ip"),
        ("proxy", "public_ip"),
        ("proxy", "api_ip"),
    ):
        if not _is_ip(settings[section][key]):
            problems.append(f"{n(section, key)} {_q(settings[section][key])} is not an IP address")
    ports = (("hub", "port"), ("proxy", "public_port"), ("proxy", "api_port"))
    for section, key in ports:
        port = settings[section][key]
        if not 1 <= port <= 65535:
            problems.append(f"{n(section, key)} {port} is not a TCP port (1-65535)")
    if len({settings[s][k] for s, k in ports}) < len(ports):
        problems.append(
            f"{', '.join(n(s, k) for s, k in ports)} must be three different ports, got "
            f"{', '.join(str(settings[s][k]) for s, k in ports)}"
        )
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
            problems.append(
                f"{n(section, key)} {_q(settings[section][key])} must be an absolute path"
            )
    metrics_token = hub.get("metrics_token_file", "")
    if metrics_token and not os.path.isabs(metrics_token):
        problems.append(
            f"{n('hub', 'metrics_token_file')} {_q(metrics_token)} must be an absolute path "
            "(or empty: no metrics service)"
        )
    audit_log = hub.get("audit_log", "")
    if audit_log and (not os.path.isabs(audit_log) or audit_log.endswith("/")):
        problems.append(
            f"{n('hub', 'audit_log')} {_q(audit_log)} must be the absolute path of a file, "
            "e.g. /var/log/testbed/audit.log (or empty: auditing off)"
        )
    if proxy["managed"] and not proxy["command"]:
        problems.append(f"{n('proxy', 'command')} must name the configurable-http-proxy executable")
    if not all(isinstance(x, str) and x for x in proxy["command"]):
        problems.append(f"{n('proxy', 'command')} must be a list of non-empty strings")
    for key in ("user_header", "secret_header"):
        if not HEADER_RE.match(auth[key]):
            problems.append(
                f"{n('auth', key)} {_q(auth[key])} is not an HTTP header name nginx passes on: "
                "letters, digits and '-' only"
            )
    if auth["user_header"].lower() == auth["secret_header"].lower():
        problems.append(f"{n('auth', 'user_header')} and {n('auth', 'secret_header')} must differ")
    for key in ("login_url", "logout_url"):
        if not URL_RE.match(auth[key]):
            problems.append(
                f"{n('auth', key)} {_q(auth[key])} must be a path on this site such as "
                "'/auth/login' or an http(s) URL, without spaces or quotes"
            )
    title = hub.get("site_title", DEFAULT_SITE_TITLE)
    if not title.strip() or len(title) > 80 or any(ord(ch) < 32 for ch in title):
        problems.append(
            f"{n('hub', 'site_title')} {_q(title)} must be 1 to 80 printable characters "
            "(the title of the hub's pages)"
        )
    logo = hub.get("logo_file", "")
    if logo and (not os.path.isabs(logo) or not logo.lower().endswith(LOGO_SUFFIXES)):
        problems.append(
            f"{n('hub', 'logo_file')} {_q(logo)} must be an absolute path to an image file "
            f"({', '.join(LOGO_SUFFIXES)}), or '' for JupyterHub's logo"
        )
    for key in ("allowed_users", "admin_users", "blocked_users"):
        if not all(isinstance(x, str) and x.strip() for x in auth[key]):
            problems.append(f"{n('auth', key)} must be a list of non-empty testbed identifiers")
    case = auth.get("identity_case", "fold")
    if case not in IDENTITY_CASES:
        problems.append(
            f"{n('auth', 'identity_case')} {_q(case)} must be one of {', '.join(IDENTITY_CASES)}"
        )
    if not auth["allow_all"] and not auth["allowed_users"]:
        problems.append(
            f"{n('auth', 'allow_all')} is false and {n('auth', 'allowed_users')} is empty: "
            "nobody could log in; set jupyterhub_allow_all: true (everyone the testbed lets "
            "in) or list testbed identifiers in jupyterhub_allowed_users"
        )
    template = spawner["user_volume_template"]
    if "{username}" not in template:
        problems.append(
            f"{n('spawner', 'user_volume_template')} {_q(template)} must contain "
            "{username}, e.g. 'jupyterhub-user-{username}', or all users share one volume"
        )
    elif not DOCKER_NAME_RE.match(template.replace("{username}", "x")):
        problems.append(
            f"{n('spawner', 'user_volume_template')} {_q(template)} is not a valid "
            "Docker volume name (letters, digits, '_', '.', '-')"
        )
    elif template.replace("{username}", "") == spawner["shared_volume"]:
        problems.append(
            f"{n('spawner', 'user_volume_template')} {_q(template)} without {{username}} "
            f"is {n('spawner', 'shared_volume')}: a user with an empty name would get the "
            "shared volume"
        )
    for key in ("network", "shared_volume"):
        if not DOCKER_NAME_RE.match(spawner[key]):
            problems.append(
                f"{n('spawner', key)} {_q(spawner[key])} is not a valid Docker name "
                "(letters, digits, '_', '.', '-')"
            )
    if not spawner["image"].strip():
        problems.append(
            f"{n('spawner', 'image')} is empty: pass the single-user image, e.g. "
            "jupyterhub_notebook_image: '{{ notebook_image_ref }}' after the notebook_image role"
        )
    if spawner["host_gateway_mode"] not in HOST_GATEWAY_MODES:
        problems.append(
            f"{n('spawner', 'host_gateway_mode')} {_q(spawner['host_gateway_mode'])} must be "
            f"one of {', '.join(HOST_GATEWAY_MODES)}"
        )
    elif spawner["host_gateway_mode"] in BRIDGE_MODES and not spawner.get("bridge_interface"):
        problems.append(
            f"{n('spawner', 'bridge_interface')} is required with host_gateway_mode "
            f"{_q(spawner['host_gateway_mode'])} (the jupyter network's bridge, e.g. 'br-jupyter')"
        )
    bridge = spawner.get("bridge_interface")
    if bridge and not IFNAME_RE.match(bridge):
        problems.append(
            f"{n('spawner', 'bridge_interface')} {_q(bridge)} must be a network interface "
            "name of at most 15 letters, digits, '_', '.', '-'"
        )
    if not HOSTNAME_RE.match(spawner["host_gateway_name"]):
        problems.append(
            f"{n('spawner', 'host_gateway_name')} {_q(spawner['host_gateway_name'])} "
            "is not a host name"
        )
    if not SIZE_RE.match(spawner["mem_limit"]):
        problems.append(
            f"{n('spawner', 'mem_limit')} {_q(spawner['mem_limit'])} is not a size: use a "
            "number with K, M, G or T, e.g. '2G'"
        )
    if not spawner["cpu_limit"] > 0:
        problems.append(
            f"{n('spawner', 'cpu_limit')} {spawner['cpu_limit']} must be greater than 0"
        )
    problems += _check_choices(spawner)
    for key in ("start_timeout", "http_timeout"):
        if spawner[key] < 1:
            problems.append(f"{n('spawner', key)} {spawner[key]} must be 1 second or more")
    if spawner.get("concurrent_starts", 0) < 0:
        problems.append(
            f"{n('spawner', 'concurrent_starts')} {spawner['concurrent_starts']} must be 0 "
            "(no limit) or a number of servers starting at once, e.g. the station's CPU cores"
        )
    if not 64 <= spawner["pids_limit"] <= 1048576:
        problems.append(
            f"{n('spawner', 'pids_limit')} {spawner['pids_limit']} must be 64 to 1048576 "
            "processes and threads per server (JupyterLab, its kernels and their threads "
            "need about 100; 512 is the default)"
        )
    caps = spawner["capabilities"]
    if not all(isinstance(x, str) and CAPABILITY_RE.match(x) for x in caps):
        problems.append(
            f"{n('spawner', 'capabilities')} {_q(caps)} must be a list of capability names "
            "without the CAP_ prefix, e.g. ['NET_BIND_SERVICE'] ([] = none: the server runs "
            "as uid 1000 and needs none)"
        )
    elif "ALL" in caps or "SYS_ADMIN" in caps:
        problems.append(
            f"{n('spawner', 'capabilities')} {_q(caps)}: ALL and SYS_ADMIN give a user "
            "the station; name the single capabilities a notebook needs"
        )
    for name, value in spawner["environment"].items():
        if not ENV_NAME_RE.match(name) or not isinstance(value, str):
            problems.append(
                f"{n('spawner', 'environment')}[{name!r}] must be an UPPER_CASE name with a "
                "string value"
            )
    for key, least in (("timeout", 60), ("every", 1)):
        if culler[key] < least:
            problems.append(f"{n('culler', key)} {culler[key]} must be {least} seconds or more")
    interval = hub.get("activity_interval", DEFAULT_ACTIVITY_INTERVAL)
    if interval < 5:
        problems.append(
            f"{n('hub', 'activity_interval')} {interval} must be 5 seconds or more "
            "(every server reports its activity to the hub that often)"
        )
    elif culler["enabled"] and 2 * interval > culler["timeout"]:
        problems.append(
            f"{n('hub', 'activity_interval')} {interval} must be at most half of "
            f"{n('culler', 'timeout')} {culler['timeout']}: the hub learns of a server's "
            "activity up to an interval late, and the culler would stop servers that are "
            "still working"
        )
    problems += _check_swarm(settings.get("swarm"))
    if problems:
        raise SettingsError(problems)


def _check_swarm(swarm: Mapping[str, Any] | None) -> list[str]:
    """The ``swarm`` section (README: Scaling out), when servers run as Swarm services."""
    if not swarm or not swarm["enabled"]:
        return []
    from testbed_hub.swarm import PLACEMENTS

    problems: list[str] = []
    n = _name
    if not _is_ip(swarm["station_ip"]) or swarm["station_ip"] in ("0.0.0.0", "::"):  # noqa: S104
        problems.append(
            f"{n('swarm', 'station_ip')} {_q(swarm['station_ip'])} must be the station's IP "
            "address on the network its workers reach it by (the swarm's advertise address)"
        )
    if swarm["network"] and not DOCKER_NAME_RE.match(swarm["network"]):
        problems.append(
            f"{n('swarm', 'network')} {_q(swarm['network'])} is not a valid Docker name "
            "(letters, digits, '_', '.', '-'), or '' for no overlay network"
        )
    if swarm["placement"] not in PLACEMENTS:
        problems.append(
            f"{n('swarm', 'placement')} {_q(swarm['placement'])} must be one of "
            f"{', '.join(sorted(PLACEMENTS))} (workers only, or the station too)"
        )
    share = swarm["share_dir"]
    if not os.path.isabs(share) or share.rstrip("/") == "":
        problems.append(
            f"{n('swarm', 'share_dir')} {_q(share)} must be an absolute folder below / "
            "(where each worker mounts the station's share: station_share_mount_dir)"
        )
    return problems


#: Docker's size suffixes (DockerSpawner's ByteSpecification reads the same ones).
_SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
PROFILE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PROFILE_KEYS = {"name", "mem_limit", "cpu_limit", "default", "description"}
_IMAGE_KEYS = {"image", "created", "packages"}


def size_bytes(size: str) -> int:
    """``'2G'`` -> 2147483648 (the sizes :data:`SIZE_RE` accepts)."""
    return int(float(size[:-1]) * _SIZE_UNITS[size[-1]])


def _check_choices(spawner: Mapping[str, Any]) -> list[str]:  # noqa: C901 - one checklist
    """What a researcher may choose at start: images, resource profiles, named servers."""
    problems: list[str] = []
    n = _name
    template = spawner["user_volume_template"]
    if "{servername}" in template or "{raw_servername}" in template:
        problems.append(
            f"{n('spawner', 'user_volume_template')} {_q(template)} must not contain "
            "{servername}: all of a user's servers mount the same files"
        )
    notice = spawner.get("image_notice_file")
    if notice is not None and not os.path.isabs(notice):
        problems.append(
            f"{n('spawner', 'image_notice_file')} {_q(notice)} must be an absolute path"
        )
    limit = spawner.get("named_server_limit", 0)
    if not 0 <= limit <= 10:
        problems.append(
            f"{n('spawner', 'named_server_limit')} {limit} must be 0 (one server per user) "
            "to 10 named servers besides it"
        )
    images = spawner.get("images", [])
    seen: set[str] = set()
    for i, entry in enumerate(images):
        where = f"{n('spawner', 'images')}[{i}]"
        if not isinstance(entry, Mapping) or set(entry) - _IMAGE_KEYS or "image" not in entry:
            problems.append(
                f"{where} must be an object with image and optional created, packages "
                f"(got {_q(entry)})"
            )
            continue
        image = entry["image"]
        if not isinstance(image, str) or not image.strip() or image in seen:
            problems.append(f"{where}.image {_q(image)} must be a distinct image reference")
        seen.add(image)
        if not isinstance(entry.get("created", ""), str):
            problems.append(f"{where}.created must be a date as text")
        packages = entry.get("packages", {})
        if not isinstance(packages, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in packages.items()
        ):
            problems.append(f"{where}.packages must map package names to versions (text)")
    if images and isinstance(images[0], Mapping) and images[0].get("image") != spawner["image"]:
        problems.append(
            f"{n('spawner', 'images')} must start with the current image "
            f"{_q(spawner['image'])} (the default of the form), got "
            f"{_q(images[0].get('image'))}"
        )
    max_mem = spawner.get("max_mem_limit")
    if max_mem is not None and not SIZE_RE.match(max_mem):
        problems.append(
            f"{n('spawner', 'max_mem_limit')} {_q(max_mem)} is not a size: use a number "
            "with K, M, G or T, e.g. '8G'"
        )
        max_mem = None
    max_cpu = spawner.get("max_cpu_limit")
    if max_cpu is not None and not max_cpu > 0:
        problems.append(f"{n('spawner', 'max_cpu_limit')} {max_cpu} must be greater than 0")
        max_cpu = None
    profiles = spawner.get("profiles", [])
    where_all = n("spawner", "profiles")
    names: list[str] = []
    defaults = 0
    for i, p in enumerate(profiles):
        if not isinstance(p, Mapping):
            problems.append(f"{where_all}[{i}] must be an object, got {_q(p)}")
            continue
        label = f"{where_all}[{i}]"
        if isinstance(p.get("name"), str):
            label = f"{where_all} {_q(p['name'])}"
        extra = set(p) - _PROFILE_KEYS
        if extra:
            problems.append(
                f"{label}: unknown keys {', '.join(sorted(extra))} (allowed: "
                f"{', '.join(sorted(_PROFILE_KEYS))})"
            )
        name = p.get("name")
        if not isinstance(name, str) or not PROFILE_NAME_RE.match(name):
            problems.append(
                f"{label}: name {_q(name)} must be 1 to 32 lower-case letters, digits, '_' "
                "or '-', e.g. 'audio'"
            )
        else:
            names.append(name)
        mem = p.get("mem_limit")
        if not isinstance(mem, str) or not SIZE_RE.match(mem):
            problems.append(
                f"{label}: mem_limit {_q(mem)} is not a size: use a number with K, M, G or T, "
                "e.g. '4G'"
            )
        elif max_mem and size_bytes(mem) > size_bytes(max_mem):
            problems.append(
                f"{label}: mem_limit {mem} is more than {n('spawner', 'max_mem_limit')} {max_mem}"
            )
        cpu = p.get("cpu_limit")
        if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not cpu > 0:
            problems.append(f"{label}: cpu_limit {_q(cpu)} must be a number greater than 0")
        elif max_cpu and cpu > max_cpu:
            problems.append(
                f"{label}: cpu_limit {cpu} is more than {n('spawner', 'max_cpu_limit')} {max_cpu}"
            )
        default = p.get("default", False)
        if not isinstance(default, bool):
            problems.append(f"{label}: default must be true/false")
        defaults += default is True
        if not isinstance(p.get("description", ""), str):
            problems.append(f"{label}: description must be text")
    duplicates = sorted({x for x in names if names.count(x) > 1})
    if duplicates:
        problems.append(f"{where_all}: names must be unique, {', '.join(duplicates)} repeated")
    if profiles and defaults != 1:
        problems.append(
            f"{where_all}: exactly one profile must have default: true (the form's "
            f"preselection and an API start without a profile), got {defaults}"
        )
    return problems


def apply_swarm(
    c: Any, swarm: Mapping[str, Any], spawner: Mapping[str, Any], hub: Mapping[str, Any]
) -> None:
    """Servers as Swarm services (``swarm.enabled``; README: Scaling out): the project's
    ``TestbedSwarmSpawner`` (DockerSpawner's ``SwarmSpawner``) with the same image,
    choices, limits and audit as on the station; the hub API and the database reached at
    the station's address the workers know (``swarm.station_ip``; the hub binds there
    too), the user's files through each worker's mount of the station's share
    (``swarm.share_dir``), the user's volume made on the station before a start."""
    from testbed_hub import swarm as sw

    station_url = f"http://{swarm['station_ip']}:{hub['port']}"
    c.JupyterHub.hub_connect_url = station_url
    c.TestbedHub.extra_hub_bind_urls = [f"http://{hub['gateway_ip']}:{hub['port']}", station_url]
    c.JupyterHub.spawner_class = "testbed_hub.swarm.TestbedSwarmSpawner"
    c.TestbedSwarmSpawner.network_name = swarm["network"]
    c.TestbedSwarmSpawner.placement = swarm["placement"]
    c.TestbedSwarmSpawner.volumes = sw.share_volumes(spawner, swarm["share_dir"])
    c.TestbedSwarmSpawner.station_volume_template = spawner["user_volume_template"]
    c.TestbedSwarmSpawner.extra_container_spec = sw.service_container_spec(
        spawner, swarm["station_ip"]
    )
    c.TestbedSwarmSpawner.pids_limit = int(spawner["pids_limit"])


def _tname(typ: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true/false", list: "a list"}
    names[dict] = "an object"
    if isinstance(typ, tuple):
        return "a number"
    return names.get(typ, typ.__name__)


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
    hub, proxy, auth, spawner, culler = (s[k] for k in _SECTIONS if k != "swarm")
    swarm = s.get("swarm") or {"enabled": False}

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
    c.JupyterHub.template_paths = [TEMPLATES]
    # How often the hub reads the proxy's activity and each server reports its own
    # (JUPYTERHUB_ACTIVITY_INTERVAL below): what the idle culler's view is made of.
    activity_interval = hub.get("activity_interval", DEFAULT_ACTIVITY_INTERVAL)
    c.JupyterHub.last_activity_interval = activity_interval

    # -- proxy --------------------------------------------------------------
    c.JupyterHub.bind_url = f"http://{proxy['public_ip']}:{proxy['public_port']}{hub['base_url']}"
    c.ConfigurableHTTPProxy.api_url = f"http://{proxy['api_ip']}:{proxy['api_port']}"
    c.ConfigurableHTTPProxy.should_start = proxy["managed"]
    c.ConfigurableHTTPProxy.command = list(proxy["command"])
    c.ConfigurableHTTPProxy.pid_file = os.path.join(hub["data_dir"], "proxy.pid")
    c.ConfigurableHTTPProxy.auth_token = read_secret(proxy["auth_token_file"], "proxy auth token")

    # -- authenticator ------------------------------------------------------
    from testbed_hub.auth import docker_escape, username_for

    fold = auth.get("identity_case", "fold") == "fold"

    def names(key: str) -> set[str]:
        # the same normalisation as the header (testbed_hub.auth.normalize_identity)
        return {username_for(u, fold_case=fold) for u in auth[key]}

    # what the hub's pages show for each listed user: the testbed identifier
    c.HeaderAuthenticator.known_identities = {
        username_for(u, fold_case=fold): normalize_identity(u, fold_case=fold)
        for key in ("allowed_users", "admin_users", "blocked_users")
        for u in auth[key]
    }

    blocked = names("blocked_users")
    admins = names("admin_users") - blocked
    c.JupyterHub.authenticator_class = "testbed_hub.auth.HeaderAuthenticator"
    c.HeaderAuthenticator.identity_case = "fold" if fold else "keep"
    c.HeaderAuthenticator.user_header = auth["user_header"]
    c.HeaderAuthenticator.secret_header = auth["secret_header"]
    c.HeaderAuthenticator.secret_file = auth["secret_file"]
    c.HeaderAuthenticator.external_login_url = auth["login_url"]
    c.HeaderAuthenticator.logout_redirect_url = auth["logout_url"]
    c.Authenticator.allow_all = auth["allow_all"]
    # The inventory is authoritative: who may log in is today's allowed list (plus the
    # admins), not everyone who is in the hub's database from earlier runs.
    c.Authenticator.allow_existing_users = False
    c.Authenticator.allowed_users = names("allowed_users") | admins
    c.Authenticator.blocked_users = blocked
    # Admin rights follow the list both ways: JupyterHub's own authoritative form is
    # the admin role with an explicit user list (Authenticator.admin_users only grants;
    # JupyterHub asks not to combine the two). A blocked admin is no admin.
    admin_role = {"name": "admin", "users": sorted(admins)}

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
    c.DockerSpawner.volumes = container.dockerspawner_volumes(spawner)
    c.DockerSpawner.extra_host_config = container.host_config(spawner, probe, hub["gateway_ip"])
    # What a researcher chooses at start (the spawn form, or user_options through the
    # API): the image among the current one and the previous tags kept on the station
    # (DockerSpawner.allowed_images: its check_allowed refuses any other), a resource
    # profile among the operator's (TestbedDockerSpawner.apply_user_options refuses any
    # other), and up to named_server_limit named servers besides the default one.
    images = spawner.get("images") or [{"image": spawner["image"]}]
    c.TestbedDockerSpawner.current_image = spawner["image"]
    c.DockerSpawner.allowed_images = [i["image"] for i in images] if len(images) > 1 else {}
    c.TestbedDockerSpawner.image_labels = {
        i["image"]: image_label(i, current=i["image"] == spawner["image"]) for i in images
    }
    c.TestbedDockerSpawner.profiles = choices = profiles(spawner)
    default = next(p for p in choices if p["default"])
    c.DockerSpawner.mem_limit = default["mem_limit"]
    c.DockerSpawner.cpu_limit = default["cpu_limit"]
    named = spawner.get("named_server_limit", 0)
    c.JupyterHub.allow_named_servers = named > 0
    c.JupyterHub.named_server_limit_per_user = named
    c.DockerSpawner.start_timeout = spawner["start_timeout"]
    c.DockerSpawner.http_timeout = spawner["http_timeout"]
    if "concurrent_starts" in spawner:  # else the spawner's default: the hub's CPU cores
        c.TestbedDockerSpawner.concurrent_starts = spawner["concurrent_starts"]
    c.DockerSpawner.environment = {
        **container.environment(spawner),
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(activity_interval),
    }
    if swarm["enabled"]:
        apply_swarm(c, swarm, spawner, hub)

    # -- idle culler --------------------------------------------------------
    if culler["enabled"]:
        c.JupyterHub.load_roles = [
            admin_role,
            {"name": "idle-culler", "scopes": list(CULLER_SCOPES), "services": ["idle-culler"]},
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
        c.JupyterHub.load_roles = [admin_role]
        c.JupyterHub.services = []

    # -- sharing ------------------------------------------------------------
    sharing = hub.get("sharing_enabled", False)
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, *sharing_roles(sharing)]
    c.TestbedHub.sharing_enabled = sharing  # off: earlier shares are deleted at start
    # home.html shows the share form only then
    # testbed_hub.app.TestbedHub adds testbed_identity_of and testbed_current_user
    c.JupyterHub.template_vars = {
        "testbed_sharing": sharing,
        "testbed_site_title": hub.get("site_title") or DEFAULT_SITE_TITLE,
    }
    if hub.get("logo_file"):
        c.JupyterHub.logo_file = hub["logo_file"]

    # -- metrics (Prometheus) -----------------------------------------------
    services, roles = metrics_service(hub, read_secret)
    c.JupyterHub.authenticate_prometheus = True
    c.JupyterHub.services = [*c.JupyterHub.services, *services]
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, *roles]

    # -- audit trail --------------------------------------------------------
    # testbed_hub.auditing: logins, logouts, server starts and stops, and the batch
    # records run-notebook posts to /hub/api/testbed/audit ('' = auditing off)
    c.TestbedHub.audit_log = hub.get("audit_log", "")


def sharing_roles(enabled: bool) -> list[dict[str, Any]]:
    """The roles that let researchers share their servers (JupyterHub's shares).

    On: JupyterHub's default ``user`` role, which every user holds, with the scopes of
    :data:`SHARING_SCOPES`. A share grants only ``access:servers`` on that one server,
    never from or to an admin, and no share codes (testbed_hub.sharing); the owner,
    the shared-with user and admins can revoke it. Off: no role here, so the ``user``
    role is JupyterHub's own (``self``): nobody can create shares.
    """
    if not enabled:
        return []
    return [{"name": "user", "scopes": list(SHARING_SCOPES)}]


def metrics_service(
    hub: Mapping[str, Any],
    read_secret: Callable[[str, str], str] = _read_secret,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The service Prometheus scrapes ``<base_url>hub/metrics`` as, and its role.

    ``hub.metrics_token_file`` (written once by the jupyterhub role, copied by the
    prometheus role into Prometheus's credentials file) holds the service's API token;
    the role grants ``read:metrics`` and nothing else. Empty or absent: no service,
    and the metrics endpoint answers 403 (``authenticate_prometheus`` stays on).
    Returns ``(services, load_roles)`` to add to the hub's.
    """
    path = hub.get("metrics_token_file") or ""
    if not path:
        return [], []
    token = read_secret(path, "metrics service token")
    service = {"name": METRICS_SERVICE, "api_token": token}
    role = {
        "name": "metrics-reader",
        "scopes": list(METRICS_SCOPES),
        "services": [METRICS_SERVICE],
    }
    return [service], [role]


#: Packages named in an image's label, in this order (when the image has them).
MAIN_PACKAGES = (
    "python",
    "jupyterlab",
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
    "testbed-notebook",
)


def image_label(entry: Mapping[str, Any], current: bool = False) -> str:
    """How the spawn form names an image: its tag, build date and main package versions,
    e.g. ``3f2a9c1b7e44 · built 2026-11-20 · jupyterlab 4.3.1, numpy 2.1.3 (current)``."""
    ref = str(entry["image"])
    tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else ref
    parts = [tag]
    created = str(entry.get("created") or "")
    if created:
        parts.append(f"built {created[:10]}")
    packages = dict(entry.get("packages") or {})
    versions = [f"{p} {packages[p]}" for p in MAIN_PACKAGES if p in packages]
    if versions:
        parts.append(", ".join(versions))
    return " · ".join(parts) + (" (current)" if current else " (earlier)")


def profiles(spawner: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resource profiles as the spawner takes them, each with a ``label``; the
    default one first. No profiles: one, ``standard``, from mem_limit and cpu_limit."""
    given = spawner.get("profiles") or [
        {
            "name": "standard",
            "mem_limit": spawner["mem_limit"],
            "cpu_limit": spawner["cpu_limit"],
            "default": True,
        }
    ]
    out = []
    for p in given:
        cpu = float(p["cpu_limit"])
        cpus = f"{cpu:g} CPU" + ("" if cpu == 1 else "s")
        label = f"{p['name']} ({p['mem_limit']} memory, {cpus})"
        if p.get("description"):
            label += f": {p['description']}"
        out.append(
            {
                "name": p["name"],
                "mem_limit": p["mem_limit"],
                "cpu_limit": cpu,
                "default": bool(p.get("default")),
                "label": label,
            }
        )
    return out


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


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed_hub.config [SETTINGS]``: validate a settings file, change nothing.

    The jupyterhub role runs it as the ``validate:`` of settings.json (the new file is
    checked before it replaces the old one) and on the control node before anything
    changes. Exit codes: 0 valid; 2 invalid or unreadable (the problems on stderr).
    """
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "/etc/jupyterhub/settings.json"
    try:
        validate(load(path))
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"{path}: settings OK")
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m testbed_hub.config SETTINGS
    sys.exit(main())
