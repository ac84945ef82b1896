"""Seed data: deterministic, schema of docs/ARCHITECTURE.md, realistic relations."""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics

import pytest
from bson import json_util

from testbed_sim import seed


def test_same_seed_same_documents_other_seed_differs():
    assert seed.generate(7, 20) == seed.generate(7, 20)
    assert seed.generate(7, 20).ptt_events != seed.generate(8, 20).ptt_events


def test_default_has_24_experiments_with_sequential_ids(seed_data):
    ids = [e["_id"] for e in seed_data.experiments]
    assert ids == [f"exp-{i:03d}" for i in range(1, 25)]
    assert all(e["name"] == e["_id"] for e in seed_data.experiments)


def test_experiment_schema(seed_data):
    for exp in seed_data.experiments:
        assert set(exp) == {"_id", "name", "title", "date", "channel", "participants", "recordings"}
        assert set(exp["channel"]) == {
            "bandwidth_kbps",
            "delay_ms",
            "packet_loss_pct",
            "bit_error_rate",
        }
        assert isinstance(exp["date"], dt.datetime)
        assert exp["date"].tzinfo is None
        assert 3 <= len(exp["participants"]) <= 5


def test_events_reference_their_experiment_and_recordings(seed_data):
    by_exp = {e["_id"]: e for e in seed_data.experiments}
    for exp_id, exp in by_exp.items():
        events = [e for e in seed_data.ptt_events if e["experiment_id"] == exp_id]
        assert 8 <= len(events) <= 16
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        recs = [e["recording"] for e in events if e["recording"]]
        assert recs == exp["recordings"]
        for e in events:
            assert e["talker"] in exp["participants"]
            assert e["talker"] not in e["listeners"]
            assert sorted([e["talker"], *e["listeners"]]) == sorted(exp["participants"])
            assert 2.0 <= e["duration_s"] <= 4.5
        starts = [e["t_start"] for e in events]
        assert starts == sorted(starts)
        assert starts[0] > exp["date"]


TITLE = re.compile(
    r"^(?P<scenario>[A-Z][a-z ]+): (?P<terminals>\d) terminals, (?P<delay>\d+) ms delay, "
    r"(?P<loss>[\d.]+)% loss$"
)


@pytest.mark.parametrize("rng_seed", [seed.DEFAULT_SEED, *range(1, 11)])
def test_titles_match_the_channel(rng_seed):
    """The new researcher's 'lossy radio link' with 0 % loss: a title's scenario and
    numbers agree with the experiment's channel and participants."""
    data = seed.generate(rng_seed, 60)
    scenarios = set()
    for exp in data.experiments:
        ch = exp["channel"]
        m = TITLE.match(exp["title"])
        assert m, exp["title"]
        assert int(m["terminals"]) == len(exp["participants"])
        assert int(m["delay"]) == ch["delay_ms"]
        assert float(m["loss"]) == ch["packet_loss_pct"]
        name = m["scenario"].lower()
        scenarios.add(name)
        rule = {
            "lossy radio link": ch["packet_loss_pct"] >= 1.0,
            "satellite backhaul": ch["delay_ms"] >= 150,
            "congested backhaul": ch["delay_ms"] >= 80,
            "narrowband fallback": ch["bandwidth_kbps"] <= 32,
            "cell edge": ch["packet_loss_pct"] > 0 or ch["bit_error_rate"] >= 1e-5,
            "baseline": ch["packet_loss_pct"] == 0
            and ch["bit_error_rate"] <= 1e-6
            and ch["delay_ms"] <= 40
            and ch["bandwidth_kbps"] >= 64,
        }
        assert rule[name], f"{exp['_id']}: {exp['title']!r} contradicts {ch}"
    assert len(scenarios) >= 4, scenarios  # still a mix, not one name for everything


