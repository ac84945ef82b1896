"""Command dispatch: one command document in, one reply document out.

:class:`CommandDispatcher` looks the command up (case-insensitively), refuses data
commands before login when users are configured, runs it against the mongomock
client and turns every failure into a MongoDB command error. Authentication is
:mod:`testbed_sim.mongo.scram`'s, open cursors :mod:`testbed_sim.mongo.cursors`'.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import mockupdb
import mongomock
from bson.int64 import Int64
from mongomock import filtering

from testbed_sim.mongo.connection import Connection, ConnectionTable
from testbed_sim.mongo.cursors import CursorStore
from testbed_sim.mongo.errors import (
    BAD_VALUE,
    COMMAND_NOT_FOUND,
    CURSOR_NOT_FOUND,
    ILLEGAL_OPERATION,
    INTERNAL_ERROR,
    INVALID_NAMESPACE,
    NAMESPACE_NOT_FOUND,
    TYPE_MISMATCH,
    UNAUTHORIZED,
    CommandError,
)
from testbed_sim.mongo.scram import ScramAuthenticator

# The package's logger name, as before the split into modules.
log = logging.getLogger("testbed_sim.mongo")

MAX_WIRE_VERSION = 17
SERVER_VERSION = "6.0.99-testbed-sim"

Handler = Callable[[dict[str, Any], str, Connection], dict[str, Any]]


def _as_int(value: Any, name: str, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(TYPE_MISMATCH, f"{name} must be a number, got {value!r}")
    return int(value)


def _sort_spec(sort: Any) -> list[tuple[str, int]] | None:
    if not sort:
        return None
    if not isinstance(sort, Mapping):
        raise CommandError(TYPE_MISMATCH, "sort must be a document")
    return [(k, int(v)) for k, v in sort.items()]


def _strip_meta(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the OP_MSG envelope fields; keep the command name first."""
    return {
        k: v
        for k, v in doc.items()
        if k not in ("$db", "lsid", "$clusterTime", "$readPreference", "txnNumber")
    }


