"""What a user server on Docker Swarm needs beyond DockerSpawner's ``SwarmSpawner``.

Issue 19, docs/ARCHITECTURE.md ("Planned: scale-out on Docker Swarm"). Not wired
into the hub's configuration yet. :class:`TestbedSwarmSpawner` is the project's
spawner (its choices, progress, audit and port wait) on ``SwarmSpawner``; its
decisions are functions over the Docker API's own documents (``docker inspect`` of a
task, a node), so they are tested without a swarm. Measured facts they follow:

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from docker.errors import APIError
from dockerspawner import SwarmSpawner
from traitlets import Unicode

from testbed_hub.spawner import TestbedDockerSpawner

#: Task states on the way to ``running`` (Docker's ``TaskState``).
STARTING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
#: Where user servers may run (``jupyterhub_swarm_placement``).
PLACEMENTS = {"workers": ["node.role == worker"], "any": []}


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


class TestbedSwarmSpawner(TestbedDockerSpawner, SwarmSpawner):
    """:class:`~testbed_hub.spawner.TestbedDockerSpawner` with each server a Swarm
    service (DockerSpawner's ``SwarmSpawner``): no restart by swarm, DNS round robin,
    the port published in host mode, placed by :attr:`placement`; the hub reaches it at
    its node's address (:func:`task_address`) and finds it gone when its node is
    (:func:`task_verdict`), which the user's next spawn page says.

    The bind mounts come from ``volumes`` as in DockerSpawner, with absolute paths on
    every node (the station's folders as each worker mounts them).
    """

    __test__ = False  # not a pytest test class despite the name

    placement = Unicode(
        "workers",
        config=True,
        help="Where servers run: 'workers' (node.role == worker) or 'any' (the station too).",
    )

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
