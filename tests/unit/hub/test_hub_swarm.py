"""testbed_hub.swarm: the decisions the Swarm spawner delegates (issue 19), over task
and node documents shaped as Docker's API returns them (the ones below follow what
the spike of docs/ARCHITECTURE.md saw: Docker 20.10, host-mode ports, a stopped
worker)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker.errors import APIError
from docker.types import ContainerSpec, EndpointSpec, Placement, Resources, TaskTemplate
from dockerspawner import SwarmSpawner
from traitlets.config import Config

from testbed_hub import swarm
from testbed_hub.container import Mount


def node(state="ready", addr="172.18.0.3", host="w1"):
    return {
        "ID": "jx8yz77q0qsdwluf9ofe45jdv",
        "Description": {"Hostname": host},
        "Status": {"State": state, "Addr": addr},
    }


def task(state="running", desired="running", ports=None, err=None):
    status = {"State": state, "Message": state}
    if err:
        status["Err"] = err
    if ports is not None:
        status["PortStatus"] = {"Ports": ports}
    return {
        "ID": "t1",
        "NodeID": "jx8yz77q0qsdwluf9ofe45jdv",
        "DesiredState": desired,
        "Status": status,
    }


HOST_PORT = {"Protocol": "tcp", "TargetPort": 8888, "PublishedPort": 30001, "PublishMode": "host"}


@pytest.mark.parametrize(
    ("the_task", "the_node", "running", "reason"),
    [
        (task(), node(), True, ""),
        (task("preparing"), node(), None, ""),
        (task("assigned"), node(), None, ""),
        # the spike: worker stopped, node down 16 s later, last reported state kept
        (
            task("running", "shutdown"),
            node("down"),
            False,
            "the swarm stopped the server on node w1 (desired shutdown)",
        ),
        (task("running"), node("down"), False, "node w1 is down: the server there is lost"),
        (task("running"), None, False, "an unknown node is gone: the server there is lost"),
        (
            task("failed", err="task: non-zero exit (1)"),
            node(),
            False,
            "the server on node w1 ended: task: non-zero exit (1)",
        ),
        (task("complete"), node(), False, "the server on node w1 ended: complete"),
        (None, node(), False, "the server's service has no task"),
    ],
)
def test_verdict(the_task, the_node, running, reason):
    verdict = swarm.task_verdict(the_task, the_node)
    assert verdict.running is running
    assert verdict.reason == reason


def test_address_is_the_nodes_and_the_host_mode_port():
    ports = [
        {"Protocol": "tcp", "TargetPort": 22, "PublishedPort": 2222, "PublishMode": "host"},
        HOST_PORT,
    ]
    assert swarm.task_address(task(ports=ports), node(), 8888) == ("172.18.0.3", 30001)


def test_an_ingress_port_is_not_an_address():
    """Published through the routing mesh (no IPVS here): not reachable, so refused."""
    ingress = {**HOST_PORT, "PublishMode": "ingress"}
    with pytest.raises(
        swarm.SwarmError,
        match=r"publishes no port 8888 in host mode \(it publishes \[\(8888, 'ingress'\)\]\)",
    ):
        swarm.task_address(task(ports=[ingress]), node(), 8888)


@pytest.mark.parametrize("addr", [None, "", "0.0.0.0"])
def test_a_node_without_an_address_is_named(addr):
    with pytest.raises(swarm.SwarmError, match=r"node w1 reports no address .*--advertise-addr"):
        swarm.task_address(task(ports=[HOST_PORT]), node(addr=addr), 8888)


@pytest.mark.parametrize(
    ("placement", "constraints"), [("workers", ["node.role == worker"]), ("any", [])]
)
def test_overrides_build_the_service_docker_py_sends(placement, constraints):
    """What SwarmSpawner.create_object does with its extra_* specs, done here with
    docker-py's own types: the API document has no restart, DNS round robin, the
    port in host mode with no fixed published port, and the placement."""
    o = swarm.service_overrides(8888, placement)
    endpoint = EndpointSpec(**{"ports": {None: (8888, "tcp")}, **o["extra_endpoint_spec"]})
    spec = TaskTemplate(
        container_spec=ContainerSpec(image="testbed-hub/notebook:abc"),
        placement=Placement(**{"constraints": None, **o["extra_placement_spec"]}),
        **o["extra_task_spec"],
    )
    assert endpoint == {
        "Mode": "dnsrr",
        "Ports": [{"Protocol": "tcp", "TargetPort": 8888, "PublishMode": "host"}],
    }
    assert spec["RestartPolicy"] == {"Condition": "none"}
    assert spec["Placement"].get("Constraints", []) == constraints
    # a second call gets its own lists: one spawner cannot change another's
    o["extra_placement_spec"]["constraints"].append("node.labels.x == y")
    assert (
        swarm.service_overrides(8888, placement)["extra_placement_spec"]["constraints"]
        == constraints
    )


def test_an_unknown_placement_names_the_choices():
    with pytest.raises(
        ValueError,
        match=r"jupyterhub_swarm_placement must be one of \['any', 'workers'\], got 'manager'",
    ):
        swarm.service_overrides(8888, "manager")


# -- the spawner on a fake swarm --------------------------------------------------------


IMAGE = "testbed-hub/notebook:0123456789ab"


class FakeSwarm:
    """What the manager's API answers for one user's service, its task and its node."""

    def __init__(self, the_task, the_node):
        self.service = {
            "ID": "svc1",
            "Spec": {"TaskTemplate": {"ContainerSpec": {"Image": IMAGE + "@sha256:abc"}}},
        }
        self.task, self.node = the_task, the_node
        self.calls: list[str] = []

    async def __call__(self, method, *args, **kwargs):
        self.calls.append(method)
        if method == "inspect_service":
            return self.service
        if method == "tasks":
            return [self.task] if self.task else []
        if method == "inspect_node":
            if self.node is None:
                raise APIError("gone", response=SimpleNamespace(status_code=404))
            return self.node
        raise AssertionError(f"unexpected docker call {method}")


def swarm_spawner(fake, **config):
    c = Config()
    c.DockerSpawner.image = IMAGE
    for key, value in config.items():
        setattr(c.TestbedSwarmSpawner, key, value)
    s = swarm.TestbedSwarmSpawner(config=c, user=SimpleNamespace(name="alice", id=1, url="/u/"))
    s.docker = fake
    return s


@pytest.mark.asyncio
async def test_spawner_reaches_the_server_on_its_node_and_reads_its_image():
    fake = FakeSwarm(task(ports=[HOST_PORT]), node())
    s = swarm_spawner(fake, port=8888)
    assert await s.poll() is None
    assert s.started_image == IMAGE  # the digest Docker appends is not the tag
    assert await s.get_ip_and_port() == ("172.18.0.3", 30001)


@pytest.mark.asyncio
async def test_a_server_on_a_dead_worker_is_gone_and_the_next_start_says_so():
    fake = FakeSwarm(task("running", "shutdown", ports=[HOST_PORT]), node("down"))
    s = swarm_spawner(fake)
    status = await s.poll()
    assert status == "the swarm stopped the server on node w1 (desired shutdown)"
    assert s._first_steps() == [
        {
            "progress": 5,
            "message": "Your last server stopped: the swarm stopped the server on node w1 "
            "(desired shutdown). Starting a new one.",
        }
    ]
    assert s._first_steps() == []  # said once


@pytest.mark.asyncio
async def test_the_reason_outlives_the_spawner_jupyterhub_drops_after_the_loss():
    """JupyterHub's User.stop after a failed poll: clear_state, the state saved, the
    Spawner dropped; the next start's Spawner is new and loads that state."""
    gone = swarm_spawner(FakeSwarm(task("running", "shutdown", ports=[HOST_PORT]), node("down")))
    gone.object_id = "svc1"
    reason = await gone.poll()
    gone.clear_state()
    saved = gone.get_state()
    assert saved["testbed_lost"] == reason  # beside what DockerSpawner keeps (the object)
    fresh = swarm_spawner(FakeSwarm(None, None))
    fresh.load_state(saved)
    assert [e["message"] for e in fresh._first_steps()] == [
        f"Your last server stopped: {reason}. Starting a new one."
    ]
    # said once: the state saved after that start no longer carries it
    assert "testbed_lost" not in fresh.get_state()
    again = swarm_spawner(FakeSwarm(None, None))
    again.load_state(fresh.get_state())
    assert again._first_steps() == []


