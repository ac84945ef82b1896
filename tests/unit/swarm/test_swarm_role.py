"""Role swarm without a swarm: bad variables are refused naming the variable and
what to do (check mode, the engine's own live-restore check skipped by tag: the
Molecule scenario swarm runs it; nothing touched)."""

from __future__ import annotations

import pytest

from testbed_devtools.roletest import assert_refused, validation_report

ADDR = {"swarm_advertise_addr": "192.0.2.10"}
SPEC_TASK = (
    "Validating arguments against arg spec 'main' - "
    "Form a Docker Swarm of the base station and its workers"
)

CASES = {
    "defaults": ({**ADDR}, None),
    "labels_and_subnet": (
        {**ADDR, "swarm_node_labels": {"site": "lab2"}, "swarm_network_subnet": "10.231.0.0/24"},
        None,
    ),
    "manager_not_in_play": (
        {**ADDR, "swarm_manager": "station9"},
        'the manager "station9" is not a host of this play',
    ),
    "advertise_name": (
        {"swarm_advertise_addr": "station.lab"},
        "swarm_advertise_addr must be an IPv4 address of localhost",
    ),
    "advertise_octet": ({"swarm_advertise_addr": "999.1.1.1"}, "must be an IPv4 address"),
    "advertise_ipv6": ({"swarm_advertise_addr": "fd00::10"}, "must be an IPv4 address"),
    "port_range": (
        {**ADDR, "swarm_listen_port": 70000},
        "swarm_listen_port must be from 1 to 65535",
    ),
    "port_type": ({**ADDR, "swarm_listen_port": "two"}, "swarm_listen_port"),
    "network_name": ({**ADDR, "swarm_network": "jupyter hub"}, "must be a Docker network name"),
    "subnet": ({**ADDR, "swarm_network_subnet": "10.231.0.0"}, "IPv4 network in CIDR notation"),
    "label_reserved": (
        {**ADDR, "swarm_node_labels": {"testbed.node": "gpu"}},
        "testbed.node is the project's own",
    ),
    "label_value": ({**ADDR, "swarm_node_labels": {"gpu": 1}}, "with a quoted string value"),
    "labels_type": ({**ADDR, "swarm_node_labels": "gpu"}, "swarm_node_labels"),
}
# Refused by the argument specs (their task), not by a later assert.
BY_SPEC = {"port_type", "labels_type"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    outcomes, tasks, _ = validation_report(
        "swarm",
        CASES,
        tmp_path_factory.mktemp("swarm-inputs"),
        "--tags",
        "swarm_validate",
        "--skip-tags",
        "swarm_engine",
        play_vars={"swarm_manager": "localhost"},
    )
    return outcomes, tasks


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_is_refused_naming_the_variable(results, case):
    outcomes, tasks = results
    assert_refused(
        outcomes[case], tasks[case], CASES[case][1], spec_task=SPEC_TASK, by_spec=case in BY_SPEC
    )


@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][1]])
def test_good_input_passes(results, case):
    assert results[0][case] == "ok"
