"""Recordings for the simulator: spoken PTT phrases through a radio-channel effect.

``espeak-ng`` speaks the event's phrase; numpy resamples it to 8 kHz, band-limits it
to 300-3400 Hz, adds channel noise and packet-loss dropouts (20 ms frames) derived
from the experiment's channel, and band-limits again (the receiver's filter). The
result is a 16-bit mono 8 kHz WAV at ``<media>/<experiment_id>/ptt-NNNN.wav``, cut or
padded to the event's ``duration_s``. Deterministic for a given seed and espeak-ng.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from testbed_sim.dataset import SeedData

RATE = 8000
BAND_HZ = (300.0, 3400.0)
FRAME_S = 0.02
ESPEAK = "espeak-ng"


class AudioError(RuntimeError):
    """Recording generation failed (missing espeak-ng, unwritable media dir, ...)."""


def espeak_path() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise AudioError(
            "espeak-ng not found on PATH: install it (Debian: apt-get install espeak-ng); "
            "the testbed_sim role installs it"
        )
    return path


def speak(text: str, voice: str = "en-us", speed: int = 170) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; return float samples in [-1, 1] and the rate."""
    exe = espeak_path()
    with tempfile.TemporaryDirectory(prefix="testbed-sim-") as tmp:
        out = Path(tmp) / "speech.wav"
        proc = subprocess.run(
            [exe, "-v", voice, "-s", str(speed), "-w", str(out), text],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if proc.returncode != 0 or not out.exists():
            raise AudioError(
                f"espeak-ng failed (exit {proc.returncode}) for {text!r}: {proc.stderr.strip()}"
            )
        with wave.open(str(out), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise AudioError("espeak-ng produced an unexpected WAV format (want 16-bit mono)")
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    return samples, rate


def band_limit(x: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """Resample ``x`` from ``rate_in`` to ``rate_out`` keeping only 300-3400 Hz
    (brick-wall in the frequency domain, which is also the anti-alias filter)."""
    n = len(x)
    if n == 0:
        return np.zeros(0)
    m = max(1, round(n * rate_out / rate_in))
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, d=1.0 / rate_in)
    keep = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    out_spec = np.zeros(m // 2 + 1, dtype=complex)
    idx = np.nonzero(keep)[0]
    idx = idx[idx < len(out_spec)]
    out_spec[idx] = spec[idx] * (m / n)
    return np.fft.irfft(out_spec, m)


def radio_channel(
    speech: np.ndarray, rate: int, channel: dict[str, Any], duration_s: float, seed: int
) -> np.ndarray:
    """Apply the radio channel to ``speech``; return int16 samples at 8 kHz."""
    rng = np.random.default_rng(seed)
    x = band_limit(speech, rate)
    n = round(duration_s * RATE)
    x = np.pad(x, (0, max(0, n - len(x))))[:n]
    peak = float(np.max(np.abs(x))) or 1.0
    x = 0.6 * x / peak
    # Noise floor: narrower links and bit errors are noisier (SNR 30 dB .. 18 dB).
    snr_db = 30.0 - 6.0 * (channel["bandwidth_kbps"] <= 32) - 1e5 * channel["bit_error_rate"]
    snr_db = max(12.0, snr_db)
    speech_rms = float(np.sqrt(np.mean(x**2))) or 1e-3
    x = x + rng.normal(0.0, speech_rms / (10 ** (snr_db / 20.0)), n)
    # Dropouts: each 20 ms frame lost with the channel's packet-loss probability.
    frame = round(FRAME_S * RATE)
    lost = rng.random((n + frame - 1) // frame) < channel["packet_loss_pct"] / 100.0
    for i in np.nonzero(lost)[0]:
        x[i * frame : (i + 1) * frame] = 0.0
    # Receiver filter: band-limit again so dropouts and noise stay inside the band.
    x = band_limit(x, RATE, RATE)
    x = np.clip(x, -1.0, 32767 / 32768)
    return np.round(x * 32767).astype("<i2")


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def recording_seed(seed: int, recording: str) -> int:
    digest = hashlib.sha256(f"{seed}:{recording}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def render_event(event: dict[str, Any], channel: dict[str, Any], seed: int) -> bytes:
    """WAV bytes of one PTT event's recording."""
    speech, rate = speak(event["phrase"])
    samples = radio_channel(
        speech, rate, channel, event["duration_s"], recording_seed(seed, event["recording"])
    )
    return wav_bytes(samples)


def write_recordings(
    data: SeedData,
    media_dir: Path | str,
    seed: int,
    force: bool = False,
    file_mode: int = 0o644,
    dir_mode: int = 0o755,
) -> int:
    """Write every recording referenced by ``data`` under ``media_dir``.

    Existing files are kept unless ``force``. Returns the number of files written.
    Files are written to a temporary name and renamed, so a reader never sees half a WAV.
    """
    media = Path(media_dir)
    channels = {e["_id"]: e["channel"] for e in data.experiments}
    todo = [e for e in data.recordings() if force or not (media / e["recording"]).exists()]
    if todo:
        espeak_path()
    try:
        media.mkdir(parents=True, exist_ok=True)
        for exp in data.experiments:
            d = media / exp["_id"]
            d.mkdir(exist_ok=True)
            d.chmod(dir_mode)
        written = 0
        for event in todo:
            target = media / event["recording"]
            payload = render_event(event, channels[event["experiment_id"]], seed)
            tmp = target.with_suffix(".wav.tmp")
            tmp.write_bytes(payload)
            tmp.chmod(file_mode)
            os.replace(tmp, target)
            written += 1
    except OSError as exc:
        raise AudioError(f"cannot write recordings under {media}: {exc}") from exc
    return written