@pytest.mark.asyncio
async def test_a_node_gone_from_the_swarm_is_named_for_the_address():
    s = swarm_spawner(FakeSwarm(task(ports=[HOST_PORT]), None))
    assert await s.poll() == "an unknown node is gone: the server there is lost"
    with pytest.raises(swarm.SwarmError, match="the node of service .* is gone from the swarm"):
        await s.get_ip_and_port()


def test_operator_extras_win_over_the_defaults_and_placement_is_configurable():
    s = swarm_spawner(
        FakeSwarm(None, None),
        placement="any",
        extra_placement_spec={"preferences": [("spread", "node.labels.site")]},
        extra_task_spec={"restart_policy": {"Condition": "on-failure"}},
    )
    assert s.extra_placement_spec == {
        "constraints": [],
        "preferences": [("spread", "node.labels.site")],
    }
    assert s.extra_task_spec == {"restart_policy": {"Condition": "on-failure"}}
    assert s.extra_endpoint_spec["mode"] == "dnsrr"
    with pytest.raises(ValueError, match="jupyterhub_swarm_placement must be one of"):
        swarm_spawner(FakeSwarm(None, None), placement="manager")


# -- the user's files on a worker: the station's share ----------------------------------


SPAWNER = {
    "notebook_dir": "/home/jovyan/nist/",
    "user_volume_template": "jupyterhub-user-{username}",
    "shared_volume": "jupyterhub-shared",
    "media_dir": "/srv/lmr/wavs",
    "image_notice_file": "/etc/jupyterhub/image-notice.sh",
}


