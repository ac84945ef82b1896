"""What a user server on Docker Swarm needs beyond DockerSpawner's ``SwarmSpawner``.

Issue 19, docs/ARCHITECTURE.md ("Scale-out on Docker Swarm"). The hub uses it
when its settings have ``swarm.enabled`` (:func:`testbed_hub.config.apply`).
:class:`TestbedSwarmSpawner` is the project's spawner (its choices, progress, audit
and port wait) on ``SwarmSpawner``; its decisions are functions over the Docker API's
own documents (``docker inspect`` of a task, a node), so they are tested without a
swarm. Measured facts they follow:

* Kernels without IPVS (this project's CI machine) have no routing mesh and no
  service VIPs: a user service resolves by DNS round robin (``endpoint_mode``
  ``dnsrr``) and publishes its port in ``host`` mode on the node that runs it. The hub
  then reaches the server at that node's address and the port the task reports
  (:func:`task_address`), not at the manager's, which is what ``SwarmSpawner``'s
  ``get_ip_and_port`` assumes.
* A dead worker is marked ``down`` by the manager (16 s after its engine stopped,
  measured); its task keeps the last state it reported (``running``) while its
  desired state turns ``shutdown``. ``SwarmSpawner.poll`` reads the reported state
  only: :func:`task_verdict` also reads the desired state and the node's.
* Swarm's default restart policy (``any``) would start the server again elsewhere, at
  an address the hub's proxy does not know: :func:`service_overrides` sets ``none``,
  and the user's next start is a new service.
* A user's files stay on the station: a server on a worker binds each volume's folder
  through the worker's mount of the station's share (role ``station_share``;
  :func:`share_mounts`), where Docker makes no volume and copies nothing from the
  image. The spawner makes the user's volume on the station first, as DockerSpawner
  does there (:meth:`TestbedSwarmSpawner.make_station_volume`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from docker.errors import APIError
from dockerspawner import SwarmSpawner
from traitlets import Integer, Unicode, default

from testbed_hub import startqueue
from testbed_hub.container import Mount, mounts
from testbed_hub.spawner import TestbedDockerSpawner

#: Task states on the way to ``running`` (Docker's ``TaskState``).
STARTING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
#: Where user servers may run (``jupyterhub_swarm_placement``).
PLACEMENTS = {"workers": ["node.role == worker"], "any": []}


#: Where each worker mounts the station's share (``station_share_mount_dir``).
SHARE_DIR = "/srv/station"

#: The notebook image's ``ENTRYPOINT`` (roles/notebook_image's Dockerfile; a unit test
#: keeps the two equal). A service's ``command`` replaces it, so
#: :func:`service_container_spec` repeats it after ``setpriv``.
IMAGE_ENTRYPOINT = ("tini", "-g", "--")
#: util-linux's ``setpriv`` (essential in Debian, so in the image): sets the process's
#: no_new_privs bit, then runs the entrypoint. Swarm services cannot ask the engine for
#: ``no-new-privileges`` before Docker's API 1.46; Debian 12's engine speaks 1.41.
NO_NEW_PRIVS = ("setpriv", "--no-new-privs")


class SwarmError(RuntimeError):
    """A task or node document without what the hub needs (named in the message)."""


@dataclass(frozen=True)
class Verdict:
    """What the hub should think of a user's task.

    ``running``: ``True`` (serving), ``None`` (on its way) or ``False`` (gone, for
    ``reason``, which names the task's node so the user and the operator see it).
    """

    running: bool | None
    reason: str = ""


def _node_name(node: Mapping[str, Any] | None) -> str:
    if not node:
        return "an unknown node"
    host = node.get("Description", {}).get("Hostname")
    return f"node {host}" if host else f"node {str(node.get('ID', '?'))[:12]}"


def task_verdict(task: Mapping[str, Any] | None, node: Mapping[str, Any] | None) -> Verdict:
    """Whether a user's server task is running, starting or gone.

    ``task``: the task document (``GET /tasks/<id>``), ``None`` when the service has
    none; ``node``: the document of the node it was placed on (``GET /nodes/<id>``),
    ``None`` when that node is gone from the swarm. Gone when the task reports a
    state past ``running``, when the manager wants it shut down (a node marked down,
    a removed service) or when its node is not ``ready``.
    """
    if task is None:
        return Verdict(False, "the server's service has no task")
    status = task.get("Status") or {}
    state = str(status.get("State", "")).lower()
    desired = str(task.get("DesiredState", "")).lower()
    where = _node_name(node)
    if desired and desired != "running":
        return Verdict(False, f"the swarm stopped the server on {where} (desired {desired})")
    if node is None or str(node.get("Status", {}).get("State", "")).lower() != "ready":
        node_state = (node or {}).get("Status", {}).get("State", "gone")
        return Verdict(False, f"{where} is {node_state}: the server there is lost")
    if state == "running":
        return Verdict(True)
    if state in STARTING:
        return Verdict(None)
    message = status.get("Err") or status.get("Message") or state or "no state"
    return Verdict(False, f"the server on {where} ended: {message}")


def task_address(
    task: Mapping[str, Any], node: Mapping[str, Any], target_port: int
) -> tuple[str, int]:
    """The address the hub reaches a server at: the node's address and the port the
    task published in ``host`` mode for ``target_port``. Raises :class:`SwarmError`
    naming what is missing (no such published port, a node without an address)."""
    addr = node.get("Status", {}).get("Addr")
    if not addr or addr == "0.0.0.0":  # noqa: S104 - a value Docker reports, not a bind
        raise SwarmError(
            f"{_node_name(node)} reports no address (Status.Addr {addr!r}): join it with "
            "--advertise-addr set to its address on the station's network"
        )
    ports = task.get("Status", {}).get("PortStatus", {}).get("Ports") or []
    for port in ports:
        if port.get("TargetPort") == target_port and port.get("PublishMode") == "host":
            return str(addr), int(port["PublishedPort"])
    published = [(p.get("TargetPort"), p.get("PublishMode")) for p in ports]
    raise SwarmError(
        f"the task on {_node_name(node)} publishes no port {target_port} in host mode "
        f"(it publishes {published}); the service needs EndpointSpec ports "
        "{'TargetPort': port, 'PublishMode': 'host'}"
    )


def service_overrides(target_port: int, placement: str) -> dict[str, dict[str, Any]]:
    """Keyword arguments for ``SwarmSpawner``'s ``extra_task_spec``,
    ``extra_endpoint_spec`` and ``extra_placement_spec``: no restart by swarm, DNS
    round robin, the server's port published in host mode (a free port the node
    picks), placement by ``placement`` (one of :data:`PLACEMENTS`).

    Raises ``ValueError`` naming the choices for another ``placement``.
    """
    if placement not in PLACEMENTS:
        raise ValueError(
            f"jupyterhub_swarm_placement must be one of {sorted(PLACEMENTS)}, got {placement!r}"
        )
    return {
        "extra_task_spec": {"restart_policy": {"Condition": "none"}},
        "extra_endpoint_spec": {
            "mode": "dnsrr",
            "ports": [{"Protocol": "tcp", "TargetPort": target_port, "PublishMode": "host"}],
        },
        "extra_placement_spec": {"constraints": list(PLACEMENTS[placement])},
    }


def service_container_spec(spawner: Mapping[str, Any], station_ip: str) -> dict[str, Any]:
    """``SwarmSpawner.extra_container_spec`` (docker-py's ``ContainerSpec`` keywords): the
    confinement a server on the station gets from ``extra_host_config``
    (:func:`testbed_hub.container.confinement`), as a service can carry it on Docker's
    API 1.41 (Debian 12's engine), and the database's host name mapped to the station.

    * ``cap_drop`` ``["ALL"]`` and ``cap_add`` the operator's capabilities
      (``ContainerSpec.CapabilityDrop``/``CapabilityAdd``, API 1.41);
    * ``no-new-privileges``: the service's ``command`` (Docker's entrypoint) is the
      image's own :data:`IMAGE_ENTRYPOINT` after :data:`NO_NEW_PRIVS`, which works on
      every engine (the API field ``Privileges.NoNewPrivileges`` needs 1.46); without
      ``no_new_privileges`` the entrypoint is left to the image;
    * ``hosts``: ``host_gateway_name`` (``host.docker.internal``, the host of
      ``TESTBED_MONGO_URI``) is ``station_ip``, where the station's database listens for
      the workers.

    The process limit is a ``Resources`` field docker-py does not take
    (:meth:`TestbedSwarmSpawner.docker` adds it). Raises ``ValueError`` when
    ``station_ip`` is not an IP address.
    """
    try:
        ipaddress.ip_address(station_ip)
    except ValueError as exc:
        raise ValueError(
            f"jupyterhub_swarm_station_address {station_ip!r} is not an IP address: give the "
            "station's address on the network its workers reach it by (the swarm's "
            "advertise address)"
        ) from exc
    out: dict[str, Any] = {
        "hosts": {spawner["host_gateway_name"]: station_ip},
        "cap_drop": ["ALL"],
        "cap_add": [str(c) for c in spawner["capabilities"]],
    }
    if spawner["no_new_privileges"]:
        out["command"] = [*NO_NEW_PRIVS, *IMAGE_ENTRYPOINT]
    return out


def cluster_slots(nodes: list[Mapping[str, Any]], placement: str) -> int:
    """Servers that may start at once on the swarm: the CPU cores of the nodes servers
    may be placed on (``placement``: ``workers`` or ``any``), counting nodes that are
    ``ready`` and ``active`` (``GET /nodes``: ``Description.Resources.NanoCPUs``). At
    least 1. Raises ``ValueError`` for another ``placement``."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {sorted(PLACEMENTS)}, got {placement!r}")
    cores = 0
    for node in nodes:
        if str(node.get("Status", {}).get("State", "")).lower() != "ready":
            continue
        if str(node.get("Spec", {}).get("Availability", "")).lower() != "active":
            continue
        if placement == "workers" and node.get("Spec", {}).get("Role") != "worker":
            continue
        nano = node.get("Description", {}).get("Resources", {}).get("NanoCPUs") or 0
        cores += int(nano) // 1_000_000_000
    return max(1, cores)


