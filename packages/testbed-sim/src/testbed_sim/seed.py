"""Deterministic seed data for the testbed simulator.

:func:`generate` is a pure function: the same ``seed`` and ``experiments`` always give
the same documents, so tests (also the notebook helpers' tests) can compute expected
numbers from it instead of hard-coding them. The schema is the one in
docs/ARCHITECTURE.md ("Experiment data"); the value it returns, :class:`SeedData`,
lives in :mod:`testbed_sim.dataset` and is importable from here too.

The command ``testbed-sim-seed`` writes the recordings (see :mod:`testbed_sim.audio`)
and, optionally, the documents as MongoDB extended JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from pathlib import Path
from typing import Any

from testbed_sim.dataset import SeedData
from testbed_sim.speech import speech_clip

DEFAULT_SEED = 20240304
DEFAULT_EXPERIMENTS = 24
MIN_EXPERIMENTS = 1
MAX_EXPERIMENTS = 999
DATABASE = "testbed"
#: Number (1-based) of the experiment that has no recordings at all.
NO_RECORDINGS_EXPERIMENT = 5

BANDWIDTHS_KBPS = (16, 32, 64, 128, 256)
DELAYS_MS = (10, 20, 40, 80, 150, 300)
LOSSES_PCT = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
BIT_ERROR_RATES = (0.0, 1e-6, 1e-5, 1e-4)
SCENARIOS = (
    "baseline",
    "congested backhaul",
    "cell edge",
    "satellite backhaul",
    "lossy radio link",
    "narrowband fallback",
)
#: Which scenario names a channel when the drawn one does not fit it: the most
#: specific first.
SCENARIO_PREFERENCE = (
    "satellite backhaul",
    "lossy radio link",
    "narrowband fallback",
    "cell edge",
    "congested backhaul",
    "baseline",
)

UNITS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHRASES = (
    "Unit {a}, copy, proceed to sector {b}.",
    "Dispatch, unit {a} on scene, requesting backup.",
    "Unit {a}, hold position at checkpoint {b}.",
    "Copy that, unit {a} en route, arriving in {b} minutes.",
    "All units, stand by for update on sector {b}.",
    "Unit {a}, say again, transmission broken.",
    "Command, unit {a}, area {b} is clear.",
    "Unit {a}, switch to channel {b}.",
)


def experiment_id(number: int) -> str:
    return f"exp-{number:03d}"


def recording_path(exp_id: str, seq: int) -> str:
    """Path of a recording relative to the media directory."""
    return f"{exp_id}/ptt-{seq:04d}.wav"


def access_delay_ms(channel: dict[str, Any], jitter: float) -> float:
    """Floor-control access time: grows with delay (round trips), loss (retransmissions),
    narrow bandwidth (signalling serialisation) and bit errors."""
    return round(
        95.0
        + 2.0 * channel["delay_ms"]
        + 14.0 * channel["packet_loss_pct"]
        + 1600.0 / channel["bandwidth_kbps"]
        + 2.0e5 * channel["bit_error_rate"]
        + jitter,
        1,
    )


def mouth_to_ear_ms(channel: dict[str, Any], jitter: float) -> float:
    """Mouth-to-ear latency: codec + jitter buffer + one-way delay, more buffering
    when loss is higher, serialisation on narrow links."""
    return round(
        160.0
        + 1.0 * channel["delay_ms"]
        + 9.0 * channel["packet_loss_pct"]
        + 960.0 / channel["bandwidth_kbps"]
        + jitter,
        1,
    )


def scenario_fits(name: str, channel: dict[str, Any]) -> bool:
    """Whether a scenario name describes a channel: a title never calls a link
    without loss "lossy" or a 10 ms link "satellite"."""
    loss, ber = channel["packet_loss_pct"], channel["bit_error_rate"]
    delay, bandwidth = channel["delay_ms"], channel["bandwidth_kbps"]
    return {
        "baseline": loss == 0 and ber <= 1e-6 and delay <= 40 and bandwidth >= 64,
        "congested backhaul": delay >= 80,
        "cell edge": loss > 0 or ber >= 1e-5,
        "satellite backhaul": delay >= 150,
        "lossy radio link": loss >= 1.0,
        "narrowband fallback": bandwidth <= 32,
    }[name]


def scenario(channel: dict[str, Any], drawn: str) -> str:
    """The scenario of an experiment: the drawn one if it fits the channel, else the
    first of :data:`SCENARIO_PREFERENCE` that does (every channel fits at least
    "cell edge", "congested backhaul", "narrowband fallback" or "baseline")."""
    if scenario_fits(drawn, channel):
        return drawn
    return next(name for name in SCENARIO_PREFERENCE if scenario_fits(name, channel))


def _phrase(rng: random.Random) -> str:
    template = rng.choice(PHRASES)
    return template.format(a=rng.choice(UNITS), b=rng.choice(UNITS))


def generate(seed: int = DEFAULT_SEED, experiments: int = DEFAULT_EXPERIMENTS) -> SeedData:
    """Return the seed documents. Pure and deterministic.

    Each experiment has 3-5 participants, 8-16 PTT events and 3-6 recordings (short
    transmissions), except experiment number :data:`NO_RECORDINGS_EXPERIMENT`, which
    has events but no recordings. Datetimes are naive UTC with millisecond precision
    (what MongoDB stores).
    """
    if not isinstance(experiments, int) or not MIN_EXPERIMENTS <= experiments <= MAX_EXPERIMENTS:
        raise ValueError(
            f"experiments must be an integer from {MIN_EXPERIMENTS} to {MAX_EXPERIMENTS}, "
            f"got {experiments!r}"
        )
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not crypto
    start = dt.datetime(2024, 3, 4, 9, 0, 0)
    exp_docs: list[dict[str, Any]] = []
    event_docs: list[dict[str, Any]] = []
    for number in range(1, experiments + 1):
        exp_id = experiment_id(number)
        day = start + dt.timedelta(days=(number - 1) // 2 * 1 + (number - 1) // 10 * 2)
        when = day + dt.timedelta(hours=0 if number % 2 else 4, minutes=rng.randrange(0, 50))
        channel = {
            "bandwidth_kbps": rng.choice(BANDWIDTHS_KBPS),
            "delay_ms": rng.choice(DELAYS_MS),
            "packet_loss_pct": rng.choice(LOSSES_PCT),
            "bit_error_rate": rng.choice(BIT_ERROR_RATES),
        }
        n_part = rng.randint(3, 5)
        first_ue = rng.randint(1, 6)
        participants = [f"ue-{first_ue + i:02d}" for i in range(n_part)]
        n_events = rng.randint(8, 16)
        n_rec = 0 if number == NO_RECORDINGS_EXPERIMENT else rng.randint(3, 6)
        recorded = set(rng.sample(range(1, n_events + 1), n_rec))
        t = when + dt.timedelta(seconds=rng.randint(5, 30))
        recordings: list[str] = []
        for seq in range(1, n_events + 1):
            talker = rng.choice(participants)
            duration = round(rng.uniform(2.0, 4.5), 1)
            rec = recording_path(exp_id, seq) if seq in recorded else None
            phrase = _phrase(rng)
            event = {
                "_id": f"{exp_id}-{seq:04d}",
                "experiment_id": exp_id,
                "seq": seq,
                "t_start": t.replace(microsecond=(t.microsecond // 1000) * 1000),
                "talker": talker,
                "listeners": [p for p in participants if p != talker],
                "duration_s": duration,
                "access_delay_ms": access_delay_ms(channel, rng.gauss(0.0, 12.0)),
                "mouth_to_ear_ms": mouth_to_ear_ms(channel, rng.gauss(0.0, 8.0)),
                "recording": rec,
                # what was said: the NIST clip of a recording, the phrase otherwise
                # (drawn for every event, so the random stream stays as it was)
                "phrase": None if rec is not None else phrase,
                "speech_clip": speech_clip(seed, rec) if rec is not None else None,
            }
            if rec is not None:
                recordings.append(rec)
            event_docs.append(event)
            t += dt.timedelta(seconds=duration + rng.uniform(1.5, 12.0))
            t = t.replace(microsecond=(t.microsecond // 1000) * 1000)
        # drawn here, after the events, as before: the random stream (and so every
        # other value) does not change; only a name that contradicts the channel does
        name = scenario(channel, rng.choice(SCENARIOS))
        exp_docs.append(
            {
                "_id": exp_id,
                "name": exp_id,
                "title": f"{name.capitalize()}: {n_part} terminals, "
                f"{channel['delay_ms']} ms delay, {channel['packet_loss_pct']:g}% loss",
                "date": when,
                "channel": channel,
                "participants": participants,
                "recordings": recordings,
            }
        )
    return SeedData(experiments=exp_docs, ptt_events=event_docs)


def to_extended_json(data: SeedData) -> str:
    """The documents as MongoDB relaxed extended JSON (dates as ``{"$date": ...}``)."""
    from bson import json_util

    return json_util.dumps(
        data.collections(), json_options=json_util.RELAXED_JSON_OPTIONS, indent=1
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed-sim-seed",
        description="Generate the simulator's recordings (WAV) and, optionally, the seed "
        "documents as extended JSON. The MongoDB stand-in builds the same documents "
        "from the same --seed/--experiments at start-up.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--experiments", type=int, default=DEFAULT_EXPERIMENTS, help="number of experiments"
    )
    parser.add_argument("--media-dir", type=Path, help="write recordings under this directory")
    parser.add_argument("--json", type=Path, help="write the documents to this file")
    parser.add_argument(
        "--force", action="store_true", help="rewrite recordings that already exist"
    )
    parser.add_argument("--file-mode", default="0644", help="mode of written files (octal)")
    nist_group = parser.add_argument_group(
        "NIST tests",
        "NIST PSCR's M2E and access-time tests through QoEsim (testbed_sim.nist_seed); "
        "needs NIST's packages with NumPy < 2 in this interpreter",
    )
    nist_group.add_argument(
        "--nist",
        action="store_true",
        help="run NIST's M2E test for every experiment (with --media-dir)",
    )
    nist_group.add_argument(
        "--nist-access-experiments",
        type=int,
        default=4,
        metavar="N",
        help="experiments that also get an access-time test, spread over the access "
        "delays (default 4; 0 for none)",
    )
    nist_group.add_argument(
        "--nist-cache-dir",
        type=Path,
        help="restore each experiment's nist folder from <dir>/<content hash>.tar, "
        "and store it there after measuring",
    )
    nist_group.add_argument(
        "--jobs", type=int, default=0, help="parallel NIST tests (default: one per core)"
    )
    parser.add_argument(
        "--stamp",
        type=Path,
        help="after success, write this file (seed, experiments, counts) as a marker",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data = generate(args.seed, args.experiments)
        mode = int(args.file_mode, 8)
    except ValueError as exc:
        print(f"testbed-sim-seed: {exc}", file=sys.stderr)
        return 2
    if args.media_dir is None and args.json is None:
        print("testbed-sim-seed: nothing to do: give --media-dir and/or --json", file=sys.stderr)
        return 2
    if args.media_dir is not None:
        # Imported here, not at the top: audio needs numpy, and the MongoDB stand-in
        # imports this module for generate() alone.
        from testbed_sim import audio

        try:
            written = audio.write_recordings(
                data, args.media_dir, seed=args.seed, force=args.force, file_mode=mode
            )
        except audio.AudioError as exc:
            print(f"testbed-sim-seed: {exc}", file=sys.stderr)
            return 1
        print(
            json.dumps(
                {
                    "media_dir": str(args.media_dir),
                    "recordings": len(data.recordings()),
                    "written": written,
                }
            )
        )
    nist_report = None
    if args.nist:
        if args.media_dir is None:
            print("testbed-sim-seed: --nist needs --media-dir", file=sys.stderr)
            return 2
        from testbed_sim import nist, nist_seed

        try:
            tests = nist_seed.plan(data, args.seed, args.nist_access_experiments)
            nist_report = nist_seed.seed_media(
                args.media_dir,
                tests,
                cache_dir=args.nist_cache_dir,
                jobs=args.jobs or None,
                file_mode=mode,
            )
        except nist.NistError as exc:
            print(f"testbed-sim-seed: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"nist": nist_report.as_dict()}))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_extended_json(data) + "\n", encoding="utf-8")
        args.json.chmod(mode)
    if args.stamp is not None:
        stamp = {
            "seed": args.seed,
            "experiments": args.experiments,
            "ptt_events": len(data.ptt_events),
            "recordings": len(data.recordings()),
        }
        if nist_report is not None:
            stamp["nist"] = {
                "m2e": args.experiments,
                "access_time": nist_report.access_time,
                "seconds": round(nist_report.seconds, 1),
            }
        args.stamp.write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        args.stamp.chmod(mode)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
