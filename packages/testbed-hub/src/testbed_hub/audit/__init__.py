"""The tamper-evident audit trail: who touched which data, when, from where.

One file of JSON Lines (``audit.log``, mode 0600 in a 0700 folder), one record per
line in canonical JSON (sorted keys, no spaces, UTF-8)::

    {"details":{},"event":"login","hash":"…","identity":"alice@testbed.example",
     "object":null,"prev":"…","seq":1,"source":"192.0.2.10","time":"2025-03-01T09:30:00.000000Z",
     "user":"alice"}

``seq``
    1, 2, 3 …, continuous across rotations.
``time``
    when the record was appended, UTC with microseconds; never goes back (an event's own
    time, e.g. from an nginx log line, belongs in ``details``).
``event``
    one of :data:`EVENTS` (a closed set).
``identity``, ``user``, ``source``
    the testbed identity (the operator's name for ``playbook_run``), the hub user name
    or null, the client's IP address or null.
``object``, ``details``
    what was touched (a path, a list of experiment ids, a server name, playbook tags;
    any JSON), and a JSON dict of anything else.
``prev``, ``hash``
    the previous record's ``hash`` (64 zeros for the first record), and the SHA-256 of
    this record's canonical JSON without ``hash``. As ``hash`` covers every other field,
    chaining to it chains to the whole previous line.

Writers (the hub, the nginx-log collector, the playbook callback) call
:meth:`AuditLog.append` or ``python -m testbed_hub.audit append``; they serialise on an
``flock`` of ``audit.log.lock``. :func:`rotate` (from a systemd timer; not logrotate —
its docstring says why) moves the file aside and links the new one with a ``rotate``
record; :func:`verify` walks everything and names the first line that breaks the chain;
:func:`report` and :func:`to_csv` read records back.

The chain shows removed, inserted, edited and reordered records and missing rotated
files. It cannot show the newest records cut off the live file, nor a chain re-computed
by someone who can write the file: compare ``verify``'s last seq and hash with a copy
kept elsewhere for that.
"""

from __future__ import annotations

from .log import AuditError, AuditLog, rotate
from .record import EVENTS, FIELDS
from .report import CSV_COLUMNS, records, report, to_csv
from .verify import VerifyResult, verify

__all__ = [
    "CSV_COLUMNS",
    "EVENTS",
    "FIELDS",
    "AuditError",
    "AuditLog",
    "VerifyResult",
    "records",
    "report",
    "rotate",
    "to_csv",
    "verify",
]
