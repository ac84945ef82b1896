"""Role swarm without a swarm: bad variables are refused naming the variable and
what to do (check mode, the engine's own check skipped by tag, nothing touched)."""

from __future__ import annotations

import pytest

from testbed_devtools.roletest import validation_results

OFF = {"docker_daemon_options": {"live-restore": False}}

CASES = {
    "defaults": ({**OFF}, None),
    "labels_and_subnet": (
        {**OFF, "swarm_node_labels": {"site": "lab2"}, "swarm_network_subnet": "10.231.0.0/24"},
        None,
    ),
    "advertise_given": ({**OFF, "swarm_advertise_addr": "192.0.2.10"}, None),
    "live_restore_on": (
        {"docker_daemon_options": {"live-restore": True}},
        "Docker refuses swarm mode while live-restore is on",
    ),
    "live_restore_default": ({}, "live-restore: false for the base station and every worker"),
    "manager_not_in_play": (
        {**OFF, "swarm_manager": "station9"},
        'the manager "station9" is not a host of this play',
    ),
    "advertise_name": (
        {**OFF, "swarm_advertise_addr": "station.lab"},
        "swarm_advertise_addr must be an IP address",
    ),
    "port_range": (
        {**OFF, "swarm_listen_port": 70000},
        "swarm_listen_port must be from 1 to 65535",
    ),
    "port_type": ({**OFF, "swarm_listen_port": "two"}, "swarm_listen_port"),
    "network_name": ({**OFF, "swarm_network": "jupyter hub"}, "must be a Docker network name"),
    "subnet": ({**OFF, "swarm_network_subnet": "10.231.0.0"}, "IPv4 network in CIDR notation"),
    "label_reserved": (
        {**OFF, "swarm_node_labels": {"testbed.node": "gpu"}},
        "testbed.node is the project's own",
    ),
    "label_value": ({**OFF, "swarm_node_labels": {"gpu": 1}}, "with a quoted string value"),
    "labels_type": ({**OFF, "swarm_node_labels": "gpu"}, "swarm_node_labels"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return validation_results(
        "swarm",
        CASES,
        tmp_path_factory.mktemp("swarm-inputs"),
        "--tags",
        "swarm_validate",
        "--skip-tags",
        "swarm_engine",
        play_vars={"swarm_manager": "localhost"},
    )


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_is_refused_naming_the_variable(results, case):
    got = " ".join(results[case].split())
    assert got != "ok"
    assert CASES[case][1] in got, got


@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][1]])
def test_good_input_passes(results, case):
    assert results[case] == "ok"
