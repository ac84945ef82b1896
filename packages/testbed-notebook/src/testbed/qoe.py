"""An experiment's NIST PSCR QoE tests, evaluated with NIST's own classes: one line each.

Example::

    from testbed import qoe
    trials, summary = qoe.m2e("exp-001")              # mouth-to-ear latency
    trials, summary, curve = qoe.access_delay("exp-003")  # push-to-talk access delay

The experiment document (``testbed.data.experiment``) names the test's files under
its ``nist`` key, relative to the recordings mount (``TESTBED_MEDIA_DIR``)::

    "nist": {"m2e": {"csv": "exp-001/nist/m2e/<stamp>_M2E/<stamp>_M2E.csv",
                     "wav_dir": "...", "m2e_truth_ms": 250.0, ...},
             "access_time": {"csvs": [...], "wav_dir": "...", "access_truth_ms": ...}}

The simulator writes them (``testbed_sim.nist``); a real testbed can write the same
from NIST's measurement software. Evaluation is NIST's: ``mcvqoe.mouth2ear.m2e_eval``
(mean of the thinned trials, bootstrap confidence interval) and
``mcvqoe.accesstime.access_time_eval`` (logistic fit of the first word's
intelligibility against the time from PTT to that word, corrected with NIST's PTT-gate
data, at ``alpha`` of the asymptotic intelligibility). Columns carry their units.

The evaluation works with NumPy 2. NIST's packages import ABC-MRT16 (``abcmrt``, 340 MB
of templates) even to evaluate, which only the access-time *measurement* uses; without
it installed, a placeholder module stands in whose functions say what to install.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from testbed import data
from testbed.errors import NoNistTest, RecordingMissing, TestbedError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "AccessDelay",
    "M2E",
    "NistTest",
    "NoNistTest",
    "access_delay",
    "experiments_with",
    "m2e",
    "nist_test",
    "versions",
]

KINDS = {"m2e": "mouth-to-ear (M2E)", "access_time": "access-time"}
#: NIST's alpha for access delay: 90 % of the asymptotic intelligibility.
DEFAULT_ALPHA = 0.9
_ABCMRT_FS = 48000  # abcmrt.fs: NIST's sample rate, read at import by mcvqoe.accesstime


@dataclass(frozen=True)
class NistTest:
    """Where one NIST test of an experiment is, and what the document says about it."""

    experiment_id: str
    kind: str
    csvs: list[Path]
    wav_dir: Path
    meta: dict[str, Any]


def nist_test(doc: Mapping[str, Any], kind: str, media: Path) -> NistTest:
    """The NIST test ``kind`` (``"m2e"`` or ``"access_time"``) of an experiment document.

    Pure apart from checking that the CSVs exist. Raises :class:`NoNistTest` (with an
    empty ``having``) when the document has no such test, :class:`RecordingMissing`
    when its files are not on the media mount.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    exp_id = str(doc.get("_id", doc.get("experiment_id")))
    meta = (doc.get("nist") or {}).get(kind)
    if not isinstance(meta, Mapping):
        raise NoNistTest(f"Experiment {exp_id!r} has no NIST {KINDS[kind]} test.", exp_id, kind, [])
    listed = meta.get("csvs") if kind == "access_time" else [meta.get("csv")]
    if not listed or not all(isinstance(p, str) and p for p in listed):
        raise TestbedError(
            f"Experiment {exp_id!r}: its document's nist.{kind} names no CSV "
            f"({'csvs' if kind == 'access_time' else 'csv'}); ask whoever wrote it."
        )
    csvs = [media / p for p in listed]
    missing = [p for p in csvs if not p.is_file()]
    if missing:
        raise RecordingMissing(
            f"Experiment {exp_id!r}: NIST {KINDS[kind]} file {missing[0]} does not exist. "
            f"The document names it relative to the recordings mount {media} "
            "(TESTBED_MEDIA_DIR); check that the mount is there and complete."
        )
    wav_dir = media / str(meta.get("wav_dir") or Path(listed[0]).parent / "wav")
    return NistTest(exp_id, kind, csvs, wav_dir, dict(meta))


