"""MongoDB wire-protocol stand-in serving the seed data to unmodified pymongo clients.

``mockupdb`` (MongoDB's wire-protocol server library for testing drivers) parses
OP_MSG / OP_QUERY and writes the replies; ``mongomock`` is the query engine; this
module's :class:`CommandDispatcher` answers the commands a read-mostly client needs:

hello / isMaster, ping, buildInfo, find, getMore, killCursors, aggregate, count,
distinct, listCollections, listDatabases, insert, delete, drop, endSessions,
connectionStatus, and SCRAM-SHA-256 authentication (saslStart / saslContinue) when
users are configured. Anything else is answered with a MongoDB command error
(``ok: 0, errmsg, code``) so pymongo raises ``OperationFailure``.

mockupdb serves every connection in its own thread and runs the handlers under one
lock, so the (not thread-safe) mongomock engine sees one command at a time.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mockupdb
import mongomock
from bson.int64 import Int64
from mongomock import filtering

from testbed_sim import seed as seed_mod

log = logging.getLogger("testbed_sim.mongo")

MAX_WIRE_VERSION = 17
DEFAULT_BATCH = 101
CURSOR_IDLE_S = 600.0
MAX_CURSORS = 10000
SERVER_VERSION = "6.0.99-testbed-sim"
SCRAM_ITERATIONS = 15000

# MongoDB error codes (src/mongo/base/error_codes.yml).
INTERNAL_ERROR = 1
BAD_VALUE = 2
UNAUTHORIZED = 13
TYPE_MISMATCH = 14
AUTHENTICATION_FAILED = 18
ILLEGAL_OPERATION = 20
CURSOR_NOT_FOUND = 43
COMMAND_NOT_FOUND = 59
INVALID_NAMESPACE = 73
MECHANISM_UNAVAILABLE = 334


class CommandError(Exception):
    """Answered to the client as ``{ok: 0, errmsg, code, codeName}``."""

    def __init__(self, code: int, errmsg: str, code_name: str = "") -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.code_name = code_name


@dataclass
class _Cursor:
    ns: str
    docs: list[dict[str, Any]]
    batch_size: int | None
    owner: Any
    touched: float = field(default_factory=time.monotonic)


@dataclass
class _Conn:
    """Per-connection state (authentication conversation)."""

    number: int
    user: str | None = None
    scram: dict[str, Any] | None = None


def _sasl_prep(password: str) -> str:
    try:
        from pymongo.saslprep import saslprep

        return saslprep(password)
    except ImportError:  # pragma: no cover
        return password


def scram_sha256_credentials(password: str, salt: bytes, iterations: int) -> dict[str, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _sasl_prep(password).encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return {
        "stored_key": hashlib.sha256(client_key).digest(),
        "server_key": hmac.digest(salted, b"Server Key", "sha256"),
        "salt": salt,
        "iterations": iterations,
    }


def _parse_scram(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        if len(part) >= 2 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


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
        self._users = {
            name: scram_sha256_credentials(pw, secrets.token_bytes(16), SCRAM_ITERATIONS)
            for name, pw in (users or {}).items()
        }
        self._cursors: dict[int, _Cursor] = {}
        self._conns: weakref.WeakKeyDictionary[Any, _Conn] = weakref.WeakKeyDictionary()
        self._conn_counter = 0
        self._lock = threading.RLock()
        self.started = dt.datetime.now(dt.UTC)
        self._handlers: dict[str, Callable[[dict[str, Any], str, _Conn], dict[str, Any]]] = {
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
            "saslstart": self.cmd_sasl_start,
            "saslcontinue": self.cmd_sasl_continue,
            "logout": self.cmd_logout,
        }
        self._no_auth = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue"}
        self._no_auth |= {"endsessions", "connectionstatus", "logout"}

    # -- plumbing ---------------------------------------------------------------------

    @property
    def auth_enabled(self) -> bool:
        return bool(self._users)

    def _conn(self, sock: Any) -> _Conn:
        conn = self._conns.get(sock) if sock is not None else None
        if conn is None:
            self._conn_counter += 1
            conn = _Conn(number=self._conn_counter)
            if sock is not None:
                self._conns[sock] = conn
        return conn

    def dispatch(self, doc: Mapping[str, Any], db: str, sock: Any = None) -> dict[str, Any]:
        """Run one command document; return the reply document (with ``ok``)."""
        with self._lock:
            conn = self._conn(sock)
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

    def _cursor_reply(
        self, ns: str, docs: list[dict[str, Any]], batch: int | None, conn: _Conn, first: bool
    ) -> dict[str, Any]:
        size = DEFAULT_BATCH if batch is None else batch
        if batch is not None and batch == 0 and first:
            size = 0
        elif size <= 0:
            size = len(docs)
        out, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            self._expire_cursors()
            cursor_id = secrets.randbelow(2**62) + 1
            self._cursors[cursor_id] = _Cursor(ns=ns, docs=rest, batch_size=batch, owner=conn)
        key = "firstBatch" if first else "nextBatch"
        return {"cursor": {"id": Int64(cursor_id), "ns": ns, key: out}}

    def _expire_cursors(self) -> None:
        now = time.monotonic()
        for cid in [c for c, cur in self._cursors.items() if now - cur.touched > CURSOR_IDLE_S]:
            del self._cursors[cid]
        if len(self._cursors) >= MAX_CURSORS:
            oldest = sorted(self._cursors, key=lambda c: self._cursors[c].touched)
            for cid in oldest[: len(self._cursors) - MAX_CURSORS + 1]:
                del self._cursors[cid]

    @staticmethod
    def _collection_name(doc: Mapping[str, Any], key: str) -> str:
        name = doc.get(key)
        if not isinstance(name, str) or not name or "$" in name or "\x00" in name:
            raise CommandError(
                INVALID_NAMESPACE, f"collection name must be a non-empty string, got {name!r}"
            )
        return name

    # -- commands ---------------------------------------------------------------------

    def cmd_hello(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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
        if isinstance(mechs, str) and self.auth_enabled:
            user = mechs.split(".", 1)[1] if "." in mechs else mechs
            if user in self._users:
                reply["saslSupportedMechs"] = ["SCRAM-SHA-256"]
        return reply

    def cmd_build_info(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        return {
            "version": SERVER_VERSION,
            "versionArray": [6, 0, 99, 0],
            "gitVersion": "testbed-sim",
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "storageEngines": ["mongomock"],
            "bits": 64,
        }

    def cmd_find(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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
        return self._cursor_reply(f"{db}.{coll_name}", docs, batch, conn, first=True)

    def cmd_get_more(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        cursor_id = int(doc.get("getMore") or 0)
        coll_name = self._collection_name(doc, "collection")
        cur = self._cursors.pop(cursor_id, None)
        if cur is None or cur.ns != f"{db}.{coll_name}":
            raise CommandError(
                CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found", "CursorNotFound"
            )
        batch = _as_int(doc.get("batchSize"), "batchSize", cur.batch_size)
        reply = self._cursor_reply(cur.ns, cur.docs, batch, conn, first=False)
        return reply

    def cmd_kill_cursors(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        killed, not_found = [], []
        for cid in doc.get("cursors") or []:
            if self._cursors.pop(int(cid), None) is not None:
                killed.append(Int64(cid))
            else:
                not_found.append(Int64(cid))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
        }

    def cmd_aggregate(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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
        return self._cursor_reply(f"{db}.{coll_name}", docs, batch, conn, first=True)

    def cmd_count(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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

    def cmd_distinct(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "distinct")
        key = doc.get("key")
        if not isinstance(key, str) or not key:
            raise CommandError(TYPE_MISMATCH, "distinct needs a 'key' string")
        values = self.client[db][coll_name].distinct(key, dict(doc.get("query") or {}))
        return {"values": list(values)}

    def cmd_list_collections(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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
        return self._cursor_reply(f"{db}.$cmd.listCollections", docs, batch, conn, first=True)

    def cmd_list_databases(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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

    def cmd_insert(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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

    def cmd_delete(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
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

    def cmd_drop(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        coll_name = self._collection_name(doc, "drop")
        if coll_name not in self.client[db].list_collection_names():
            raise CommandError(26, "ns not found", "NamespaceNotFound")
        self.client[db].drop_collection(coll_name)
        return {"ns": f"{db}.{coll_name}", "nIndexesWas": 1}

    def cmd_connection_status(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        users = [{"user": conn.user, "db": self.auth_db}] if conn.user else []
        return {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": []}}

    def cmd_logout(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        conn.user = None
        return {}

    # -- SCRAM-SHA-256 (RFC 5802 / RFC 7677) ------------------------------------------

    def _auth_failed(self, conn: _Conn) -> CommandError:
        conn.scram = None
        return CommandError(AUTHENTICATION_FAILED, "Authentication failed.", "AuthenticationFailed")

    @staticmethod
    def _payload_user(doc: Mapping[str, Any]) -> str:
        payload = bytes(doc.get("payload") or b"").decode("utf-8", "replace")
        user = _parse_scram(payload[3:]).get("n", "")
        return user.replace("=2C", ",").replace("=3D", "=")

    def cmd_sasl_start(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        mechanism = doc.get("mechanism")
        if not self.auth_enabled:
            raise CommandError(
                AUTHENTICATION_FAILED,
                "Authentication failed: this MongoDB stand-in has no users configured; "
                "connect without credentials",
                "AuthenticationFailed",
            )
        if mechanism != "SCRAM-SHA-256":
            if self._payload_user(doc) not in self._users:
                raise self._auth_failed(conn)
            raise CommandError(
                MECHANISM_UNAVAILABLE,
                f"Received authentication for mechanism {mechanism} which is not enabled; "
                "use SCRAM-SHA-256 (authMechanism=SCRAM-SHA-256)",
                "MechanismUnavailable",
            )
        if db != self.auth_db:
            raise self._auth_failed(conn)
        payload = bytes(doc.get("payload") or b"").decode("utf-8", "replace")
        if not payload.startswith(("n,,", "y,,")):
            raise self._auth_failed(conn)
        bare = payload[3:]
        attrs = _parse_scram(bare)
        user = self._payload_user(doc)
        creds = self._users.get(user)
        client_nonce = attrs.get("r", "")
        if creds is None or not client_nonce:
            raise self._auth_failed(conn)
        nonce = client_nonce + base64.b64encode(secrets.token_bytes(24)).decode()
        server_first = (
            f"r={nonce},s={base64.b64encode(creds['salt']).decode()},i={creds['iterations']}"
        )
        conn.scram = {
            "user": user,
            "client_first_bare": bare,
            "server_first": server_first,
            "nonce": nonce,
            "step": 1,
        }
        conn.user = None
        return {"conversationId": 1, "done": False, "payload": server_first.encode()}

    def cmd_sasl_continue(self, doc: dict[str, Any], db: str, conn: _Conn) -> dict[str, Any]:
        state = conn.scram
        if state is None:
            raise self._auth_failed(conn)
        payload = bytes(doc.get("payload") or b"").decode("utf-8", "replace")
        if state["step"] == 2:
            # Client acknowledges the server signature.
            conn.scram = None
            conn.user = state["user"]
            return {"conversationId": 1, "done": True, "payload": b""}
        attrs = _parse_scram(payload)
        if attrs.get("r") != state["nonce"] or "p" not in attrs:
            raise self._auth_failed(conn)
        without_proof = payload[: payload.rindex(",p=")]
        auth_message = f"{state['client_first_bare']},{state['server_first']},{without_proof}"
        creds = self._users[state["user"]]
        client_sig = hmac.digest(creds["stored_key"], auth_message.encode(), "sha256")
        try:
            proof = base64.b64decode(attrs["p"], validate=True)
        except ValueError as exc:
            raise self._auth_failed(conn) from exc
        if len(proof) != len(client_sig):
            raise self._auth_failed(conn)
        client_key = bytes(a ^ b for a, b in zip(proof, client_sig, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), creds["stored_key"]):
            raise self._auth_failed(conn)
        server_sig = hmac.digest(creds["server_key"], auth_message.encode(), "sha256")
        state["step"] = 2
        final = f"v={base64.b64encode(server_sig).decode()}"
        if doc.get("options", {}).get("skipEmptyExchange"):
            conn.scram = None
            conn.user = state["user"]
            return {"conversationId": 1, "done": True, "payload": final.encode()}
        return {"conversationId": 1, "done": False, "payload": final.encode()}


def _strip_meta(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the OP_MSG envelope fields; keep the command name first."""
    return {
        k: v
        for k, v in doc.items()
        if k not in ("$db", "lsid", "$clusterTime", "$readPreference", "txnNumber")
    }


