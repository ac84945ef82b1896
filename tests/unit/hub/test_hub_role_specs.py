"""Role jupyterhub: defaults, argument specs and README table declare the same variables."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "jupyterhub"


def specs():
    data = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    return data["argument_specs"]["main"]["options"]


def test_defaults_and_specs_declare_the_same_variables():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    opts = specs()
    required = {k for k, v in opts.items() if v.get("required")}
    assert required == {"jupyterhub_notebook_image", "jupyterhub_allow_all"}
    assert set(defaults) == set(opts) - required
    for key, value in defaults.items():
        assert opts[key]["default"] == value, key
        assert opts[key]["description"], key


def test_readme_table_lists_every_variable():
    readme = (ROLE / "README.md").read_text()
    in_table = set(re.findall(r"^\| `(jupyterhub_[a-z_]+)` \|", readme, re.M))
    assert in_table == set(specs())


def test_all_variables_are_prefixed():
    assert all(k.startswith("jupyterhub_") for k in specs())
