"""Playbooks run from a Molecule scenario's tests against its instance.

The verifier (testinfra) runs with Molecule's environment: ``MOLECULE_INVENTORY_FILE``
(the instance), ``MOLECULE_PROJECT_DIRECTORY`` (this repository) and the
``ANSIBLE_CONFIG`` Molecule wrote. A test re-runs a playbook (site.yml, an operator
playbook, a scenario's converge.yml with other variables) as the operator would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def command(playbook: Path | str, *extra: str) -> list[str]:
    """``ansible-playbook -i <the instance's inventory> <playbook> <extra...>``.

    Raises ``KeyError`` naming ``MOLECULE_INVENTORY_FILE`` outside a Molecule verifier.
    """
    return ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook), *extra]


def environment() -> dict[str, str]:
    """The verifier's environment without colour codes in the output."""
    return {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def project_dir() -> Path:
    """The repository (``MOLECULE_PROJECT_DIRECTORY``); playbooks run from there."""
    return Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])


def run_playbook(
    playbook: Path | str, *extra: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run a playbook to its end (``timeout`` in seconds); stdout and stderr captured."""
    return subprocess.run(
        command(playbook, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=project_dir(),
        env=environment(),
    )


def start_playbook(playbook: Path | str, *extra: str) -> subprocess.Popen[str]:
    """Start a playbook and return at once (stdout with stderr on ``.stdout``)."""
    return subprocess.Popen(
        command(playbook, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=project_dir(),
        env=environment(),
    )


def flat(res: subprocess.CompletedProcess[str]) -> str:
    """stdout + stderr on one line: callbacks wrap long messages where they like."""
    return " ".join(((res.stdout or "") + (res.stderr or "")).split())