class CommandDispatcher:
    """Answers MongoDB commands from a mongomock client. One instance per server."""

    def __init__(
        self,
        client: mongomock.MongoClient,
        users: Mapping[str, str] | None = None,
        auth_db: str = "admin",
    ) -> None:
        self.client = client
        self.auth_db = auth_db
        self.scram = ScramAuthenticator(users, auth_db)
        self.cursors = CursorStore()
        self._conns = ConnectionTable()
        self._lock = threading.RLock()
        self.started = dt.datetime.now(dt.UTC)
        self._handlers: dict[str, Handler] = {
            "hello": self.cmd_hello,
            "ismaster": self.cmd_hello,
            "ping": lambda *_: {},
            "buildinfo": self.cmd_build_info,
            "find": self.cmd_find,
            "getmore": self.cmd_get_more,
            "killcursors": self.cmd_kill_cursors,
            "aggregate": self.cmd_aggregate,
            "count": self.cmd_count,
            "distinct": self.cmd_distinct,
            "listcollections": self.cmd_list_collections,
            "listdatabases": self.cmd_list_databases,
            "insert": self.cmd_insert,
            "delete": self.cmd_delete,
            "drop": self.cmd_drop,
            "endsessions": lambda *_: {},
            "connectionstatus": self.cmd_connection_status,
            "saslstart": self.scram.sasl_start,
            "saslcontinue": self.scram.sasl_continue,
            "logout": self.cmd_logout,
        }
        self._no_auth = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue"}
        self._no_auth |= {"endsessions", "connectionstatus", "logout"}

    # -- plumbing ---------------------------------------------------------------------

    @property
    def auth_enabled(self) -> bool:
        return self.scram.enabled

    def dispatch(self, doc: Mapping[str, Any], db: str, sock: Any = None) -> dict[str, Any]:
        """Run one command document; return the reply document (with ``ok``)."""
        with self._lock:
            conn = self._conns.get(sock)
            try:
                if not doc:
                    raise CommandError(BAD_VALUE, "empty command document")
                name = next(iter(doc))
                key = name.lower()
                handler = self._handlers.get(key)
                if handler is None:
                    raise CommandError(
                        COMMAND_NOT_FOUND, f"no such command: '{name}'", "CommandNotFound"
                    )
                if self.auth_enabled and conn.user is None and key not in self._no_auth:
                    raise CommandError(
                        UNAUTHORIZED, f"command {name} requires authentication", "Unauthorized"
                    )
                reply = handler(dict(doc), db, conn)
                reply.setdefault("ok", 1.0)
                return reply
            except CommandError as exc:
                return {
                    "ok": 0.0,
                    "errmsg": exc.errmsg,
                    "code": exc.code,
                    "codeName": exc.code_name,
                }
            except Exception as exc:  # noqa: BLE001 - every failure becomes a command error
                log.error("command failed: %s\n%s", doc, traceback.format_exc())
                return {
                    "ok": 0.0,
                    "errmsg": f"{type(exc).__name__}: {exc}",
                    "code": INTERNAL_ERROR,
                    "codeName": "InternalError",
                }

    def handle_request(self, request: mockupdb.Request) -> bool:
        """mockupdb autoresponder: answer every request, never queue it."""
        if isinstance(request, mockupdb.OpMsg):
            doc = request.doc
            db = doc.get("$db", "admin")
            more_to_come = request.flags & mockupdb.OP_MSG_FLAGS["moreToCome"]
            reply = self.dispatch(_strip_meta(doc), db, request._client)
            if not more_to_come:
                request.replies(reply)
            return True
        if isinstance(request, mockupdb.Command):  # legacy OP_QUERY command (handshake)
            reply = self.dispatch(_strip_meta(request.doc), request.namespace, request._client)
            request.replies(reply)
            return True
        if isinstance(request, mockupdb.OpQuery):
            request.fail("legacy OP_QUERY reads are not supported; use a 4.x driver")
            return True
        # Legacy OP_INSERT/OP_GET_MORE/...: no modern driver sends them.
        request.hangup()
        return True

    @staticmethod
    def _collection_name(doc: Mapping[str, Any], key: str) -> str:
        name = doc.get(key)
        if not isinstance(name, str) or not name or "$" in name or "\x00" in name:
            raise CommandError(
                INVALID_NAMESPACE, f"collection name must be a non-empty string, got {name!r}"
            )
        return name

    # -- commands ---------------------------------------------------------------------

    def cmd_hello(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "helloOk": True,
            "isWritablePrimary": True,
            "ismaster": True,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": dt.datetime.now(dt.UTC),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": conn.number,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
        }
        mechs = doc.get("saslSupportedMechs")
        if isinstance(mechs, str) and (supported := self.scram.mechanisms_for(mechs)):
            reply["saslSupportedMechs"] = supported
        return reply

    def cmd_build_info(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        return {
            "version": SERVER_VERSION,
            "versionArray": [6, 0, 99, 0],
            "gitVersion": "testbed-sim",
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "storageEngines": ["mongomock"],
            "bits": 64,
        }

    def cmd_find(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "find")
        flt = doc.get("filter") or {}
        if not isinstance(flt, Mapping):
            raise CommandError(TYPE_MISMATCH, "filter must be a document")
        projection = doc.get("projection") or None
        skip = _as_int(doc.get("skip"), "skip", 0) or 0
        limit = _as_int(doc.get("limit"), "limit", 0) or 0
        batch = _as_int(doc.get("batchSize"), "batchSize")
        if skip < 0 or (batch is not None and batch < 0):
            raise CommandError(BAD_VALUE, "skip and batchSize must not be negative")
        cur = self.client[db][coll_name].find(dict(flt), projection)
        sort = _sort_spec(doc.get("sort"))
        if sort:
            cur = cur.sort(sort)
        if skip:
            cur = cur.skip(skip)
        if limit:
            cur = cur.limit(abs(limit))
        docs = list(cur)
        if doc.get("singleBatch") or limit < 0:
            batch = len(docs) if batch is None else min(batch, len(docs))
            docs = docs[: batch or len(docs)]
            return {"cursor": {"id": Int64(0), "ns": f"{db}.{coll_name}", "firstBatch": docs}}
        return self.cursors.reply(f"{db}.{coll_name}", docs, batch, conn, first=True)

    def cmd_get_more(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        cursor_id = int(doc.get("getMore") or 0)
        coll_name = self._collection_name(doc, "collection")
        cur = self.cursors.take(cursor_id)
        if cur is None or cur.ns != f"{db}.{coll_name}":
            raise CommandError(
                CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found", "CursorNotFound"
            )
        batch = _as_int(doc.get("batchSize"), "batchSize", cur.batch_size)
        reply = self.cursors.reply(cur.ns, cur.docs, batch, conn, first=False)
        return reply

    def cmd_kill_cursors(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        killed, not_found = [], []
        for cid in doc.get("cursors") or []:
            if self.cursors.kill(int(cid)):
                killed.append(Int64(cid))
            else:
                not_found.append(Int64(cid))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
        }

    def cmd_aggregate(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        if doc.get("aggregate") == 1:
            raise CommandError(
                ILLEGAL_OPERATION, "database-level aggregate is not supported by the stand-in"
            )
        coll_name = self._collection_name(doc, "aggregate")
        pipeline = doc.get("pipeline")
        if not isinstance(pipeline, list):
            raise CommandError(TYPE_MISMATCH, "aggregate needs a 'pipeline' array")
        cursor_opts = doc.get("cursor")
        if not isinstance(cursor_opts, Mapping) and not doc.get("explain"):
            raise CommandError(
                BAD_VALUE, "The 'cursor' option is required, except for aggregate with explain"
            )
        try:
            docs = list(self.client[db][coll_name].aggregate([dict(s) for s in pipeline]))
        except (mongomock.OperationFailure, NotImplementedError) as exc:
            raise CommandError(BAD_VALUE, f"aggregate: {exc}") from exc
        batch = _as_int((cursor_opts or {}).get("batchSize"), "cursor.batchSize")
        return self.cursors.reply(f"{db}.{coll_name}", docs, batch, conn, first=True)

    def cmd_count(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "count")
        flt = dict(doc.get("query") or {})
        coll = self.client[db][coll_name]
        n = coll.count_documents(flt) if flt else coll.estimated_document_count()
        skip = _as_int(doc.get("skip"), "skip", 0) or 0
        limit = _as_int(doc.get("limit"), "limit", 0) or 0
        n = max(0, n - skip)
        if limit:
            n = min(n, abs(limit))
        return {"n": n}

    def cmd_distinct(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "distinct")
        key = doc.get("key")
        if not isinstance(key, str) or not key:
            raise CommandError(TYPE_MISMATCH, "distinct needs a 'key' string")
        values = self.client[db][coll_name].distinct(key, dict(doc.get("query") or {}))
        return {"values": list(values)}

    def cmd_list_collections(
        self, doc: dict[str, Any], db: str, conn: Connection
    ) -> dict[str, Any]:
        flt = dict(doc.get("filter") or {})
        docs = []
        for name in sorted(self.client[db].list_collection_names()):
            entry = {
                "name": name,
                "type": "collection",
                "options": {},
                "info": {"readOnly": False},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            }
            if filtering.filter_applies(flt, entry):
                docs.append({"name": name, "type": "collection"} if doc.get("nameOnly") else entry)
        batch = _as_int((doc.get("cursor") or {}).get("batchSize"), "cursor.batchSize")
        return self.cursors.reply(f"{db}.$cmd.listCollections", docs, batch, conn, first=True)

    def cmd_list_databases(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        if db != "admin":
            raise CommandError(
                UNAUTHORIZED, "listDatabases may only be run against the admin database."
            )
        flt = dict(doc.get("filter") or {})
        dbs = []
        for name in sorted(self.client.list_database_names()):
            size = sum(
                len(json.dumps(d, default=str))
                for c in self.client[name].list_collection_names()
                for d in self.client[name][c].find()
            )
            entry = {"name": name, "sizeOnDisk": Int64(size), "empty": size == 0}
            if filtering.filter_applies(flt, entry):
                dbs.append({"name": name} if doc.get("nameOnly") else entry)
        return {"databases": dbs, "totalSize": Int64(sum(d.get("sizeOnDisk", 0) for d in dbs))}

    def cmd_insert(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "insert")
        documents = doc.get("documents") or []
        errors = []
        n = 0
        for i, d in enumerate(documents):
            try:
                self.client[db][coll_name].insert_one(dict(d))
                n += 1
            except mongomock.DuplicateKeyError as exc:
                errors.append({"index": i, "code": 11000, "errmsg": f"E11000 duplicate key: {exc}"})
                if doc.get("ordered", True):
                    break
        reply: dict[str, Any] = {"n": n}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def cmd_delete(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "delete")
        n = 0
        for spec in doc.get("deletes") or []:
            q = dict(spec.get("q") or {})
            coll = self.client[db][coll_name]
            if int(spec.get("limit", 0)) == 1:
                n += coll.delete_one(q).deleted_count
            else:
                n += coll.delete_many(q).deleted_count
        return {"n": n}

    def cmd_drop(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "drop")
        if coll_name not in self.client[db].list_collection_names():
            raise CommandError(NAMESPACE_NOT_FOUND, "ns not found", "NamespaceNotFound")
        self.client[db].drop_collection(coll_name)
        return {"ns": f"{db}.{coll_name}", "nIndexesWas": 1}

    def cmd_connection_status(
        self, doc: dict[str, Any], db: str, conn: Connection
    ) -> dict[str, Any]:
        users = [{"user": conn.user, "db": self.auth_db}] if conn.user else []
        return {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": []}}

    def cmd_logout(self, doc: dict[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        conn.user = None
        return {}