def test_share_mounts_bind_each_volume_folder_of_the_station():
    nb = "/home/jovyan/nist"
    assert swarm.share_mounts(SPAWNER, "alice") == [
        Mount("bind", "/srv/station/volumes/jupyterhub-user-alice/_data", nb),
        Mount("bind", "/srv/station/volumes/jupyterhub-shared/_data", f"{nb}/share"),
        Mount("bind", "/srv/station/media", f"{nb}/media", read_only=True),
    ]
    # the station's own file is not on the workers: no notice mount
    assert all("image-notice" not in m.source for m in swarm.share_mounts(SPAWNER, "alice"))
    assert swarm.share_volumes(SPAWNER, "/mnt/st/") == {
        "/mnt/st/volumes/jupyterhub-user-{username}/_data": nb,
        "/mnt/st/volumes/jupyterhub-shared/_data": f"{nb}/share",
        "/mnt/st/media": {"bind": f"{nb}/media", "mode": "ro"},
    }


@pytest.mark.parametrize(
    ("share_dir", "spawner", "message"),
    [
        ("srv/station", SPAWNER, "must be an absolute path"),
        ("/", SPAWNER, "must be an absolute path below /"),
        ("/srv/station", {**SPAWNER, "shared_volume": "../etc"}, "not a Docker volume name"),
    ],
)
def test_share_mounts_refuse_paths_that_leave_the_share(share_dir, spawner, message):
    with pytest.raises(ValueError, match=message):
        swarm.share_mounts(spawner, "alice", share_dir)


