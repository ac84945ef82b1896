"""What a reader of a demo notebook sees: its figures described as data.

:func:`run_instrumented` executes a notebook (files/notebooks/) for one experiment
with two extra cells: the first keeps every figure open, the last prints each
figure's axes as JSON (titles, labels, ticks in view, colour bars, the filled markers
of scatter plots and lines in pixels). The unit tests of the demo notebooks
(tests/unit/notebook) check them with :func:`labelled` and :func:`crowded`: every plot
titled, axes named with their unit, no marker hidden under another.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[4] / "files" / "notebooks"

#: First cell of an instrumented run: the inline backend keeps figures open after it
#: shows them, so the last cell can describe every figure the notebook drew.
KEEP_FIGURES = """\
from matplotlib_inline.config import InlineBackend
InlineBackend.instance().close_figures = False
"""

#: Last cell: each figure's axes as the reader sees them (titles, labels, ticks in
#: view, colour bars, and the filled markers of scatter plots and of lines in pixels
#: with their radius).
DESCRIBE_FIGURES = """\
import json as _json
import matplotlib.pyplot as _plt
import numpy as _np
from matplotlib.markers import MarkerStyle as _MarkerStyle


def _describe(fig):
    fig.canvas.draw()
    mapped = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None]
    bar_axes = {id(c.colorbar.ax) for c in mapped if getattr(c, "colorbar", None)}
    axes = []
    for ax in fig.axes:
        if not ax.axison:
            continue
        lo, hi = sorted(ax.get_ylim())
        points = []
        for c in ax.collections:
            face = c.get_facecolor()
            if type(c).__name__ != "PathCollection" or not len(face) or face[0][3] == 0:
                continue  # not a scatter, or a ring drawn around a point
            radius = _np.sqrt(c.get_sizes()) / 2 * fig.dpi / 72
            for i, (x, y) in enumerate(ax.transData.transform(c.get_offsets())):
                points.append([float(x), float(y), float(radius[i % len(radius)])])
        for line in ax.lines:
            marker = _MarkerStyle(line.get_marker())
            face = line.get_markerfacecolor()
            if not marker.is_filled() or str(face).lower() == "none":
                continue  # no markers, strokes (x, +, error-bar caps), or rings around points
            radius = line.get_markersize() / 2 * fig.dpi / 72
            # get_xydata: already converted to floats (dates, categories) by the axes' units
            for x, y in ax.transData.transform(line.get_xydata()):
                points.append([float(x), float(y), float(radius)])
        axes.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "colorbar": id(ax) in bar_axes,
                "yticks": [float(t) for t in ax.get_yticks() if lo <= t <= hi],
                "colorbar_labels": [
                    c.colorbar.ax.get_ylabel() if getattr(c, "colorbar", None) else None
                    for c in ax.collections
                    if c.get_array() is not None and id(ax) not in bar_axes
                ],
                "points": points,
                "legend": [t.get_text() for t in ax.get_legend().get_texts()]
                if ax.get_legend()
                else [],
            }
        )
    return {"suptitle": fig._suptitle.get_text() if fig._suptitle else "", "axes": axes}


print("FIGURES=" + _json.dumps([_describe(_plt.figure(n)) for n in _plt.get_fignums()]))
"""

UNIT = re.compile(r"\(.+\)$")  # "delay (ms)", "bandwidth (kbit/s)"


def labelled(label: str) -> bool:
    """An axis label names its quantity and unit; counts and categories have none."""
    return bool(UNIT.search(label)) or label.startswith(("number of ", "experiment"))


def run_instrumented(name: str, experiment_id: str, tmp_path: Path) -> tuple[list, list]:
    """Execute the demo notebook ``name`` (files/notebooks/<name>.ipynb) for one
    experiment in ``tmp_path``; return its figures' descriptions (one dict per figure:
    ``suptitle`` and ``axes``) and the outputs of its own cells. The kernel finds the
    database and media through the environment (TESTBED_*); a cell that fails raises
    nbclient's CellExecutionError."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"experiment_id = {experiment_id!r}"))
    nb.cells.insert(0, nbformat.v4.new_code_cell(KEEP_FIGURES))
    nb.cells.append(nbformat.v4.new_code_cell(DESCRIBE_FIGURES))
    client = NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    figures = json.loads(printed.split("FIGURES=", 1)[1])
    outputs = [o for c in nb.cells[1:-1] for o in c.get("outputs", [])]
    return figures, outputs


def crowded(points: list[list[float]]) -> list[tuple[int, int, float]]:
    """Pairs of points (scatter or line markers) whose markers overlap by more than a
    quarter of their width (the one below would be mostly hidden), with their distance
    in pixels."""
    close = []
    for i, (x1, y1, r1) in enumerate(points):
        for j, (x2, y2, r2) in enumerate(points[i + 1 :], start=i + 1):
            distance = float(np.hypot(x1 - x2, y1 - y2))
            if distance < 0.75 * (r1 + r2):
                close.append((i, j, round(distance, 1)))
    return close


def readability_problems(ax: dict, *, crowding: bool = True) -> list[str]:
    """What makes one described plot (an ``axes`` entry of :func:`run_instrumented`,
    not a colour bar) hard to read; ``[]`` when nothing does. Checked: a title; both
    axes named with a unit or as a count (:func:`labelled`); a colour bar naming its
    unit for every colour-mapped plot; whole ticks on counts; and, with ``crowding``,
    no marker (scatter or line) hidden under another (:func:`crowded`)."""
    problems = []
    if not ax["title"]:
        problems.append("no title")
    problems += [
        f"{which} {ax[which]!r} names no unit"
        for which in ("xlabel", "ylabel")
        if not labelled(ax[which])
    ]
    if not all(label and UNIT.search(label) for label in ax["colorbar_labels"]):
        problems.append(f"colour bar labels {ax['colorbar_labels']} name no unit")
    counts = ax["ylabel"].startswith("number of ")
    if counts and not (len(ax["yticks"]) >= 2 and all(t == int(t) for t in ax["yticks"])):
        problems.append(f"counts with ticks {ax['yticks']}")
    if crowding and (pairs := crowded(ax["points"])):
        problems.append(f"points hidden under others (index, index, px): {pairs}")
    return problems
