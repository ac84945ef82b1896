"""The server: mockupdb's wire-protocol listener answering through the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mockupdb
import mongomock

from testbed_sim.dataset import SeedData
from testbed_sim.mongo.dispatch import CommandDispatcher
from testbed_sim.mongo.seeding import load_seed
from testbed_sim.seed import DATABASE, DEFAULT_EXPERIMENTS, DEFAULT_SEED


class MongoStandIn:
    """A running wire-protocol server. Use as a context manager or call start/stop.

    ``host`` is one listen address or several (the base station: loopback and the
    jupyter network's gateway, nothing else); all share the port and the data.
    ``nist_media_dir``: the experiments carry the NIST tests stored under it
    (:func:`~testbed_sim.mongo.seeding.merge_nist`), read once at construction.
    """

    def __init__(
        self,
        host: str | Sequence[str] = "127.0.0.1",
        port: int = 27017,
        database: str = DATABASE,
        seed: int | None = DEFAULT_SEED,
        experiments: int = DEFAULT_EXPERIMENTS,
        users: Mapping[str, str] | None = None,
        nist_media_dir: str | None = None,
    ) -> None:
        self.client = mongomock.MongoClient()
        self.data: SeedData | None = None
        if seed is not None:
            self.data = load_seed(self.client, database, seed, experiments, nist_media_dir)
        self.dispatcher = CommandDispatcher(self.client, users=users)
        self.hosts = [host] if isinstance(host, str) else [str(h) for h in host]
        if not self.hosts:
            raise ValueError("host: give at least one listen address")
        self.servers = []
        for h in self.hosts:
            server = mockupdb.MockupDB(port=port, request_timeout=int(1e6))
            # MockupDB binds "localhost"; listen on the requested address instead.
            server._address = (h, port)
            server.autoresponds(self.dispatcher.handle_request)
            self.servers.append(server)
        self.server = self.servers[0]

    def start(self) -> int:
        port = self.server.run()
        try:
            for h, server in zip(self.hosts[1:], self.servers[1:], strict=True):
                server._address = (h, port)  # port 0 (tests): the one the first got
                server.run()
        except OSError:
            self.stop()
            raise
        return port

    def stop(self) -> None:
        for server in self.servers:
            if getattr(server, "_listening_sock", None) is not None:
                server.stop()

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
