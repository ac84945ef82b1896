"""testbed.batch.links: the URLs summary.html links a batch's files with."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from testbed.batch.links import LabServer, lab_tree_url, path_below, relative_href


def test_path_below_the_root(tmp_path):
    root = tmp_path / "nist"
    assert path_below(root / "runs" / "a b" / "x.ipynb", root) == PurePosixPath("runs/a b/x.ipynb")
    assert path_below(root / "share" / ".." / "runs" / "x.ipynb", root) == PurePosixPath(
        "runs/x.ipynb"
    )
    assert path_below(tmp_path / "nistx" / "x.ipynb", root) is None  # a sibling, not below
    assert path_below(tmp_path / "x.ipynb", root) is None


def test_path_below_a_relative_path_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert path_below(Path("runs/x.ipynb"), tmp_path) == PurePosixPath("runs/x.ipynb")
    assert path_below(Path("../x.ipynb"), tmp_path) is None


def test_path_below_through_symbolic_links(tmp_path):
    """A folder linked into the root is browsed under the link's name; a root reached
    through a link (/home/jovyan/nist -> /data/nist) still holds its real files."""
    real = tmp_path / "data"
    (real / "runs").mkdir(parents=True)
    root = tmp_path / "nist"
    root.mkdir()
    (root / "linked").symlink_to(real / "runs")
    assert path_below(root / "linked" / "x.ipynb", root) == PurePosixPath("linked/x.ipynb")
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    assert path_below(real / "runs" / "x.ipynb", alias) == PurePosixPath("runs/x.ipynb")


@pytest.mark.parametrize(
    ("prefix", "url"),
    [
        ("/jupyter/user/alice/", "/jupyter/user/alice/lab/tree/runs/PTT%20a%23b/x.ipynb"),
        ("/jupyter/user/alice", "/jupyter/user/alice/lab/tree/runs/PTT%20a%23b/x.ipynb"),
        ("/user/bob/gpu/", "/user/bob/gpu/lab/tree/runs/PTT%20a%23b/x.ipynb"),
        ("/", "/lab/tree/runs/PTT%20a%23b/x.ipynb"),
    ],
)
def test_lab_tree_url(prefix, url):
    assert lab_tree_url(prefix, PurePosixPath("runs/PTT a#b/x.ipynb")) == url


def test_relative_href_is_percent_encoded(tmp_path):
    batch = tmp_path / "runs" / "a b"
    assert relative_href(batch / "experiments" / "e?1.html", batch) == "experiments/e%3F1.html"
    assert relative_href(tmp_path / "x.html", batch) == "../../x.html"


def test_lab_server_from_the_environment_of_a_jupyterhub_server():
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/jupyter/user/alice/", "JUPYTERHUB_ROOT_DIR": "/nb"}
    assert LabServer.from_environ(env) == LabServer("/jupyter/user/alice/", Path("/nb"))
    for name in env:
        assert LabServer.from_environ({**env, name: ""}) is None
        assert LabServer.from_environ({k: v for k, v in env.items() if k != name}) is None


def test_lab_server_notebook_url(tmp_path):
    lab = LabServer("/jupyter/user/alice/", tmp_path)
    assert lab.notebook_url(tmp_path / "runs" / "x.ipynb") == (
        "/jupyter/user/alice/lab/tree/runs/x.ipynb"
    )
    assert lab.notebook_url(Path(os.sep) / "tmp-elsewhere" / "x.ipynb") is None
