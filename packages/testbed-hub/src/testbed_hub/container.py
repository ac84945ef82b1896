"""The shape of a notebook container: mounts, environment, host name of the station.

One source for every container of the notebook image that runs on the base
station: the hub's DockerSpawner (:func:`testbed_hub.config.apply`),
``playbooks/run-notebooks.yml`` (papermill batches) and ``make bench``. The
playbook and the bench ask the station's hub virtualenv::

    /opt/jupyterhub/bin/python -m testbed_hub.container_cli --user alice
    {"image": "testbed-hub/notebook:3f2a...", "network": "jupyter",
     "working_dir": "/home/jovyan/nist", "env": {...},
     "mounts": [{"type": "volume", "source": "jupyterhub-user-alice",
                 "target": "/home/jovyan/nist", "read_only": false}, ...],
     "etc_hosts": {"host.docker.internal": "172.19.0.1"},
     "pids_limit": 512, "security_opt": ["no-new-privileges"],
     "cap_drop": ["ALL"], "cap_add": []}

Input: the ``spawner`` section of ``/etc/jupyterhub/settings.json`` (written by
the jupyterhub role).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Where ``image_notice_file`` is mounted: /etc/profile reads it in every login shell.
IMAGE_NOTICE_TARGET = "/etc/profile.d/zz-testbed-image.sh"
#: Docker engine version from which ``host-gateway`` works in ``extra_hosts``.
HOST_GATEWAY_MIN_DOCKER = (20, 10)


@dataclass(frozen=True)
class Mount:
    """One mount of a notebook container (Docker's ``--mount`` fields)."""

    type: str  # "volume" or "bind"
    source: str  # volume name or absolute host path
    target: str  # absolute path in the container
    read_only: bool = False


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


def notebook_dir(spawner: Mapping[str, Any]) -> str:
    """The notebook folder in the container, without a trailing slash."""
    return str(spawner["notebook_dir"]).rstrip("/")


def mounts(spawner: Mapping[str, Any], username: str) -> list[Mount]:
    """The user's volume on the notebook folder, the shared volume on ``share/``
    and the recordings read-only on ``media/``; with ``image_notice_file``, that file
    (from the station, so images built before it have it too) as a login-shell script:
    JupyterLab's terminal then says when the server runs an earlier image.

    The user's volume name has ``{username}`` only, never ``{servername}``: all of a
    user's servers (the default one and the named ones) mount the same files."""
    nb = notebook_dir(spawner)
    out = [
        Mount("volume", spawner["user_volume_template"].replace("{username}", username), nb),
        Mount("volume", spawner["shared_volume"], f"{nb}/share"),
        Mount("bind", spawner["media_dir"], f"{nb}/media", read_only=True),
    ]
    if spawner.get("image_notice_file"):
        out.append(Mount("bind", spawner["image_notice_file"], IMAGE_NOTICE_TARGET, read_only=True))
    return out


def dockerspawner_volumes(spawner: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`mounts` as ``DockerSpawner.volumes`` (``{username}`` left for the spawner)."""
    out: dict[str, Any] = {}
    for m in mounts(spawner, "{username}"):
        out[m.source] = {"bind": m.target, "mode": "ro"} if m.read_only else m.target
    return out


def environment(spawner: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment: the role's ``TESTBED_*`` values plus the media
    and share folders (docs/ARCHITECTURE.md, "Notebook container environment")."""
    nb = notebook_dir(spawner)
    env = {str(k): str(v) for k, v in dict(spawner["environment"]).items()}
    env.setdefault("TESTBED_MEDIA_DIR", f"{nb}/media")
    env.setdefault("TESTBED_SHARE_DIR", f"{nb}/share")
    return env


def resolve_host_gateway(
    spawner: Mapping[str, Any], probe: Probe, gateway_ip: str | None = None
) -> str:
    """What ``host_gateway_name`` maps to in the containers' /etc/hosts.

    ``gateway`` (the default): ``gateway_ip``, the jupyter network's gateway address,
    which the hub already listens on; the one address a firewall keyed on the
    jupyter bridge describes, and where the station's MongoDB must listen.
    ``host-gateway``: Docker >= 20.10 resolves it, to the *default* bridge's gateway
    (docker0), not the jupyter network's. ``netifaces``: the IPv4 address of the
    jupyter network's bridge interface read on the host (older Docker). ``auto``:
    ``host-gateway`` or ``netifaces`` by the engine version.
    """
    mode = spawner["host_gateway_mode"]
    if mode == "gateway":
        if not gateway_ip:
            raise LookupError(
                "host_gateway_mode 'gateway' needs the jupyter network's gateway address "
                "(hub.gateway_ip in settings.json); run the jupyterhub role"
            )
        return gateway_ip
    if mode == "auto":
        version = probe.docker_version()
        mode = "host-gateway" if version[:2] >= HOST_GATEWAY_MIN_DOCKER else "netifaces"
    if mode == "host-gateway":
        return "host-gateway"
    return probe.interface_ipv4(spawner["bridge_interface"])


def extra_hosts(
    spawner: Mapping[str, Any], probe: Probe, gateway_ip: str | None = None
) -> dict[str, str]:
    """``{host_gateway_name: address}`` for the containers' /etc/hosts."""
    return {spawner["host_gateway_name"]: resolve_host_gateway(spawner, probe, gateway_ip)}


def confinement(spawner: Mapping[str, Any]) -> dict[str, Any]:
    """What one user's container may do to the station: a process (task) limit, no
    privilege gain through setuid binaries, and only the listed capabilities (the
    server runs as uid 1000 under tini and needs none). Docker's ``HostConfig``
    field names (``docker run --pids-limit --security-opt --cap-drop --cap-add``)."""
    return {
        "pids_limit": int(spawner["pids_limit"]),
        "security_opt": ["no-new-privileges"] if spawner["no_new_privileges"] else [],
        "cap_drop": ["ALL"],
        "cap_add": [str(c) for c in spawner["capabilities"]],
    }


def host_config(
    spawner: Mapping[str, Any], probe: Probe, gateway_ip: str | None = None
) -> dict[str, Any]:
    """``DockerSpawner.extra_host_config``: the host mapping and :func:`confinement`.

    ``auto_remove`` is off although ``DockerSpawner.remove`` is on: DockerSpawner
    removes the container itself when the server stops (and a leftover one before the
    next start), while Docker's own AutoRemove (``docker run --rm``) makes an engine
    with live-restore remove *running* containers when the daemon restarts (moby
    issue 46308, fixed in Docker 24.0.8 and 25.0; Debian 12's docker.io 20.10 has it).
    Without it a user's server survives ``systemctl restart docker``.
    """
    return {
        "auto_remove": False,
        "extra_hosts": extra_hosts(spawner, probe, gateway_ip),
        **confinement(spawner),
    }


def spec(settings: Mapping[str, Any], username: str, probe: Probe | None = None) -> dict:
    """Everything ``docker run`` needs to start the user's notebook container, as JSON
    types: ``image``, ``network``, ``working_dir``, ``env``, ``mounts`` (list of
    :class:`Mount` as dicts), ``etc_hosts`` and the :func:`confinement` fields
    (``pids_limit``, ``security_opt``, ``cap_drop``, ``cap_add``)."""
    spawner = settings["spawner"]
    return {
        "image": spawner["image"],
        "network": spawner["network"],
        "working_dir": notebook_dir(spawner),
        "env": environment(spawner),
        "mounts": [asdict(m) for m in mounts(spawner, username)],
        "etc_hosts": extra_hosts(spawner, probe or Probe(), settings["hub"]["gateway_ip"]),
        **confinement(spawner),
    }
