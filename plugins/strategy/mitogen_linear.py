"""Mitogen's ``mitogen_linear`` strategy, from the installed ``mitogen`` package.

Mitogen for Ansible (https://mitogen.networkgenomics.com, requirements.txt) runs
each task in a Python interpreter it keeps open on the target instead of sending
and starting a module per task: the same tasks, the same results, a fraction of
the round trips. ansible.cfg points ``strategy_plugins`` here so the project does
not depend on where the virtualenv's site-packages are; this module only hands
Ansible the package's own strategy class. Turn it off for one run with
``ANSIBLE_STRATEGY=linear`` (README, Troubleshooting).

It accelerates the connection types Mitogen knows by their short names: ``ssh``,
``local`` and ``docker`` (the demo and Molecule inventories say ``docker``, which
Ansible routes to community.docker.docker when Mitogen is off).
"""

from __future__ import annotations

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
