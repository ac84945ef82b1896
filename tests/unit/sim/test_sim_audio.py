"""Recordings: espeak-ng speech through the radio channel, written as 8 kHz WAV."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from testbed_sim import audio, seed

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def small():
    return seed.generate(3, 20)


@pytest.fixture(scope="module")
def media(tmp_path_factory, small):
    d = tmp_path_factory.mktemp("media")
    written = audio.write_recordings(small, d, seed=3)
    assert written == len(small.recordings())
    return d


def read(path):
    with wave.open(str(path), "rb") as w:
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    return params, x


def test_every_reference_has_a_wav_and_nothing_else(media, small):
    on_disk = sorted(str(p.relative_to(media)) for p in media.rglob("*.wav"))
    assert on_disk == sorted(e["recording"] for e in small.recordings())
    assert sorted(p.name for p in media.iterdir()) == [e["_id"] for e in small.experiments]
    assert list((media / "exp-005").iterdir()) == []


def test_format_length_and_permissions(media, small):
    for event in small.recordings():
        path = media / event["recording"]
        params, x = read(path)
        assert params == (1, 2, 8000)
        assert len(x) == round(event["duration_s"] * 8000)
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        assert np.sqrt(np.mean(x**2)) > 300  # speech, not silence


def test_band_limited_to_telephone_band(media, small):
    for event in small.recordings():
        _, x = read(media / event["recording"])
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / 8000)
        total = power.sum()
        assert power[freqs > 3600].sum() / total < 1e-3
        assert power[freqs < 250].sum() / total < 1e-3
        assert power[(freqs > 300) & (freqs < 3400)].sum() / total > 0.99


def test_dropouts_follow_packet_loss(small):
    event = small.recordings()[0]
    speech, rate = audio.speak(event["phrase"])
    clean = {"bandwidth_kbps": 64, "delay_ms": 20, "packet_loss_pct": 0.0, "bit_error_rate": 0.0}
    lossy = {**clean, "packet_loss_pct": 10.0}

    def silent_frames(ch):
        x = audio.radio_channel(speech, rate, ch, 4.0, seed=1).astype(float)
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        return int((np.sqrt((frames**2).mean(axis=1)) < 20).sum())

    assert silent_frames(lossy) > silent_frames(clean)


def test_deterministic_and_existing_files_kept(tmp_path, media, small):
    again = tmp_path / "again"
    audio.write_recordings(small, again, seed=3)
    for event in small.recordings():
        assert (again / event["recording"]).read_bytes() == (
            media / event["recording"]
        ).read_bytes()
    target = again / small.recordings()[0]["recording"]
    target.write_bytes(b"keep me")
    assert audio.write_recordings(small, again, seed=3) == 0
    assert target.read_bytes() == b"keep me"
    assert audio.write_recordings(small, again, seed=3, force=True) == len(small.recordings())
    assert target.read_bytes() != b"keep me"


def test_missing_espeak_fails_clearly(tmp_path, monkeypatch, small):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(audio.AudioError, match="espeak-ng not found on PATH: install it"):
        audio.write_recordings(small, tmp_path / "m", seed=3)
    assert not (tmp_path / "m").exists()


def test_cli_writes_media(tmp_path, capsys):
    assert seed.main(["--seed", "3", "--experiments", "20", "--media-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    n = len(seed.generate(3, 20).recordings())
    assert f'"recordings": {n}, "written": {n}' in out
    assert len(list(tmp_path.rglob("*.wav"))) == n
