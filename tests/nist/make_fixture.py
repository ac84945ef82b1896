"""Regenerate tests/nist/data (NIST CSVs and documents, no audio) with testbed_sim.nist.

Run with the simulator's NumPy<2 interpreter:
    PYTHONPATH=packages/testbed-sim/src python tests/nist/make_fixture.py
The NumPy 2 tests of testbed.qoe evaluate these files as the notebook image would.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from testbed_sim import nist

HERE = Path(__file__).parent / "data"
EXPERIMENTS = [
    nist.Experiment("exp-001", m2e_latency_s=0.1735, seed=3),
    nist.Experiment("exp-002", m2e_latency_s=0.4187, access_delay_s=0.2345, seed=3),
]


def main() -> int:
    media = HERE / "media"
    shutil.rmtree(media, ignore_errors=True)
    docs = {}
    for exp in EXPERIMENTS:
        doc = nist.run_experiment(media, exp)
        # no audio in the repository: NIST's evaluation reads CSVs and cut points only
        for wav in media.rglob("*.wav"):
            wav.unlink()
        docs[exp.experiment_id] = {"_id": exp.experiment_id, "nist": doc}
    (HERE / "documents.json").write_text(json.dumps(docs, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
