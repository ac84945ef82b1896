"""One list of NIST's pins: testbed_sim.nist.PINNED (what the module was written
against), the role's testbed_sim_nist_requirements (the station) and
tests/nist/requirements.txt (make unit-nist's virtualenv)."""

from __future__ import annotations

from pathlib import Path

import yaml

from testbed_sim import nist

ROOT = Path(__file__).resolve().parents[3]


def test_role_and_test_venv_pin_what_the_module_was_written_against():
    defaults = yaml.safe_load((ROOT / "roles/testbed_sim/defaults/main.yml").read_text())
    role = dict(r.split("==") for r in defaults["testbed_sim_nist_requirements"] if "==" in r)
    lines = (ROOT / "tests/nist/requirements.txt").read_text().splitlines()
    venv = dict(r.split("==") for r in lines if "==" in r and not r.startswith("#"))
    for name, version in nist.PINNED.items():
        assert role[name] == version, name
        assert venv[name] == version, name
    assert role["numpy"] == venv["numpy"] and role["numpy"].startswith("1.")
    assert int(role["setuptools"].split(".")[0]) < 80


def test_the_recordings_pins_are_nists_and_the_role_formats_match():
    """Without NIST's tests the station still gets the same QoEsim (the recordings'),
    and the role's seed stamp names the format testbed_sim.audio writes."""
    from testbed_sim import audio

    defaults = yaml.safe_load((ROOT / "roles/testbed_sim/defaults/main.yml").read_text())
    nist_pins = dict(r.split("==") for r in defaults["testbed_sim_nist_requirements"])
    recording = dict(r.split("==") for r in defaults["testbed_sim_recording_requirements"])
    assert set(recording) == {"setuptools", "mcvqoe-base", "mcvqoe-mouth2ear"}
    for name, version in recording.items():
        assert nist_pins[name] == version, name
        assert f"{name}=={version}" in audio._INSTALL_HINT or name == "setuptools"
    role_vars = yaml.safe_load((ROOT / "roles/testbed_sim/vars/main.yml").read_text())
    assert role_vars["__testbed_sim_recordings_format"] == audio.FORMAT
