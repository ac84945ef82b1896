"""Role notebook_egress without Docker: bad variables are refused naming the variable
(check mode, nothing touched), and the rule set it renders says what it should."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from testbed_devtools.roletest import ansible_playbook, validation_results

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "notebook_egress"
HUB = [{"address": "172.19.0.1", "port": 8081}]
DB = [{"address": "172.19.0.1", "port": 27017}]

CASES = {
    "defaults_with_hub": ({"notebook_egress_hub": HUB}, None),
    "disabled_without_hub": ({"notebook_egress_enabled": False}, None),
    "no_hub": ({}, "notebook_egress_hub is empty"),
    "host_name": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_database": [{"address": "mongo.lab", "port": 27017}],
        },
        "notebook_egress_database item",
    ),
    "host_name_hint": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_database": [{"address": "mongo.lab", "port": 27017}],
        },
        "site.yml derives notebook_egress_database from jupyterhub_mongo.uri",
    ),
    "port_range": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_allow": [{"address": "10.1.2.3", "port": 70000}],
        },
        "notebook_egress_allow item",
    ),
    "bad_cidr": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_allow": [{"address": "10.1.2.0/40", "port": 443}],
        },
        "needs an IPv4/IPv6 address or a network in CIDR notation",
    ),
    "comment_quote": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_allow": [{"address": "10.1.2.3", "port": 443, "comment": 'a "b"'}],
        },
        "without double quotes",
    ),
    "protocol": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_allow": [{"address": "10.1.2.3", "port": 53, "protocol": "icmp"}],
        },
        "protocol",
    ),
    "unknown_key": (
        {"notebook_egress_hub": [{"address": "172.19.0.1", "prot": 8081}]},
        "prot",
    ),
    "bridge": (
        {"notebook_egress_hub": HUB, "notebook_egress_bridge": "br jupyter"},
        "notebook_egress_bridge",
    ),
    "enabled_type": (
        {"notebook_egress_hub": HUB, "notebook_egress_enabled": "maybe"},
        "notebook_egress_enabled",
    ),
    # a swarm node (README: Scaling out)
    "swarm_worker": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_bridge": "docker0",
            "notebook_egress_ingress_from": ["10.20.0.2"],
        },
        None,
    ),
    "extra_bridge_same": (
        {"notebook_egress_hub": HUB, "notebook_egress_extra_bridges": ["br-jupyter"]},
        "other than notebook_egress_bridge",
    ),
    "ingress_host_name": (
        {"notebook_egress_hub": HUB, "notebook_egress_ingress_from": ["station.lan"]},
        "notebook_egress_ingress_from item",
    ),
    "restricted_network": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_restricted": [
                {"address": "10.20.0.0/24", "ports": [8081], "from": ["10.20.0.3"]}
            ],
        },
        "notebook_egress_restricted item",
    ),
    "restricted_nobody": (
        {
            "notebook_egress_hub": HUB,
            "notebook_egress_restricted": [{"address": "10.20.0.2", "ports": [8081], "from": []}],
        },
        'allowed in "from" (at least one)',
    ),
}

RENDER_VARS = {
    "notebook_egress_bridge": "br-jupyter",
    "notebook_egress_hub": HUB,
    "notebook_egress_database": DB,
    "notebook_egress_allow": [
        {"address": "10.1.2.0/24", "port": 443, "comment": "pip mirror"},
        {"address": "fd00::53", "port": 53, "protocol": "udp"},
    ],
    "notebook_egress_rules_file": "/etc/testbed-hub/notebook-egress.nft",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One check-mode run: each case includes the role (validation only: the tasks that
    would change the host are skipped by tag) in a block whose rescue records the error."""
    return validation_results(
        "notebook_egress",
        CASES,
        tmp_path_factory.mktemp("egress-inputs"),
        "--tags",
        "notebook_egress_validate",
    )


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_is_refused_naming_the_variable(results, case):
    got = " ".join(results[case].split())
    assert got != "ok"
    assert CASES[case][1] in got, got


