"""testbed_sim.nist: NIST's M2E and access-time tests through QoEsim.

Needs NIST's packages (the simulator's virtualenv: NumPy < 2, setuptools < 80,
see testbed_sim.nist.PINNED); run with that interpreter and
PYTHONPATH=packages/testbed-sim/src:packages/testbed-notebook/src.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from testbed_sim import nist, nist_seed

EXPERIMENTS = [
    # id, injected M2E latency (s): the seed's range is about 0.17 .. 0.55 s
    ("exp-001", 0.1735),
    ("exp-002", 0.2500),
    ("exp-003", 0.4187),
]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _values(path: Path) -> list[tuple[str, str]]:
    """A CSV's measured values, without NIST's wall-clock Timestamp column."""
    return [(r["Filename"], r["m2e_latency"]) for r in _rows(path)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    media = tmp_path_factory.mktemp("media")
    docs = {}
    for exp_id, latency in EXPERIMENTS:
        docs[exp_id] = nist.run_experiment(
            media, nist.Experiment(exp_id, m2e_latency_s=latency, seed=7)
        )
    return media, docs


def test_layout_is_nists(runs):
    media, docs = runs
    for exp_id, _ in EXPERIMENTS:
        m2e = docs[exp_id]["m2e"]
        csv_path = media / m2e["csv"]
        assert csv_path.is_file()
        # <media>/<exp>/nist/m2e/<dd-Mon-YYYY_HH-MM-SS>_M2E/<same>.csv
        rel = Path(m2e["csv"])
        assert rel.parts[:3] == (exp_id, "nist", "m2e")
        assert rel.parent.name.endswith("_M2E") and rel.stem == rel.parent.name
        assert (media / exp_id / "nist" / "m2e" / "tests.log").is_file()
        wavs = sorted(p.name for p in (media / m2e["wav_dir"]).glob("*.wav"))
        assert len(wavs) == m2e["trials"] == len(_rows(csv_path))
        assert all(name.startswith("Rx") for name in wavs)  # received audio only
        for row in _rows(csv_path):
            assert row["Filename"] in nist.M2E_CLIPS
        assert not list((media / exp_id).glob(".nist-*")), "no build folder left behind"


def test_measured_within_1ms_of_truth(runs):
    from mcvqoe.mouth2ear.m2e_eval import evaluate

    media, docs = runs
    for exp_id, latency in EXPERIMENTS:
        m2e = docs[exp_id]["m2e"]
        assert m2e["injected_m2e_latency_s"] == latency
        assert m2e["m2e_truth_ms"] == pytest.approx(latency * 1000)  # device delay 31 ms
        result = evaluate(str(media / m2e["csv"]))
        assert abs(result.mean * 1000 - m2e["m2e_truth_ms"]) <= 1.0, (exp_id, result.mean)


def test_same_seed_same_values_and_rerun_replaces(tmp_path, runs):
    media, docs = runs
    first = _values(media / docs["exp-002"]["m2e"]["csv"])
    again = nist.run_experiment(tmp_path, nist.Experiment("exp-002", 0.25, seed=7), reuse=False)
    assert _values(tmp_path / again["m2e"]["csv"]) == first
    other = nist.run_experiment(tmp_path, nist.Experiment("exp-002", 0.25, seed=8))
    # a second run replaces the first: one test folder only
    assert len(list((tmp_path / "exp-002" / "nist" / "m2e").glob("*_M2E"))) == 1
    assert [f for f, _ in _values(tmp_path / other["m2e"]["csv"])] != [f for f, _ in first]


def test_document_stored_and_reused(tmp_path):
    exp = nist.Experiment("exp-004", 0.2, seed=2)
    doc = nist.run_experiment(tmp_path, exp)
    assert nist.load_document(tmp_path, "exp-004") == doc
    assert doc["cache_key"] == nist.cache_key(exp)
    again = nist.run_experiment(tmp_path, exp)  # same content: nothing runs
    assert again == doc
    changed = nist.run_experiment(tmp_path, nist.Experiment("exp-004", 0.3, seed=2))
    assert changed["cache_key"] != doc["cache_key"]
    (tmp_path / changed["m2e"]["csv"]).unlink()
    assert nist.load_document(tmp_path, "exp-004") is None  # a named file is missing


def test_nists_device_delay_convention(tmp_path):
    """Without a simulated device delay NIST still subtracts its 31 ms."""
    from mcvqoe.mouth2ear.m2e_eval import evaluate

    doc = nist.run_experiment(
        tmp_path, nist.Experiment("exp-009", 0.3123, seed=1, device_delay_s=0.0)
    )
    assert doc["m2e"]["m2e_truth_ms"] == pytest.approx(312.3 - 31.0)
    measured = evaluate(str(tmp_path / doc["m2e"]["csv"])).mean * 1000
    assert abs(measured - doc["m2e"]["m2e_truth_ms"]) <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m2e_latency_s": 0.0}, "m2e_latency_s must be > 0"),
        ({"m2e_latency_s": 0.2, "access_delay_s": 3.0}, r"access_delay_s must be 0 \.\. 2\.4 s"),
        (
            {"m2e_latency_s": 0.2, "access_delay_s": 0.2, "access": nist.AccessTest(ptt_rep=1)},
            "ptt_rep must be an integer >= 2",
        ),
        ({"m2e_latency_s": 0.2, "m2e": nist.M2ETest(trials=0)}, "trials must be a positive"),
        ({"m2e_latency_s": 0.2, "m2e": nist.M2ETest(clips=("x",))}, "shipped clips"),
    ],
)
def test_bad_input_is_named(tmp_path, kwargs, message):
    with pytest.raises(nist.NistError, match=message):
        nist.run_experiment(tmp_path, nist.Experiment("exp-001", **kwargs))
    assert not (tmp_path / "exp-001").exists()


def test_numpy_2_is_refused_with_advice(monkeypatch):
    import numpy as np

    monkeypatch.setattr(np, "__version__", "2.4.6")
    with pytest.raises(nist.NistError, match=r"NumPy 2\.4\.6 .*'numpy<2'"):
        nist.check_environment()


def test_missing_package_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "abcmrt":
            raise ImportError("No module named 'abcmrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(nist.NistError, match=r"cannot import abcmrt .*abcmrt16==1\.0\.1"):
        nist.check_environment(access_time=True)


def test_the_recordings_placeholder_for_abcmrt_is_not_taken_for_abcmrt16(monkeypatch):
    """testbed_sim.audio loads a placeholder abcmrt where abcmrt16 is missing (QoEsim
    never calls it): an access-time measurement is still refused with the install hint,
    and the placeholder itself names the package if called."""
    from testbed_sim import audio

    placeholder = audio._abcmrt_placeholder()
    monkeypatch.setitem(sys.modules, "abcmrt", placeholder)
    with pytest.raises(nist.NistError, match=r"only a placeholder is loaded.*abcmrt16==1\.0\.1"):
        nist.check_environment(access_time=True)
    nist.check_environment()  # M2E does not need it
    with pytest.raises(audio.AudioError, match=r"abcmrt16==1\.0\.1\) is not installed"):
        placeholder.load_templates()


ACCESS = [("exp-011", 0.2345), ("exp-012", 0.6180)]


@pytest.fixture(scope="module")
def access_runs(tmp_path_factory):
    media = tmp_path_factory.mktemp("media-access")
    # the two (dear) access-time tests side by side, as the seed runs them
    report = nist_seed.seed_media(
        media,
        [nist.Experiment(e, m2e_latency_s=0.2, access_delay_s=d, seed=7) for e, d in ACCESS],
        jobs=2,
    )
    assert sorted(report.measured) == report.access_time == [e for e, _ in ACCESS]
    return media, {exp_id: nist.load_document(media, exp_id) for exp_id, _ in ACCESS}


def test_access_layout_is_nists(access_runs):
    media, docs = access_runs
    for exp_id, delay in ACCESS:
        acc = docs[exp_id]["access_time"]
        assert acc["injected_access_delay_s"] == delay
        assert acc["access_truth_ms"] == pytest.approx(delay * 1000)
        assert acc["resolution_s"] == nist.BISECT_TOLERANCE_S
        (csv_name,) = acc["csvs"]
        rel = Path(csv_name)
        # <media>/<exp>/nist/access_time/<stamp>_Access1Loc/<stamp>_Access1Loc_<clip>.csv
        assert rel.parts[:3] == (exp_id, "nist", "access_time")
        assert rel.parent.name.endswith("_Access1Loc")
        assert rel.stem == f"{rel.parent.name}_F1_b9_w1_bed"
        # NIST's evaluation needs the clip's cut points next to the test; no audio kept
        assert (media / acc["wav_dir"] / "Tx_F1_b9_w1_bed.csv").is_file()
        assert not list((media / acc["wav_dir"]).glob("*.wav"))


def test_access_delay_within_nists_resolution(access_runs):
    from mcvqoe.accesstime.access_time_eval import evaluate

    media, docs = access_runs
    for exp_id, _ in ACCESS:
        acc = docs[exp_id]["access_time"]
        result = evaluate(
            [str(media / p) for p in acc["csvs"]], wav_dirs=[str(media / acc["wav_dir"])]
        )
        value, ci = result.eval(acc["alpha"])
        error_ms = value * 1000 - acc["access_truth_ms"]
        assert abs(error_ms) <= acc["resolution_s"] * 1000, (exp_id, value, ci)


def test_access_truth_follows_nists_device_delay_convention(tmp_path):
    """Without a simulated device delay the PTT tone leaves on time, NIST still
    subtracts its 31 ms from it, so the access delay it measures is 31 ms longer
    than the one injected (testbed_sim.nist.access_truth_ms), within the resolution."""
    from mcvqoe.accesstime.access_time_eval import evaluate

    doc = nist.run_experiment(
        tmp_path,
        nist.Experiment(
            "exp-013", m2e_latency_s=0.2, access_delay_s=0.3, seed=3, device_delay_s=0.0
        ),
    )
    acc = doc["access_time"]
    assert acc["access_truth_ms"] == pytest.approx(300.0 + 31.0)
    result = evaluate(
        [str(tmp_path / p) for p in acc["csvs"]], wav_dirs=[str(tmp_path / acc["wav_dir"])]
    )
    value, _ci = result.eval(acc["alpha"])
    assert abs(value * 1000 - acc["access_truth_ms"]) <= acc["resolution_s"] * 1000, value
