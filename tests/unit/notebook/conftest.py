"""Fixtures for the notebook-side tests: the simulator's MongoDB stand-in on a free
port, its recordings in a temporary media folder, and the environment variables the
hub's spawner would set (TESTBED_MONGO_URI, TESTBED_MONGO_DB, TESTBED_MEDIA_DIR)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import mistune
import nbformat
import pytest

# Plain imports: without the simulator (packages/testbed-sim, installed by
# `make venv`) these tests must fail, not skip.
from testbed_sim import audio, mongo, seed

EXPERIMENTS = 12


@pytest.fixture(autouse=True, scope="module")
def _close_cached_database_clients():
    """testbed.data keeps one MongoClient per settings for the process (as a kernel
    does); close them after each module. Their monitor threads would otherwise keep
    heartbeating, and pymongo draws every request ID from Python's global ``random``,
    which the simulator's recordings seed (a recording test in the same xdist worker
    saw the generator move under it)."""
    yield
    from testbed import data

    with data._clients_lock:
        clients = list(data._clients.values())
        data._clients.clear()
    for client in clients:
        client.close()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: runs Jupyter kernels (seconds); still part of the default run"
    )


@pytest.fixture(scope="session")
def seed_data():
    return seed.generate(seed.DEFAULT_SEED, EXPERIMENTS)


@pytest.fixture(scope="session")
def mongo_server():
    server = mongo.MongoStandIn(host="127.0.0.1", port=0, experiments=EXPERIMENTS)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def media(tmp_path_factory, seed_data) -> Path:
    folder = tmp_path_factory.mktemp("media")
    audio.write_recordings(seed_data, folder, seed=seed.DEFAULT_SEED)
    return folder


@pytest.fixture()
def testbed_env(monkeypatch, mongo_server, media):
    """The container environment; papermill kernels and batch workers inherit it."""
    monkeypatch.setenv("TESTBED_MONGO_URI", mongo_server.uri)
    monkeypatch.setenv("TESTBED_MONGO_DB", "testbed")
    monkeypatch.setenv("TESTBED_MEDIA_DIR", str(media))
    monkeypatch.setenv("TESTBED_MONGO_TIMEOUT_MS", "3000")
    for name in ("TESTBED_MONGO_USER", "TESTBED_MONGO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return {"uri": mongo_server.uri, "media": media}


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory, monkeypatch) -> Path:
    """XDG_STATE_HOME in a temporary folder: run-notebook's heartbeat files
    (testbed.activity.batches) never land in the real home."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    return folder


@pytest.fixture(autouse=True)
def outside_jupyterhub(monkeypatch) -> None:
    """Not in a JupyterHub server, even when pytest runs in a JupyterLab terminal: a
    test that needs one sets JUPYTERHUB_SERVICE_PREFIX and JUPYTERHUB_ROOT_DIR."""
    for name in ("JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_ROOT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- a batch's summary.ipynb as a reader sees it ---------------------------------------


@dataclass
class Cell:
    """A rendered table cell: its text (``<br>`` as a line break), its links' hrefs
    and the other HTML elements inside it (``strong``, ``em``, ``code``, ...)."""

    text: str = ""
    hrefs: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


class _Rendered(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.headings: list[str] = []
        self.rows: list[list[Cell]] = []
        self.tags: list[str] = []  # every element, in order
        self._cell: Cell | None = None
        self._heading: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = Cell()
        elif tag == "h1":
            self._heading = ""
        elif self._cell is not None:
            self._cell.tags.append(tag)
            if tag == "a":
                self._cell.hrefs.append(dict(attrs).get("href") or "")
            elif tag == "br":
                self._cell.text += "\n"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None
        elif tag == "h1" and self._heading is not None:
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.text += data
        elif self._heading is not None:
            self._heading += data


#: Markdown as JupyterLab's parser (marked, GFM) reads it: tables, strikethrough and
#: `$` math on, raw HTML kept (JupyterLab's sanitizer keeps <br> and <a href>).
#: mistune is nbconvert's Markdown parser.
render_markdown = mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "math"])


@dataclass
class RenderedMarkdown:
    headings: list[str]
    tags: list[str]
    table: list[dict[str, Cell]]  # one dict per body row, by the header's text


def rendered(markdown: str) -> RenderedMarkdown:
    parser = _Rendered()
    parser.feed(render_markdown(markdown))
    header, *body = parser.rows or [[]]
    columns = [c.text for c in header]
    for row in body:
        assert len(row) == len(columns), (columns, [c.text for c in row])
    return RenderedMarkdown(
        parser.headings, parser.tags, [dict(zip(columns, row, strict=True)) for row in body]
    )


@dataclass
class SummaryNotebook:
    notebook: nbformat.NotebookNode
    markdown: RenderedMarkdown  # its first cell, rendered


@pytest.fixture()
def read_summary_notebook():
    """A function: batch folder -> its summary.ipynb, validated, first cell rendered."""

    def read(batch_dir: Path) -> SummaryNotebook:
        nb = nbformat.read(batch_dir / "summary.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown", nb.cells[0]
        return SummaryNotebook(nb, rendered(nb.cells[0].source))

    return read


@pytest.fixture()
def render():
    """A function: Markdown -> its headings, elements and table (:func:`rendered`)."""
    return rendered
