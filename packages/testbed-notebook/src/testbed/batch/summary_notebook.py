"""A batch's ``summary.ipynb``: the summary as a notebook whose links JupyterLab follows.

``summary.html`` needs "Trust HTML" before its links work in JupyterLab
(:mod:`testbed.batch.links`). A link in a notebook's rendered Markdown cell needs
nothing: a Markdown cell is rendered untrusted, so sanitized, but the sanitizer
keeps ``<a href>``, and for a relative ``href`` JupyterLab attaches its own click
handler that opens the file in a JupyterLab tab. In jupyterlab/jupyterlab (the
same in v4.2.0, v4.6.1 and main):

- packages/rendermime/src/renderers.ts: ``renderMarkdown`` -> ``renderHTML`` ->
  ``Private.handleUrls`` -> ``handleAnchor``: a local ``href`` is resolved against
  the notebook's folder (``RenderMimeRegistry.UrlResolver.resolveUrl``, the
  notebook's own resolver: packages/notebook/src/widgetfactory.ts), decoded with
  ``decodeURIComponent`` and handed to ``linkHandler.handleLink``;
- packages/rendermime-extension/src/index.ts: that ``handleLink`` turns the click
  into the command ``rendermime:handle-local-link``, which calls
  ``docManager.openOrReveal(path, <the file type's default rendered factory>)``:
  a notebook for ``.ipynb``, the HTML viewer for ``.html``, in a new tab of the
  same JupyterLab (or the tab that already shows it).

No frame, no popup: nothing for the server's ``frame-ancestors 'none'`` or a
sandbox to block, and the notebook opens with full rights (it can be edited and
saved, unlike in a browser tab opened from the HTML viewer).

Because ``handleAnchor`` percent-decodes the link and the resolver leaves alone a
link that ``decodeURI`` rejects (``UrlResolver.isMalformed``: a bare ``%``), link
targets are percent-encoded per path segment (:func:`testbed.batch.links.url_path`).
Table cells are escaped by :func:`markdown_text`. The notebook is written, never
run; its code cell loads ``summary.csv`` with pandas when the researcher runs it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

import nbformat

#: The notebook's metadata key and value that mark it as written by run-notebook.
METADATA_KEY = "testbed"
GENERATED_BY = {"generated_by": "run-notebook"}

#: The code cell: a kernel starts in the notebook's folder, so the relative path works.
LOAD_CSV_SOURCE = (
    "import pandas as pd\n"
    "\n"
    "# summary.csv lies beside this notebook (a kernel starts in the notebook's folder)\n"
    'summary = pd.read_csv("summary.csv", dtype={"experiment": str})\n'
    "summary"
)

# Characters with a meaning inside a Markdown table cell: CommonMark's inline syntax
# (code, emphasis, links, HTML, entities), GFM's table cells and strikethrough,
# JupyterLab's `$` math; and the backslash itself.
_SPECIAL = re.compile(r"[\\`*_\[\]<>|~$&]")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "&#92;" if char == "\\" else "\\" + char


def markdown_text(value: object) -> str:
    """``value`` as literal text in a Markdown table cell (or any inline Markdown).

    - Markdown's inline punctuation and the table's ``|`` are backslash-escaped
      (CommonMark allows that for any ASCII punctuation);
    - a backslash becomes ``&#92;``: left as it is or escaped as
      ``\\\\``, it could make ``\\begin{``, ``\\\\(`` or (before an escaped ``[``)
      ``\\\\[``, which JupyterLab's math pre-processing (``removeMath``,
      packages/rendermime/src/latex.ts) takes for LaTeX before the Markdown parser
      sees it;
    - line breaks become ``<br>`` (a row of a table is one line).

    ``None`` is the empty cell. Leading and trailing spaces are dropped (a table
    cell's content is trimmed anyway). Bare URLs stay text the Markdown parser may
    turn into links (GFM's autolinks), which open in a new browser tab.
    """
    if value is None:
        return ""
    return _NEWLINE.sub("<br>", _SPECIAL.sub(_escape, str(value).strip()))


def markdown_link(text: object, href: str) -> str:
    """A Markdown link; ``href`` must be a URL already (percent-encoded, no spaces),
    as :func:`testbed.batch.links.relative_href` makes."""
    if not href or any(c in href for c in " <>()|\\\n\r\t"):
        raise ValueError(f"not a percent-encoded URL: {href!r}")
    return f"[{markdown_text(text)}]({href})"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GFM table; ``columns`` are plain text (escaped here), ``rows`` hold Markdown
    (escape text with :func:`markdown_text`), one cell per column."""
    if not columns:
        raise ValueError("a table needs at least one column")
    lines = [
        "| " + " | ".join(markdown_text(c) for c in columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
    ]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row has {len(row)} cells, the table {len(columns)} columns")
        # an empty cell still needs its pipes; a space keeps "||" readable
        lines.append("| " + " | ".join(cell or " " for cell in row) + " |")
    return "\n".join(lines)


def summary_notebook(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, str]],
    links: Sequence[Mapping[str, str]],
    *,
    counts: str,
    started: dt.datetime | None = None,
    notebook: str | None = None,
) -> nbformat.NotebookNode:
    """The summary notebook: a Markdown cell (title, counts, the runs' table) and a
    code cell (not run) that loads ``summary.csv``.

    - ``columns``/``rows``: the summary's table as in ``summary.csv`` (text);
    - ``links``: per row, the Markdown to show instead of the text in a column
      (made with :func:`markdown_link`), e.g. ``{"notebook": "[exp-001.ipynb](...)"}``;
    - ``counts``: the line on how many runs succeeded, failed, were retried;
    - ``started``: when the batch started; ``notebook``: the notebook it ran.
    """
    if len(links) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(links)} sets of links")
    body = []
    for row, cells in zip(rows, links, strict=True):
        shown = []
        for column in columns:
            cell = cells.get(column) or markdown_text(row.get(column, ""))
            if column == "status" and row.get(column) != "ok" and cell:
                cell = f"**{cell}**"
            shown.append(cell)
        body.append(shown)
    about = []
    if notebook:
        about.append(f"Notebook: {markdown_text(notebook)}")
    if started is not None:
        when = started.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        about.append(f"started {when}")
    lines = [f"# {markdown_text(title)}", ""]
    if about:
        lines += [", ".join(about) + ".", ""]
    lines += [
        markdown_text(counts),
        "",
        "Click an experiment (or its notebook) to open the executed notebook in a new "
        "JupyterLab tab, or its html for the HTML export; the files are in `experiments/`. "
        "`summary.csv` holds the same table, and the cell below loads it.",
        "",
        markdown_table(columns, body),
    ]
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("\n".join(lines)),
            nbformat.v4.new_code_cell(LOAD_CSV_SOURCE),
        ]
    )
    nb.metadata[METADATA_KEY] = dict(GENERATED_BY)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb
