"""The demo notebooks in files/notebooks/, executed headless by the batch runner
against the MongoDB stand-in, produce the numbers the seed data implies."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import nbformat
import numpy as np
import pytest
import soundfile

from testbed.batch import inspect_notebook, plan_batch, run_batch

DEMOS = ["01-experiment-overview", "02-ptt-performance", "03-audio"]
NOTEBOOKS = Path(__file__).resolve().parents[3] / "files" / "notebooks"
pytestmark = pytest.mark.usefixtures("testbed_env")


@pytest.mark.parametrize("name", DEMOS)
def test_demo_is_a_clean_parameterised_template(name):
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "experiment_id" in inspect_notebook(path).parameters
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "clear outputs"
    assert any("from testbed import data" in c.source for c in code)


def batch(name, experiments, tmp_path, **params):
    plan = plan_batch(
        NOTEBOOKS / f"{name}.ipynb",
        experiments=experiments,
        parameters=params,
        jobs=2,
        # papermill's per-cell deadline: a hanging cell fails the run; how long a
        # run takes on a busy machine is not asserted (benchmarks measure time)
        timeout=60,
        output_dir=tmp_path,
    )
    outcome = run_batch(plan)
    with outcome.summary_csv.open() as fh:
        rows = {r["experiment"]: r for r in csv.DictReader(fh)}
    runs = outcome.directory / "experiments"
    for result in outcome.results:
        assert result.ok, f"{result.experiment}: {result.error}"
        assert (runs / f"{result.experiment}.ipynb").is_file()
        assert (runs / f"{result.experiment}.html").is_file()
    assert list(rows) == list(experiments)
    return outcome, rows


def events_of(seed_data, exp_id):
    return [e for e in seed_data.ptt_events if e["experiment_id"] == exp_id]


@pytest.mark.slow
def test_overview(seed_data, tmp_path):
    exps = ["exp-001", "exp-004"]
    outcome, rows = batch("01-experiment-overview", exps, tmp_path)
    total_recordings = sum(len(e["recordings"]) for e in seed_data.experiments)
    for exp in exps:
        rec = outcome.results[exps.index(exp)].records
        doc = next(e for e in seed_data.experiments if e["_id"] == exp)
        assert rec["n_experiments"] == len(seed_data.experiments)
        assert rec["n_ptt_events"] == len(seed_data.ptt_events)
        assert rec["n_recordings_total"] == total_recordings
        assert rec["experiment_packet_loss_pct"] == doc["channel"]["packet_loss_pct"]
        assert rec["experiment_n_events"] == len(events_of(seed_data, exp))
        assert int(rows[exp]["n_experiments"]) == len(seed_data.experiments)
    executed = nbformat.read(outcome.directory / "experiments" / "exp-001.ipynb", as_version=4)
    images = [
        o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) == 1


@pytest.mark.slow
def test_ptt_performance_over_every_experiment(seed_data, tmp_path):
    exps = [e["_id"] for e in seed_data.experiments]
    assert len(exps) >= 10
    outcome, rows = batch("02-ptt-performance", exps, tmp_path, bins=8)
    for exp in exps:
        events = events_of(seed_data, exp)
        access = [e["access_delay_ms"] for e in events]
        m2e = [e["mouth_to_ear_ms"] for e in events]
        row = rows[exp]
        assert int(row["n_events"]) == len(events)
        assert float(row["mean_access_delay_ms"]) == pytest.approx(
            statistics.fmean(access), abs=5e-4
        )
        assert float(row["p95_access_delay_ms"]) == pytest.approx(
            np.percentile(access, 95), abs=5e-4
        )
        assert float(row["mean_mouth_to_ear_ms"]) == pytest.approx(statistics.fmean(m2e), abs=5e-4)
        assert float(row["p95_mouth_to_ear_ms"]) == pytest.approx(np.percentile(m2e, 95), abs=5e-4)
        doc = next(e for e in seed_data.experiments if e["_id"] == exp)
        assert float(row["packet_loss_pct"]) == doc["channel"]["packet_loss_pct"]
    executed = json.loads((outcome.directory / "experiments" / "exp-001.ipynb").read_text())
    injected = [
        c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    ]
    assert "bins = 8" in "".join(injected[0]["source"])


@pytest.mark.slow
def test_audio(seed_data, media, tmp_path):
    # exp-005 is the seed's experiment without recordings
    exps = ["exp-001", "exp-002", "exp-005", "exp-010"]
    outcome, rows = batch("03-audio", exps, tmp_path)
    for exp in exps:
        doc = next(e for e in seed_data.experiments if e["_id"] == exp)
        row = rows[exp]
        assert int(row["n_recordings"]) == len(doc["recordings"])
        if not doc["recordings"]:  # the seed's experiment without recordings still runs
            assert row["recording_duration_s"] == "" and row["recording"] == ""
            continue
        first = doc["recordings"][0]
        event = next(e for e in events_of(seed_data, exp) if e["recording"] == first)
        assert row["recording"] == Path(first).name
        assert int(row["sample_rate_hz"]) == 8000
        assert float(row["recording_duration_s"]) == pytest.approx(event["duration_s"], abs=1e-3)
        samples, _ = soundfile.read(media / first, dtype="float64")
        assert float(row["rms"]) == pytest.approx(np.sqrt(np.mean(samples**2)), abs=2e-6)
    executed = nbformat.read(outcome.directory / "experiments" / "exp-001.ipynb", as_version=4)
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    assert any("<audio" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
