"""Fixtures for the notebook-side tests: the simulator's MongoDB stand-in on a free
port, its recordings in a temporary media folder, and the environment variables the
hub's spawner would set (TESTBED_MONGO_URI, TESTBED_MONGO_DB, TESTBED_MEDIA_DIR)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

# Plain imports: without the simulator (packages/testbed-sim, installed by
# `make venv`) these tests must fail, not skip.
from testbed_sim import audio, mongo, seed

EXPERIMENTS = 12


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
