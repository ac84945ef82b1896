"""The hub's side of the audit trail: what it records, and the batch records' endpoint.

The hub appends to the log of ``TestbedHub.audit_log`` (settings ``hub.audit_log``,
Ansible ``jupyterhub_audit_log``; '' = auditing off) through
:class:`testbed_hub.audit.AuditLog`:

========================  ===========================================================
``login``                 ``HeaderLoginHandler``: a testbed identity logged in
``login_refused``         ``HeaderLoginHandler``: not allowed, blocked, a wrong secret
                          header or no valid header pair (identity ``(none)`` when the
                          hub has none it can believe; ``details.reason`` says why)
``logout``                ``HeaderLogoutHandler``
``server_start``          ``TestbedDockerSpawner.start`` returned (object: the server
                          name, '' for the default one; details: image, profile)
``server_stop``           ``TestbedDockerSpawner.stop`` (source null: the spawner does
                          not know who asked — the user, an admin or the idle culler)
``batch_start``,          ``POST /hub/api/testbed/audit`` from ``run-notebook`` in the
``batch_end``             user's container (:class:`AuditAPIHandler`)
========================  ===========================================================

``identity`` is always the user's testbed identity (``HeaderAuthenticator.identity_of``),
``user`` the hub name, ``source`` the client's address (:func:`source_of`).

Failure policy: a failed write never fails the request it belongs to (a login, a
start, a stop); the hub logs an error naming the log file and the whole record, so the
operator sees what is missing from the trail. The endpoint answers 503 then, and
``run-notebook`` warns and carries on.

Flooding is bounded (:class:`FloodGuard`, one allowance per key): a refused login is
written at most ``FLOOD_BURST`` times in a row per source address, then one per
``60 / FLOOD_PER_MINUTE`` seconds; the refusals between are counted and the next
written one carries ``details.suppressed`` (the request is refused exactly as before:
only the trail's lines are bounded). A notebook container reaches the hub's login on
its gateway without nginx, so this is what keeps it from filling the disk with fsynced
records. A user's server gets the same allowance for its batch records, answered 429
with ``Retry-After`` beyond it, and a body over ``MAX_BODY_BYTES`` is refused (413)
before it is parsed.

Writes run in one worker thread (:attr:`HubAudit.executor`): ``AuditLog.append`` takes
an ``flock`` that the nginx collector, the rotate timer and ``verify`` and ``report``
(shared, while they read every rotated file) also take, and fsyncs, which can take long
on a busy disk; one thread keeps the hub's own records in order. A request waits at
most ``WAIT_S`` for its record: after that it goes on and the record stays queued, to
be written when the lock frees, so a held lock neither holds logins nor loses records.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from testbed_hub.audit import AuditLog

#: The events a user's server may post (everything else is the hub's or the edge's own).
USER_EVENTS = ("batch_start", "batch_end")
#: Bounds on what ``POST /hub/api/testbed/audit`` accepts.
MAX_EXPERIMENTS = 5000
MAX_EXPERIMENT_ID = 200
MAX_DETAILS_BYTES = 16384
#: The largest body the endpoint reads (about 2,500 ids of 100 characters).
MAX_BODY_BYTES = 262144
#: Records one key (a refused login's source address, a user's batch records) may
#: write in a row, and how many per minute after that.
FLOOD_BURST = 20
FLOOD_PER_MINUTE = 20
#: Seconds a request (a login, a start, a batch record) waits for its record to be
#: written before it goes on without waiting (the record stays queued).
WAIT_S = 5.0
#: What :meth:`HubAudit.record` returns for a record still queued after ``WAIT_S``.
QUEUED: dict[str, Any] = {"seq": None, "queued": True}
#: ``identity`` of a refused login whose identity the hub cannot believe or did not get.
NO_IDENTITY = "(none)"
#: The tornado setting (``handler.settings``, ``user.settings``) holding the :class:`HubAudit`.
SETTING = "testbed_audit"


def _ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(text).split("%")[0])
    except ValueError:
        return None


class FloodGuard:
    """A token bucket per key: ``burst`` admissions in a row, then ``per_minute``.

    :meth:`admit` answers ``(admitted, suppressed, wait_s)``: whether this one may be
    written; when it may, how many were refused since the key's last admission; when
    not, the seconds until the next one may be. ``clock`` is monotonic seconds.

    At most ``max_keys`` keys are kept. When a new key would pass that, keys quiet long
    enough to have their whole allowance back are forgotten, then, if that is not
    enough, the least recently seen, down to nine tenths of ``max_keys``;
    ``forgotten(key, refused)`` is called for each forgotten key that still had
    refusals to report (their count has no next line to ride on).
    """

    def __init__(
        self,
        burst: int = FLOOD_BURST,
        per_minute: float = FLOOD_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10000,
        forgotten: Callable[[str, int], None] | None = None,
    ):
        if burst < 1 or per_minute <= 0 or max_keys < 1:
            raise ValueError(
                f"FloodGuard needs burst >= 1, per_minute > 0 and max_keys >= 1 "
                f"({burst}, {per_minute}, {max_keys})"
            )
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self.forgotten = forgotten
        # key -> [tokens, time of the last update, refused since the last admission]
        self._buckets: dict[str, list[float]] = {}

    def admit(self, key: str) -> tuple[bool, int, float]:
        now = self.clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            bucket = [float(self.burst), now, 0.0]
        self._buckets[key] = bucket  # the dict's order: least recently seen first
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            suppressed, bucket[2] = int(bucket[2]), 0.0
            return True, suppressed, 0.0
        bucket[0] = tokens
        bucket[2] += 1
        return False, int(bucket[2]), (1.0 - tokens) / self.rate

    def _forget(self, now: float) -> None:
        for key, (tokens, then, _) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                self._drop(key)
        if len(self._buckets) >= self.max_keys:
            keep = self.max_keys - 1 - self.max_keys // 10
            for key in list(self._buckets)[: len(self._buckets) - keep]:
                self._drop(key)

    def _drop(self, key: str) -> None:
        refused = int(self._buckets.pop(key)[2])
        if refused and self.forgotten is not None:
            self.forgotten(key, refused)


class HubAudit:
    """Appends the hub's records to ``path`` without ever raising into a request.

    ``proxies``: the hub's own addresses (its bind and connect IPs). A request whose TCP
    peer is one of them or loopback came through nginx and configurable-http-proxy on
    this station, so its ``X-Real-IP`` (which nginx overwrites) names the client; any
    other peer (a notebook container on the ``jupyter`` network) is the client itself.
    """

    def __init__(
        self,
        path: str,
        proxies: set[str] | frozenset[str] = frozenset(),
        log=None,
        guard: FloodGuard | None = None,
    ):
        self.path = path
        self.log = log or logging.getLogger("testbed_hub.auditing")
        self.audit = AuditLog(path) if path else None
        self.guard = guard or FloodGuard(forgotten=self._forgotten)
        #: seconds a request waits for its record before going on without it
        self.wait_s = WAIT_S
        self.proxies = {ip for ip in map(_ip, proxies) if ip is not None}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="testbed-audit")

    @property
    def enabled(self) -> bool:
        return self.audit is not None

    def admit(self, key: str, what: str, then: str) -> tuple[bool, int, float]:
        """:meth:`FloodGuard.admit` for ``key``; the first refusal in a row is logged
        (``Audit log <path>: <what> faster than N per minute; <then>``)."""
        admitted, suppressed, wait = self.guard.admit(key)
        if not admitted and suppressed == 1:
            self.log.warning(
                "Audit log %s: %s faster than %g per minute; %s",
                self.path,
                what,
                self.guard.rate * 60,
                then,
            )
        return admitted, suppressed, wait

    def _forgotten(self, key: str, refused: int) -> None:
        self.log.warning(
            "Audit log %s: %d refused records (%s) were counted, not written, and no "
            "later line of theirs carries the count: it is here",
            self.path,
            refused,
            key,
        )

    def source_of(self, request) -> str | None:
        """The client's IP address of a tornado request, or None when it has none."""
        context = getattr(request.connection, "context", None)
        peer = _ip(getattr(context, "_orig_remote_ip", None) or request.remote_ip)
        if peer is not None and (peer.is_loopback or peer in self.proxies):
            client = _ip(request.remote_ip)  # tornado's xheaders: nginx's X-Real-IP
            return str(client) if client is not None else None
        return str(peer) if peer is not None else None

    async def record(
        self,
        event: str,
        identity: str,
        *,
        user: str | None = None,
        source: str | None = None,
        object: Any = None,  # the record's field name
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Append one record (in :attr:`executor`); the record, or None when auditing is
        off or the write failed (then logged at ERROR with the log's path and the record),
        or :data:`QUEUED` when it is not written after :attr:`wait_s` seconds (it will be,
        when the log's lock frees: the caller goes on without it).
        """
        if self.audit is None:
            return None
        append = functools.partial(
            self._append,
            event,
            identity or NO_IDENTITY,
            user=user,
            source=source,
            object=object,
            details=details,
        )
        written = asyncio.get_running_loop().run_in_executor(self.executor, append)
        try:
            return await asyncio.wait_for(asyncio.shield(written), self.wait_s)
        except TimeoutError:
            # The log's lock is held (a verify or report reading every rotated file, a
            # rotation, a stuck process) or the disk is slow: the record stays queued
            # in the writer thread, in order, and is written when the log frees; the
            # request goes on. A failure then is logged by _append, as any other.
            self.log.warning(
                "Audit log %s: the %s record of %s waits for the log for more than %g s "
                "(its lock is held: fuser -v %s.lock); the request goes on, the record "
                "is written when the log frees",
                self.path,
                event,
                identity,
                self.wait_s,
                self.path,
            )
            return QUEUED

    def _append(self, event: str, identity: str, **fields: Any) -> dict[str, Any] | None:
        """``AuditLog.append`` in the writer thread; a failure is logged, never raised."""
        try:
            return self.audit.append(event, identity, **fields)
        except Exception as e:  # noqa: BLE001 - the failure policy: log, never raise
            lost = {"event": event, "identity": identity, **fields}
            self.log.error(
                "Audit log %s: the %s record was NOT written (%s: %s); record: %s",
                self.path,
                event,
                type(e).__name__,
                e,
                json.dumps(lost, default=repr, ensure_ascii=False),
            )
            return None

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def hub_audit(settings: dict) -> HubAudit | None:
    """The hub's :class:`HubAudit` from tornado settings (None: not a TestbedHub)."""
    return settings.get(SETTING)


def identity_of(authenticator, user) -> str:
    """The testbed identity of ``user`` (a User, orm.User or name), the hub name when
    the authenticator does not know it."""
    of = getattr(authenticator, "identity_of", None)
    name = user if isinstance(user, str) else user.name
    return (of(user) if of is not None else name) or name


async def record(handler, event: str, identity: str, **fields: Any) -> dict[str, Any] | None:
    """``HubAudit.record`` for a request handler, with ``source`` from the request.

    A ``login_refused`` goes through the :class:`FloodGuard` of its source address:
    beyond the allowance it is counted, not written (None), and the next one written
    from that source carries ``details.suppressed``.
    """
    audit = hub_audit(handler.settings)
    if audit is None or not audit.enabled:
        return None
    fields.setdefault("source", audit.source_of(handler.request))
    if event == "login_refused":
        admitted, suppressed, _ = audit.admit(
            f"login_refused {fields['source']}",
            f"refused logins from {fields['source']} come",
            "the next ones are counted, not written one by one",
        )
        if not admitted:
            return None
        if suppressed:
            fields["details"] = {**(fields.get("details") or {}), "suppressed": suppressed}
    return await audit.record(event, identity, **fields)


def check_body(model: Any) -> tuple[str, list[str], dict[str, Any]]:
    """``(event, experiment ids, details)`` of a posted record; ``HTTPError(400)`` says
    what is wrong otherwise."""
    example = '{"event": "batch_start", "object": ["exp-001"], "details": {}}'
    if not isinstance(model, dict):
        raise web.HTTPError(400, f"Send a JSON object, e.g. {example}")
    unknown = sorted(set(model) - {"event", "object", "details"})
    if unknown:
        raise web.HTTPError(
            400,
            f"Unknown field(s) {', '.join(unknown)}: send event, object and details only "
            "(the hub fills identity, user and source itself)",
        )
    event = model.get("event")
    if event not in USER_EVENTS:
        raise web.HTTPError(
            400, f"event {event!r} is not one a server may record: use {' or '.join(USER_EVENTS)}"
        )
    experiments = model.get("object")
    if not isinstance(experiments, list) or not all(
        isinstance(e, str) and 0 < len(e) <= MAX_EXPERIMENT_ID for e in experiments
    ):
        raise web.HTTPError(
            400,
            f"object must be a list of experiment ids (text of 1 to {MAX_EXPERIMENT_ID} "
            'characters), e.g. ["exp-001", "exp-002"]',
        )
    if len(experiments) > MAX_EXPERIMENTS:
        raise web.HTTPError(
            400,
            f"object lists {len(experiments)} experiment ids, more than {MAX_EXPERIMENTS}: "
            "send the first ones and the total in details",
        )
    details = model.get("details", {})
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise web.HTTPError(400, 'details must be a JSON object, e.g. {"ok": 3, "failed": 0}')
    size = len(json.dumps(details, ensure_ascii=False).encode("utf-8"))
    if size > MAX_DETAILS_BYTES:
        raise web.HTTPError(400, f"details has {size} bytes as JSON, more than {MAX_DETAILS_BYTES}")
    return event, experiments, details


class AuditAPIHandler(APIHandler):
    """``POST /hub/api/testbed/audit``: a user's server records a batch of notebook runs.

    Body ``{"event": "batch_start" | "batch_end", "object": ["exp-001", ...],
    "details": {...}}``, authenticated with the server's own API token
    (``JUPYTERHUB_API_TOKEN``, ``Authorization: token ...``). It needs
    ``users:activity!user=<the token's user>``, which JupyterHub's ``server`` role gives
    every server token (and ``self`` every browser session) for its own user only, so
    one user's server can never write records as another. The hub fills ``identity``
    (the user's testbed identity), ``user`` and ``source``.

    Answers 201 ``{"seq": N}``; 202 ``{"seq": null}`` when the record is queued behind
    the log's lock (written when it frees); 400 for a bad body (the message says what); 403 for a
    token without that scope or a service's token; 404 when auditing is off on this
    hub; 413 for a body over ``MAX_BODY_BYTES``; 429 with ``Retry-After`` (seconds)
    beyond the user's allowance (:class:`FloodGuard`); 503 when the log could not be
    written (the hub's log says why).
    """

    __test__ = False

    async def post(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "Send the server's API token: Authorization: token ...")
        if getattr(user, "kind", "user") != "user":
            raise web.HTTPError(403, "Only a user's server records batches, not a service")
        if not self.has_scope(f"users:activity!user={user.name}"):
            raise web.HTTPError(
                403, f"This token may not record activity of {user.name} (users:activity)"
            )
        audit = hub_audit(self.settings)
        if audit is None or not audit.enabled:
            raise web.HTTPError(404, "Auditing is off on this hub (jupyterhub_audit_log is '')")
        size = len(self.request.body or b"")
        if size > MAX_BODY_BYTES:
            raise web.HTTPError(
                413,
                f"The body has {size} bytes, more than {MAX_BODY_BYTES}: send the first "
                "experiment ids and the total in details",
            )
        try:
            model = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "The body is not JSON") from None
        event, experiments, details = check_body(model)
        admitted, _, wait = audit.admit(
            f"batch {user.name}",
            f"batch records of {user.name} come",
            "refusing them (429) until the allowance refills",
        )
        if not admitted:
            # written here, not raised: tornado's send_error clears the headers
            message = (
                f"More than {audit.guard.burst} batch records in a row from {user.name}: "
                f"not recorded; try again in {math.ceil(wait)} s"
            )
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(wait)))
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": 429, "message": message}))
            return
        done = await audit.record(
            event,
            identity_of(self.authenticator, user),
            user=user.name,
            source=audit.source_of(self.request),
            object=experiments,
            details=details,
        )
        if done is None:
            raise web.HTTPError(
                503, f"The hub could not write the audit log; its log names the {event} record"
            )
        self.set_status(202 if done is QUEUED else 201)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"seq": done["seq"]}))


def handlers() -> list[tuple[str, type]]:
    """URL patterns (below the hub prefix) for ``Authenticator.get_handlers``."""
    return [(r"/api/testbed/audit", AuditAPIHandler)]
