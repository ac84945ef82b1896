"""summary.ipynb: a batch's summary as a notebook whose Markdown links JupyterLab follows."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path
from urllib.parse import quote, unquote

import nbformat
import pytest

from testbed.batch.runner import RETRIED_TEXT, RunResult, safe_name, write_summary
from testbed.batch.summary_notebook import markdown_link, markdown_table, markdown_text

ODD_TEXTS = [
    "a|b|c",
    "[x](http://example.org) ![i](y.png) [y]: /z",
    "*em* _u_ **b** `code` ~~s~~ ~t~",
    "$x$ and $$y$$ cost $5",
    "<b>bold</b> <!-- c --> <http://a.b/> &lt; &amp; &#92;",
    "back\\slash \\[x\\] \\(y\\) \\begin{eq} \\\\ \\| \\",
    "exp #1 50% a b",
]


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_markdown_text_is_literal_in_a_table_cell(render, text):
    table = markdown_table(["value", "next"], [[markdown_text(text), "after"]])
    (row,) = render(table).table
    assert row["value"].text == text
    assert row["value"].tags == []  # no link, emphasis, code, math, HTML
    assert row["next"].text == "after"  # no pipe split the row


def test_markdown_text_keeps_line_breaks_inside_the_row(render):
    text = "line 1\nline 2\r\nline 3\rline 4"
    (row,) = render(markdown_table(["value", "next"], [[markdown_text(text), "x"]])).table
    assert row["value"].text == "line 1\nline 2\nline 3\nline 4"
    assert row["value"].tags == ["br", "br", "br"]
    assert row["next"].text == "x"


def test_markdown_text_of_nothing():
    assert markdown_text(None) == markdown_text("") == markdown_text("  \n ") == ""
    assert markdown_text(12.5) == "12.5"


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_markdown_text_leaves_jupyterlab_no_latex(text):
    """JupyterLab hides math from the Markdown parser first (removeMath,
    packages/rendermime/src/latex.ts): `$`, `\\\\(`, `\\\\[` and `\\begin{` would
    start it. Every backslash of the output escapes one punctuation character."""
    escaped = markdown_text(text)
    assert "$" not in escaped.replace("\\$", "")
    assert re.search(r"\\(?![`*_\[\]<>|~$&])", escaped) is None, escaped


def test_markdown_link(render):
    link = markdown_link("exp [1] | a*b", "experiments/exp%20_1%25.ipynb")
    (row,) = render(markdown_table(["run"], [[link]])).table
    assert row["run"].text == "exp [1] | a*b"
    assert row["run"].hrefs == ["experiments/exp%20_1%25.ipynb"]


@pytest.mark.parametrize(
    "href", ["", "a b.ipynb", "x(1).ipynb", "a|b.ipynb", "<x>", "a\\b", "a\nb"]
)
def test_markdown_link_wants_an_encoded_url(href):
    with pytest.raises(ValueError, match="not a percent-encoded URL"):
        markdown_link("x", href)


def test_markdown_table_shape(render):
    table = markdown_table(["a|b", "c"], [["1", ""], ["2", "3"]])
    assert [{k: c.text for k, c in row.items()} for row in render(table).table] == [
        {"a|b": "1", "c": ""},
        {"a|b": "2", "c": "3"},
    ]
    with pytest.raises(ValueError, match="row has 1 cells, the table 2 columns"):
        markdown_table(["a", "b"], [["1"]])
    with pytest.raises(ValueError, match="at least one column"):
        markdown_table([], [])


# -- summary.ipynb as write_summary leaves it -----------------------------------------

BATCH = Path("runs", "PTT #1 50%", "20250102T030405Z")
STARTED = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ODD_IDS = ["exp|1", "exp [2]\nsecond line", "a\\b $x$ *y*", "exp-004"]


def odd_runs(batch_dir: Path) -> list[RunResult]:
    """Runs of odd experiment ids (files named by safe_name, as run-notebook does),
    a failed one with its notebook, one whose worker died before it wrote anything,
    and one whose files have a space, '#' and '%' in their names."""
    (batch_dir / "experiments").mkdir(parents=True)
    results = []
    for n, exp in enumerate([*ODD_IDS, "exp 5"]):
        name = safe_name(exp) if exp != "exp 5" else "exp #5 50%"
        notebook = batch_dir / "experiments" / f"{name}.ipynb"
        notebook.write_text("{}")
        notebook.with_suffix(".html").write_text("<!DOCTYPE html>")
        records = {"m2e_ms": 200.5 + n, "note": f"v|{n}", "status": "recorded"}
        results.append(
            RunResult(exp, "ok", 1.0 + n, "", notebook, notebook.with_suffix(".html"), records)
        )
    results[2].status = "failed"
    results[2].error = "RuntimeError: bad | value [x]\nsecond line"
    results[2].records = {}
    results[1].attempts = 2
    results.append(RunResult("exp-006", "failed", 0.0, "BrokenProcessPool: ", None, None))
    return results


def test_summary_notebook_lists_every_run_with_its_values_and_links(
    tmp_path, read_summary_notebook
):
    batch_dir = tmp_path / BATCH
    results = odd_runs(batch_dir)
    files = write_summary(
        results,
        batch_dir,
        "tiny.ipynb: 20250102T030405Z",
        started=STARTED,
        notebook=Path("/home/jovyan/nist/tiny.ipynb"),
    )
    assert files.notebook == batch_dir / "summary.ipynb"

    summary = read_summary_notebook(batch_dir)  # validated with nbformat
    nb = summary.notebook
    assert nb.metadata["testbed"] == {"generated_by": "run-notebook"}
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert summary.markdown.headings == ["tiny.ipynb: 20250102T030405Z"]
    head = nb.cells[0].source
    assert "started 2025-01-02 03:04:05 UTC" in head and "/home/jovyan/nist/tiny.ipynb" in head
    assert f"4 of 6 runs ok, 2 failed; 1 {RETRIED_TEXT}" in head.replace("\\", "")

    with files.csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    table = summary.markdown.table
    # the same columns and values as summary.csv (a table cell's edges are trimmed),
    # one row per run, in order
    assert list(table[0]) == columns
    assert [{c: cell.text for c, cell in row.items()} for row in table] == [
        {c: v.strip() for c, v in row.items()} for row in rows
    ]
    assert [row["experiment"].text for row in table] == [*ODD_IDS, "exp 5", "exp-006"]
    assert [row["status"].text for row in table] == ["ok", "ok", "failed", "ok", "ok", "failed"]
    assert table[2]["error"].text == "RuntimeError: bad | value [x]\nsecond line"
    assert table[3]["note"].text == "v|3" and table[3]["record_status"].text == "recorded"
    assert table[2]["m2e_ms"].text == "" and table[1]["attempts"].text == "2"
    # a failed run stands out; nothing else of a cell became markup
    assert [row["status"].tags for row in table] == [[], [], ["strong"], [], [], ["strong"]]
    assert {tag for row in table for cell in row.values() for tag in cell.tags} <= {
        "a",
        "br",
        "strong",
    }

    for row, csv_row in zip(table, rows, strict=True):
        if not csv_row["notebook"]:  # the worker died: nothing to link
            assert row["experiment"].hrefs == row["notebook"].hrefs == row["html"].hrefs == []
            continue
        # the experiment and its notebook link the executed notebook, html its HTML
        notebook_href = quote(csv_row["notebook"])
        assert row["experiment"].hrefs == row["notebook"].hrefs == [notebook_href]
        assert row["html"].hrefs == [quote(csv_row["html"])]
        for href in (notebook_href, *row["html"].hrefs):
            # relative to summary.ipynb, percent-encoded: JupyterLab decodes it
            # (decodeURIComponent) and drops what decodeURI rejects
            assert re.fullmatch(r"(?:[A-Za-z0-9._~/-]|%[0-9A-F]{2})+", href), href
            assert (batch_dir / unquote(href)).is_file(), href
    assert table[4]["notebook"].hrefs == ["experiments/exp%20%235%2050%25.ipynb"]


def test_summary_notebook_loads_summary_csv_beside_it(tmp_path, monkeypatch):
    """Its code cell, run where a kernel starts (the notebook's folder), reads the
    table of summary.csv; an experiment id that looks like a number stays text."""
    batch_dir = tmp_path / BATCH
    results = [*odd_runs(batch_dir), RunResult("007", "ok", 1.0, "", None, None)]
    files = write_summary(results, batch_dir, "t")
    source = nbformat.read(files.notebook, as_version=4).cells[1].source
    monkeypatch.chdir(batch_dir)
    namespace: dict = {}
    exec(source, namespace)
    summary = namespace["summary"]
    with files.csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    assert list(summary.columns) == columns
    assert summary["experiment"].tolist() == [r["experiment"] for r in rows]
    assert summary["experiment"].iloc[-1] == "007"
    assert summary["status"].tolist() == ["ok", "ok", "failed", "ok", "ok", "failed", "ok"]


def test_summary_notebook_without_start_or_notebook(tmp_path, read_summary_notebook):
    """write_summary's callers may leave out when and what: the heading says less."""
    batch_dir = tmp_path / BATCH
    write_summary(odd_runs(batch_dir), batch_dir, "x | y")
    summary = read_summary_notebook(batch_dir)
    assert summary.markdown.headings == ["x | y"]
    assert "started" not in summary.notebook.cells[0].source
    assert len(summary.markdown.table) == 6
