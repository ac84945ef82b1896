"""Which NIST speech clip a recording is made from, and each recording's own seed.

Shared by :mod:`testbed_sim.seed` (the documents name the clip) and
:mod:`testbed_sim.audio` (which plays it through QoEsim); imports neither.
"""

from __future__ import annotations

import hashlib

#: The Harvard-sentence clips of NIST's ``mcvqoe-mouth2ear`` (48 kHz, 4.6-6.0 s) the
#: recordings are made from (:mod:`testbed_sim.audio`).
SPEECH_CLIPS = (
    "F1_harvard_phrases",
    "F2_harvard_phrases",
    "M1_harvard_phrases",
    "M2_harvard_phrases",
)


def recording_seed(seed: int, recording: str) -> int:
    """A 64-bit seed for one recording (its path relative to the media folder)."""
    digest = hashlib.sha256(f"{seed}:{recording}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def speech_clip(seed: int, recording: str) -> str:
    """The NIST clip a recording is made from (one of :data:`SPEECH_CLIPS`), chosen
    from :func:`recording_seed`, so the random stream of
    :func:`testbed_sim.seed.generate` is not used."""
    return SPEECH_CLIPS[recording_seed(seed, recording) % len(SPEECH_CLIPS)]
