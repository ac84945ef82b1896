"""Testbed simulator: stand-ins for the testbed's login service, experiment database
and audio recordings, used by the Molecule tests and the demo.

- :mod:`testbed_sim.dataset`: :class:`~testbed_sim.dataset.SeedData`, the seed documents.
- :mod:`testbed_sim.seed`: deterministic seed data (experiments, PTT events).
- :mod:`testbed_sim.speech`: which NIST speech clip a recording is made from.
- :mod:`testbed_sim.audio`: the recordings, NIST's speech through NIST's QoEsim.
- :mod:`testbed_sim.auth`: login page, session cookie, ``/auth/check``.
- :mod:`testbed_sim.mongo`: MongoDB wire-protocol stand-in serving the seed data
  (a package: errors, connection, cursors, scram, dispatch, seeding, server, cli).
"""

__all__ = ["audio", "auth", "dataset", "mongo", "seed", "speech"]
