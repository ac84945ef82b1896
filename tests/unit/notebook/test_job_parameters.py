"""testbed.job_parameters: the Create Job form is offered each name the notebook's
``parameters`` cell assigns, with its default as ``run-notebook -p`` text; a form
submitted unchanged runs the notebook with its own defaults (through
testbed.scheduler's injection, as a real job would). The server route is tested on a
real jupyter_server with the extension loaded (a subprocess, token auth).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from testbed.batch.runner import parse_value
from testbed.job_parameters import JobParameter, as_parameter_text, job_parameters
from testbed.scheduler import inject_parameters

REPO = Path(__file__).resolve().parents[3]
BUILT = REPO / "packages/testbed-notebook/src/testbed/job_parameters/labextension"

CELL = """\
import math
experiment = "exp-001"
trials = 40
scale = 1.5
verbose = False
label = "40"
switch = "true"
channels = [1, 2]
limits = {"low": -1.0, "high": None}
note: str = "bare text"
start = math.pi * 2
pair = (1, 2)
first, second = 1, 2
trials = 41
"""

OFFERED = {
    "experiment": "exp-001",
    "trials": "41",  # assigned twice: the last one is what the notebook uses
    "scale": "1.5",
    "verbose": "false",
    "label": '"40"',  # bare 40 would be read as a number
    "switch": '"true"',
    "channels": "[1, 2]",
    "limits": '{"low": -1.0, "high": null}',
    "note": "bare text",
    "start": None,  # not a literal: left to the notebook
    "pair": None,  # a tuple: -p text has no tuples
    "first": None,
    "second": None,
}


def notebook(source: str | None, tagged: bool = True) -> dict:
    cells = [nbformat.v4.new_markdown_cell("# A batch notebook")]
    if source is not None:
        meta = {"tags": ["parameters"]} if tagged else {}
        cells.append(nbformat.v4.new_code_cell(source, metadata=meta))
    cells.append(nbformat.v4.new_code_cell("print(experiment)"))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    return nb


def test_each_assigned_name_is_offered_with_its_default_as_run_notebook_text():
    found = job_parameters(notebook(CELL))
    assert [p.name for p in found] == list(OFFERED)
    assert {p.name: p.value for p in found} == OFFERED
    assert found[0].to_json() == {"name": "experiment", "value": "exp-001"}


def test_each_offered_text_is_read_back_as_the_default_itself():
    defaults: dict = {}
    exec(CELL, {}, defaults)  # noqa: S102 - the test's own cell
    for p in job_parameters(notebook(CELL)):
        if p.value is not None:
            back = parse_value(p.value)
            assert back == defaults[p.name], p
            assert type(back) is type(defaults[p.name]), p


def test_a_form_submitted_unchanged_runs_the_notebook_with_its_own_defaults(tmp_path):
    path = tmp_path / "batch.ipynb"
    nbformat.write(nbformat.from_dict(notebook(CELL)), path)
    offered = {p.name: p.value for p in job_parameters(notebook(CELL)) if p.value is not None}
    out = inject_parameters(path, offered)
    (cell,) = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    defaults: dict = {}
    exec(CELL, {}, defaults)  # noqa: S102
    injected: dict = {}
    exec(cell.source, {}, injected)  # noqa: S102
    assert injected == {name: defaults[name] for name in offered}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("exp-005", "exp-005"),
        ("", ""),
        ("40", '"40"'),
        ("null", '"null"'),
        ('"quoted"', '"\\"quoted\\""'),
        ("naïve", "naïve"),
        (0, "0"),
        (-2.5e-3, "-0.0025"),
        (True, "true"),
        (None, "null"),
        ([1, "a", [None]], '[1, "a", [null]]'),
        ((1, 2), None),
        ({1, 2}, None),
        (b"raw", None),
        ({1: "a"}, None),
        (float("nan"), None),
    ],
)
def test_parameter_text_round_trips_or_is_none(value, text):
    assert as_parameter_text(value) == text
    if text is not None:
        assert parse_value(text) == value


def test_no_parameters_cell_offers_nothing():
    assert job_parameters(notebook(None)) == []
    assert job_parameters(notebook("experiment = 'x'", tagged=False)) == []
    assert job_parameters({"cells": []}) == []
    assert job_parameters(notebook("# only a comment\n")) == []


def test_only_the_first_tagged_cell_counts_and_list_sources_are_joined():
    nb = notebook(None)
    nb["cells"] = [
        {"cell_type": "markdown", "metadata": {"tags": ["parameters"]}, "source": "x = 1"},
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": ["a = 1\n", "b = 'x'"],
        },
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "c = 3"},
    ]
    assert job_parameters(nb) == [JobParameter("a", "1"), JobParameter("b", "x")]


def test_a_cell_that_is_not_python_raises_syntax_error():
    with pytest.raises(SyntaxError):
        job_parameters(notebook("experiment = exp-005 ="))


# --- the route, on a real jupyter_server ------------------------------------------

TOKEN = "job-parameters-test-token"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    (root / "sub").mkdir()
    nbformat.write(nbformat.from_dict(notebook(CELL)), root / "sub" / "batch one.ipynb")
    nbformat.write(nbformat.from_dict(notebook("x = 1", tagged=False)), root / "plain.ipynb")
    nbformat.write(nbformat.from_dict(notebook("x = = 1")), root / "broken.ipynb")
    (root / "notes.txt").write_text("not a notebook\n")
    home = tmp_path_factory.mktemp("home")
    port = _free_port()
    env = dict(
        os.environ,
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.jpserver_extensions="
            "{'testbed.job_parameters': True, 'jupyter_scheduler': False}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("jupyter_server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "testbed.job_parameters: /testbed/job-parameters fills the Create Job form" in out


def get(base: str, query: str, token: str | None = TOKEN) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}/testbed/job-parameters{query}")
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, {"raw": body.decode(errors="replace")}


def test_route_answers_the_parameters_of_a_notebook_by_its_file_browser_path(server):
    status, body = get(server, "?path=sub/batch%20one.ipynb")
    assert status == 200, body
    assert body["path"] == "sub/batch one.ipynb"
    assert body["problem"] is None
    assert {p["name"]: p["value"] for p in body["parameters"]} == OFFERED


@pytest.mark.parametrize(
    ("query", "code", "words"),
    [
        ("", 400, "?path="),
        ("?path=notes.txt", 400, "notes.txt is not a notebook"),
        ("?path=missing.ipynb", 404, "missing.ipynb"),
    ],
)
def test_route_refuses_what_is_not_a_notebook_naming_it(server, query, code, words):
    status, body = get(server, query)
    assert status == code, body
    assert words in " ".join(str(body.get(k) or "") for k in ("message", "reason", "raw")), body


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("plain.ipynb", "plain.ipynb has no cell tagged 'parameters'"),
        (
            "broken.ipynb",
            "the cell tagged 'parameters' of broken.ipynb is not valid Python (line 1",
        ),
    ],
)
def test_a_notebook_the_form_cannot_be_filled_from_says_why_and_offers_nothing(server, path, words):
    status, body = get(server, f"?path={path}")
    assert status == 200, body
    assert body["parameters"] == []
    assert words in body["problem"]


def test_route_needs_the_servers_own_authentication(server):
    status, _ = get(server, "?path=sub/batch%20one.ipynb", token=None)
    assert status == 403
    status, _ = get(server, "?path=sub/batch%20one.ipynb", token="wrong")
    assert status == 403


def test_built_extension_is_the_one_jupyterlab_loads_and_calls_the_route():
    meta = json.loads((BUILT / "package.json").read_text())
    assert meta["name"] == "@testbed/job-parameters"
    entry = BUILT / meta["jupyterlab"]["_build"]["load"]
    assert entry.is_file()
    bundle = "".join(p.read_text() for p in (BUILT / "static").glob("*.js"))
    for needle in (
        "testbed/job-parameters",
        "scheduling:create-from-notebook",
        "notebook-jobs-panel",
    ):
        assert needle in bundle, needle


def test_committed_build_is_of_the_sources_in_the_tree():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from labextension_digest import digest
    finally:
        sys.path.pop(0)
    source = REPO / "packages/testbed-notebook/labextension"
    recorded = (source / "built-from.sha256").read_text().strip()
    assert digest(source) == recorded, (
        "the extension's sources changed since its build: run make labextension and "
        "commit the built files"
    )