class FakeStation(FakeSwarm):
    """The manager's engine for the user's volume: absent (404) or present, and a
    throwaway container that exits with ``exit_code``."""

    def __init__(self, has_volume=False, exit_code=0):
        super().__init__(None, None)
        self.has_volume, self.exit_code = has_volume, exit_code
        self.created: dict = {}

    async def __call__(self, method, *args, **kwargs):
        self.calls.append(method)
        if method == "inspect_volume":
            if not self.has_volume:
                raise APIError("no such volume", response=SimpleNamespace(status_code=404))
            return {"Name": args[0]}
        if method == "create_host_config":
            return {"Binds": kwargs["binds"]}
        if method == "create_container":
            self.created = kwargs
            return {"Id": "c0ffee"}
        if method == "wait":
            return {"StatusCode": self.exit_code}
        if method in {"start", "remove_container"}:
            assert args == ("c0ffee",)
            return None
        raise AssertionError(f"unexpected docker call {method}")


@pytest.mark.asyncio
async def test_a_missing_volume_is_made_from_the_image_on_the_station():
    fake = FakeStation()
    s = swarm_spawner(fake)
    s.notebook_dir = "/home/jovyan/nist"
    assert await s.make_station_volume("jupyterhub-user-alice", IMAGE) is True
    assert fake.calls == [
        "inspect_volume",
        "create_host_config",
        "create_container",
        "start",
        "wait",
        "remove_container",
    ]
    assert fake.created["image"] == IMAGE
    assert fake.created["host_config"] == {
        "Binds": {"jupyterhub-user-alice": {"bind": "/home/jovyan/nist", "mode": "rw"}}
    }
    assert fake.created["entrypoint"] == ["/bin/true"]
    assert fake.created["network_disabled"] is True


@pytest.mark.asyncio
async def test_an_existing_volume_is_left_alone():
    fake = FakeStation(has_volume=True)
    assert await swarm_spawner(fake).make_station_volume("jupyterhub-user-alice", IMAGE) is False
    assert fake.calls == ["inspect_volume"]


@pytest.mark.asyncio
async def test_a_failed_volume_container_is_removed_and_named():
    fake = FakeStation(exit_code=125)
    with pytest.raises(swarm.SwarmError, match="jupyterhub-user-alice on the station failed"):
        await swarm_spawner(fake).make_station_volume("jupyterhub-user-alice", IMAGE)
    assert fake.calls[-1] == "remove_container"


@pytest.mark.asyncio
async def test_start_makes_the_users_volume_first(monkeypatch, quick_start):
    fake = FakeStation()
    s = swarm_spawner(fake, station_volume_template="jupyterhub-user-{username}")
    s.notebook_dir = "/home/jovyan/nist"
    seen = []

    async def rest_of_start(self):
        # what follows is SwarmSpawner's (the service): stand in for it
        seen.append(list(fake.calls))
        return ("172.18.0.3", 30001)

    monkeypatch.setattr(SwarmSpawner, "start", rest_of_start)
    assert await s.start() == ("172.18.0.3", 30001)
    assert seen == [fake.calls]
    assert fake.calls[-1] == "remove_container"
    assert "jupyterhub-user-alice" in fake.created["host_config"]["Binds"]


# -- confinement and the start line on a swarm ------------------------------------------


def test_services_carry_the_stations_confinement_and_database_host():
    spawner = {"host_gateway_name": "host.docker.internal", "capabilities": ["CHOWN"]}
    spec = swarm.service_container_spec({**spawner, "no_new_privileges": True}, "10.0.0.2")
    assert spec == {
        "hosts": {"host.docker.internal": "10.0.0.2"},
        "cap_drop": ["ALL"],
        "cap_add": ["CHOWN"],
        "command": ["setpriv", "--no-new-privs", "tini", "-g", "--"],
    }
    # docker-py turns it into the API's ContainerSpec (what create_service sends)
    made = ContainerSpec(image=IMAGE, **spec)
    assert made["Hosts"] == ["10.0.0.2 host.docker.internal"]
    assert made["CapabilityDrop"] == ["ALL"] and made["CapabilityAdd"] == ["CHOWN"]
    assert made["Command"] == ["setpriv", "--no-new-privs", "tini", "-g", "--"]
    # without no_new_privileges the image's own entrypoint stands
    plain = swarm.service_container_spec({**spawner, "no_new_privileges": False}, "10.0.0.2")
    assert "command" not in plain
    with pytest.raises(ValueError, match="jupyterhub_swarm_station_address 'station' is not"):
        swarm.service_container_spec({**spawner, "no_new_privileges": True}, "station")


