"""``python -m testbed_sim.mongo``: the same as the ``testbed-sim-mongo`` command."""

import sys

from testbed_sim.mongo.cli import main

sys.exit(main())
