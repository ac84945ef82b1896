"""An experiment's recordings made with NIST PSCR's MCV QoE measurement system.

For one experiment this runs NIST's own measurement classes through NIST's channel
simulator (:class:`mcvqoe.simulation.QoEsim`), with the speech clips NIST ships:

* a mouth-to-ear (M2E) test, :class:`mcvqoe.mouth2ear.measure` (Harvard sentences);
* optionally an access-time test, :class:`mcvqoe.accesstime.measure` (Modified Rhyme
  Test words with cut points; needs ABC-MRT16, ``abcmrt16``).

Both write NIST's own layout (a ``tests.log``, and per test a folder
``<dd-Mon-YYYY_HH-MM-SS>_<test>/`` with the CSV and a ``wav/`` folder) under
``<media>/<experiment id>/nist/m2e/`` and ``.../nist/access_time/``. The folder is
built aside and swapped in whole, so a second run replaces the first and a reader
never sees half a test.

Injected values and conventions (mcvqoe-base 1.3.2, mcvqoe-mouth2ear 2.1.3,
mcvqoe-accesstime 2.2.3):

* ``QoEsim.m2e_latency`` is the latency the channel adds; ``QoEsim.device_delay`` is
  the simulated audio interface's delay, added on top (``play_record``: silence of
  ``access_delay + m2e_latency + device_delay`` before the received voice, the PTT
  tone from ``ptt_start + device_delay``).
* NIST's measurements assume a device delay of 31 ms (``measure.dev_dly``) and
  subtract it from every M2E estimate (``m2e.py`` ``process_audio``) and from the
  detected PTT time (``access_time.py`` ``PTT_time = PTT_start - dev_dly``).
* So the value NIST's method measures is ``m2e_latency + device_delay - dev_dly``:
  :func:`m2e_truth_ms`. By default the simulated interface has exactly the delay
  NIST calibrates out (``device_delay_s`` = 31 ms) and the measurement reads the
  injected latency; with ``device_delay_s=0`` (NIST's ``m2e_simulate`` does that) it
  reads 31 ms less.

Measurement needs NumPy below 2 (``mcvqoe.base.write_log`` calls
``np.set_string_function``) and setuptools below 80 (``pkg_resources``): it runs in
the simulator's own virtualenv on the station, never in the notebook image. NIST's
evaluation classes work with NumPy 2 (``testbed.qoe`` in the image).

Determinism: the clip order comes from the measurement's ``rng``
(``numpy.random.default_rng(seed)``); QoEsim's noise and NIST's permutation tests draw
from NumPy's global generator, which is seeded for the run and restored afterwards.
Same seed, same CSV values (the wall-clock ``Timestamp`` columns and folder names
differ).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Versions this module was written and tested against (pip names).
PINNED = {
    "mcvqoe-base": "1.3.2",
    "mcvqoe-mouth2ear": "2.1.3",
    "mcvqoe-accesstime": "2.2.3",
    # 1.0.2 imports silero-vad, which pulls in torch (GBs); 1.0.1 needs numpy+scipy.
    "abcmrt16": "1.0.1",
}
#: NIST's assumed device (audio interface) delay, ``measure.dev_dly``, in seconds.
NIST_DEVICE_DELAY_S = 0.031
#: The sub-folder of an experiment's media folder that holds NIST's outputs.
NIST_DIR = "nist"
M2E_DIR = "m2e"
#: The experiment's ``nist`` document, stored beside its tests.
DOCUMENT = "nist.json"
#: Version of this module's output (layout and document); part of the cache key.
FORMAT = 1
ACCESS_DIR = "access_time"
M2E_CLIPS = (
    "F1_harvard_phrases",
    "F2_harvard_phrases",
    "M1_harvard_phrases",
    "M2_harvard_phrases",
)
ACCESS_CLIPS = ("F1_b9_w1_bed", "F3_b31_w2_law", "M3_b38_w1_hang", "M4_b14_w1_not")
#: Start of the first (P1) word in every shipped access-time clip, seconds.
ACCESS_P1_START_S = 2.5
#: NIST's bisection tolerance, ``bisect_tol`` in ``access_time.py`` (run_1loc).
BISECT_TOLERANCE_S = 0.005

_INSTALL_HINT = (
    "install NIST's packages in the simulator's virtualenv: pip install 'numpy<2' "
    "'setuptools<80' " + " ".join(f"{name}=={version}" for name, version in PINNED.items())
)


class NistError(RuntimeError):
    """NIST's measurement could not run here (missing package, NumPy 2, bad input)."""


