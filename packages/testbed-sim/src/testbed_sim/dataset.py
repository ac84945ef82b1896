"""The seed documents as one value, shared by the generator and its consumers.

:mod:`testbed_sim.seed` builds a :class:`SeedData`; :mod:`testbed_sim.audio` renders
its recordings and :mod:`testbed_sim.mongo` loads its collections. Kept apart from
the generator so that none of them has to import another to know the type (the
``testbed-sim-seed`` command in :mod:`testbed_sim.seed` calls :mod:`testbed_sim.audio`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SeedData:
    """The documents of the ``testbed`` database, per collection."""

    experiments: list[dict[str, Any]]
    ptt_events: list[dict[str, Any]]

    def collections(self) -> dict[str, list[dict[str, Any]]]:
        return {"experiments": self.experiments, "ptt_events": self.ptt_events}

    def recordings(self) -> list[dict[str, Any]]:
        """Events that have a recording, in experiment/seq order."""
        return [e for e in self.ptt_events if e["recording"] is not None]
