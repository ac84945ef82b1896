"""The server: mockupdb's wire-protocol listener answering through the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping

import mockupdb
import mongomock

from testbed_sim.dataset import SeedData
from testbed_sim.mongo.dispatch import CommandDispatcher
from testbed_sim.mongo.seeding import load_seed
from testbed_sim.seed import DATABASE, DEFAULT_EXPERIMENTS, DEFAULT_SEED


class MongoStandIn:
    """A running wire-protocol server. Use as a context manager or call start/stop."""

    def __init__(
        self,
        host: str = "0.0.0.0",  # noqa: S104 - published like the testbed's container port
        port: int = 27017,
        database: str = DATABASE,
        seed: int | None = DEFAULT_SEED,
        experiments: int = DEFAULT_EXPERIMENTS,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.client = mongomock.MongoClient()
        self.data: SeedData | None = None
        if seed is not None:
            self.data = load_seed(self.client, database, seed, experiments)
        self.dispatcher = CommandDispatcher(self.client, users=users)
        self.server = mockupdb.MockupDB(port=port, request_timeout=int(1e6))
        # MockupDB binds "localhost"; publish on the requested address instead.
        self.server._address = (host, port)
        self.server.autoresponds(self.dispatcher.handle_request)

    def start(self) -> int:
        return self.server.run()

    def stop(self) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def __enter__(self) -> MongoStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
