"""The seed's NIST tests: which experiments get which test, with which injected values.

``testbed-sim-seed --nist`` (the testbed_sim role, ``testbed_sim_nist_enabled``) runs,
through :mod:`testbed_sim.nist`:

* an M2E test for every experiment, injecting the experiment's mouth-to-ear latency;
* an access-time test for ``access_experiments`` of them (about 40x dearer), injecting
  its access delay.

Injected values follow the seed's conventions (:mod:`testbed_sim.seed`): an
experiment's value is the mean of its PTT events' ``mouth_to_ear_ms`` /
``access_delay_ms`` (channel formula + per-event jitter), rounded to 0.1 ms like the
events, so the audio supports the numbers the database shows. The access-time subset
spreads over the range of access delays: the experiments at evenly spaced ranks of
the sorted delays (lowest and highest included, ties by experiment id). All of it is a
function of ``seed`` and ``experiments``: the same numbers give the same tests.

Tests run in parallel processes (``jobs``, default one per core); with a cache folder
each experiment's folder is restored from ``<cache>/<cache_key>.tar`` when present and
stored there after measuring (:func:`testbed_sim.nist.restore_from_cache`).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from testbed_sim import nist
from testbed_sim.dataset import SeedData

#: Default number of experiments with an access-time test.
DEFAULT_ACCESS_EXPERIMENTS = 4


def injected_values(data: SeedData) -> dict[str, tuple[float, float]]:
    """Per experiment id: (M2E latency, access delay) in seconds, the means of its
    events' values rounded to 0.1 ms."""
    per: dict[str, list[dict[str, Any]]] = {e["_id"]: [] for e in data.experiments}
    for event in data.ptt_events:
        per[event["experiment_id"]].append(event)
    out = {}
    for exp_id, events in per.items():
        m2e_ms = round(fmean(e["mouth_to_ear_ms"] for e in events), 1)
        access_ms = round(fmean(e["access_delay_ms"] for e in events), 1)
        out[exp_id] = (round(m2e_ms / 1000.0, 4), round(access_ms / 1000.0, 4))
    return out


def access_subset(values: dict[str, tuple[float, float]], count: int) -> list[str]:
    """``count`` experiment ids spread over the range of access delays."""
    if count <= 0:
        return []
    ranked = sorted(values, key=lambda exp_id: (values[exp_id][1], exp_id))
    if count >= len(ranked):
        return sorted(ranked)
    if count == 1:
        return [ranked[len(ranked) // 2]]
    step = (len(ranked) - 1) / (count - 1)
    return sorted({ranked[round(i * step)] for i in range(count)})


def plan(data: SeedData, seed: int, access_experiments: int) -> list[nist.Experiment]:
    """The NIST tests of the seed data, one :class:`~testbed_sim.nist.Experiment` each."""
    if not isinstance(access_experiments, int) or access_experiments < 0:
        raise nist.NistError(
            f"access_experiments must be an integer >= 0, got {access_experiments!r}"
        )
    values = injected_values(data)
    with_access = set(access_subset(values, access_experiments))
    return [
        nist.Experiment(
            exp_id,
            m2e_latency_s=m2e_s,
            access_delay_s=access_s if exp_id in with_access else None,
            seed=seed,
        )
        for exp_id, (m2e_s, access_s) in values.items()
    ]


@dataclass
class Report:
    """What :func:`seed_media` did, for the command's JSON line."""

    measured: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    access_time: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "measured": len(self.measured),
            "from_cache": len(self.restored),
            "kept": len(self.kept),
            "access_time": self.access_time,
            "seconds": round(self.seconds, 1),
        }


def _one(
    media: str, experiment: nist.Experiment, cache_dir: str | None, file_mode: int
) -> tuple[str, str]:
    """Bring one experiment's nist folder up to date: kept, restored or measured."""
    stored = nist.load_document(media, experiment.experiment_id)
    if stored is not None and stored.get("cache_key") == nist.cache_key(experiment):
        if cache_dir and not nist.cache_path(cache_dir, experiment).is_file():
            _store(media, experiment, cache_dir)
        return experiment.experiment_id, "kept"
    try:
        restored = cache_dir and nist.restore_from_cache(media, experiment, cache_dir, file_mode)
    except OSError as exc:  # an unreadable cache is a cache miss, never a failed seed
        print(f"testbed-sim-seed: warning: cache not read: {exc}", file=sys.stderr)
        restored = None
    if restored:
        return experiment.experiment_id, "restored"
    nist.run_experiment(media, experiment, file_mode=file_mode, reuse=False)
    if cache_dir:
        _store(media, experiment, cache_dir)
    return experiment.experiment_id, "measured"


def _store(media: str, experiment: nist.Experiment, cache_dir: str) -> None:
    """Keep a copy in the cache; a cache that cannot be written (read-only, full) costs
    the next station a measurement, not this seed its result."""
    try:
        nist.store_in_cache(media, experiment, cache_dir)
    except (nist.NistError, OSError) as exc:
        print(
            f"testbed-sim-seed: warning: {experiment.experiment_id} not cached in "
            f"{cache_dir}: {exc}",
            file=sys.stderr,
        )


def seed_media(
    media_dir: Path | str,
    experiments: list[nist.Experiment],
    cache_dir: Path | str | None = None,
    jobs: int | None = None,
    file_mode: int = 0o644,
) -> Report:
    """Run (or restore, or keep) every experiment's NIST tests under ``media_dir``."""
    for experiment in experiments:
        experiment.check()
    nist.check_environment(access_time=any(e.access_delay_s is not None for e in experiments))
    jobs = max(1, jobs or os.cpu_count() or 1)
    # the dear access-time tests first: the workers finish at about the same time
    order = sorted(experiments, key=lambda e: (e.access_delay_s is None, e.experiment_id))
    report = Report(
        access_time=sorted(e.experiment_id for e in order if e.access_delay_s is not None)
    )
    start = time.monotonic()
    media = str(media_dir)
    cache = str(cache_dir) if cache_dir else None
    if jobs == 1:
        results = [_one(media, e, cache, file_mode) for e in order]
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(order))) as pool:
            futures = [pool.submit(_one, media, e, cache, file_mode) for e in order]
            results = [f.result() for f in futures]
    for exp_id, how in results:
        {"measured": report.measured, "restored": report.restored, "kept": report.kept}[how].append(
            exp_id
        )
    report.seconds = time.monotonic() - start
    return report
