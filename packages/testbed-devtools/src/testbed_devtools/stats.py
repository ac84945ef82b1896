"""The benchmarks' statistics, targets and report: each defined once, here.

Every figure ``make bench`` prints goes through this module: the spawn
latencies, the nginx auth overhead (``testbed_proxy.bench`` only collects raw
samples inside the base station) and the batch speed-up (the in-image part,
``testbed_devtools.batch_bench``, only collects raw timings).

Percentile: linear interpolation between the two closest ranks. For ``n``
sorted values ``x[0..n-1]`` the q-th percentile sits at position
``h = (n - 1) * q / 100`` and is ``x[floor(h)] + (h - floor(h)) *
(x[floor(h) + 1] - x[floor(h)])``: Hyndman and Fan's definition 7, NumPy's
default (``method="linear"``), spreadsheets' ``PERCENTILE.INC``; p50 is the
usual median (:func:`statistics.median`). Values keep the caller's unit.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100) of a non-empty collection, linear interpolation."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of an empty collection")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    h = (len(data) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (h - lo) * (data[hi] - data[lo])


def summary(values: Iterable[float], ndigits: int = 3) -> dict[str, float | int]:
    """``n``, ``p50``, ``p95``, ``mean``, ``min``, ``max`` of a non-empty collection.

    Rounded to ``ndigits``; the unit is the values' own (the caller names it).
    """
    data = sorted(values)
    if not data:
        raise ValueError("summary of an empty collection")
    return {
        "n": len(data),
        "p50": round(percentile(data, 50), ndigits),
        "p95": round(percentile(data, 95), ndigits),
        "mean": round(statistics.fmean(data), ndigits),
        "min": round(data[0], ndigits),
        "max": round(data[-1], ndigits),
    }


def ratio(numerator: float, denominator: float, ndigits: int = 3) -> float | None:
    """``numerator / denominator`` rounded; None when the denominator is not positive."""
    return round(numerator / denominator, ndigits) if denominator > 0 else None


def compare(
    samples: Mapping[str, Sequence[float]], baseline: str, scale: float = 1.0, ndigits: int = 4
) -> dict[str, Any]:
    """Cases measured side by side: a :func:`summary` each and p50 / baseline's p50.

    ``scale`` converts the samples first (1000: seconds to milliseconds).
    Returns ``{"baseline": name, "cases": {name: summary}, "ratio": {name: x}}``.
    """
    if baseline not in samples:
        raise ValueError(f"baseline case {baseline!r} is not among {sorted(samples)}")
    cases = {name: summary((v * scale for v in s), ndigits) for name, s in samples.items()}
    base = cases[baseline]["p50"]
    if base <= 0:
        raise ValueError(f"baseline {baseline!r} has a median of {base}: nothing to divide by")
    return {
        "baseline": baseline,
        "cases": cases,
        "ratio": {name: ratio(c["p50"], base) for name, c in cases.items()},
    }


# -- targets ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A figure's target: ``value <op> limit`` in ``unit``; ``label`` names the value
    when a row judges several (``p50``, ``last``)."""

    key: str
    limit: float
    op: Literal["<=", ">="]
    unit: str
    label: str = ""

    def met(self, value: float | None) -> bool:
        """Whether ``value`` meets the target; a missing value never does."""
        if value is None:
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        sep = "" if self.unit == "x" else " "
        return f"{self.label} {self.op} {self.limit:g}{sep}{self.unit}".strip()


# The issues' targets for the base station, on a 2-core machine (issue 18; NIST's
# QoE tests: issue 15). A figure reported without a target is a Row without one
# (target "report", result "-"): it has no entry here.
TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target("fresh_converge_s", 180.0, "<=", "s"),
        Target("rerun_s", 30.0, "<=", "s"),
        Target("spawn_p50_s", 0.9, "<=", "s", "p50"),
        Target("spawn_p95_s", 1.2, "<=", "s", "p95"),
        Target("spawn_cpu_s", 0.8, "<=", "s"),
        Target("browser_p50_s", 2.5, "<=", "s", "p50"),
        Target("burst_first_s", 3.0, "<=", "s", "first"),
        Target("burst_p50_s", 7.0, "<=", "s", "p50"),
        Target("burst_last_s", 12.0, "<=", "s", "last"),
        Target("burst_large_last_s", 35.0, "<=", "s", "last"),
        Target("server_rss_mb", 150.0, "<=", "MB"),
        Target("auth_ratio_cached", 1.2, "<=", "x"),
        Target("empty_run_s", 0.5, "<=", "s"),
        Target("batch_speedup", 1.9, ">=", "x"),
        Target("image_size_gb", 1.0, "<=", "GB"),
        # NIST's QoE tests (issue 15)
        Target("nist_seed_cold_s", 120.0, "<=", "s"),
        Target("m2e_eval_s", 2.0, "<=", "s"),
        Target("m2e_notebook_error_ms", 1.0, "<=", "ms"),
    )
}


# -- report ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, its value, its target and whether it is met.

    ``met`` None: the figure is reported, it has no target.
    """

    figure: str
    value: str
    target: str = "report"
    met: bool | None = None

    @property
    def result(self) -> str:
        return "-" if self.met is None else ("PASS" if self.met else "FAIL")


def judge(
    figure: str, value: str, key: str, measured: float | None, *also: tuple[str, bool]
) -> Row:
    """A row for ``TARGETS[key]``; ``also`` adds conditions (text, holds) to the target."""
    return judge_all(figure, value, {key: measured}, *also)


def judge_all(
    figure: str, value: str, measured: Mapping[str, float | None], *also: tuple[str, bool]
) -> Row:
    """A row judged on several targets at once (``{key: value}``, e.g. p50 and p95):
    met when every target and every ``also`` condition holds."""
    targets = [TARGETS[key] for key in measured]
    text = ", ".join([*(str(t) for t in targets), *(t for t, _ in also)])
    met = all(t.met(measured[t.key]) for t in targets) and all(ok for _, ok in also)
    return Row(figure, value, text, met)


def not_measured(figure: str, keys: Sequence[str], why: str) -> Row:
    """A figure its step did not deliver: its targets (or "report") and FAIL, never a pass."""
    text = ", ".join(str(TARGETS[key]) for key in keys) or "report"
    why = " ".join(why.split())
    return Row(figure, f"not measured ({why[:80]})" if why else "not measured", text, False)


def table(rows: Iterable[Row]) -> str:
    """The rows as an aligned plain-text table: figure, value, target, result."""
    data = [("figure", "value", "target", "result")]
    data += [(r.figure, r.value, r.target, r.result) for r in rows]
    widths = [max(len(r[i]) for r in data) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (and a final newline), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
