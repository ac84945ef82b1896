"""Seed loading: the generated experiments and PTT events into the mongomock engine."""

from __future__ import annotations

import logging
from pathlib import Path

import mongomock

from testbed_sim import nist
from testbed_sim.dataset import SeedData
from testbed_sim.seed import generate

log = logging.getLogger("testbed_sim.mongo")


def merge_nist(data: SeedData, media_dir: Path | str) -> list[str]:
    """Set each experiment document's ``nist`` key from
    ``<media_dir>/<experiment id>/nist/nist.json`` (written by ``testbed-sim-seed
    --nist``); experiments without one (or with one naming a missing file) get no
    ``nist`` key. Returns the ids that got one."""
    merged = []
    for doc in data.experiments:
        doc.pop("nist", None)
        found = nist.load_document(media_dir, doc["_id"])
        if found is not None:
            doc["nist"] = found
            merged.append(doc["_id"])
    return merged


def load_seed(
    client: mongomock.MongoClient,
    database: str,
    seed: int,
    experiments: int,
    nist_media_dir: Path | str | None = None,
) -> SeedData:
    """Replace the seed collections of ``database`` with :func:`testbed_sim.seed.generate`'s
    documents (and the unique index on ``ptt_events``); return the data. With
    ``nist_media_dir`` the experiments carry their NIST tests (:func:`merge_nist`)."""
    data = generate(seed, experiments)
    if nist_media_dir is not None:
        merged = merge_nist(data, nist_media_dir)
        log.info(
            "NIST tests of %d of %d experiments from %s",
            len(merged),
            len(data.experiments),
            nist_media_dir,
        )
    db = client[database]
    for name, docs in data.collections().items():
        db[name].drop()
        if docs:
            db[name].insert_many([dict(d) for d in docs])
    db["ptt_events"].create_index([("experiment_id", 1), ("seq", 1)], unique=True)
    return data
