"""Developer and CI tooling of the testbed-hub repository (not deployed)."""