def load_seed(
    client: mongomock.MongoClient,
    database: str,
    seed: int,
    experiments: int,
) -> seed_mod.SeedData:
    data = seed_mod.generate(seed, experiments)
    db = client[database]
    for name, docs in data.collections().items():
        db[name].drop()
        if docs:
            db[name].insert_many([dict(d) for d in docs])
    db["ptt_events"].create_index([("experiment_id", 1), ("seq", 1)], unique=True)
    return data


class MongoStandIn:
    """A running wire-protocol server. Use as a context manager or call start/stop."""

    def __init__(
        self,
        host: str = "0.0.0.0",  # noqa: S104 - published like the testbed's container port
        port: int = 27017,
        database: str = seed_mod.DATABASE,
        seed: int | None = seed_mod.DEFAULT_SEED,
        experiments: int = seed_mod.DEFAULT_EXPERIMENTS,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.client = mongomock.MongoClient()
        self.data = None
        if seed is not None:
            self.data = load_seed(self.client, database, seed, experiments)
        self.dispatcher = CommandDispatcher(self.client, users=users)
        self.server = mockupdb.MockupDB(port=port, request_timeout=int(1e6))
        # MockupDB binds "localhost"; publish on the requested address instead.
        self.server._address = (host, port)
        self.server.autoresponds(self.dispatcher.handle_request)

    def start(self) -> int:
        return self.server.run()

    def stop(self) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def __enter__(self) -> MongoStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- command line -------------------------------------------------------------------

CONFIG_KEYS = {"host", "port", "database", "seed", "experiments", "users", "users_file"}


def load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"config file {path} must hold a JSON object")
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise ValueError(
            f"config file {path}: unknown keys {sorted(unknown)}; allowed: {sorted(CONFIG_KEYS)}"
        )
    return cfg


