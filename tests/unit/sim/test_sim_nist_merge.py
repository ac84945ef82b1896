"""The seed's NIST plan, the NIST cache and the stand-in's ``nist`` keys, without NIST's
packages (tests/nist runs the measurements themselves in the NumPy<2 venv)."""

from __future__ import annotations

import io
import json
import statistics
import tarfile
from pathlib import Path

import pymongo
import pytest

from testbed_sim import mongo, nist, nist_seed, seed
from testbed_sim.mongo import MongoStandIn


def _fake_test(media: Path, exp_id: str, access: bool = False, key: str = "k") -> dict:
    """A nist folder as testbed_sim.nist writes it (the CSVs' contents do not matter)."""
    folder = media / exp_id / "nist"
    csv = folder / "m2e" / "T_M2E" / "T_M2E.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("m2e_latency\n0.2\n", encoding="utf-8")
    doc = {
        "seed": 1,
        "m2e": {"csv": csv.relative_to(media).as_posix(), "m2e_truth_ms": 200.0},
        "cache_key": key,
    }
    if access:
        acc = folder / "access_time" / "T_Access1Loc" / "T_Access1Loc_F1_b9_w1_bed.csv"
        acc.parent.mkdir(parents=True)
        acc.write_text("x\n", encoding="utf-8")
        doc["access_time"] = {"csvs": [acc.relative_to(media).as_posix()], "resolution_s": 0.005}
    (folder / "nist.json").write_text(json.dumps(doc), encoding="utf-8")
    return doc


# -- the plan ------------------------------------------------------------------------


def test_injected_values_are_the_means_of_the_events(seed_data):
    values = nist_seed.injected_values(seed_data)
    assert list(values) == [e["_id"] for e in seed_data.experiments]
    for exp_id, (m2e_s, access_s) in values.items():
        events = [e for e in seed_data.ptt_events if e["experiment_id"] == exp_id]
        assert m2e_s * 1000 == pytest.approx(
            statistics.fmean(e["mouth_to_ear_ms"] for e in events), abs=0.051
        )
        assert access_s * 1000 == pytest.approx(
            statistics.fmean(e["access_delay_ms"] for e in events), abs=0.051
        )


def test_plan_m2e_for_all_access_for_a_spread_subset(seed_data):
    tests = nist_seed.plan(seed_data, seed.DEFAULT_SEED, 4)
    assert [t.experiment_id for t in tests] == [e["_id"] for e in seed_data.experiments]
    for t in tests:
        t.check()  # every injected value is inside what the tests can measure
    with_access = [t for t in tests if t.access_delay_s is not None]
    assert len(with_access) == 4
    delays = sorted(t.access_delay_s for t in with_access)
    all_delays = sorted(nist_seed.injected_values(seed_data)[t.experiment_id][1] for t in tests)
    assert delays[0] == all_delays[0] and delays[-1] == all_delays[-1]  # the whole range
    assert {t.seed for t in tests} == {seed.DEFAULT_SEED}
    assert tests == nist_seed.plan(seed.generate(), seed.DEFAULT_SEED, 4)  # deterministic


@pytest.mark.parametrize(("count", "expected"), [(0, 0), (1, 1), (3, 3), (24, 24), (99, 24)])
def test_access_subset_sizes(seed_data, count, expected):
    values = nist_seed.injected_values(seed_data)
    assert len(nist_seed.access_subset(values, count)) == expected


def test_plan_refuses_a_negative_count(seed_data):
    with pytest.raises(nist.NistError, match="access_experiments must be an integer >= 0"):
        nist_seed.plan(seed_data, 1, -1)


# -- the stand-in's nist keys ----------------------------------------------------------


def test_stand_in_serves_nist_documents_of_experiments_that_have_one(tmp_path):
    media = tmp_path / "media"
    one = _fake_test(media, "exp-001")
    three = _fake_test(media, "exp-003", access=True)
    broken = _fake_test(media, "exp-004")
    (media / broken["m2e"]["csv"]).unlink()  # names a missing file: not served
    with MongoStandIn(host="127.0.0.1", port=0, experiments=6, nist_media_dir=str(media)) as srv:
        client = pymongo.MongoClient(srv.uri, serverSelectionTimeoutMS=5000)
        docs = {d["_id"]: d for d in client.testbed.experiments.find()}
        assert docs["exp-001"]["nist"] == one
        assert docs["exp-003"]["nist"] == three
        assert [k for k, d in sorted(docs.items()) if "nist" in d] == ["exp-001", "exp-003"]
        # what testbed.qoe asks to name the experiments that have a test
        having = client.testbed.experiments.distinct("_id", {"nist.access_time": {"$exists": True}})
        assert having == ["exp-003"]
        client.close()


def test_stand_in_without_nist_media_dir_has_no_nist_keys(tmp_path):
    _fake_test(tmp_path, "exp-001")
    with MongoStandIn(host="127.0.0.1", port=0, experiments=2) as srv:
        client = pymongo.MongoClient(srv.uri, serverSelectionTimeoutMS=5000)
        assert client.testbed.experiments.count_documents({"nist": {"$exists": True}}) == 0
        client.close()


def test_cli_config_nist_media_dir(tmp_path, capsys):
    cfg = tmp_path / "mongo.json"
    cfg.write_text(json.dumps({"port": 27017, "nist_media_dir": "/srv/lmr/wavs"}))
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 0
    cfg.write_text(json.dumps({"port": 27017, "nist_media_dir": "relative/wavs"}))
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 2
    assert "nist_media_dir must be an absolute path" in capsys.readouterr().err


# -- the cache -------------------------------------------------------------------------


def test_cache_round_trip(tmp_path):
    exp = nist.Experiment("exp-002", m2e_latency_s=0.2, seed=5)
    media, cache, other = tmp_path / "a", tmp_path / "cache", tmp_path / "b"
    doc = _fake_test(media, "exp-002", key=nist.cache_key(exp))
    stored = nist.store_in_cache(media, exp, cache)
    assert stored == cache / f"{nist.cache_key(exp)}.tar"
    assert [p.name for p in cache.iterdir()] == [stored.name]  # no temporary left
    assert nist.restore_from_cache(other, exp, cache, file_mode=0o640) == doc
    csv = other / doc["m2e"]["csv"]
    assert csv.read_text() == (media / doc["m2e"]["csv"]).read_text()
    assert csv.stat().st_mode & 0o777 == 0o640
    assert not list((other / "exp-002").glob(".nist-*"))
    changed = nist.Experiment("exp-002", m2e_latency_s=0.3, seed=5)
    assert nist.restore_from_cache(other, changed, cache) is None  # another content hash


def test_store_refuses_a_folder_of_other_content(tmp_path):
    exp = nist.Experiment("exp-002", m2e_latency_s=0.2, seed=5)
    _fake_test(tmp_path, "exp-002", key="something else")
    with pytest.raises(nist.NistError, match="holds no complete test"):
        nist.store_in_cache(tmp_path, exp, tmp_path / "cache")


def test_unsafe_cache_file_is_not_restored(tmp_path):
    exp = nist.Experiment("exp-002", m2e_latency_s=0.2, seed=5)
    cache = tmp_path / "cache"
    cache.mkdir()
    with tarfile.open(nist.cache_path(cache, exp), "w") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    assert nist.restore_from_cache(tmp_path / "media", exp, cache) is None
    assert not (tmp_path / "escape.txt").exists()
    assert not list((tmp_path / "media" / "exp-002").iterdir())  # build folder removed
