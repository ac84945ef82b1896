"""testbed_devtools.molecule_run: a scenario's tests run playbooks as the operator does,
against the instance Molecule's inventory names, from the repository."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from testbed_devtools import molecule_run

PLAY = """\
- hosts: station
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "greeting={{ greeting }} from {{ playbook_dir }}"
"""


@pytest.fixture()
def molecule_env(tmp_path, monkeypatch):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    station:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: auto_silent\n"
    )
    monkeypatch.setenv("MOLECULE_INVENTORY_FILE", str(inventory))
    monkeypatch.setenv("MOLECULE_PROJECT_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("ANSIBLE_FORCE_COLOR", "1")  # what the helper switches off
    # the control node's virtualenv holds ansible-playbook
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    return playbook


def test_run_playbook_targets_the_inventory_with_extra_args(molecule_env):
    res = molecule_run.run_playbook(molecule_env, "-e", "greeting=hello", timeout=120)
    out = molecule_run.flat(res)
    assert res.returncode == 0, out
    assert f"greeting=hello from {molecule_env.parent}" in out
    assert "station : ok=1 changed=0" in out
    assert "\x1b[" not in res.stdout  # no colour codes to match around


def test_start_playbook_returns_at_once_and_merges_stderr(molecule_env):
    proc = molecule_run.start_playbook(molecule_env, "-e", "greeting=later")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "greeting=later" in out


def test_flat_joins_both_streams_on_one_line():
    import subprocess

    res = subprocess.CompletedProcess([], 0, stdout="a\n  b\n", stderr=None)
    assert molecule_run.flat(res) == "a b"


def test_outside_molecule_the_missing_variable_is_named(monkeypatch):
    monkeypatch.delenv("MOLECULE_INVENTORY_FILE", raising=False)
    with pytest.raises(KeyError, match="MOLECULE_INVENTORY_FILE"):
        molecule_run.command("site.yml")
