"""MongoDB wire-protocol stand-in serving the seed data to unmodified pymongo clients.

``mockupdb`` (MongoDB's wire-protocol server library for testing drivers) parses
OP_MSG / OP_QUERY and writes the replies; ``mongomock`` is the query engine; the
:class:`CommandDispatcher` answers the commands a read-mostly client needs:

hello / isMaster, ping, buildInfo, find, getMore, killCursors, aggregate, count,
distinct, listCollections, listDatabases, insert, delete, drop, endSessions,
connectionStatus, and SCRAM-SHA-256 authentication (saslStart / saslContinue) when
users are configured. Anything else is answered with a MongoDB command error
(``ok: 0, errmsg, code``) so pymongo raises ``OperationFailure``.

mockupdb serves every connection in its own thread and runs the handlers under one
lock, so the (not thread-safe) mongomock engine sees one command at a time.

One module per job; each imports only the ones above it in this list:

- :mod:`~testbed_sim.mongo.errors`: :class:`CommandError` and MongoDB's error codes.
- :mod:`~testbed_sim.mongo.connection`: per-connection state (number, user).
- :mod:`~testbed_sim.mongo.cursors`: open cursors for getMore / killCursors.
- :mod:`~testbed_sim.mongo.scram`: SCRAM-SHA-256 authentication.
- :mod:`~testbed_sim.mongo.dispatch`: :class:`CommandDispatcher`, the commands.
- :mod:`~testbed_sim.mongo.seeding`: :func:`load_seed`, the seed into mongomock.
- :mod:`~testbed_sim.mongo.server`: :class:`MongoStandIn`, the listening server.
- :mod:`~testbed_sim.mongo.cli`: the ``testbed-sim-mongo`` command (:func:`main`).

The names below stay importable from ``testbed_sim.mongo`` itself.
"""

from testbed_sim.mongo.cli import CONFIG_KEYS, build_parser, load_config, main
from testbed_sim.mongo.cursors import CURSOR_IDLE_S, DEFAULT_BATCH, MAX_CURSORS
from testbed_sim.mongo.dispatch import MAX_WIRE_VERSION, SERVER_VERSION, CommandDispatcher
from testbed_sim.mongo.errors import (
    AUTHENTICATION_FAILED,
    BAD_VALUE,
    COMMAND_NOT_FOUND,
    CURSOR_NOT_FOUND,
    ILLEGAL_OPERATION,
    INTERNAL_ERROR,
    INVALID_NAMESPACE,
    MECHANISM_UNAVAILABLE,
    NAMESPACE_NOT_FOUND,
    TYPE_MISMATCH,
    UNAUTHORIZED,
    CommandError,
)
from testbed_sim.mongo.scram import SCRAM_ITERATIONS, scram_sha256_credentials
from testbed_sim.mongo.seeding import load_seed
from testbed_sim.mongo.server import MongoStandIn

__all__ = [
    "AUTHENTICATION_FAILED",
    "BAD_VALUE",
    "COMMAND_NOT_FOUND",
    "CONFIG_KEYS",
    "CURSOR_IDLE_S",
    "CURSOR_NOT_FOUND",
    "DEFAULT_BATCH",
    "ILLEGAL_OPERATION",
    "INTERNAL_ERROR",
    "INVALID_NAMESPACE",
    "MAX_CURSORS",
    "MAX_WIRE_VERSION",
    "MECHANISM_UNAVAILABLE",
    "NAMESPACE_NOT_FOUND",
    "SCRAM_ITERATIONS",
    "SERVER_VERSION",
    "TYPE_MISMATCH",
    "UNAUTHORIZED",
    "CommandDispatcher",
    "CommandError",
    "MongoStandIn",
    "build_parser",
    "load_config",
    "load_seed",
    "main",
    "scram_sha256_credentials",
]
