"""Recordings: NIST's Harvard sentences through QoEsim, written as 8 kHz WAV.

The audio has to support the numbers the database holds: each recording is its NIST
clip delayed by the event's mouth_to_ear_ms, and the clip's first access_delay_ms
is missing from it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import wave

import numpy as np
import pytest
from scipy.signal import fftconvolve, resample_poly

from testbed_sim import audio, seed, speech


@pytest.fixture(scope="module")
def small():
    return seed.generate(3, 20)


@pytest.fixture(scope="module")
def media(tmp_path_factory, small):
    d = tmp_path_factory.mktemp("media")
    written = audio.write_recordings(small, d, seed=3)
    assert written == len(small.recordings())
    return d


@pytest.fixture(scope="module")
def recorder():
    return audio.Recorder()


def read(path):
    with wave.open(str(path), "rb") as w:
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    return params, x


def rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def clip_8k(recorder, name):
    return resample_poly(recorder.clip(name).astype(float), 1, 6) * 32767


def test_every_reference_has_a_wav_and_nothing_else(media, small):
    on_disk = sorted(str(p.relative_to(media)) for p in media.rglob("*.wav"))
    assert on_disk == sorted(e["recording"] for e in small.recordings())
    assert sorted(p.name for p in media.iterdir()) == sorted(
        [e["_id"] for e in small.experiments] + [audio.MARKER]
    )
    assert list((media / "exp-005").iterdir()) == []
    assert json.loads((media / audio.MARKER).read_text()) == {"format": audio.FORMAT, "seed": 3}
    assert oct((media / audio.MARKER).stat().st_mode & 0o777) == "0o644"


def test_events_name_their_clip(small):
    for event in small.ptt_events:
        if event["recording"] is None:
            assert event["speech_clip"] is None and event["phrase"]
        else:
            assert event["phrase"] is None
            assert event["speech_clip"] == speech.speech_clip(3, event["recording"])
    clips = {e["speech_clip"] for e in small.recordings()}
    assert clips == set(speech.SPEECH_CLIPS)


def test_format_length_and_permissions(media, small):
    for event in small.recordings():
        path = media / event["recording"]
        params, x = read(path)
        assert params == (1, 2, 8000)
        assert len(x) == round(event["duration_s"] * 8000)
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        assert rms(x) > 300  # speech, not silence


def test_delayed_by_mouth_to_ear_latency_within_one_sample(media, small, recorder):
    for event in small.recordings():
        _, x = read(media / event["recording"])
        ref = clip_8k(recorder, event["speech_clip"])
        start = round(event["access_delay_ms"] * 8)  # the part of the clip sent on air
        template = ref[start : start + 4000]
        corr = fftconvolve(x, template[::-1], mode="full")
        lag = int(np.argmax(corr)) - (len(template) - 1) - start
        assert abs(lag - event["mouth_to_ear_ms"] * 8) <= 1, event["_id"]


def test_speech_before_access_is_lost(media, small, recorder):
    for event in small.recordings():
        _, x = read(media / event["recording"])
        ref = clip_8k(recorder, event["speech_clip"])
        access = round(event["access_delay_ms"] * 8)
        voice_at = round((event["access_delay_ms"] + event["mouth_to_ear_ms"]) * 8)
        # the clip speaks in its first access_delay_ms (> -56 dBFS), the recording is
        # silent until access + latency (< -84 dBFS; 1 ms left for the resampler's filter)
        assert rms(ref[:access]) > 50, event["_id"]
        assert rms(x[: voice_at - 8]) < 2, event["_id"]
        assert rms(x[voice_at + 8 :]) > 300, event["_id"]


def test_pbi_parameters_give_the_channels_loss():
    assert audio.pbi_parameters(0.0) is None
    for pct in (0.5, 2.0, 10.0):
        p = audio.pbi_parameters(pct)
        stationary = (1 - p["P_r"]) / (1 - p["P_r"] + p["P_a2"])
        assert stationary == pytest.approx(pct / 100, rel=1e-12)
        assert p["P_a1"] == 1.0 and p["interval"] == audio.PBI_INTERVAL_S
    assert audio.pbi_parameters(66.0)["P_r"] == pytest.approx(1 - 0.66 * 0.5 / 0.34)
    with pytest.raises(audio.AudioError, match=r"packet_loss_pct must be from 0 to below 66\.7"):
        audio.pbi_parameters(70.0)


def test_pbi_drops_the_channels_share_of_20_ms_frames(recorder):
    # NIST's PBI itself on a long constant signal: the share of zeroed frames is p
    from mcvqoe.simulation.Probabilityiser import PBI

    with audio._seeded(7):  # PBI draws from Python's random; restored afterwards
        for pct in (2.0, 10.0):
            pbi = PBI(**audio.pbi_parameters(pct))
            out = pbi.process_audio(np.ones(8000 * 600), 8000)  # 30,000 frames
            lost = float(np.mean(out.reshape(-1, 160)[:, 0] == 0))
            assert lost == pytest.approx(pct / 100, abs=0.01)


def test_lossy_channel_drops_speech_a_clean_one_keeps(recorder):
    clean = {"bandwidth_kbps": 64, "delay_ms": 20, "packet_loss_pct": 0.0, "bit_error_rate": 0.0}
    lossy = {**clean, "packet_loss_pct": 10.0}

    def silent_frames(channel):
        x = recorder.received(
            "F2_harvard_phrases",
            mouth_to_ear_ms=200.0,
            access_delay_ms=100.0,
            channel=channel,
            duration_s=4.0,
            seed=1,
        ).astype(float)
        frames = x[2400 : 2400 + 160 * 150].reshape(-1, 160)  # after the voice arrives
        return int((np.sqrt((frames**2).mean(axis=1)) < 2).sum())

    assert silent_frames(clean) == 0
    assert silent_frames(lossy) >= 5


def test_noise_follows_the_channels_snr():
    assert audio.snr_db({"bandwidth_kbps": 64, "bit_error_rate": 0.0}) == 30.0
    assert audio.snr_db({"bandwidth_kbps": 32, "bit_error_rate": 0.0}) == 24.0
    assert audio.snr_db({"bandwidth_kbps": 16, "bit_error_rate": 1e-4}) == 14.0
    assert audio.snr_db({"bandwidth_kbps": 16, "bit_error_rate": 1e-3}) == 12.0


GLOBAL_STATE_SCRIPT = """
import json, random, sys
import numpy as np
from testbed_sim import audio, seed
np.random.seed(11)
random.seed(12)
before = np.random.get_state()[1].tolist(), random.getstate()
written = audio.write_recordings(seed.generate(3, 2), sys.argv[1], seed=3)
after = np.random.get_state()[1].tolist(), random.getstate()
print(json.dumps({"written": written, "kept": before == after}))
"""


def test_the_callers_random_generators_are_left_as_they_were(tmp_path):
    """QoEsim draws from NumPy's and Python's global generators: write_recordings seeds
    them per recording and gives the caller's state back. Checked in a fresh interpreter:
    in this one a thread another test left running may draw from ``random`` meanwhile."""
    out = subprocess.run(
        [sys.executable, "-c", GLOBAL_STATE_SCRIPT, str(tmp_path / "media")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["written"] == len(seed.generate(3, 2).recordings()) > 0
    assert report["kept"] is True


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


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recordings_of_the_previous_format_are_moved_not_lost(tmp_path, small):
    """A station seeded by an earlier release (espeak-ng, no marker): every old file ends
    up under .previous-recordings/format-1/ with its bytes, the new ones in place."""
    media = tmp_path / "media"
    old = {}
    for i, event in enumerate(small.recordings()):
        path = media / event["recording"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(audio.wav_bytes(np.full(800, i, dtype="<i2")))
        old[event["recording"]] = sha(path)
    stray = media / "exp-099" / "ptt-0001.wav"  # an old seed's file, not in this data
    stray.parent.mkdir()
    stray.write_bytes(b"RIFF old seed")
    old["exp-099/ptt-0001.wav"] = sha(stray)
    (media / "notes.txt").write_text("the operator's own file")

    assert audio.read_marker(media) == {"format": audio.UNMARKED_FORMAT}
    assert audio.write_recordings(small, media, seed=3) == len(small.recordings())

    previous = media / audio.PREVIOUS_DIR / "format-1"
    kept = {p.relative_to(previous).as_posix(): sha(p) for p in previous.rglob("*.wav")}
    assert kept == old
    assert (media / "notes.txt").read_text() == "the operator's own file"
    assert not stray.exists()
    for event in small.recordings():
        params, x = read(media / event["recording"])
        assert params == (1, 2, 8000) and len(x) == round(event["duration_s"] * 8000)
    assert audio.read_marker(media) == {"format": audio.FORMAT, "seed": 3}
    # a second run moves nothing and writes nothing
    assert audio.write_recordings(small, media, seed=3) == 0
    assert {p.relative_to(previous).as_posix(): sha(p) for p in previous.rglob("*.wav")} == old


def test_another_seed_moves_the_old_set_aside_each_time(tmp_path):
    """Same names, other numbers: a seed changed (and changed back) keeps every earlier
    set in a folder of its own, and the files in place match the database."""
    media = tmp_path / "media"
    sets = {}
    for n, s in enumerate((3, 4, 3)):
        data = seed.generate(s, 3)
        assert audio.write_recordings(data, media, seed=s) == len(data.recordings())
        sets[n] = {p.relative_to(media).as_posix(): sha(p) for p in media.glob("exp-*/*.wav")}
        assert audio.read_marker(media) == {"format": audio.FORMAT, "seed": s}
    previous = media / audio.PREVIOUS_DIR
    assert sorted(p.name for p in previous.iterdir()) == ["seed-3", "seed-4"]
    for folder, n in (("seed-3", 0), ("seed-4", 1)):
        kept = {
            p.relative_to(previous / folder).as_posix(): sha(p)
            for p in (previous / folder).rglob("*.wav")
        }
        assert kept == sets[n]
    assert sets[2] == sets[0]  # deterministic: seed 3 again gives seed 3's files
    # and a fourth change finds seed-3 taken: a folder of its own again
    audio.write_recordings(seed.generate(4, 3), media, seed=4)
    assert sorted(p.name for p in previous.iterdir()) == ["seed-3", "seed-3.2", "seed-4"]


def test_an_interrupted_move_resumes_without_losing_a_file(tmp_path, small, monkeypatch):
    media = tmp_path / "media"
    old = {}
    for i, event in enumerate(small.recordings()):
        path = media / event["recording"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old %d" % i)
        old[event["recording"]] = sha(path)
    real_replace, calls = audio.os.replace, []

    def replace_then_fail(src, dst):
        calls.append(src)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(audio.os, "replace", replace_then_fail)
    with pytest.raises(audio.AudioError, match="No space left on device"):
        audio.write_recordings(small, media, seed=3)
    monkeypatch.setattr(audio.os, "replace", real_replace)
    assert audio.read_marker(media) == {"format": audio.UNMARKED_FORMAT}  # not changed yet
    assert audio.write_recordings(small, media, seed=3) == len(small.recordings())
    previous = media / audio.PREVIOUS_DIR
    assert sorted(p.name for p in previous.iterdir()) == ["format-1", "format-1.2"]
    kept = {}
    for folder in previous.iterdir():
        kept.update({p.relative_to(folder).as_posix(): sha(p) for p in folder.rglob("*.wav")})
    assert kept == old


def test_a_damaged_marker_is_named(tmp_path, small):
    media = tmp_path / "media"
    media.mkdir()
    (media / audio.MARKER).write_text("{not json")
    with pytest.raises(
        audio.AudioError, match=r"\.testbed-sim-recordings\.json is not a.*restore it"
    ):
        audio.write_recordings(small, media, seed=3)
    assert sorted(p.name for p in media.iterdir()) == [audio.MARKER]


def test_missing_nist_packages_fail_clearly_and_change_nothing(tmp_path, monkeypatch, small):
    monkeypatch.setitem(sys.modules, "mcvqoe.simulation", None)  # import raises
    with pytest.raises(audio.AudioError, match=r"pip install 'setuptools<80' mcvqoe-base==1\.3\.2"):
        audio.write_recordings(small, tmp_path / "m", seed=3)
    assert not (tmp_path / "m").exists()


def test_cli_writes_media(tmp_path, capsys):
    assert seed.main(["--seed", "3", "--experiments", "20", "--media-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    n = len(seed.generate(3, 20).recordings())
    assert f'"recordings": {n}, "written": {n}' in out
    assert len(list(tmp_path.rglob("*.wav"))) == n