def share_mounts(
    spawner: Mapping[str, Any], username: str, share_dir: str = SHARE_DIR
) -> list[Mount]:
    """:func:`testbed_hub.container.mounts` as a server on a worker makes them: each
    volume becomes a bind of its folder on the station, ``<share_dir>/volumes/<name>/_data``
    (the worker's sshfs mount of the station's Docker volumes folder: role
    ``station_share``), the recordings a read-only bind of ``<share_dir>/media``. The
    image notice file (a file of the station's) is left out.

    ``spawner``: the ``spawner`` section of the hub's settings. Raises ``ValueError``
    when ``share_dir`` is not an absolute path or a volume name would leave it.
    """
    if not share_dir.startswith("/") or share_dir.rstrip("/") == "":
        raise ValueError(f"the share folder must be an absolute path below /, got {share_dir!r}")
    base = share_dir.rstrip("/")
    out = []
    for m in mounts(spawner, username):
        if m.type == "volume":
            if "/" in m.source or m.source in {"", ".", ".."}:
                raise ValueError(f"volume name {m.source!r} is not a Docker volume name")
            out.append(Mount("bind", f"{base}/volumes/{m.source}/_data", m.target, m.read_only))
        elif m.source == spawner["media_dir"]:
            out.append(Mount("bind", f"{base}/media", m.target, read_only=True))
    return out