def experiments_with(kind: str) -> list[str]:
    """Ids of the experiments whose document has a NIST test ``kind``, sorted."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return data.experiment_ids({f"nist.{kind}": {"$exists": True}})


def no_test_error(experiment_id: str, kind: str, having: list[str]) -> NoNistTest:
    """The :class:`NoNistTest` for an experiment, naming those that have one."""
    if having:
        shown = ", ".join(having[:10]) + (", ..." if len(having) > 10 else "")
        hint = f"Experiments with one ({len(having)}): {shown}."
    else:
        hint = "No experiment in the database has one."
    helper = "m2e" if kind == "m2e" else "access_delay"
    return NoNistTest(
        f"Experiment {experiment_id!r} has no NIST {KINDS[kind]} test. {hint} "
        f"List them with testbed.qoe.experiments_with({kind!r}); then "
        f"testbed.qoe.{helper}(<one of them>).",
        experiment_id,
        kind,
        having,
    )


def _find(experiment_id: str, kind: str) -> NistTest:
    doc = data.experiment(experiment_id)  # UnknownExperiment with close matches
    try:
        return nist_test(doc, kind, data.media_dir())
    except NoNistTest:
        raise no_test_error(experiment_id, kind, experiments_with(kind)) from None


def _abcmrt_placeholder() -> types.ModuleType:
    module = types.ModuleType("abcmrt", "Placeholder: ABC-MRT16 is not installed here.")

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise TestbedError(
            "ABC-MRT16 (pip package abcmrt16) is not installed in this image: NIST's "
            "intelligibility estimate is needed to *measure* access time or intelligibility, "
            "not to evaluate the testbed's tests. Ask the operator for an image with "
            "mcvqoe-intelligibility (role notebook_image)."
        )

    module.fs = _ABCMRT_FS  # type: ignore[attr-defined]
    module.version = "not installed"  # type: ignore[attr-defined]
    module.process = missing  # type: ignore[attr-defined]
    module.load_templates = missing  # type: ignore[attr-defined]
    module.__testbed_placeholder__ = True  # type: ignore[attr-defined]
    return module


def _nist(module: str) -> Any:
    """Import one of NIST's evaluation modules, with a clear error when absent."""
    if "abcmrt" not in sys.modules and importlib.util.find_spec("abcmrt") is None:
        sys.modules["abcmrt"] = _abcmrt_placeholder()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TestbedError(
            f"Cannot import NIST's {module} ({exc}). The image needs mcvqoe-base, "
            "mcvqoe-mouth2ear and mcvqoe-accesstime (with setuptools < 80 for "
            "pkg_resources); ask the operator to rebuild it (role notebook_image)."
        ) from None


#: NIST's distributions testbed.qoe uses, and the optional ABC-MRT16 ones.
DISTRIBUTIONS = (
    "mcvqoe-base",
    "mcvqoe-mouth2ear",
    "mcvqoe-accesstime",
    "mcvqoe-intelligibility",
    "abcmrt16",
)


def versions() -> dict[str, str | None]:
    """Import NIST's evaluation modules (a clear :class:`TestbedError` when they cannot
    be) and return the installed version of each of :data:`DISTRIBUTIONS` (``None``:
    not installed; ABC-MRT16 and mcvqoe-intelligibility are optional)."""
    import importlib.metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pkg_resources' own notice
        _nist("mcvqoe.mouth2ear.m2e_eval")
        _nist("mcvqoe.accesstime.access_time_eval")
    found: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


