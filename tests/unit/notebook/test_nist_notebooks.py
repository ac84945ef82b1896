"""The NIST notebooks (04-mouth-to-ear, 05-access-delay), executed headless by the batch
runner against NIST outputs of seeded experiments (tests/nist/data, written by
testbed_sim.nist) served by the MongoDB stand-in: the recorded numbers are NIST's
evaluation of the audio's results, within 1 ms of the truth for M2E and within the
test's stated resolution for access delay."""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import soundfile

from testbed.batch import plan_batch, run_batch
from testbed_devtools.notebook_figures import readability_problems, run_instrumented
from testbed_sim import mongo
from testbed_sim.seed import DATABASE

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = ROOT / "files" / "notebooks"
DATA = ROOT / "tests" / "nist" / "data"
WITHOUT = "exp-003"  # an experiment without NIST tests
NO_TRUTH = "exp-004"  # an M2E test without an injected (truth) value


@pytest.fixture(scope="module")
def documents():
    docs = json.loads((DATA / "documents.json").read_text(encoding="utf-8"))
    for exp_id, doc in docs.items():
        doc["title"] = f"NIST fixture {exp_id}"
    docs[WITHOUT] = {"_id": WITHOUT, "title": "no NIST tests"}
    # a testbed's own M2E test, nothing injected: no truth value in its document
    own = copy.deepcopy(docs["exp-001"])
    own["_id"], own["title"] = NO_TRUTH, "a testbed's own M2E test"
    own["nist"]["m2e"].pop("m2e_truth_ms")
    own["nist"].pop("access_time", None)
    docs[NO_TRUTH] = own
    return docs


@pytest.fixture(scope="module")
def nist_media(tmp_path_factory, documents) -> Path:
    """The fixture's NIST files, and one received WAV (the fixture keeps no audio)."""
    media = tmp_path_factory.mktemp("nist-media")
    shutil.copytree(DATA / "media", media, dirs_exist_ok=True)
    m2e = documents["exp-001"]["nist"]["m2e"]
    wav = media / m2e["wav_dir"] / f"Rx1_{first_clip(media / m2e['csv'])}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(4800) / 48000
    soundfile.write(wav, 0.1 * np.sin(2 * np.pi * 440 * t), 48000, subtype="PCM_16")
    return media


def first_clip(csv_path: Path) -> str:
    with csv_path.open() as fh:
        lines = [ln for ln in fh if ln.strip()]
    header = next(i for i, ln in enumerate(lines) if ln.startswith("Timestamp"))
    row = next(csv.DictReader(lines[header:]))
    return row["Filename"]


@pytest.fixture(scope="module")
def nist_mongo(documents):
    server = mongo.MongoStandIn(host="127.0.0.1", port=0, seed=None)
    server.client[DATABASE].experiments.insert_many([dict(d) for d in documents.values()])
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def nist_env(monkeypatch, nist_mongo, nist_media):
    monkeypatch.setenv("TESTBED_MONGO_URI", nist_mongo.uri)
    monkeypatch.setenv("TESTBED_MONGO_DB", DATABASE)
    monkeypatch.setenv("TESTBED_MEDIA_DIR", str(nist_media))
    monkeypatch.setenv("TESTBED_MONGO_TIMEOUT_MS", "3000")
    for name in ("TESTBED_MONGO_USER", "TESTBED_MONGO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return nist_media


def batch(name, experiments, tmp_path):
    plan = plan_batch(
        NOTEBOOKS / f"{name}.ipynb",
        experiments=experiments,
        parameters={},
        jobs=2,
        timeout=60,  # papermill's per-cell deadline; run time is a benchmark's matter
        output_dir=tmp_path,
    )
    outcome = run_batch(plan)
    for result in outcome.results:
        assert result.ok, f"{result.experiment}: {result.error}"
    with outcome.summary_csv.open() as fh:
        rows = {r["experiment"]: r for r in csv.DictReader(fh)}
    assert list(rows) == list(experiments)
    return outcome, rows


def outputs(outcome, exp_id):
    nb = nbformat.read(outcome.directory / "experiments" / f"{exp_id}.ipynb", as_version=4)
    return [o for c in nb.cells for o in c.get("outputs", [])]


def text_of(outs):
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outs)