@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][1]])
def test_good_input_passes(results, case):
    assert results[case] == "ok"


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    return render(tmp_path_factory.mktemp("egress-render"), RENDER_VARS)


def render(tmp: Path, variables: dict) -> str:
    """The rule set the role's template renders for ``variables``."""
    out = tmp / "egress.nft"
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "vars" / "main.yml")],
            # the role's defaults under the given variables, as Ansible layers them
            "vars": {
                **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
                **variables,
                "ansible_python_interpreter": sys.executable,
            },
            "tasks": [
                {
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates/etc/testbed-hub/notebook-egress.nft.j2"),
                        "dest": str(out),
                        "mode": "0644",
                    }
                }
            ],
        }
    ]
    res = ansible_playbook(play, tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    return out.read_text()


def chain(text: str, name: str) -> list[str]:
    body = re.search(rf"chain {name} \{{\n(.*?)\n\t\}}", text, re.S)
    assert body, text
    return [line.strip() for line in body.group(1).splitlines() if line.strip()]


def test_rules_replace_only_their_own_table(rules):
    lines = [x for x in rules.splitlines() if x and not x.startswith("#")]
    assert lines[:3] == [
        "table inet testbed_egress",
        "delete table inet testbed_egress",
        "table inet testbed_egress {",
    ]
    assert "flush ruleset" not in rules
    assert re.findall(r"^(?:delete )?table (\S+ \S+)", rules, re.M) == ["inet testbed_egress"] * 3


@pytest.mark.parametrize("hook", ["input", "forward"])
def test_each_chain_allows_the_endpoints_and_refuses_the_rest(rules, hook):
    assert chain(rules, hook) == [
        f"type filter hook {hook} priority -10; policy accept;",
        'iifname != "br-jupyter" accept',
        "ct state established,related accept",
        'ip daddr 172.19.0.1 tcp dport 8081 accept comment "hub"',
        'ip daddr 172.19.0.1 tcp dport 27017 accept comment "database"',
        'ip daddr 10.1.2.0/24 tcp dport 443 accept comment "allow: pip mirror"',
        'ip6 daddr fd00::53 udp dport 53 accept comment "allow"',
        "meta l4proto tcp counter name refused reject with tcp reset",
        "counter name refused reject with icmpx type admin-prohibited",
    ]


SWARM_STATION = {
    **RENDER_VARS,
    "notebook_egress_extra_bridges": ["docker0"],
    "notebook_egress_ingress_from": ["10.20.0.2"],
    "notebook_egress_restricted": [
        {"address": "10.20.0.2", "ports": [8081, 27017], "from": ["10.20.0.3", "10.20.0.4"]}
    ],
}


@pytest.fixture(scope="module")
def swarm_rules(tmp_path_factory):
    return render(tmp_path_factory.mktemp("egress-swarm"), SWARM_STATION)


def test_a_swarm_node_locks_every_bridge_and_its_published_ports(swarm_rules):
    both = '{ "br-jupyter", "docker0" }'
    forward = chain(swarm_rules, "forward")
    assert forward[1:4] == [
        f"oifname {both} iifname != {both} meta nfproto ipv4 ct state new "
        'ip saddr != { 10.20.0.2 } counter name refused reject comment "ingress_from"',
        f"oifname {both} iifname != {both} meta nfproto ipv6 ct state new "
        'counter name refused reject comment "ingress_from"',
        f"iifname != {both} accept",
    ]
    assert forward[-2:] == [
        "meta l4proto tcp counter name refused reject with tcp reset",
        "counter name refused reject with icmpx type admin-prohibited",
    ]


def test_the_stations_hub_port_is_restricted_to_the_workers(swarm_rules):
    both = '{ "br-jupyter", "docker0" }'
    assert chain(swarm_rules, "input")[1:3] == [
        'ip daddr 10.20.0.2 tcp dport { 8081, 27017 } iifname != { "lo", "br-jupyter", '
        '"docker0" } ip saddr != { 10.20.0.3, 10.20.0.4 } counter name refused reject with '
        'tcp reset comment "restricted"',
        f"iifname != {both} accept",
    ]