@contextlib.contextmanager
def _seeded(experiment_id: str, kind: str) -> Iterator[None]:
    """NIST's bootstrap draws from NumPy's global generator: seed it per experiment
    so a notebook shows the same interval each run; restore the caller's state.

    NIST's evaluation warns about its own arithmetic where nothing is wrong (NumPy's
    RuntimeWarning on a 0/0 correlation when trials are identical, on exp overflowing
    in the logistic fit far from t0): not shown to the researcher."""
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(f"{experiment_id}:{kind}".encode()).digest()[:4], "big")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        np.random.set_state(state)


def _ms(value: Any) -> float | None:
    return None if value is None else float(value) * 1000.0


class M2E(NamedTuple):
    """``trials``: one row per trial; ``summary``: one row for the experiment."""

    trials: pd.DataFrame
    summary: pd.DataFrame


def m2e(experiment_id: str) -> M2E:
    """Mouth-to-ear latency of an experiment's NIST M2E test.

    ``trials`` columns: ``experiment_id``, ``trial``, ``clip``, ``m2e_latency_s``,
    ``m2e_latency_ms``, ``timestamp``, ``recording`` (the received WAV).
    ``summary`` columns: ``n_trials``, ``thinning_factor``, ``m2e_mean_s``,
    ``m2e_ci_low_s``, ``m2e_ci_high_s`` (NIST's bootstrap interval on the mean), the same
    in ``_ms``, ``m2e_injected_ms`` and ``m2e_truth_ms`` (what the simulator injected,
    and that with NIST's 31 ms device-delay convention applied), ``m2e_error_ms``.
    """
    import pandas as pd

    test = _find(experiment_id, "m2e")
    m2e_eval = _nist("mcvqoe.mouth2ear.m2e_eval")
    with _seeded(test.experiment_id, "m2e"):
        result = m2e_eval.evaluate(test_names=[str(p) for p in test.csvs])
    raw = result.data.reset_index(drop=True)
    latency = raw["m2e_latency"].astype(float)
    trial = list(range(1, len(raw) + 1))
    trials = pd.DataFrame(
        {
            "experiment_id": test.experiment_id,
            "trial": trial,
            "clip": raw["Filename"].astype(str),
            "m2e_latency_s": latency,
            "m2e_latency_ms": latency * 1000.0,
            "timestamp": raw["Timestamp"],
            # NIST names the received audio Rx<trial>_<clip>.wav (mcvqoe.base.Measure)
            "recording": [
                test.wav_dir / f"Rx{n}_{c}.wav" for n, c in zip(trial, raw["Filename"], strict=True)
            ],
        }
    )
    injected = test.meta.get("injected_m2e_latency_s")
    truth = test.meta.get("m2e_truth_ms")
    mean_s = float(result.mean)
    low_s, high_s = (float(v) for v in result.ci)
    summary = pd.DataFrame(
        [
            {
                "experiment_id": test.experiment_id,
                "n_trials": len(trials),
                "thinning_factor": result.common_thinning,
                "m2e_mean_s": mean_s,
                "m2e_ci_low_s": low_s,
                "m2e_ci_high_s": high_s,
                "m2e_mean_ms": mean_s * 1000.0,
                "m2e_ci_low_ms": low_s * 1000.0,
                "m2e_ci_high_ms": high_s * 1000.0,
                "m2e_injected_ms": _ms(injected),
                "m2e_truth_ms": truth,
                "m2e_error_ms": None if truth is None else mean_s * 1000.0 - float(truth),
            }
        ]
    )
    return M2E(trials, summary)


class AccessDelay(NamedTuple):
    """``trials``: one row per trial; ``summary``: one row; ``curve``: access delay
    against ``alpha`` (NIST's access delay curve)."""

    trials: pd.DataFrame
    summary: pd.DataFrame
    curve: pd.DataFrame


_ACCESS_COLUMNS = {
    "talker_word": "talker_word",
    "ptt_st_dly": "ptt_delay_s",
    "PTT_start": "ptt_detected_s",
    "PTT_time": "ptt_time_s",
    "time_to_P1": "time_to_p1_s",
    "P1_Int": "p1_intelligibility",
    "P2_Int": "p2_intelligibility",
    "m2e_latency": "m2e_latency_s",
}