def _users_from(cfg: Mapping[str, Any]) -> dict[str, str]:
    users = cfg.get("users") or []
    if cfg.get("users_file"):
        path = Path(cfg["users_file"])
        try:
            users = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read users_file {path}: {exc}") from exc
    out = {}
    if not isinstance(users, list):
        raise ValueError("users must be a list of {name, password} objects")
    for u in users:
        if not isinstance(u, Mapping) or not u.get("name") or not u.get("password"):
            raise ValueError("each user needs a non-empty 'name' and 'password'")
        out[str(u["name"])] = str(u["password"])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="testbed-sim-mongo",
        description="MongoDB wire-protocol stand-in serving the testbed seed data.",
    )
    p.add_argument("--config", type=Path, help=f"JSON config file (keys: {sorted(CONFIG_KEYS)})")
    p.add_argument("--host", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default 27017)")
    p.add_argument("--database", help="database name (default testbed)")
    p.add_argument("--seed", type=int, help="seed for the generated data")
    p.add_argument("--experiments", type=int, help="number of experiments (default 24)")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        cfg = load_config(args.config)
        for key in ("host", "port", "database", "seed", "experiments"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        port = cfg.get("port", 27017)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        users = _users_from(cfg)
        seed_mod.generate(int(cfg.get("seed", seed_mod.DEFAULT_SEED)), cfg.get("experiments", 24))
        if args.check_config:
            print(f"{args.config}: ok ({len(users)} users)")
            return 0
        server = MongoStandIn(
            host=str(cfg.get("host", "0.0.0.0")),  # noqa: S104
            port=port,
            database=str(cfg.get("database", seed_mod.DATABASE)),
            seed=int(cfg.get("seed", seed_mod.DEFAULT_SEED)),
            experiments=int(cfg.get("experiments", seed_mod.DEFAULT_EXPERIMENTS)),
            users=users,
        )
        server.start()
    except (ValueError, OSError) as exc:
        print(f"testbed-sim-mongo: {exc}", file=sys.stderr)
        return 2
    data = server.data
    log.info(
        "serving database %r (%d experiments, %d ptt_events) on %s:%d%s",
        cfg.get("database", seed_mod.DATABASE),
        len(data.experiments) if data else 0,
        len(data.ptt_events) if data else 0,
        cfg.get("host", "0.0.0.0"),  # noqa: S104
        server.port,
        ", SCRAM-SHA-256 auth" if server.dispatcher.auth_enabled else "",
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
