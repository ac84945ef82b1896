"""Fixtures for the simulator tests: a real MongoDB stand-in on a free port."""

from __future__ import annotations

import pymongo
import pytest

from testbed_sim import seed
from testbed_sim.mongo import MongoStandIn


@pytest.fixture(scope="session")
def seed_data() -> seed.SeedData:
    return seed.generate()


@pytest.fixture(scope="module")
def mongo_server():
    server = MongoStandIn(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def client(mongo_server):
    c = pymongo.MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
    yield c
    c.close()