def test_the_entrypoint_after_setpriv_is_the_images_own():
    dockerfile = (
        Path(__file__).parents[3]
        / "roles/notebook_image/templates/var/lib/testbed-hub/notebook-image/Dockerfile.j2"
    ).read_text()
    (line,) = [x for x in dockerfile.splitlines() if x.startswith("ENTRYPOINT ")]
    assert tuple(json.loads(line.removeprefix("ENTRYPOINT "))) == swarm.IMAGE_ENTRYPOINT


def a_node(role, cpus, state="ready", availability="active"):
    return {
        "Spec": {"Role": role, "Availability": availability},
        "Status": {"State": state},
        "Description": {"Resources": {"NanoCPUs": cpus * 1_000_000_000}},
    }


def test_cluster_slots_count_the_cores_servers_may_use():
    nodes = [
        a_node("manager", 2),
        a_node("worker", 4),
        a_node("worker", 8, state="down"),
        a_node("worker", 16, availability="drain"),
        a_node("worker", 2),
    ]
    assert swarm.cluster_slots(nodes, "workers") == 6
    assert swarm.cluster_slots(nodes, "any") == 8
    assert swarm.cluster_slots([a_node("manager", 2)], "workers") == 1  # never 0: no limit
    with pytest.raises(ValueError, match="placement must be one of"):
        swarm.cluster_slots(nodes, "edge")


def test_the_start_line_defaults_to_the_swarms_cores(monkeypatch):
    s = swarm_spawner(FakeSwarm(None, None))
    monkeypatch.setattr(
        type(s),
        "client",
        property(lambda self: SimpleNamespace(nodes=lambda: [a_node("worker", 3)])),
    )
    assert s.concurrent_starts == 3
    failing = swarm_spawner(FakeSwarm(None, None))

    def refuse():
        raise APIError("not a manager")

    monkeypatch.setattr(type(s), "client", property(lambda self: SimpleNamespace(nodes=refuse)))
    monkeypatch.setattr(swarm.startqueue, "default_slots", lambda: 5)
    assert failing.concurrent_starts == 5
    assert swarm_spawner(FakeSwarm(None, None), concurrent_starts=0).concurrent_starts == 0


@pytest.mark.asyncio
async def test_a_new_service_gets_the_process_limit(monkeypatch):
    sent = {}

    async def docker(self, method, *args, **kwargs):
        sent[method] = kwargs
        return {"ID": "svc1"}

    monkeypatch.setattr(swarm.SwarmSpawner, "docker", docker)
    s = swarm.TestbedSwarmSpawner(
        config=Config(), user=SimpleNamespace(name="alice", id=1, url="/u/")
    )
    s.pids_limit = 512
    template = TaskTemplate(ContainerSpec(image=IMAGE), resources=Resources(mem_limit=2**31))
    await s.docker("create_service", task_template=template, name="jupyter-alice")
    assert sent["create_service"]["task_template"]["Resources"] == {
        "Limits": {"MemoryBytes": 2**31, "Pids": 512}
    }
    await s.docker("inspect_service", "svc1")  # other calls pass unchanged
    assert sent["inspect_service"] == {}
    s.pids_limit = 0
    bare = TaskTemplate(ContainerSpec(image=IMAGE))
    await s.docker("create_service", task_template=bare, name="jupyter-bob")
    assert "Resources" not in sent["create_service"]["task_template"]