@pytest.mark.slow
def test_mouth_to_ear_measured_within_1_ms_of_truth(nist_env, documents, tmp_path):
    exps = ["exp-001", "exp-002", WITHOUT]
    outcome, rows = batch("04-mouth-to-ear", exps, tmp_path)
    for exp in exps[:2]:
        meta = documents[exp]["nist"]["m2e"]
        rec = outcome.results[exps.index(exp)].records
        assert rec["n_trials"] == meta["trials"]
        assert rec["m2e_truth_ms"] == meta["m2e_truth_ms"]
        assert abs(rec["m2e_measured_ms"] - rec["m2e_truth_ms"]) <= 1.0, rec
        assert rec["m2e_ci_low_ms"] <= rec["m2e_measured_ms"] <= rec["m2e_ci_high_ms"]
        assert float(rows[exp]["m2e_measured_ms"]) == rec["m2e_measured_ms"]
        assert float(rows[exp]["m2e_truth_ms"]) == meta["m2e_truth_ms"]
        images = [o for o in outputs(outcome, exp) if "image/png" in o.get("data", {})]
        assert len(images) == 1  # the per-trial figure
    # the trial's audio player where its WAV is there, a plain message where not
    with_audio = outputs(outcome, "exp-001")
    assert any("<audio" in o.get("data", {}).get("text/html", "") for o in with_audio)
    assert outcome.results[0].records["trial_recording"].startswith("Rx1_")
    assert "No received audio for this trial" in text_of(outputs(outcome, "exp-002"))
    # an experiment without the test runs through and says which ones have one
    rec = outcome.results[2].records
    assert rec == {"n_trials": 0}
    assert rows[WITHOUT]["m2e_measured_ms"] == ""
    message = text_of(outputs(outcome, WITHOUT))
    assert "'exp-003' has no NIST mouth-to-ear (M2E) test" in message
    assert "Experiments with one (3): exp-001, exp-002, exp-004" in message


def test_mouth_to_ear_without_a_truth_value_reports_the_measurement(nist_env, tmp_path):
    """A testbed's own M2E test (no injected value in its document): the notebook
    reports NIST's measurement and records no truth or error, instead of failing."""
    outcome, rows = batch("04-mouth-to-ear", ["exp-001", NO_TRUTH], tmp_path)
    ref, rec = outcome.results[0].records, outcome.results[1].records
    assert rec["n_trials"] == ref["n_trials"] > 0
    assert rec["m2e_measured_ms"] == ref["m2e_measured_ms"]
    assert "m2e_truth_ms" not in rec and "m2e_error_ms" not in rec, rec
    assert rows[NO_TRUTH]["m2e_truth_ms"] == ""


@pytest.mark.slow
def test_access_delay_within_the_tests_resolution(nist_env, documents, tmp_path):
    exps = ["exp-002", "exp-001"]
    outcome, rows = batch("05-access-delay", exps, tmp_path)
    meta = documents["exp-002"]["nist"]["access_time"]
    rec = outcome.results[0].records
    assert rec["access_truth_ms"] == meta["access_truth_ms"]
    assert rec["resolution_ms"] == pytest.approx(meta["resolution_s"] * 1000)
    assert abs(rec["access_delay_ms"] - meta["access_truth_ms"]) <= rec["resolution_ms"], rec
    assert rec["access_error_ms"] == pytest.approx(
        rec["access_delay_ms"] - meta["access_truth_ms"], abs=2e-3
    )
    images = [o for o in outputs(outcome, "exp-002") if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the curve, zoomed, and access delay vs alpha
    assert outcome.results[1].records == {"n_trials": 0}
    assert "'exp-001' has no NIST access-time test" in text_of(outputs(outcome, "exp-001"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "experiment_id", "n_axes"),
    [("04-mouth-to-ear", "exp-001", 2), ("05-access-delay", "exp-002", 3)],
)
def test_every_plot_is_titled_labelled_and_readable(
    nist_env, tmp_path, name, experiment_id, n_axes
):
    """As test_demo_notebooks checks 01-03: one figure, every plot titled with its
    experiment, both axes named with their unit (or a count), no marker hidden under
    another: scatter points (05's trial means) and line markers (04's per-trial
    markers, 05's red alpha marker) alike (notebook_figures)."""
    (fig,), _outputs = run_instrumented(name, experiment_id, tmp_path)
    plots = [ax for ax in fig["axes"] if not ax["colorbar"]]
    assert len(plots) == n_axes, [ax["title"] for ax in fig["axes"]]
    for ax in plots:
        assert ax["title"].startswith(f"{experiment_id}: "), ax
        # the overview of the whole curve is exempt from crowding: the bisection's PTT
        # times lie a few ms apart around the access delay; the next panel zooms in
        overview = ax["title"].endswith("P1 intelligibility vs time from PTT")
        assert readability_problems(ax, crowding=not overview) == [], ax
    if name == "05-access-delay":
        zoom = next(ax for ax in plots if ax["title"].endswith("around the access delay"))
        assert len(zoom["points"]) >= 3, zoom  # the trials near the access delay, apart
    if name == "04-mouth-to-ear":
        # the per-trial markers are line markers: all of them are among the checked points
        assert max(len(ax["points"]) for ax in plots) >= 8, plots


def test_readme_qoe_block_runs_on_nist_outputs(nist_env):
    """The README's ``testbed.qoe`` block (researchers' section), as written, on NIST's
    outputs: each line answers its question (e2e/test_readme.py runs it in JupyterLab)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(
        b
        for b in re.findall(r"```python\n(.*?)```", readme, re.S)
        if "from testbed import qoe" in b
    )
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    trials, summary, curve = scope["trials"], scope["summary"], scope["curve"]
    assert len(trials) > 0 and "access_delay_ms" in summary.columns and len(curve) > 0
    assert scope["qoe"].experiments_with("access_time") == ["exp-002"]