def access_delay(experiment_id: str, alpha: float = DEFAULT_ALPHA) -> AccessDelay:
    """Push-to-talk access delay of an experiment's NIST access-time test.

    ``trials`` columns: ``experiment_id``, ``trial``, ``talker_word``, ``ptt_delay_s``
    (when PTT was pressed, after the clip's start), ``ptt_time_s`` (detected, NIST's
    device delay removed), ``time_to_p1_s`` (PTT to the first word),
    ``p1_intelligibility``, ``p2_intelligibility``, ``m2e_latency_s``.
    ``summary``: ``access_delay_s`` and its ``_ci_low_s``/``_ci_high_s`` (95 %) at
    ``alpha``, the same in ms, NIST's corrected fit (``asymptotic_intelligibility``,
    ``t0_s``, ``lambda_s``: intelligibility ``I0 / (1 + exp((t - t0) / lambda))`` of the
    time ``t`` from PTT to the first word, less NIST's reference curve of a channel
    without access delay; its ``alpha`` point is the access delay), the same logistic
    fitted to the trials without that correction (``raw_t0_s``, ``raw_lambda_s``: the
    curve through the trials' points), ``resolution_s`` (the PTT step), ``access_injected_ms``,
    ``access_truth_ms``, ``access_error_ms``.
    ``curve``: ``alpha`` 0.50 .. 0.99 and the access delay with its interval, seconds.
    """
    import numpy as np
    import pandas as pd

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (NIST uses 0.9), got {alpha!r}")
    test = _find(experiment_id, "access_time")
    access_eval = _nist("mcvqoe.accesstime.access_time_eval")
    with _seeded(test.experiment_id, "access_time"):
        result = access_eval.evaluate(
            test_names=[str(p) for p in test.csvs],
            wav_dirs=[str(test.wav_dir)] * len(test.csvs),
        )
    raw = result.data.reset_index(drop=True)
    trials = raw[[c for c in _ACCESS_COLUMNS if c in raw]].rename(columns=_ACCESS_COLUMNS)
    trials.insert(0, "trial", range(1, len(trials) + 1))
    trials.insert(0, "experiment_id", test.experiment_id)
    value, (low, high) = result.eval(alpha)
    fit = result.fit_data
    with _seeded(test.experiment_id, "access_time"):
        raw_fit = result.fit_curve_data("LEG")  # the same logistic, without the correction
    injected = test.meta.get("injected_access_delay_s")
    truth = test.meta.get("access_truth_ms")
    summary = pd.DataFrame(
        [
            {
                "experiment_id": test.experiment_id,
                "n_trials": len(trials),
                "alpha": alpha,
                "access_delay_s": float(value),
                "access_delay_ci_low_s": float(low),
                "access_delay_ci_high_s": float(high),
                "access_delay_ms": float(value) * 1000.0,
                "access_delay_ci_low_ms": float(low) * 1000.0,
                "access_delay_ci_high_ms": float(high) * 1000.0,
                "asymptotic_intelligibility": float(fit.I0),
                "t0_s": float(fit.t0),
                "lambda_s": float(fit.lam),
                "raw_t0_s": float(raw_fit.t0),
                "raw_lambda_s": float(raw_fit.lam),
                "resolution_s": test.meta.get("resolution_s"),
                "access_injected_ms": _ms(injected),
                "access_truth_ms": truth,
                "access_error_ms": None if truth is None else float(value) * 1000.0 - float(truth),
            }
        ]
    )
    rows = []
    for a in np.round(np.arange(0.5, 0.995, 0.01), 2):
        v, (lo, hi) = result.eval(float(a))
        rows.append(
            {
                "alpha": float(a),
                "access_delay_s": float(v),
                "ci_low_s": float(lo),
                "ci_high_s": float(hi),
            }
        )
    return AccessDelay(trials, summary, pd.DataFrame(rows))
