"""testbed-sim-seed --nist on a small generated set: NIST's tests of the seed
experiments, measured once, then restored from the cache by content hash.

Runs in the NumPy<2 venv (make unit-nist), like test_sim_nist.py.
"""

from __future__ import annotations

import csv
import json

from testbed_sim import nist, nist_seed, seed

SEED, EXPERIMENTS = 11, 3


def _values(path):
    with path.open(newline="") as fh:
        return [(r["Filename"], r["m2e_latency"]) for r in csv.DictReader(fh)]


def test_seed_measures_then_restores_from_the_cache(tmp_path):
    from mcvqoe.mouth2ear.m2e_eval import evaluate

    data = seed.generate(SEED, EXPERIMENTS)
    tests = nist_seed.plan(data, SEED, 0)
    cache = tmp_path / "cache"
    first = nist_seed.seed_media(tmp_path / "a", tests, cache_dir=cache, jobs=2)
    assert (len(first.measured), len(first.restored), first.access_time) == (3, 0, [])
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{nist.cache_key(t)}.tar" for t in tests
    )
    for t in tests:  # the injected value is the mean of the events' values, and measured
        doc = nist.load_document(tmp_path / "a", t.experiment_id)
        assert doc["m2e"]["injected_m2e_latency_s"] == t.m2e_latency_s
        measured = evaluate(str(tmp_path / "a" / doc["m2e"]["csv"])).mean * 1000
        assert abs(measured - doc["m2e"]["m2e_truth_ms"]) <= 1.0, (t.experiment_id, measured)

    second = nist_seed.seed_media(tmp_path / "b", tests, cache_dir=cache, jobs=1)
    assert (len(second.measured), len(second.restored)) == (0, 3)
    for t in tests:
        a = nist.load_document(tmp_path / "a", t.experiment_id)
        b = nist.load_document(tmp_path / "b", t.experiment_id)
        assert a == b
        assert _values(tmp_path / "b" / b["m2e"]["csv"]) == _values(
            tmp_path / "a" / a["m2e"]["csv"]
        )

    again = nist_seed.seed_media(tmp_path / "b", tests, cache_dir=cache)
    assert (len(again.measured), len(again.restored), len(again.kept)) == (0, 0, 3)


def test_seed_command_writes_the_stamp(tmp_path, monkeypatch):
    from testbed_sim import audio

    # the recordings (QoEsim, testbed_sim.audio) are not this test's subject
    monkeypatch.setattr(audio, "write_recordings", lambda *a, **k: 0)
    stamp = tmp_path / "stamp.json"
    args = ["--seed", str(SEED), "--experiments", "2", "--media-dir", str(tmp_path / "m")]
    assert (
        seed.main([*args, "--nist", "--nist-access-experiments", "0", "--stamp", str(stamp)]) == 0
    )
    assert json.loads(stamp.read_text())["nist"]["m2e"] == 2
    assert sorted(p.parent.name for p in (tmp_path / "m").glob("*/nist")) == ["exp-001", "exp-002"]
