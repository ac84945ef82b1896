"""scripts/build_wheel.py: each distribution's wheel is reproducible, so an
unchanged package gives the same image tag (content hash); and each wheel
carries only its own place's code (nothing foreign)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BUILDER = ROOT / "scripts" / "build_wheel.py"


def build(project: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BUILDER), str(project), str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


#: What each distribution may contain: top-level packages and console scripts.
#: The hub's virtualenv, the notebook image and the simulator's virtualenv each
#: get one wheel; developer tooling (testbed-devtools) is never built into one.
PLACES = {
    "testbed-hub": ({"testbed_hub"}, {"testbed-jupyterhub"}),
    "testbed-notebook": ({"testbed"}, {"run-notebook"}),
    "testbed-sim": ({"testbed_sim"}, {"testbed-sim-auth", "testbed-sim-mongo", "testbed-sim-seed"}),
}
#: Data files a wheel installs under the environment's prefix (its .data/data/ folder).
DATA = {
    "testbed-hub": set(),
    "testbed-notebook": {"share/jupyter/labextensions/@testbed/job-parameters"},
    "testbed-sim": set(),
}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """A frozen copy of the notebook distribution (others may edit it while the tests run)."""
    dest = tmp_path_factory.mktemp("project")
    src = ROOT / "packages" / "testbed-notebook"
    shutil.copy2(src / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(src / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "src" / "testbed" / "__pycache__").mkdir(exist_ok=True)
    (dest / "src" / "testbed" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"x")
    return dest


@pytest.fixture(scope="module")
def first(snapshot, tmp_path_factory) -> dict:
    return build(snapshot, tmp_path_factory.mktemp("wheel"))


@pytest.mark.slow
def test_same_sources_same_bytes(snapshot, first, tmp_path):
    second = build(snapshot, tmp_path / "b")
    assert first["name"] == second["name"] and first["name"].endswith("-py3-none-any.whl")
    assert first["sha256"] == second["sha256"]
    assert hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest() == first["sha256"]
    with zipfile.ZipFile(first["path"]) as whl:
        names = whl.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = whl.read(entry_points).decode()
    assert "testbed/data.py" in names and "testbed/batch/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "run-notebook = testbed.batch.cli:main" in scripts


@pytest.mark.slow
@pytest.mark.parametrize("dist", sorted(PLACES))
def test_each_wheel_holds_only_its_own_place(dist, tmp_path):
    packages, scripts = PLACES[dist]
    info = build(ROOT / "packages" / dist, tmp_path / "out")
    with zipfile.ZipFile(info["path"]) as whl:
        names = whl.namelist()
        entry_points = whl.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    top = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n and ".data/" not in n}
    assert top == packages
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/" in n}
    assert {f for f in data if not any(f.startswith(d + "/") for d in DATA[dist])} == set()
    assert {d for d in DATA[dist] if not any(f.startswith(d + "/") for f in data)} == set()
    assert not [n for n in names if ".data/" in n and ".data/data/" not in n]
    declared = {
        line.split("=", 1)[0].strip()
        for line in entry_points.split("[console_scripts]", 1)[1].splitlines()
        if "=" in line
    }
    assert declared == scripts
    assert info["name"].startswith(dist.replace("-", "_") + "-")


@pytest.mark.slow
def test_changed_source_changes_the_hash(snapshot, first, tmp_path):
    before = first["sha256"]
    changed = tmp_path / "changed"
    shutil.copytree(snapshot, changed)
    with (changed / "src" / "testbed" / "__init__.py").open("a") as fh:
        fh.write("# changed\n")
    assert build(changed, tmp_path / "b")["sha256"] != before


def test_refuses_a_folder_that_is_not_the_project(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BUILDER), str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "has no pyproject.toml and src/" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_unchanged_sources_skip_pip_and_a_change_rebuilds(snapshot, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(snapshot, project)
    out = tmp_path / "out"
    one = build(project, out)
    stamp = json.loads((out / ".sources.json").read_text())
    assert stamp["sha256"] == one["sha256"] and stamp["name"] == one["name"]
    wheel = Path(one["path"])
    mtime = wheel.stat().st_mtime_ns
    # Unchanged: the same answer from the stamp, the wheel untouched.
    assert build(project, out) == one
    assert wheel.stat().st_mtime_ns == mtime
    # A cache file does not count; a source change does.
    (project / "src" / "testbed" / "__pycache__" / "other.pyc").write_bytes(b"y")
    assert build(project, out) == one
    data = project / "src" / "testbed" / "data.py"
    data.write_text(data.read_text() + "\n# changed\n")
    two = build(project, out)
    assert two["sha256"] != one["sha256"]
    assert hashlib.sha256(Path(two["path"]).read_bytes()).hexdigest() == two["sha256"]
    assert json.loads((out / ".sources.json").read_text())["sha256"] == two["sha256"]


def test_a_wheel_replaced_by_hand_is_rebuilt(snapshot, tmp_path):
    out = tmp_path / "out"
    one = build(snapshot, out)
    Path(one["path"]).write_bytes(b"not a wheel")
    assert build(snapshot, out)["sha256"] == one["sha256"]
    assert hashlib.sha256(Path(one["path"]).read_bytes()).hexdigest() == one["sha256"]
