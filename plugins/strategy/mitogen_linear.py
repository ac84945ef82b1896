"""Mitogen's ``mitogen_linear`` strategy, from the installed ``mitogen`` package.

Mitogen for Ansible (https://mitogen.networkgenomics.com, requirements.txt) runs
each task in a Python interpreter it keeps open on the target instead of sending
and starting a module per task: the same tasks, the same results, a fraction of
the round trips. ansible.cfg points ``strategy_plugins`` here so the project does
not depend on where the virtualenv's site-packages are; this module hands Ansible
the package's own strategy class. Turn it off for one run with
``ANSIBLE_STRATEGY=linear`` (README, Troubleshooting).

Mitogen accelerates the connection types it knows by their short names: ``ssh``
and ``docker`` here (the demo and Molecule inventories say ``docker``, which Ansible
routes to community.docker.docker when Mitogen is off). Not ``local``: an ``async``
task of community.docker's modules never finishes under Mitogen's local connection
(mitogen-hq/mitogen#835, open), and Molecule's Docker driver creates and destroys
its instances that way. The control node's own plays are a handful of tasks;
``TESTBED_MITOGEN_LOCAL=1`` accelerates them too (the role-input unit tests, one
local "host" and dozens of validation runs, use it).
"""

from __future__ import annotations

import os

import ansible_mitogen.strategy
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

if os.environ.get("TESTBED_MITOGEN_LOCAL") != "1":
    ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS = tuple(
        name for name in ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS if name != "local"
    )

__all__ = ["StrategyModule"]