def share_volumes(spawner: Mapping[str, Any], share_dir: str = SHARE_DIR) -> dict[str, Any]:
    """:func:`share_mounts` as ``DockerSpawner.volumes`` (``{username}`` left for the
    spawner, as :func:`testbed_hub.container.dockerspawner_volumes`)."""
    out: dict[str, Any] = {}
    for m in share_mounts(spawner, "{username}", share_dir):
        out[m.source] = {"bind": m.target, "mode": "ro"} if m.read_only else m.target
    return out


class TestbedSwarmSpawner(TestbedDockerSpawner, SwarmSpawner):
    """:class:`~testbed_hub.spawner.TestbedDockerSpawner` with each server a Swarm
    service (DockerSpawner's ``SwarmSpawner``): no restart by swarm, DNS round robin,
    the port published in host mode, placed by :attr:`placement`; the hub reaches it at
    its node's address (:func:`task_address`) and finds it gone when its node is
    (:func:`task_verdict`), which the user's next spawn page says.

    The bind mounts come from ``volumes`` as in DockerSpawner, with absolute paths on
    every node (the station's folders as each worker mounts them: :func:`share_volumes`);
    the user's volume is made on the station first (:meth:`make_station_volume`).
    """

    __test__ = False  # not a pytest test class despite the name

    placement = Unicode(
        "workers",
        config=True,
        help="Where servers run: 'workers' (node.role == worker) or 'any' (the station too).",
    )

    station_volume_template = Unicode(
        "",
        config=True,
        help="The user's volume on the station ('jupyterhub-user-{username}'), made before "
        "each start when missing, as DockerSpawner makes it there. Empty: none made.",
    )

    pids_limit = Integer(
        0,
        config=True,
        help="Processes and threads of one server (the service's Resources.Limits.Pids, "
        "Docker's API 1.41); 0: no limit.",
    )

    @default("concurrent_starts")
    def _default_concurrent_starts(self) -> int:
        # the cores of the nodes servers may run on (their imports run there), read
        # once per spawner from the manager; the hub's own cores if it cannot answer
        try:
            return cluster_slots(self.client.nodes(), self.placement)
        except (APIError, OSError, ValueError) as exc:
            self.log.warning("Counting the swarm's cores failed (%s): the hub's are used", exc)
            return startqueue.default_slots()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        overrides = service_overrides(self.port, self.placement)
        # the operator's own extra_*_spec keys win over these
        self.extra_task_spec = {**overrides["extra_task_spec"], **self.extra_task_spec}
        self.extra_endpoint_spec = {
            **overrides["extra_endpoint_spec"],
            **self.extra_endpoint_spec,
        }
        self.extra_placement_spec = {
            **overrides["extra_placement_spec"],
            **self.extra_placement_spec,
        }
        self._lost = ""

    async def docker(self, method: str, *args, **kwargs):
        """DockerSpawner's call into docker-py, with :attr:`pids_limit` added to a new
        service's ``Resources.Limits`` (docker-py's ``Resources`` has no such keyword)."""
        if method == "create_service" and self.pids_limit:
            template = kwargs["task_template"]
            resources = template.setdefault("Resources", {})
            resources.setdefault("Limits", {})["Pids"] = int(self.pids_limit)
        return await super().docker(method, *args, **kwargs)

    async def make_station_volume(self, name: str, image: str) -> bool:
        """Make the volume ``name`` on the station (the manager's engine) unless it is
        there, the way DockerSpawner makes it on the station: a container of ``image``
        with the new, empty volume on the notebook folder, so Docker copies the image's
        files there with their owner (the notebook user), then removed. A server on a
        worker binds the volume's folder through the share (:func:`share_mounts`), where
        Docker makes nothing.

        Returns ``True`` when it made the volume. Raises :class:`SwarmError` naming the
        volume when the container fails, docker's ``APIError`` when the engine refuses.
        """
        try:
            await self.docker("inspect_volume", name)
            return False
        except APIError as exc:
            if exc.response is None or exc.response.status_code != 404:
                raise
        host_config = await self.docker(
            "create_host_config", binds={name: {"bind": self.notebook_dir, "mode": "rw"}}
        )
        made = await self.docker(
            "create_container",
            image=image,
            entrypoint=["/bin/true"],
            command=[],
            host_config=host_config,
            network_disabled=True,
            labels={"testbed.volume-init": name},
        )
        try:
            await self.docker("start", made["Id"])
            result = await self.docker("wait", made["Id"])
        finally:
            await self.docker("remove_container", made["Id"], force=True)
        if (result or {}).get("StatusCode") != 0:
            raise SwarmError(
                f"making the volume {name} on the station failed: {image} exited with "
                f"{(result or {}).get('StatusCode')!r}"
            )
        self.log.info("Made volume %s for %s on the station from %s", name, self.user.name, image)
        return True

    async def _before_container(self, image: str) -> None:
        # inside the start slot: the throwaway container runs on the station's CPU
        if self.station_volume_template:
            name = self.format_volume_name(self.station_volume_template, self)
            await self.make_station_volume(name, image)

    async def _node(self, node_id: str) -> dict[str, Any] | None:
        try:
            return await self.docker("inspect_node", node_id)
        except APIError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise

    async def poll(self):
        service = await self.get_object()
        if not service:
            return 0
        task = await self.get_task()
        node = await self._node(task["NodeID"]) if task and task.get("NodeID") else None
        verdict = task_verdict(task, node)
        if verdict.running is False:
            self.log.warning("Server of %s is gone: %s", self.user.name, verdict.reason)
            self._lost = verdict.reason
            return verdict.reason
        if not self.started_image:
            spec = service.get("Spec", {}).get("TaskTemplate", {}).get("ContainerSpec", {})
            self.started_image = spec.get("Image", "").split("@", 1)[0]
        return None

    # JupyterHub drops a stopped server's Spawner and makes a new one for the next
    # start (User.stop), keeping only the state it saves after clear_state(): the
    # reason the server was lost travels there until that start tells the user.
    def get_state(self):
        state = super().get_state()
        if self._lost:
            state["testbed_lost"] = self._lost
        return state

    def load_state(self, state):
        super().load_state(state)
        self._lost = state.get("testbed_lost", "") or getattr(self, "_lost", "")

    def _first_steps(self) -> list[dict[str, Any]]:
        lost, self._lost = self._lost, ""
        if not lost:
            return []
        return [
            {"progress": 5, "message": f"Your last server stopped: {lost}. Starting a new one."}
        ]

    async def get_ip_and_port(self):
        task = await self.get_task()
        if task is None:
            raise SwarmError(f"service {self.service_name} has no task to reach")
        node = await self._node(task.get("NodeID", ""))
        if node is None:
            raise SwarmError(f"the node of service {self.service_name} is gone from the swarm")
        return task_address(task, node, self.port)
