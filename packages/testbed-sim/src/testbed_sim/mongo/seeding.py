"""Seed loading: the generated experiments and PTT events into the mongomock engine."""

from __future__ import annotations

import mongomock

from testbed_sim.dataset import SeedData
from testbed_sim.seed import generate


def load_seed(
    client: mongomock.MongoClient,
    database: str,
    seed: int,
    experiments: int,
) -> SeedData:
    """Replace the seed collections of ``database`` with :func:`testbed_sim.seed.generate`'s
    documents (and the unique index on ``ptt_events``); return the data."""
    data = generate(seed, experiments)
    db = client[database]
    for name, docs in data.collections().items():
        db[name].drop()
        if docs:
            db[name].insert_many([dict(d) for d in docs])
    db["ptt_events"].create_index([("experiment_id", 1), ("seq", 1)], unique=True)
    return data
