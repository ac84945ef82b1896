"""The demo notebooks in files/notebooks/, executed headless by the batch runner
against the MongoDB stand-in, produce the numbers the seed data implies."""

from __future__ import annotations

import csv
import json
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
import soundfile

from testbed.batch import inspect_notebook, plan_batch, run_batch
from testbed.errors import RecordingMissing
from testbed_devtools.notebook_figures import UNIT, readability_problems, run_instrumented

DEMOS = ["01-experiment-overview", "02-ptt-performance", "03-audio"]
#: NIST's notebooks: run on NIST's outputs in test_nist_notebooks.py
NIST_DEMOS = ["04-mouth-to-ear", "05-access-delay"]
NOTEBOOKS = Path(__file__).resolve().parents[3] / "files" / "notebooks"
pytestmark = pytest.mark.usefixtures("testbed_env")


@pytest.mark.parametrize("name", DEMOS + NIST_DEMOS)
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


def outputs_of(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells for o in c.get("outputs", [])]


class Table(HTMLParser):
    """A rendered HTML table as rows of cell texts: the header rows (``thead``) apart."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.head: list[list[str]] = []
        self.body: list[list[str]] = []
        self._rows = self.head
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self._rows = self.body
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def width_chars(self) -> int:
        """Characters of the widest cell of each column, summed: what one line per
        row needs (a browser draws the table about 7 px per character wide)."""
        return sum(max(len(cell) for cell in column) for column in zip(*self.head, *self.body))


def html_tables(outputs) -> list[Table]:
    tables = []
    for o in outputs:
        text = o.get("data", {}).get("text/html", "")
        if "<table" in text:
            table = Table()
            table.feed(text)
            tables.append(table)
    return tables


def texts(outputs) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


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
    outputs = outputs_of(outcome.directory / "experiments" / "exp-001.ipynb")
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    # the table of experiments: whole titles, one header line, narrow enough for the page
    (table,) = html_tables(outputs)
    assert len(table.head) == 1, table.head
    header = table.head[0]
    assert header == ["experiment", "title", "date (UTC)", "kbit/s", "BER", "events", "recordings"]
    assert [row[0] for row in table.body] == [e["_id"] for e in seed_data.experiments]
    titles = [row[1] for row in table.body]
    assert titles == [e["title"] for e in seed_data.experiments]  # whole, never "..."
    # one line per row at about 7 px a character plus padding: <= 110 characters is
    # about 900 px, inside JupyterLab's notebook column on a laptop screen
    assert table.width_chars() <= 110, table.width_chars()
    exp = seed_data.experiments[0]
    first = dict(zip(header, table.body[0], strict=True))
    assert first["date (UTC)"] == exp["date"].strftime("%Y-%m-%d %H:%M")
    assert int(first["kbit/s"]) == exp["channel"]["bandwidth_kbps"]
    assert first["BER"] == f"{exp['channel']['bit_error_rate']:.0e}"
    assert int(first["events"]) == len(events_of(seed_data, exp["_id"]))
    assert int(first["recordings"]) == len(exp["recordings"])


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
        # the marked arrival is where the voice starts: silence before, speech after
        voice_s = (event["access_delay_ms"] + event["mouth_to_ear_ms"]) / 1000
        assert float(row["voice_arrives_s"]) == pytest.approx(voice_s, abs=1e-4)
        at = round(voice_s * 8000)
        assert np.sqrt(np.mean(samples[: at - 8] ** 2)) < 1e-4  # below -80 dBFS
        assert np.sqrt(np.mean(samples[at:] ** 2)) > 0.01
    outputs = outputs_of(outcome.directory / "experiments" / "exp-001.ipynb")
    assert any("<audio" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    # without recordings: a sentence naming the experiments that have some, no plot
    outputs = outputs_of(outcome.directory / "experiments" / "exp-005.ipynb")
    have = ", ".join(e["_id"] for e in seed_data.experiments if e["recordings"])
    assert (
        f"exp-005 has no recordings: nothing to plot or play. Experiments with recordings: {have}."
        in texts(outputs)
    )
    assert not any("image/png" in o.get("data", {}) for o in outputs)


# -- what a reader sees: figures, tables, messages -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "experiment_id", "n_figures"),
    [
        ("01-experiment-overview", "exp-004", 1),
        ("02-ptt-performance", "exp-001", 2),
        ("03-audio", "exp-002", 1),
    ],
)
def test_every_plot_is_titled_labelled_and_readable(
    seed_data, tmp_path, name, experiment_id, n_figures
):
    figures, _ = run_instrumented(name, experiment_id, tmp_path)
    assert len(figures) == n_figures
    for fig in figures:
        plots = [ax for ax in fig["axes"] if not ax["colorbar"]]
        assert plots
        for ax in plots:
            assert readability_problems(ax) == [], ax
        for bar in (ax for ax in fig["axes"] if ax["colorbar"]):
            assert UNIT.search(bar["ylabel"]), bar
    doc = next(e for e in seed_data.experiments if e["_id"] == experiment_id)
    axes = [ax for fig in figures for ax in fig["axes"]]
    if name == "01-experiment-overview":
        by_title = {ax["title"]: ax for ax in axes}
        scatter = by_title[f"Channel settings of {len(seed_data.experiments)} experiments"]
        bars = by_title["PTT events per experiment"]
        # every experiment is a visible point; the bar chart counts events
        assert len(scatter["points"]) == len(seed_data.experiments)
        assert scatter["colorbar_labels"] == ["bandwidth (kbit/s)"]
        assert bars["ylabel"] == "number of PTT events"
    elif name == "02-ptt-performance":
        hist, scatter = figures
        assert hist["suptitle"] == f"{experiment_id}: {doc['title']}"
        assert [ax["ylabel"] for ax in hist["axes"]] == ["number of events"] * 2
        assert all(len(ax["points"]) == len(seed_data.experiments) for ax in scatter["axes"])
    else:
        (fig,) = figures
        assert (
            fig["suptitle"]
            == f"{experiment_id}, ptt-{int(doc['recordings'][0][-8:-4]):04d}.wav: {doc['title']}"
        )
        assert [ax["colorbar"] for ax in fig["axes"]] == [False, False, True]
        event = next(e for e in events_of(seed_data, experiment_id) if e["recording"])
        access, m2e = event["access_delay_ms"], event["mouth_to_ear_ms"]
        assert fig["axes"][0]["legend"] == [
            "received audio",
            f"PTT access ({access:.0f} ms)",
            f"+ mouth-to-ear latency: voice arrives ({access + m2e:.0f} ms)",
        ]


def readme_snippet() -> str:
    readme = (NOTEBOOKS.parents[1] / "README.md").read_text(encoding="utf-8")
    after = readme.split("In a notebook:", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_readme_snippet_works_for_every_experiment(seed_data):
    snippet = readme_snippet()
    assert 'experiment_id = "exp-001"' in snippet
    played = []
    for exp in seed_data.experiments:
        code = snippet.replace('experiment_id = "exp-001"', f"experiment_id = {exp['_id']!r}")
        scope: dict = {}
        if exp["recordings"]:
            exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
            assert [str(p) for p in scope["paths"]][0].endswith(exp["recordings"][0])
            played.append(exp["_id"])
            continue
        # the seed's experiment without recordings: a testbed error that says so and
        # names the experiments to try instead, not a bare IndexError
        with pytest.raises(RecordingMissing) as raised:
            exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
        have = [e["_id"] for e in seed_data.experiments if e["recordings"]]
        assert str(raised.value) == f"{exp['_id']} has no recordings; these have: {', '.join(have)}"
    assert len(played) == len(seed_data.experiments) - 1
