"""Fixtures of the hub on the swarm, shared by test_hub_on_swarm.py and
test_worker_loss.py (session scope: the servers are started once)."""

from __future__ import annotations

import pytest
from test_hub_on_swarm import CONFIG, USERS, placed, start
from test_swarm import STATION, on


@pytest.fixture(scope="session")
def token() -> str:
    """An API token of the demo's admin (alice), made with the hub's own command."""
    out = on(STATION, "/opt/jupyterhub/bin/jupyterhub", "token", "--config", CONFIG, USERS[0])
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def servers(token) -> dict[str, tuple[dict, str]]:
    """Both users' servers started through the hub: user -> (the hub's server model,
    the worker it landed on)."""
    return {user: (start(token, user), placed(user)[0]) for user in USERS}
