"""testbed.data against the simulator's MongoDB stand-in and its recordings."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import soundfile

from testbed import data
from testbed.errors import (
    ConfigError,
    DatabaseAuthError,
    DatabaseUnreachable,
    RecordingMissing,
    UnknownExperiment,
)
from testbed_sim.mongo import MongoStandIn

pytestmark = pytest.mark.usefixtures("testbed_env")


def _experiment(seed_data, exp_id):
    return next(e for e in seed_data.experiments if e["_id"] == exp_id)


def _events(seed_data, exp_id):
    return [e for e in seed_data.ptt_events if e["experiment_id"] == exp_id]


def test_experiments_frame_has_flattened_channels(seed_data):
    frame = data.experiments()
    assert list(frame["experiment_id"]) == sorted(e["_id"] for e in seed_data.experiments)
    assert len(frame) == 12
    for doc in seed_data.experiments:
        row = frame.set_index("experiment_id").loc[doc["_id"]]
        for key, value in doc["channel"].items():
            assert row[f"channel_{key}"] == value
        assert row["n_participants"] == len(doc["participants"])
        assert row["n_recordings"] == len(doc["recordings"])
        assert row["date"].to_pydatetime() == doc["date"]
    assert str(frame["date"].dtype).startswith("datetime64")


def test_experiments_query_filters(seed_data):
    frame = data.experiments({"channel.packet_loss_pct": {"$gte": 2}})
    expected = sorted(
        e["_id"] for e in seed_data.experiments if e["channel"]["packet_loss_pct"] >= 2
    )
    assert list(frame["experiment_id"]) == expected
    assert data.experiment_ids({"channel.packet_loss_pct": {"$gte": 2}}) == expected
    with pytest.raises(TypeError, match="MongoDB filter dict"):
        data.experiments("loss > 2")


def test_experiment_document(seed_data):
    doc = data.experiment("exp-003")
    expected = _experiment(seed_data, "exp-003")
    assert doc["experiment_id"] == "exp-003"
    assert doc["channel"] == expected["channel"]
    assert doc["recordings"] == expected["recordings"]


def test_unknown_experiment_lists_close_ids():
    with pytest.raises(UnknownExperiment) as err:
        data.experiment("exp-0003")
    text = str(err.value)
    assert "No experiment 'exp-0003'" in text
    assert "Did you mean: exp-003" in text
    assert err.value.close[0] == "exp-003"
    assert "exp-003" in err.value.close


def test_unknown_experiment_without_close_match_lists_known_ones():
    with pytest.raises(UnknownExperiment, match=r"Known experiments \(12\): exp-001, exp-002"):
        data.experiment("zzz")


def test_ptt_events_of_one_experiment(seed_data):
    frame = data.ptt_events("exp-002")
    expected = _events(seed_data, "exp-002")
    assert list(frame["seq"]) == [e["seq"] for e in expected]
    assert list(frame["access_delay_ms"]) == [e["access_delay_ms"] for e in expected]
    assert list(frame["mouth_to_ear_ms"]) == [e["mouth_to_ear_ms"] for e in expected]
    assert frame["t_start"].iloc[0].to_pydatetime() == expected[0]["t_start"]
    assert "_id" not in frame.columns


def test_ptt_events_all_and_unknown(seed_data):
    frame = data.ptt_events()
    assert len(frame) == len(seed_data.ptt_events)
    assert list(frame["experiment_id"]) == sorted(frame["experiment_id"])
    with pytest.raises(UnknownExperiment, match="exp-099"):
        data.ptt_events("exp-099")


def test_recordings_are_paths_on_the_media_mount(seed_data, media):
    paths = data.recordings("exp-001")
    assert paths == [media / rel for rel in _experiment(seed_data, "exp-001")["recordings"]]
    assert all(p.is_file() for p in paths)
    assert data.recordings("exp-005") == []  # the seed's experiment without recordings


def test_load_recording_forms(seed_data, media):
    event = next(e for e in _events(seed_data, "exp-002") if e["recording"])
    rel = event["recording"]
    name = rel.split("/")[1]
    by_pair, rate = data.load_recording(("exp-002", name))
    assert by_pair.dtype == np.float32 and by_pair.ndim == 1 and rate == 8000
    assert abs(len(by_pair) / rate - event["duration_s"]) <= 1 / rate
    by_rel, _ = data.load_recording(rel)
    by_abs, _ = data.load_recording(media / rel)
    no_suffix, _ = data.load_recording(("exp-002", name.removesuffix(".wav")))
    reference, _ = soundfile.read(media / rel, dtype="float32")
    for samples in (by_rel, by_abs, no_suffix):
        assert np.array_equal(samples, reference)
    assert np.array_equal(by_pair, reference)
    assert float(np.max(np.abs(reference))) > 0.01  # not silence


def test_missing_recording_names_path_and_neighbours(media):
    with pytest.raises(RecordingMissing) as err:
        data.load_recording(("exp-001", "ptt-0999.wav"))
    text = str(err.value)
    assert str(media / "exp-001" / "ptt-0999.wav") in text
    assert "holds" in text and "recordings (ptt-" in text
    assert isinstance(err.value, FileNotFoundError)


def test_missing_experiment_folder(media):
    with pytest.raises(RecordingMissing, match="present but has no folder 'exp-777'"):
        data.load_recording("exp-777/ptt-0001.wav")


def test_missing_media_mount(monkeypatch, tmp_path):
    gone = tmp_path / "not-mounted"
    monkeypatch.setenv("TESTBED_MEDIA_DIR", str(gone))
    with pytest.raises(
        RecordingMissing, match=rf"recordings mount {gone} \(TESTBED_MEDIA_DIR\) is not present"
    ):
        data.load_recording("exp-001/ptt-0001.wav")
    with pytest.raises(RecordingMissing, match="is not present"):
        data.recordings("exp-001")


def test_corrupt_recording_is_reported(monkeypatch, tmp_path):
    (tmp_path / "exp-001").mkdir()
    (tmp_path / "exp-001" / "bad.wav").write_bytes(b"RIFF....not a wav")
    monkeypatch.setenv("TESTBED_MEDIA_DIR", str(tmp_path))
    with pytest.raises(data.TestbedError, match="Cannot decode recording .*bad.wav"):
        data.load_recording(("exp-001", "bad.wav"))


def _wav(player):
    with wave.open(io.BytesIO(player.data)) as wav:
        return wav.getframerate(), wav.getnframes()


def test_play_returns_an_inline_player(seed_data):
    rel = _experiment(seed_data, "exp-001")["recordings"][0]
    samples, rate = data.load_recording(rel)
    player = data.play(rel)
    assert player.data[:4] == b"RIFF"
    assert _wav(player) == (8000, len(samples))
    assert _wav(data.play(samples, rate)) == (8000, len(samples))
    with pytest.raises(TypeError, match="give the sample rate"):
        data.play(samples)


def test_unreachable_database_names_host_and_variable(monkeypatch, closed_port):
    monkeypatch.setenv("TESTBED_MONGO_URI", f"mongodb://127.0.0.1:{closed_port}/")
    monkeypatch.setenv("TESTBED_MONGO_TIMEOUT_MS", "200")
    with pytest.raises(DatabaseUnreachable) as err:
        data.experiments()
    text = str(err.value)
    assert f"Cannot reach the experiment database at 127.0.0.1:{closed_port}" in text
    assert "TESTBED_MONGO_URI" in text and "waited 0.2 s" in text
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(DatabaseUnreachable):
        data.connect()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TESTBED_MONGO_URI": "http://db:27017"},
            "TESTBED_MONGO_URI='http://db:27017' is not a MongoDB URI",
        ),
        ({"TESTBED_MONGO_TIMEOUT_MS": "soon"}, "TESTBED_MONGO_TIMEOUT_MS='soon' is not a positive"),
        ({"TESTBED_MONGO_TIMEOUT_MS": "0"}, "TESTBED_MONGO_TIMEOUT_MS='0' is not a positive"),
        ({"TESTBED_MONGO_USER": "reader"}, "TESTBED_MONGO_PASSWORD is not set but its partner is"),
    ],
)
def test_bad_settings_are_named(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        data.experiments()
    assert message in str(err.value)


def test_settings_defaults():
    settings = data.Settings.from_env({})
    assert settings.uri == "mongodb://localhost:27017/"
    assert settings.database == "testbed"
    assert settings.timeout_ms == 3000
    assert settings.media_dir.name == "media" and settings.media_dir.is_absolute()


@pytest.fixture(scope="module")
def auth_server():
    server = MongoStandIn(host="127.0.0.1", port=0, experiments=3, users={"reader": "s3cret"})
    server.start()
    yield server
    server.stop()


def test_credentials_are_used_and_refusal_is_explained(monkeypatch, auth_server):
    monkeypatch.setenv("TESTBED_MONGO_URI", auth_server.uri)
    monkeypatch.setenv("TESTBED_MONGO_USER", "reader")
    monkeypatch.setenv("TESTBED_MONGO_PASSWORD", "s3cret")
    assert data.experiment_ids() == ["exp-001", "exp-002", "exp-003"]
    monkeypatch.setenv("TESTBED_MONGO_PASSWORD", "wrong")
    with pytest.raises(DatabaseAuthError) as err:
        data.experiments()
    text = str(err.value)
    assert "refused user 'reader' (TESTBED_MONGO_USER / TESTBED_MONGO_PASSWORD)" in text
    assert "s3cret" not in text and "wrong" not in text


def test_experiment_rows_say_which_nist_tests_exist_without_their_file_lists():
    """The ``nist`` document's nested file lists stay out of the table (testbed.qoe
    reads them); two booleans say which of NIST's tests the experiment has."""
    from testbed.data import _flatten

    with_both = {"_id": "exp-002", "nist": {"m2e": {"csv": "a.csv"}, "access_time": {"csvs": []}}}
    only_m2e = {"_id": "exp-001", "nist": {"m2e": {"csv": "a.csv"}}}
    none = {"_id": "exp-003"}
    rows = [_flatten(d) for d in (with_both, only_m2e, none)]
    assert all("nist" not in r for r in rows)
    assert [(r["nist_m2e"], r["nist_access_time"]) for r in rows] == [
        (True, True),
        (True, False),
        (False, False),
    ]
