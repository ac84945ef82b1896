"""Recordings for the simulator: NIST's speech through NIST's channel simulator.

Every recorded PTT event's WAV is one of the Harvard-sentence clips NIST ships with
``mcvqoe-mouth2ear`` (48 kHz, 4.6-6.0 s, speech from the first 100 ms) played through
:class:`mcvqoe.simulation.QoEsim` with the event's own values:

* ``m2e_latency`` = the event's ``mouth_to_ear_ms``: the received voice is the sent
  voice delayed by exactly that (``device_delay`` 0: the recording is what reaches the
  listener, no audio interface in between);
* ``access_delay`` = the event's ``access_delay_ms`` with the PTT keyed at the clip's
  start (``ptt_wait_delay`` 0): the first ``access_delay_ms`` of the speech is lost,
  as on air, and the recording is silent until access + latency;
* ``rec_snr`` from the channel (30 dB, 6 dB less on links of 32 kbit/s or less, less
  again with bit errors, at least 12 dB);
* packet loss as NIST's ``probabilityiser`` impairment (PBI, a two-state channel
  evaluated every 20 ms): ``P_a1`` 1 (transmitting from key-up), ``P_a2`` 0.5 (a drop
  lasts 40 ms on average) and ``P_r`` = 1 - p * ``P_a2`` / (1 - p), whose stationary
  loss is the channel's ``packet_loss_pct`` p.

The result, cut to the event's ``duration_s``, is resampled to 8 kHz
(``scipy.signal.resample_poly``) and written as 16-bit mono PCM at
``<media>/<experiment_id>/ptt-NNNN.wav``. Deterministic for a seed: QoEsim's noise
draws from NumPy's global generator and PBI from Python's ``random``; both are seeded
from :func:`testbed_sim.speech.recording_seed` and restored afterwards. About 25 ms a
recording, plus about 1 s for NIST's import once a process.

The media folder's :data:`MARKER` records the recordings' :data:`FORMAT` and seed.
Recordings made otherwise (a station seeded by an earlier release: espeak-ng speech
through a hand-written channel; or with another seed, whose files of the same name
say other numbers) are moved, never deleted or overwritten, to a folder of their own
below ``<media>/.previous-recordings/`` before the new ones are written.

Needs ``mcvqoe-base`` and ``mcvqoe-mouth2ear`` (setuptools < 80 for
``pkg_resources``); works with NumPy 1.26 and 2. ABC-MRT16 (``abcmrt``), which
``mcvqoe.base`` imports, is replaced by a placeholder when it is not installed: the
channel simulator never uses it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import os
import random
import re
import sys
import tempfile
import types
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from testbed_sim.dataset import SeedData
from testbed_sim.speech import SPEECH_CLIPS, recording_seed

RATE = 8000
#: NIST's clips and QoEsim run at 48 kHz; the recordings are kept at 8 kHz.
NIST_RATE = 48000
#: PBI's evaluation interval (s) and its probability of returning to transmitting.
PBI_INTERVAL_S = 0.02
PBI_P_A2 = 0.5
#: The recordings' format, written to :data:`MARKER`. 1 (no marker): espeak-ng speech
#: through a hand-written channel, written by earlier releases.
FORMAT = 2
#: Name of the format of recordings found without a marker.
UNMARKED_FORMAT = 1
MARKER = ".testbed-sim-recordings.json"
PREVIOUS_DIR = ".previous-recordings"
_RECORDING_RE = re.compile(r"^exp-[0-9]{3}/ptt-[0-9]{4}\.wav$")
_INSTALL_HINT = (
    "install NIST's packages in the simulator's virtualenv: pip install 'setuptools<80' "
    "mcvqoe-base==1.3.2 mcvqoe-mouth2ear==2.1.3 (role testbed_sim installs them)"
)


class AudioError(RuntimeError):
    """Recording generation failed (NIST's packages missing, unwritable media dir, ...)."""


def snr_db(channel: dict[str, Any]) -> float:
    """Signal-to-noise ratio of a channel's recordings, dB (``QoEsim.rec_snr``)."""
    snr = 30.0 - 6.0 * (channel["bandwidth_kbps"] <= 32) - 1e5 * channel["bit_error_rate"]
    return max(12.0, snr)


def pbi_parameters(packet_loss_pct: float) -> dict[str, float] | None:
    """NIST PBI parameters whose stationary loss is ``packet_loss_pct``; ``None`` for a
    lossless channel. Stationary loss = (1 - P_r) / (1 - P_r + P_a2) with ``P_a2``
    0.5, so losses from 0 to 66.6 % (P_r from 1 down to 0); above that PBI cannot drop
    more with a 40 ms mean drop, and :class:`AudioError` says so."""
    p = packet_loss_pct / 100.0
    limit = 1.0 / (1.0 + PBI_P_A2)
    if not 0.0 <= p < limit:
        raise AudioError(
            f"packet_loss_pct must be from 0 to below {100 * limit:.1f} (NIST's PBI with "
            f"P_a2 {PBI_P_A2} cannot drop more), got {packet_loss_pct!r}"
        )
    if p == 0.0:
        return None
    return {
        "P_a1": 1.0,
        "P_a2": PBI_P_A2,
        "P_r": 1.0 - p * PBI_P_A2 / (1.0 - p),
        "interval": PBI_INTERVAL_S,
    }


def _abcmrt_placeholder() -> types.ModuleType:
    """Stands in for ABC-MRT16, which ``mcvqoe.base`` imports and QoEsim never calls;
    anything that does call it (an access-time measurement) gets the install hint.
    :func:`testbed_sim.nist.check_environment` recognises it by
    ``__testbed_placeholder__``."""
    module = types.ModuleType("abcmrt", "Placeholder: ABC-MRT16 is not installed here.")

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise AudioError(
            "ABC-MRT16 (pip package abcmrt16==1.0.1) is not installed in this virtualenv: "
            "NIST's access-time measurement needs it (testbed_sim_nist_requirements)"
        )

    module.fs = NIST_RATE  # type: ignore[attr-defined]  # read at import by mcvqoe
    module.version = "not installed"  # type: ignore[attr-defined]
    module.process = missing  # type: ignore[attr-defined]
    module.load_templates = missing  # type: ignore[attr-defined]
    module.__testbed_placeholder__ = True  # type: ignore[attr-defined]
    return module


def _nist() -> tuple[Any, Any, Path]:
    """Import QoEsim and ``mcvqoe.base``; return them and the clips' folder."""
    if "abcmrt" not in sys.modules and importlib.util.find_spec("abcmrt") is None:
        sys.modules["abcmrt"] = _abcmrt_placeholder()
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pkg_resources' notice
            base = importlib.import_module("mcvqoe.base")
            simulation = importlib.import_module("mcvqoe.simulation")
            m2e = importlib.import_module("mcvqoe.mouth2ear")
    except ImportError as exc:
        raise AudioError(
            f"cannot import NIST's channel simulator ({exc}): {_INSTALL_HINT}"
        ) from None
    clips = Path(m2e.__file__).parent / "audio_clips"
    return simulation.QoEsim, base, clips


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator and Python's ``random`` for one recording."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class Recorder:
    """Makes recordings with QoEsim (NIST's import and the clips loaded once)."""

    def __init__(self) -> None:
        self._qoesim, self._base, clip_dir = _nist()
        self._clips: dict[str, np.ndarray] = {}
        for name in SPEECH_CLIPS:
            rate, samples = self._base.audio_read(str(clip_dir / f"{name}.wav"))
            if rate != NIST_RATE:
                raise AudioError(f"NIST clip {name} is {rate} Hz, expected {NIST_RATE}")
            self._clips[name] = np.asarray(samples, dtype=np.float32)

    def clip(self, name: str) -> np.ndarray:
        """A NIST clip as float samples at 48 kHz."""
        return self._clips[name]

    def received(
        self,
        clip: str,
        *,
        mouth_to_ear_ms: float,
        access_delay_ms: float,
        channel: dict[str, Any],
        duration_s: float,
        seed: int,
    ) -> np.ndarray:
        """What the listener receives of ``duration_s`` of ``clip`` over ``channel``:
        int16 samples at 8 kHz (``round(duration_s * 8000)`` of them)."""
        from scipy.signal import resample_poly

        n = round(duration_s * NIST_RATE)
        speech = self._clips[clip][:n]
        speech = np.pad(speech, (0, n - len(speech)))
        sim = self._qoesim(fs=NIST_RATE)
        sim.m2e_latency = mouth_to_ear_ms / 1000.0
        sim.access_delay = access_delay_ms / 1000.0
        sim.device_delay = 0.0
        sim.overplay = 0.0
        sim.rec_snr = snr_db(channel)
        sim.ptt_wait_delay[sim.default_radio] = 0.0
        pbi = pbi_parameters(channel["packet_loss_pct"])
        if pbi is not None:
            sim.channel_impairment = sim.get_impairment_func("probabilityiser", **pbi)
        with tempfile.TemporaryDirectory(prefix="testbed-sim-") as tmp, _seeded(seed):
            out = Path(tmp) / "rx.wav"
            sim.play_record(speech, str(out))
            _, rx = self._base.audio_read(str(out))
        y = resample_poly(np.asarray(rx, dtype=np.float64), RATE, NIST_RATE)
        y = np.clip(y, -1.0, 32767 / 32768)
        return np.round(y * 32767).astype("<i2")

    def render_event(self, event: dict[str, Any], channel: dict[str, Any], seed: int) -> bytes:
        """WAV bytes of one PTT event's recording."""
        return wav_bytes(
            self.received(
                event["speech_clip"],
                mouth_to_ear_ms=event["mouth_to_ear_ms"],
                access_delay_ms=event["access_delay_ms"],
                channel=channel,
                duration_s=event["duration_s"],
                seed=recording_seed(seed, event["recording"]),
            )
        )


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def read_marker(media_dir: Path | str) -> dict[str, Any] | None:
    """What :data:`MARKER` records about the recordings under ``media_dir``:
    ``{"format": 2, "seed": ...}``; ``{"format": 1}`` (:data:`UNMARKED_FORMAT`) for
    recordings without a marker; ``None`` for a folder without either. Raises
    :class:`AudioError` for a marker that cannot be read."""
    media = Path(media_dir)
    path = media / MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
        int(marker["format"])
    except FileNotFoundError:
        return {"format": UNMARKED_FORMAT} if any(_recordings_on_disk(media)) else None
    except OSError as exc:
        raise AudioError(f"cannot read {path}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise AudioError(
            f"{path} is not a recordings marker ({exc!r}): restore it, or move the "
            "folder's recordings aside and delete it, then seed again"
        ) from None
    return marker


def _recordings_on_disk(media: Path) -> Iterator[Path]:
    if not media.is_dir():
        return
    for path in sorted(media.glob("exp-*/ptt-*.wav")):
        if _RECORDING_RE.match(path.relative_to(media).as_posix()):
            yield path


def _aside(media: Path, marker: dict[str, Any]) -> Path:
    """A folder under :data:`PREVIOUS_DIR` that does not exist yet, named after what
    is moved: ``format-1`` (another format), ``seed-<seed>`` (another seed), with
    ``.2``, ``.3``, ... when that name is taken (a seed changed back and forth)."""
    if int(marker["format"]) != FORMAT:
        label = f"format-{int(marker['format'])}"
    else:
        label = f"seed-{marker.get('seed')}"
    root = media / PREVIOUS_DIR
    candidate, n = root / label, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{label}.{n}"
    return candidate


def move_previous(
    media_dir: Path | str, seed: int, file_mode: int = 0o644, dir_mode: int = 0o755
) -> int:
    """Move every recording made otherwise (another format, another seed) to a folder
    of its own below ``<media>/.previous-recordings/`` (``<label>/<experiment_id>/``;
    nothing is deleted or overwritten), then record :data:`FORMAT` and ``seed`` in
    :data:`MARKER`. Returns the number of files moved. Interrupted, it resumes: the
    marker changes only after the last move, and the files left move to a new folder."""
    media = Path(media_dir)
    wanted = {"format": FORMAT, "seed": seed}
    found = read_marker(media)
    moved = 0
    if found is not None and found != wanted:
        target_root = None
        for path in _recordings_on_disk(media):
            if target_root is None:
                target_root = _aside(media, found)
            target = target_root / path.relative_to(media)
            for d in (media / PREVIOUS_DIR, target_root, target.parent):
                if not d.is_dir():
                    d.mkdir()
                    d.chmod(dir_mode)
            os.replace(path, target)
            moved += 1
    if found != wanted:
        tmp = media / f"{MARKER}.tmp"
        tmp.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
        tmp.chmod(file_mode)
        os.replace(tmp, media / MARKER)
    return moved


def write_recordings(
    data: SeedData,
    media_dir: Path | str,
    seed: int,
    force: bool = False,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
) -> int:
    """Write every recording referenced by ``data`` under ``media_dir``.

    Recordings of another format or another seed are first moved aside
    (:func:`move_previous`). Existing files of this format and seed are kept unless
    ``force``. Returns the number of files written. Files are written to a temporary
    name and renamed, so a reader never sees half a WAV. Raises :class:`AudioError`
    (NIST's packages missing, an unreadable marker, an unwritable folder); without
    NIST's packages nothing under ``media_dir`` changes.
    """
    media = Path(media_dir)
    channels = {e["_id"]: e["channel"] for e in data.experiments}
    try:
        stale = read_marker(media) not in (None, {"format": FORMAT, "seed": seed})
        todo = [
            e for e in data.recordings() if force or stale or not (media / e["recording"]).exists()
        ]
        # NIST's import before anything is written or moved
        recorder = Recorder() if todo else None
        media.mkdir(parents=True, exist_ok=True)
        move_previous(media, seed, file_mode=file_mode, dir_mode=dir_mode)
        for exp in data.experiments:
            d = media / exp["_id"]
            d.mkdir(exist_ok=True)
            d.chmod(dir_mode)
        written = 0
        for event in todo:
            target = media / event["recording"]
            payload = recorder.render_event(event, channels[event["experiment_id"]], seed)  # type: ignore[union-attr]
            tmp = target.with_suffix(".wav.tmp")
            tmp.write_bytes(payload)
            tmp.chmod(file_mode)
            os.replace(tmp, target)
            written += 1
    except OSError as exc:
        raise AudioError(f"cannot write recordings under {media}: {exc}") from exc
    return written