@dataclass(frozen=True)
class M2ETest:
    """Parameters of a mouth-to-ear test (NIST ``mcvqoe.mouth2ear.measure``)."""

    trials: int = 8
    clips: tuple[str, ...] = M2E_CLIPS

    def check(self) -> None:
        if not isinstance(self.trials, int) or self.trials < 1:
            raise NistError(f"M2E trials must be a positive integer, got {self.trials!r}")
        _check_clips("M2E", self.clips, M2E_CLIPS)


@dataclass(frozen=True)
class AccessTest:
    """Parameters of an access-time test (NIST ``mcvqoe.accesstime.measure``).

    NIST's defaults (mcvqoe-accesstime 2.2.3) are all four clips, ``ptt_rep`` 30 and
    PTT times every ``ptt_step`` 20 ms from 0 s to the end of the first word: about
    580 trials a clip. ``bisect`` is NIST's ``bisect_midpoint`` mode ("a much faster
    test", not yet NIST's default): the PTT times start at both ends and the midpoint
    and then bisect towards the intelligibility curve's midpoint to a tolerance of
    5 ms (``bisect_tol``, access_time.py), 11 PTT times for the shipped clips; that
    tolerance is then the estimate's resolution. Without ``bisect``, PTT times are
    every ``ptt_step_s``. ``auto_stop`` is off (it needs ``ptt_rep`` >= 16).
    ``ptt_delay_s`` is NIST's ``ptt_delay``: ``(min,)`` for min .. the end of the
    first word, or ``(min, max)``.

    One clip, F1 "bed", by default: through QoEsim's hard mute its estimates were
    within 2 ms of the truth in every run (0.10 .. 0.80 s injected); NIST's
    evaluation corrects each word with PTT-gate data captured on real hardware, and
    for other words the simulated curve departs from it (0.300 s injected: M3 "hang"
    -1.5 ms, M4 "not" -3.9 ms but +13.5 ms at 0.457 s, F3 "law" -26.8 ms).
    """

    clips: tuple[str, ...] = ("F1_b9_w1_bed",)
    bisect: bool = True
    ptt_rep: int = 4
    ptt_step_s: float = 0.02
    ptt_delay_s: tuple[float, ...] = (0.0,)
    alpha: float = 0.9

    def check(self) -> None:
        _check_clips("access-time", self.clips, ACCESS_CLIPS)
        if not 0.001 <= self.ptt_step_s <= 0.5:
            raise NistError(f"ptt_step_s must be 0.001 .. 0.5 s, got {self.ptt_step_s!r}")
        if not isinstance(self.ptt_rep, int) or self.ptt_rep < 2:
            raise NistError(f"ptt_rep must be an integer >= 2, got {self.ptt_rep!r}")
        delays = tuple(self.ptt_delay_s)
        if not 1 <= len(delays) <= 2 or not all(
            0.0 <= d <= ACCESS_P1_START_S + 0.5 for d in delays
        ):
            raise NistError(
                "ptt_delay_s must be (min,) or (min, max), seconds after the clip's start "
                f"(the first word starts at {ACCESS_P1_START_S} s), got {self.ptt_delay_s!r}"
            )
        if not 0.5 <= self.alpha < 1:
            raise NistError(f"alpha must be 0.5 .. <1, got {self.alpha!r}")

    @property
    def resolution_s(self) -> float:
        """The PTT-time resolution of the test: NIST's bisection tolerance or the step."""
        return BISECT_TOLERANCE_S if self.bisect else self.ptt_step_s

    @property
    def max_access_delay_s(self) -> float:
        """The largest access delay the test can see: the earliest PTT time must leave
        the first word audible."""
        return ACCESS_P1_START_S - min(self.ptt_delay_s)


