"""testbed.qoe evaluates NIST tests with NIST's classes, as in the notebook image.

Runs where NIST's packages are installed, with NumPy 2 as in the image (also passes
with NumPy 1); the files in data/ come from testbed_sim.nist (make_fixture.py), without
audio. ABC-MRT16 need not be installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import qoe

DATA = Path(__file__).parent / "data"


@pytest.fixture()
def documents(monkeypatch):
    docs = json.loads((DATA / "documents.json").read_text(encoding="utf-8"))
    monkeypatch.setattr(qoe.data, "experiment", lambda exp_id: dict(docs[exp_id]))
    monkeypatch.setattr(qoe.data, "media_dir", lambda: DATA / "media")

    def ids(query):
        ((key, _),) = query.items()
        kind = key.split(".", 1)[1]
        return sorted(k for k, d in docs.items() if kind in d["nist"])

    monkeypatch.setattr(qoe.data, "experiment_ids", ids)
    return docs


def test_m2e_per_trial_and_summary(documents):
    for exp_id, doc in documents.items():
        trials, summary = qoe.m2e(exp_id)
        meta = doc["nist"]["m2e"]
        assert len(trials) == meta["trials"]
        assert list(trials.columns) == [
            "experiment_id",
            "trial",
            "clip",
            "m2e_latency_s",
            "m2e_latency_ms",
            "timestamp",
            "recording",
        ]
        assert set(trials["clip"]) <= set(meta["clips"])
        first = trials.iloc[0]
        assert first["recording"].name == f"Rx1_{first['clip']}.wav"  # NIST's naming
        row = summary.iloc[0]
        assert row["m2e_truth_ms"] == meta["m2e_truth_ms"]
        assert row["m2e_injected_ms"] == pytest.approx(meta["injected_m2e_latency_s"] * 1000)
        assert abs(row["m2e_mean_ms"] - row["m2e_truth_ms"]) <= 1.0
        assert row["m2e_error_ms"] == pytest.approx(row["m2e_mean_ms"] - row["m2e_truth_ms"])
        assert row["m2e_ci_low_ms"] - 1e-9 <= row["m2e_mean_ms"] <= row["m2e_ci_high_ms"] + 1e-9


def test_m2e_interval_is_the_same_each_run(documents):
    first = qoe.m2e("exp-001").summary
    again = qoe.m2e("exp-001").summary
    assert first.equals(again)


def test_access_delay_within_resolution(documents):
    trials, summary, curve = qoe.access_delay("exp-002")
    meta = documents["exp-002"]["nist"]["access_time"]
    row = summary.iloc[0]
    assert row["alpha"] == 0.9
    assert row["resolution_s"] == meta["resolution_s"]
    assert abs(row["access_error_ms"]) <= meta["resolution_s"] * 1000
    assert row["access_delay_ci_low_s"] <= row["access_delay_s"] <= row["access_delay_ci_high_s"]
    assert {"ptt_delay_s", "ptt_time_s", "time_to_p1_s", "p1_intelligibility"} <= set(trials)
    assert len(trials) == sum(1 for _ in (DATA / "media" / meta["csvs"][0]).open()) - 4
    assert curve["alpha"].iloc[0] == 0.5 and curve["alpha"].iloc[-1] == 0.99
    # the uncorrected fit runs through the trials: the first word is lost when PTT came
    # less than its t0 before it, heard when more
    heard = trials.loc[trials["p1_intelligibility"] == 1, "time_to_p1_s"]
    lost = trials.loc[trials["p1_intelligibility"] == 0, "time_to_p1_s"]
    assert row["raw_lambda_s"] < 0
    assert lost.max() <= row["raw_t0_s"] <= heard.min()
    assert curve["access_delay_s"].is_monotonic_increasing


def test_experiment_without_access_test_names_those_with_one(documents):
    with pytest.raises(qoe.NoNistTest, match=r"'exp-001' has no NIST access-time .*\(1\): exp-002"):
        qoe.access_delay("exp-001")


def test_evaluation_needs_no_abcmrt():
    import importlib.metadata
    import sys

    try:
        importlib.metadata.version("abcmrt16")
    except importlib.metadata.PackageNotFoundError:  # the image's case
        qoe._nist("mcvqoe.accesstime.access_time_eval")
        assert getattr(sys.modules["abcmrt"], "__testbed_placeholder__", False)
        with pytest.raises(qoe.TestbedError, match=r"abcmrt16\) is not installed"):
            sys.modules["abcmrt"].process([], [])


def test_versions_imports_the_evaluation_and_names_each_distribution():
    found = qoe.versions()
    assert list(found) == list(qoe.DISTRIBUTIONS)
    assert (found["mcvqoe-base"], found["mcvqoe-mouth2ear"], found["mcvqoe-accesstime"]) == (
        "1.3.2",
        "2.1.3",
        "2.2.3",
    )
