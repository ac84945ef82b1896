"""testbed_devtools.notebook_figures on figures drawn here: the description the demo
notebooks' tests read (DESCRIBE_FIGURES) sees the markers a reader sees, and the
checks built on it (crowded, labelled, readability_problems) flag what hides data or
leaves a plot unnamed."""

from __future__ import annotations

import contextlib
import io
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from testbed_devtools.notebook_figures import (  # noqa: E402
    DESCRIBE_FIGURES,
    crowded,
    labelled,
    readability_problems,
)


def describe() -> list[dict]:
    """What the instrumented notebook's last cell prints, for the figures open here."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(DESCRIBE_FIGURES, {})  # noqa: S102 - the module's own cell
    plt.close("all")
    return json.loads(out.getvalue().split("FIGURES=", 1)[1])


@pytest.fixture(autouse=True)
def _no_open_figures():
    plt.close("all")
    yield
    plt.close("all")


def one_axes(draw) -> dict:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.set(xlim=(0, 100), ylim=(0, 100))
    draw(ax)
    (figure,) = describe()
    (described,) = figure["axes"]
    return described


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("scatter", lambda ax: ax.scatter([10, 10.3, 80], [50, 50, 20], s=60)),
        ("line markers", lambda ax: ax.plot([10, 10.3, 80], [50, 50, 20], "o", markersize=8)),
        (
            "markers on a line",
            lambda ax: ax.plot([10, 10.3, 80], [50, 50, 20], "o-", markersize=8),
        ),
    ],
)
def test_overlapping_markers_are_found_whether_scatter_or_line(name, draw):
    """Two markers 0.3 data units (about 1.4 px) apart: the first pair is crowded, the
    far one is not, for a scatter and for markers drawn by plot() alike."""
    ax = one_axes(draw)
    assert len(ax["points"]) == 3, name
    assert [pair[:2] for pair in crowded(ax["points"])] == [(0, 1)], name
    assert any("hidden" in p for p in readability_problems(ax | {"title": "t"}))


def test_markers_apart_are_not_crowded():
    ax = one_axes(lambda a: a.plot([10, 40, 80], [50, 50, 20], "o", markersize=8))
    assert len(ax["points"]) == 3
    assert crowded(ax["points"]) == []


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("plain line", lambda ax: ax.plot([10, 10.3, 80], [50, 50, 20])),
        (
            "ring around a point",
            lambda ax: ax.plot([10], [50], "o", markerfacecolor="none", markersize=14),
        ),
        (
            "strokes and error-bar caps",
            lambda ax: ax.errorbar([10, 10.3], [50, 50], yerr=[1, 1], fmt="none", capsize=4),
        ),
        ("x markers", lambda ax: ax.plot([10, 10.3], [50, 50], "x", markersize=8)),
        (
            "scatter ring",
            lambda ax: ax.scatter([10], [50], s=160, facecolors="none", edgecolors="red"),
        ),
    ],
)
def test_lines_without_markers_and_rings_are_not_points(name, draw):
    """A ring drawn around a point marks it, it does not hide it; a line has no markers;
    strokes (x, +, an error bar's caps) cover too little to hide what lies below."""
    assert one_axes(draw)["points"] == [], name


def test_markers_on_dates_and_categories_are_described():
    """Line markers over dates or category names: positions in pixels, no crash."""
    import datetime as dt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    days = [dt.datetime(2024, 3, d) for d in (4, 5, 9)]
    ax1.plot(days, [1, 2, 3], "o")
    ax2.plot(["exp-001", "exp-002"], [1, 2], "s")
    (figure,) = describe()
    assert [len(ax["points"]) for ax in figure["axes"]] == [3, 2]
    assert crowded(figure["axes"][0]["points"]) == []


def test_marker_radius_is_in_pixels():
    """markersize is the diameter in points: 8 pt at 100 dpi is 11.1 px, radius 5.6."""
    ax = one_axes(lambda a: a.plot([50], [50], "o", markersize=8))
    assert ax["points"][0][2] == pytest.approx(8 / 2 * 100 / 72)


def test_legend_entries_are_described_in_order():
    """What a reader reads in a legend: its entries, in order; none without one."""

    def with_legend(ax):
        ax.plot([0, 50], [0, 50], label="received audio")
        ax.axvline(20, label="PTT access (200 ms)")
        ax.legend()

    assert one_axes(with_legend)["legend"] == ["received audio", "PTT access (200 ms)"]
    assert one_axes(lambda ax: ax.plot([0, 50], [0, 50], label="no legend drawn"))["legend"] == []


@pytest.mark.parametrize(
    ("label", "ok"),
    [
        ("delay (ms)", True),
        ("bandwidth (kbit/s)", True),
        ("number of events", True),
        ("experiment", True),
        ("delay", False),
        ("", False),
    ],
)
def test_labelled(label, ok):
    assert labelled(label) is ok


def test_readability_problems_name_each_problem():
    def draw(ax):
        ax.hist([1, 2, 2, 3], bins=3)
        ax.set_ylabel("number of events")
        ax.set_xlabel("delay")

    ax = one_axes(draw)
    problems = readability_problems(ax)
    assert "no title" in problems
    assert "xlabel 'delay' names no unit" in problems
    assert not any(p.startswith("ylabel") for p in problems)
