"""Notebook-side helpers for the mission-critical voice testbed.

``testbed.data`` reads experiments, PTT events and recordings; ``testbed.record``
stores a named value in the running notebook so ``run-notebook`` can collect it;
``testbed.activity`` is the Jupyter server extension that keeps the server from
the idle culler while long work runs.
"""

from testbed.errors import TestbedError
from testbed.record import RECORD_MIME, read_records, record

__all__ = ["RECORD_MIME", "TestbedError", "read_records", "record"]
__version__ = "0.1.0"