def test_default_titles(seed_data):
    titles = {e["_id"]: e["title"] for e in seed_data.experiments}
    # exp-001 drew "congested backhaul" for a 10 ms link: named by its 5 % loss
    assert titles["exp-001"] == "Lossy radio link: 3 terminals, 10 ms delay, 5% loss"
    # a drawn name that fits is kept
    assert titles["exp-021"] == "Congested backhaul: 5 terminals, 150 ms delay, 0.5% loss"
    assert not any(t.startswith("Lossy") for t in titles.values() if t.endswith(" 0% loss"))


def test_recordings_path_shape_and_counts(seed_data):
    for exp in seed_data.experiments:
        n = len(exp["recordings"])
        if exp["_id"] == "exp-005":
            assert n == 0
        else:
            assert 3 <= n <= 6
        for rec in exp["recordings"]:
            assert rec.startswith(exp["_id"] + "/ptt-")
            assert rec.endswith(".wav")
    assert 60 <= len(seed_data.recordings()) <= 6 * 24


def test_latency_grows_with_delay_and_loss(seed_data):
    channel = {e["_id"]: e["channel"] for e in seed_data.experiments}
    for ev in seed_data.ptt_events:
        ch = channel[ev["experiment_id"]]
        # Residual is the jitter only: Gaussian, sigma 12 / 8 ms.
        assert abs(ev["access_delay_ms"] - seed.access_delay_ms(ch, 0.0)) < 60
        assert abs(ev["mouth_to_ear_ms"] - seed.mouth_to_ear_ms(ch, 0.0)) < 40
    base = {"bandwidth_kbps": 64, "delay_ms": 20, "packet_loss_pct": 0.0, "bit_error_rate": 0.0}
    assert seed.access_delay_ms({**base, "delay_ms": 300}, 0) > seed.access_delay_ms(base, 0)
    assert seed.access_delay_ms({**base, "packet_loss_pct": 10}, 0) > seed.access_delay_ms(base, 0)
    assert seed.mouth_to_ear_ms({**base, "delay_ms": 300}, 0) > seed.mouth_to_ear_ms(base, 0)
    slow = [
        e["mouth_to_ear_ms"]
        for e in seed_data.ptt_events
        if channel[e["experiment_id"]]["delay_ms"] >= 150
    ]
    fast = [
        e["mouth_to_ear_ms"]
        for e in seed_data.ptt_events
        if channel[e["experiment_id"]]["delay_ms"] <= 20
    ]
    assert slow and fast
    assert statistics.mean(slow) > statistics.mean(fast) + 100


@pytest.mark.parametrize("bad", [0, -1, 1000, "24", 2.5])
def test_bad_experiment_count_is_refused(bad):
    with pytest.raises(ValueError, match="experiments must be an integer from 1 to 999"):
        seed.generate(1, bad)


def test_cli_writes_extended_json_that_round_trips(tmp_path):
    out = tmp_path / "seed.json"
    assert seed.main(["--seed", "11", "--experiments", "20", "--json", str(out)]) == 0
    loaded = json_util.loads(out.read_text())
    want = seed.generate(11, 20)
    assert len(loaded["experiments"]) == 20
    assert loaded["ptt_events"] == want.ptt_events
    exps = [{**e, "date": e["date"].replace(tzinfo=None)} for e in loaded["experiments"]]
    assert exps == want.experiments
    assert json.loads(out.read_text())["experiments"][0]["date"] == {
        "$date": "2024-03-04T09:" + want.experiments[0]["date"].strftime("%M:%S") + "Z"
    }
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_cli_without_output_changes_nothing(tmp_path, capsys):
    assert seed.main(["--experiments", "20"]) == 2
    assert "give --media-dir and/or --json" in capsys.readouterr().err
    assert seed.main(["--experiments", "0", "--json", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_cli_stamp_written_after_success(tmp_path):
    stamp = tmp_path / "stamp.json"
    out = tmp_path / "seed.json"
    assert seed.main(["--experiments", "20", "--json", str(out), "--stamp", str(stamp)]) == 0
    data = seed.generate(seed.DEFAULT_SEED, 20)
    assert json.loads(stamp.read_text()) == {
        "seed": seed.DEFAULT_SEED,
        "experiments": 20,
        "ptt_events": len(data.ptt_events),
        "recordings": len(data.recordings()),
    }