def _check_clips(what: str, clips: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [c for c in clips if c not in known]
    if not clips or unknown:
        raise NistError(
            f"{what} clips must be a non-empty selection of NIST's shipped clips "
            f"{', '.join(known)}; got {list(clips)!r}"
        )


def m2e_truth_ms(m2e_latency_s: float, device_delay_s: float = NIST_DEVICE_DELAY_S) -> float:
    """What NIST's M2E measurement should read for an injected latency, in ms.

    QoEsim delays the voice by ``m2e_latency + device_delay`` (each truncated to whole
    samples at 48 kHz, at most 0.02 ms each); NIST subtracts its ``dev_dly``."""
    return round((m2e_latency_s + device_delay_s - NIST_DEVICE_DELAY_S) * 1000.0, 3)


def access_truth_ms(access_delay_s: float, device_delay_s: float = NIST_DEVICE_DELAY_S) -> float:
    """What NIST's access-time measurement should read for an injected access delay, ms.

    QoEsim starts the PTT tone ``device_delay`` late, NIST subtracts ``dev_dly`` from the
    detected start; the voice passes ``access_delay`` after the PTT time."""
    return round((access_delay_s + NIST_DEVICE_DELAY_S - device_delay_s) * 1000.0, 3)


def check_environment(access_time: bool = False) -> None:
    """Raise :class:`NistError` naming what is missing for a measurement here."""
    import numpy as np

    major = int(np.__version__.split(".")[0])
    if major >= 2:
        raise NistError(
            f"NumPy {np.__version__} is installed: NIST's measurement code (mcvqoe-base "
            "1.3.2, mcvqoe.base.write_log) calls np.set_string_function, which NumPy 2 "
            "removed. Run the simulator in its own virtualenv with 'numpy<2' "
            "(the notebook image only evaluates, where NumPy 2 is fine)."
        )
    try:
        import pkg_resources  # noqa: F401 - mcvqoe imports it
    except ImportError:
        raise NistError(
            "pkg_resources is missing (setuptools 80 removed it, or setuptools is not "
            f"installed); NIST's packages import it: {_INSTALL_HINT}"
        ) from None
    modules = ["mcvqoe.simulation", "mcvqoe.mouth2ear"]
    if access_time:
        modules += ["abcmrt", "mcvqoe.accesstime"]
    for name in modules:
        try:
            module = __import__(name)
            if getattr(module, "__testbed_placeholder__", False):  # testbed_sim.audio's
                raise ImportError("only a placeholder is loaded: abcmrt16 is not installed")
        except ImportError as exc:
            raise NistError(
                f"cannot import {name} ({exc}) for NIST's "
                f"{'access-time' if 'access' in name or name == 'abcmrt' else 'M2E'} "
                f"measurement: {_INSTALL_HINT}"
            ) from None


def versions(names: Iterable[str] = PINNED) -> dict[str, str]:
    """Installed versions of NIST's packages (pip names), for the experiment document;
    or of the distributions ``names``. Those not installed are left out."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def experiment_seed(seed: int, experiment_id: str, test: str) -> int:
    """A 32-bit seed for one test of one experiment (NumPy's legacy seed range)."""
    digest = hashlib.sha256(f"{seed}:{experiment_id}:nist:{test}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (QoEsim's noise, NIST's permutation tests) for
    the block; restore the caller's state afterwards."""
    import numpy as np

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _quiet_progress(*_args: Any, **_kwargs: Any) -> bool:
    return True  # NIST's progress callback: True means "go on"


def _info(test: str) -> dict[str, Any]:
    # Keys NIST's log writer expects (mcvqoe.base.write_log.pre); the GUI fills them
    # in NIST's own simulate scripts.
    return {
        "Test Type": "simulation",
        "test_type": "simulation",
        "tx_dev": "none",
        "rx_dev": "none",
        "system": "QoEsim clean channel",
        "test_loc": "N/A",
        "Pre Test Notes": f"testbed-sim {test}",
    }


def _clip_paths(package: str, clips: tuple[str, ...]) -> list[str]:
    import pkg_resources

    return [pkg_resources.resource_filename(package, f"audio_clips/{c}.wav") for c in clips]


def _run_m2e(
    outdir: Path, m2e_latency_s: float, device_delay_s: float, test: M2ETest, seed: int
) -> Path:
    import mcvqoe.simulation
    import numpy as np
    from mcvqoe.mouth2ear import measure

    sim = mcvqoe.simulation.QoEsim()
    sim.playback_chans = {"tx_voice": 0}
    sim.rec_chans = {"rx_voice": 0}
    sim.m2e_latency = m2e_latency_s
    sim.device_delay = device_delay_s
    meas = measure(
        audio_interface=sim,
        ri=sim,
        audio_files=_clip_paths("mcvqoe.mouth2ear", test.clips),
        trials=test.trials,
        outdir=str(outdir),
        ptt_wait=0,
        ptt_gap=0,
        # the received audio (Rx<trial>_<clip>.wav) is kept for listening; the
        # transmitted clips are NIST's shipped ones (NIST's m2e_simulate keeps neither)
        save_tx_audio=False,
        rng=np.random.default_rng(seed),
        progress_update=_quiet_progress,
        get_post_notes=dict,
    )
    meas.info = _info("M2E")
    meas.param_check()
    with _global_numpy_seed(seed):
        files = meas.run()
    return Path(files[0])


def _run_access(
    outdir: Path,
    m2e_latency_s: float,
    access_delay_s: float,
    device_delay_s: float,
    test: AccessTest,
    seed: int,
) -> list[Path]:
    import mcvqoe.simulation
    import numpy as np
    from mcvqoe.accesstime import measure

    sim = mcvqoe.simulation.QoEsim(
        playback_chans={"tx_voice": 0, "start_signal": 1},
        rec_chans={"rx_voice": 0, "PTT_signal": 1},
    )
    sim.m2e_latency = m2e_latency_s
    sim.access_delay = access_delay_s
    sim.device_delay = device_delay_s
    meas = measure(
        audio_interface=sim,
        ri=sim,
        audio_files=_clip_paths("mcvqoe.accesstime", test.clips),
        outdir=str(outdir),
        ptt_gap=0,
        ptt_step=test.ptt_step_s,
        ptt_rep=test.ptt_rep,
        ptt_delay=list(test.ptt_delay_s),
        auto_stop=False,
        bisect_midpoint=test.bisect,
        pause_trials=np.inf,
        # The evaluation reads the CSVs and the cut points; the received audio is not
        # kept (with save_audio NIST zips it with LZMA at the end, 1.2 MB a trial).
        save_audio=False,
        zip_audio=False,
        progress_update=_quiet_progress,
        get_post_notes=dict,
    )
    meas.info = _info("access time")
    meas.param_check()
    with _global_numpy_seed(seed):
        meas.run(recovery=False)
    folder = Path(meas.data_dirs[0])
    # mcvqoe-accesstime 2.2.3 leaves the received audio when save_audio is off
    # (it only zips it when both save_audio and zip_audio are on): 1.2 MB a trial.
    for wav in (folder / "wav").glob("Rx*.wav"):
        wav.unlink()
    return sorted(folder.glob("*.csv"))


def _replace_dir(built: Path, target: Path) -> None:
    """Swap ``built`` in at ``target`` (the old one, if any, removed after)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(built, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _chmod_tree(root: Path, file_mode: int, dir_mode: int) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(dir_mode if path.is_dir() else file_mode)


def _rel(path: Path, media: Path) -> str:
    return path.relative_to(media).as_posix()


@dataclass(frozen=True)
class Experiment:
    """What to measure for one experiment."""

    experiment_id: str
    m2e_latency_s: float
    access_delay_s: float | None = None
    seed: int = 0
    device_delay_s: float = NIST_DEVICE_DELAY_S
    m2e: M2ETest = field(default_factory=M2ETest)
    access: AccessTest = field(default_factory=AccessTest)

    def check(self) -> None:
        exp = self.experiment_id
        if not isinstance(exp, str) or not exp or "/" in exp or exp.startswith("."):
            raise NistError(f"experiment id must be a plain folder name, got {exp!r}")
        if not 0.0 < self.m2e_latency_s <= 5.0:
            raise NistError(
                f"{exp}: m2e_latency_s must be > 0 and <= 5 s (QoEsim's clean channel), "
                f"got {self.m2e_latency_s!r}"
            )
        if not 0.0 <= self.device_delay_s <= 0.5:
            raise NistError(
                f"{exp}: device_delay_s must be 0 .. 0.5 s, got {self.device_delay_s!r}"
            )
        self.m2e.check()
        if self.access_delay_s is not None:
            self.access.check()
            limit = self.access.max_access_delay_s - 0.1
            if not 0.0 <= self.access_delay_s <= limit:
                raise NistError(
                    f"{exp}: access_delay_s must be 0 .. {limit:g} s (the first word of "
                    f"NIST's clips starts {self.access.max_access_delay_s:g} s after the "
                    f"earliest PTT time, AccessTest.ptt_delay_s), got {self.access_delay_s!r}"
                )


#: Libraries whose arithmetic shapes the measured values (beside NIST's own packages).
NUMERIC_LIBRARIES = ("numpy", "scipy")


def cache_key(experiment: Experiment) -> str:
    """Content hash of what the experiment's NIST folder is made from: the experiment's
    parameters and seed, NIST's and NumPy's/SciPy's installed versions, this module's
    output format and its source (a change to how a test is run is a new key, without
    a manual ``FORMAT`` bump)."""
    payload = {
        "format": FORMAT,
        "experiment": asdict(experiment),
        "versions": versions(),
        "numeric": versions(NUMERIC_LIBRARIES),
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_document(media_dir: Path | str, experiment_id: str) -> dict[str, Any] | None:
    """The ``nist`` document stored beside an experiment's tests (``nist/nist.json``),
    or None when there is none or it names a file that is missing."""
    media = Path(media_dir)
    path = media / experiment_id / NIST_DIR / DOCUMENT
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = [doc.get("m2e", {}).get("csv")] + list(doc.get("access_time", {}).get("csvs", []))
    if not all(isinstance(f, str) and (media / f).is_file() for f in files):
        return None
    return doc


def run_experiment(
    media_dir: Path | str,
    experiment: Experiment,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
    reuse: bool = True,
) -> dict[str, Any]:
    """Run the experiment's NIST tests and write them under
    ``<media_dir>/<experiment id>/nist/``; return the ``nist`` part of its document.

    The document is also stored there (``nist/nist.json``, with :func:`cache_key`);
    with ``reuse`` a folder made from the same content is kept and its document
    returned without running anything. Paths in the result are relative to
    ``media_dir`` (what ``testbed.data`` resolves against the notebook's media mount).
    Raises :class:`NistError`.
    """
    experiment.check()
    with_access = experiment.access_delay_s is not None
    check_environment(access_time=with_access)
    media = Path(media_dir)
    exp = experiment.experiment_id
    target = media / exp / NIST_DIR
    key = cache_key(experiment)
    if reuse:
        stored = load_document(media, exp)
        if stored is not None and stored.get("cache_key") == key:
            return stored
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{NIST_DIR}-", dir=target.parent))
    except OSError as exc:
        raise NistError(f"cannot write NIST's tests under {target.parent}: {exc}") from None
    try:
        with warnings.catch_warnings():
            # NIST's autocorrelation divides 0 by 0 on constant latencies (harmless).
            warnings.simplefilter("ignore", RuntimeWarning)
            m2e_seed = experiment_seed(experiment.seed, exp, "m2e")
            m2e_csv = _run_m2e(
                build / M2E_DIR,
                experiment.m2e_latency_s,
                experiment.device_delay_s,
                experiment.m2e,
                m2e_seed,
            )
            access_csvs: list[Path] = []
            if with_access:
                access_seed = experiment_seed(experiment.seed, exp, "access_time")
                access_csvs = _run_access(
                    build / ACCESS_DIR,
                    experiment.m2e_latency_s,
                    float(experiment.access_delay_s),  # type: ignore[arg-type]
                    experiment.device_delay_s,
                    experiment.access,
                    access_seed,
                )
        _chmod_tree(build, file_mode, dir_mode)
        _replace_dir(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise

    def moved(path: Path) -> Path:
        return target / path.relative_to(build)

    m2e_csv = moved(m2e_csv)
    doc: dict[str, Any] = {
        "versions": versions(),
        "seed": experiment.seed,
        "device_delay_s": experiment.device_delay_s,
        "nist_device_delay_s": NIST_DEVICE_DELAY_S,
        "m2e": {
            "csv": _rel(m2e_csv, media),
            "wav_dir": _rel(m2e_csv.parent / "wav", media),
            "injected_m2e_latency_s": experiment.m2e_latency_s,
            "m2e_truth_ms": m2e_truth_ms(experiment.m2e_latency_s, experiment.device_delay_s),
            "seed": m2e_seed,
            **asdict(experiment.m2e),
        },
    }
    doc["m2e"]["clips"] = list(experiment.m2e.clips)
    if with_access:
        csvs = [moved(p) for p in access_csvs]
        access = asdict(experiment.access)
        access["clips"] = list(experiment.access.clips)
        access["ptt_delay_s"] = list(experiment.access.ptt_delay_s)
        doc["access_time"] = {
            "csvs": [_rel(p, media) for p in csvs],
            "wav_dir": _rel(csvs[0].parent / "wav", media),
            "injected_access_delay_s": experiment.access_delay_s,
            "access_truth_ms": access_truth_ms(
                float(experiment.access_delay_s),  # type: ignore[arg-type]
                experiment.device_delay_s,
            ),
            "resolution_s": experiment.access.resolution_s,
            "seed": access_seed,
            **access,
        }
    doc["cache_key"] = key
    stored_at = target / DOCUMENT
    try:
        stored_at.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        stored_at.chmod(file_mode)
    except OSError as exc:
        raise NistError(f"cannot write {stored_at}: {exc}") from None
    return doc


# -- cache across stations ------------------------------------------------------------
#
# An experiment's ``nist`` folder is a pure function of :func:`cache_key` (its
# parameters, seed, NIST's versions and :data:`FORMAT`): a station stores it as
# ``<cache_dir>/<cache_key>.tar`` and another one (or the next Molecule instance)
# restores it instead of measuring, as the notebook images are saved by content hash.


def cache_path(cache_dir: Path | str, experiment: Experiment) -> Path:
    """Where the experiment's ``nist`` folder is cached: ``<cache_dir>/<cache_key>.tar``."""
    return Path(cache_dir) / f"{cache_key(experiment)}.tar"


def store_in_cache(media_dir: Path | str, experiment: Experiment, cache_dir: Path | str) -> Path:
    """Write the experiment's ``nist`` folder (made by :func:`run_experiment`) to the
    cache as an uncompressed tar, atomically (a reader never sees half a file)."""
    media = Path(media_dir)
    folder = media / experiment.experiment_id / NIST_DIR
    doc = load_document(media, experiment.experiment_id)
    if doc is None or doc.get("cache_key") != cache_key(experiment):
        raise NistError(f"{folder} holds no complete test of this experiment to cache")
    target = cache_path(cache_dir, experiment)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            with tarfile.open(tmp, "w") as tar:
                for path in sorted(folder.rglob("*")):
                    tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
            Path(tmp).chmod(0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise NistError(f"cannot write the NIST cache file {target}: {exc}") from None
    return target


def _safe_members(tar: tarfile.TarFile, source: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        parts = Path(m.name).parts
        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
            raise NistError(
                f"{source}: unexpected member {m.name!r} (only plain files and folders "
                "below the experiment's nist folder); delete the file to measure again"
            )
    return members


def restore_from_cache(
    media_dir: Path | str,
    experiment: Experiment,
    cache_dir: Path | str,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
) -> dict[str, Any] | None:
    """Put the cached ``nist`` folder of the experiment in place and return its
    document; None when the cache has none (or an unusable one: it is measured then)."""
    source = cache_path(cache_dir, experiment)
    if not source.is_file():
        return None
    media = Path(media_dir)
    exp = experiment.experiment_id
    target = media / exp / NIST_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{NIST_DIR}-", dir=target.parent))
    try:
        with tarfile.open(source) as tar:
            members = _safe_members(tar, source)
            # members are checked above; Python's "data" filter too where it has one
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(build, members=members, **extra)  # noqa: S202
        _chmod_tree(build, file_mode, dir_mode)
        doc = json.loads((build / DOCUMENT).read_text(encoding="utf-8"))
        if doc.get("cache_key") != cache_key(experiment):
            raise NistError(f"{source}: its document has another cache key")
        _replace_dir(build, target)
    except (OSError, ValueError, tarfile.TarError, NistError):
        shutil.rmtree(build, ignore_errors=True)
        return None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return load_document(media, exp)
