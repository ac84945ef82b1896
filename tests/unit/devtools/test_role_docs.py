"""role_docs: README tables generated from the argument specs; --check finds drift.

A scratch role in tmp_path is generated, then broken one way at a time; the real
repository must pass the same check that `make lint` runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed_devtools import role_docs
from testbed_devtools.role_docs import BEGIN, END, main, render_default, render_table

REPO = Path(__file__).resolve().parents[3]

SPEC = """\
---
argument_specs:
  main:
    short_description: A scratch role
    options:
      demo_port:
        type: int
        default: 8080
        description: Port it listens on.
      demo_mode:
        type: str
        choices: [fast, safe]
        default: safe
        description:
          - How it runs.
          - C(fast) skips the checks.
      demo_image:
        type: str
        required: true
        description: Image reference; no default.
      demo_limits:
        type: dict
        default:
          mem: 2G
          cpus: 1.0
        description: Limits.
        options:
          mem:
            type: str
            required: true
            description: Memory, a size such as 2G.
          cpus:
            type: float
            default: 1.0
            description: CPU cores.
      demo_users:
        type: list
        elements: dict
        default: []
        description: Users | their passwords.
        options:
          name:
            type: str
            required: true
            description: Name.
          password:
            type: str
            no_log: true
            description: Password.
"""

DEFAULTS = """\
---
# --- Service ---
demo_port: 8080
demo_mode: safe
demo_limits:
  mem: 2G
  cpus: 1.0
demo_users: []
"""

README = f"""\
# Role `demo`

Prose before.

## Variables

{BEGIN}
| old | hand | table |
{END}

Prose after.
"""


@pytest.fixture
def roles(tmp_path):
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "tasks").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(SPEC)
    (role / "defaults" / "main.yml").write_text(DEFAULTS)
    (role / "tasks" / "main.yml").write_text("---\n[]\n")
    (role / "README.md").write_text(README)
    assert main([str(tmp_path / "roles")]) == 0  # make docs
    return tmp_path / "roles"


def check(roles, capsys):
    rc = main(["--check", str(roles)])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_generated_table_keeps_the_prose_and_passes(roles, capsys):
    readme = (roles / "demo" / "README.md").read_text()
    assert readme.startswith("# Role `demo`\n\nProse before.")
    assert readme.endswith("Prose after.\n")
    assert "| old | hand | table |" not in readme
    assert "| `demo_port` | int | `8080` | Port it listens on. |" in readme
    assert (
        "| `demo_mode` | str (`fast`, `safe`) | `safe` | How it runs. `fast` skips the checks. |"
        in readme
    )
    assert "| `demo_image` | str, **required** | – | Image reference; no default. |" in readme
    assert "| `demo_limits.mem` | str, **required** | `2G` | Memory, a size such as 2G. |" in readme
    assert "| `demo_users[].password` | str, secret | – | Password. |" in readme
    assert "Users \\| their passwords." in readme  # a pipe cannot end the cell
    rc, out = check(roles, capsys)
    assert rc == 0, out
    # a second run changes nothing
    assert main([str(roles)]) == 0
    assert (roles / "demo" / "README.md").read_text() == readme


def test_wrong_default_names_role_and_variable(roles, capsys):
    edit(roles / "demo" / "defaults" / "main.yml", "demo_port: 8080", "demo_port: 8081")
    rc, out = check(roles, capsys)
    assert rc == 1
    assert f"{roles / 'demo'}: 1 problem(s)" in out
    assert (
        "demo_port: default differs: meta/argument_specs.yml has 8080, defaults/main.yml has 8081"
        in out
    )


def test_type_of_default_counts(roles, capsys):
    edit(roles / "demo" / "defaults" / "main.yml", "demo_port: 8080", 'demo_port: "8080"')
    rc, out = check(roles, capsys)
    assert rc == 1
    assert (
        'demo_port: default differs: meta/argument_specs.yml has 8080, defaults/main.yml has "8080"'
        in out
    )


def test_extra_readme_row_is_caught(roles, capsys):
    edit(
        roles / "demo" / "README.md", END, "| `demo_ghost` | str | `x` | Not in the spec. |\n" + END
    )
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "demo" in out and "README.md: row `demo_ghost` is not in meta/argument_specs.yml" in out


def test_stale_and_missing_rows_are_caught(roles, capsys):
    readme = roles / "demo" / "README.md"
    edit(readme, "| Port it listens on. |", "| Port. |")
    text = readme.read_text()
    readme.write_text("\n".join(ln for ln in text.splitlines() if "`demo_mode`" not in ln) + "\n")
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "README.md: row `demo_port` differs from meta/argument_specs.yml" in out
    assert "README.md: no row for `demo_mode`" in out


def test_variable_missing_from_the_spec_is_caught(roles, capsys):
    (roles / "demo" / "defaults" / "main.yml").write_text(DEFAULTS + "demo_extra: 1\n")
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "demo_extra: in defaults/main.yml but not in meta/argument_specs.yml" in out


def test_variable_missing_from_defaults_is_caught(roles, capsys):
    edit(roles / "demo" / "defaults" / "main.yml", "demo_mode: safe\n", "")
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "demo_mode: in meta/argument_specs.yml but not in defaults/main.yml" in out


def test_required_variable_with_a_default_is_caught(roles, capsys):
    (roles / "demo" / "defaults" / "main.yml").write_text(DEFAULTS + "demo_image: x:1\n")
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "demo_image: required in meta/argument_specs.yml but set in defaults/main.yml" in out


def test_nested_default_disagreement_is_caught(roles, capsys):
    edit(roles / "demo" / "defaults" / "main.yml", "cpus: 1.0", "cpus: 2.0")
    edit(
        roles / "demo" / "meta" / "argument_specs.yml", "          cpus: 1.0", "          cpus: 2.0"
    )
    rc, out = check(roles, capsys)
    assert rc == 1
    assert (
        "demo_limits.cpus: default differs: the option says 1.0, the default of demo_limits has 2.0"
        in out
    )


def test_readme_without_markers_is_caught(roles, capsys):
    (roles / "demo" / "README.md").write_text("# Role `demo`\n\n| name | type |\n")
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "README.md has no generated variables table" in out
    assert main([str(roles)]) == 1  # make docs does not guess where the table goes


def test_missing_spec_is_caught(roles, capsys):
    (roles / "demo" / "meta" / "argument_specs.yml").unlink()
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "has no meta/argument_specs.yml" in out


def test_unprefixed_and_undocumented_variables_are_caught(roles, capsys):
    spec = yaml.safe_load((roles / "demo" / "meta" / "argument_specs.yml").read_text())
    spec["argument_specs"]["main"]["options"]["port"] = {"type": "int", "required": True}
    (roles / "demo" / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec))
    rc, out = check(roles, capsys)
    assert rc == 1
    assert "port: a public variable of role demo starts with demo_" in out
    assert "port: no description in meta/argument_specs.yml" in out


def test_new_role_gets_a_readme(roles):
    new = roles / "fresh"
    shutil.copytree(roles / "demo", new, ignore=shutil.ignore_patterns("README.md"))
    assert main([str(new)]) == 0
    text = (new / "README.md").read_text()
    assert text.startswith("# Role `fresh`\n\nA scratch role.\n\n## Variables\n\n" + BEGIN)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", '`""`'),
        ("/jupyter/", "`/jupyter/`"),
        ("jupyterhub-user-{username}", "`jupyterhub-user-{username}`"),
        (True, "`true`"),
        (1.0, "`1.0`"),
        ([], "`[]`"),
        (["nginx", "libnginx-mod-http-set-misc"], "`[nginx, libnginx-mod-http-set-misc]`"),
        ({"max-file": "3"}, '`{max-file: "3"}`'),
        (
            ["X-Authorized-User", "X-Testbed-Hub-Secret", "Remote-User", "X-Forwarded-User", "X-A"],
            "`[X-Authorized-User, X-Testbed-Hub-Secret, Remote-User, …]` (5 items)",
        ),
        (
            {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}},
            '`{"@jupyterlab/apputils-extension:notification": {…}}`',
        ),
        ("a|b", "`a\\|b`"),
        ("x" * 100, "`" + "x" * 59 + "…`"),
    ],
)
def test_defaults_render_compactly(value, shown):
    assert render_default(value) == shown


def test_table_lists_nested_options_after_their_parent():
    spec = yaml.safe_load(SPEC)["argument_specs"]["main"]["options"]
    rows = [ln.split("|")[1].strip() for ln in render_table(spec).splitlines()[3:-1]]
    assert rows == [
        "`demo_port`",
        "`demo_mode`",
        "`demo_image`",
        "`demo_limits`",
        "`demo_limits.mem`",
        "`demo_limits.cpus`",
        "`demo_users`",
        "`demo_users[].name`",
        "`demo_users[].password`",
    ]


def test_the_repository_roles_agree():
    """What `make lint` runs: every role's README table, defaults and spec agree."""
    proc = subprocess.run(
        [sys.executable, "-m", "testbed_devtools.role_docs", "--check", "roles"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    roles = [p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir()]
    assert len(roles) >= 6
    assert f"agree in {len(roles)} roles" in proc.stdout


def test_scratch_copy_of_the_repository_roles_with_a_wrong_default_fails(tmp_path):
    copy = tmp_path / "roles"
    shutil.copytree(REPO / "roles", copy)
    defaults = copy / "jupyterhub" / "defaults" / "main.yml"
    edit(defaults, "jupyterhub_hub_port: 8081", "jupyterhub_hub_port: 8088")
    proc = subprocess.run(
        [sys.executable, "-m", "testbed_devtools.role_docs", "--check", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == f"{copy / 'jupyterhub'}: 1 problem(s)"
    assert lines[1] == (
        "  - jupyterhub_hub_port: default differs: meta/argument_specs.yml has 8081, "
        "defaults/main.yml has 8088"
    )
    assert "1 of" in proc.stderr and "roles disagree" in proc.stderr


def test_module_is_importable_as_a_script():
    assert role_docs.main.__module__ == "testbed_devtools.role_docs"
