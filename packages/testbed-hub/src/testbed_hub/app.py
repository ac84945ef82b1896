"""JupyterHub with additional hub listeners, and the inventory as the authority on access.

JupyterHub binds its hub API to one address (``hub_bind_url``). On the base station
the hub must answer on loopback (nginx/CHP side, local tools) and on the gateway
address of the ``jupyter`` Docker network (notebook servers and services), and on
nothing else. ``TestbedHub.extra_hub_bind_urls`` adds listeners on the same tornado
HTTP server; their sockets are bound before the hub starts its services and
spawners, so nothing that connects early is refused.

Access follows the inventory at every hub start (the playbook restarts the hub when
the lists change), with JupyterHub's own mechanisms doing the work:

* a user in the hub's database who is no longer allowed (``allow_all`` off and not
  in ``allowed_users``) is treated like a blocked user for this hub run;
* for blocked users JupyterHub itself strips admin, roles and groups
  (``init_blocked_users``) and stops their servers (``init_spawners``);
  :meth:`TestbedHub.init_blocked_users` adds what it leaves: their API and OAuth
  tokens are deleted and their ``cookie_id`` is rotated, which ends every browser
  session at its next request;
* admin rights follow the explicit user list of the ``admin`` role
  (``testbed_hub.config``), which JupyterHub applies both ways at start;
* with sharing off (``TestbedHub.sharing_enabled``), every share and share code in
  the database is deleted at start: a share made while sharing was on would otherwise
  go on granting access to its server. With sharing on, the shares
  ``testbed_hub.sharing`` would refuse today are deleted: those of a blocked (or no
  longer allowed) user or a hub admin, shares with groups, every share code.

configurable-http-proxy runs as its own service and keeps its routes in memory: when
it restarts (a playbook handler, a crash, by hand) every user's route is gone, and
JupyterHub itself restores them only at its next ``update_last_activity``
(``last_activity_interval``, 300 s). ``TestbedHub.route_check_interval`` reads the
proxy's route table every few seconds and, when the hub's route or a running server's
route is missing, lets JupyterHub's own ``Proxy.check_routes`` put them back.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from jupyterhub import orm
from jupyterhub.app import JupyterHub
from jupyterhub.utils import new_token
from tornado.httpclient import HTTPClientError
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from traitlets import Bool, Float, List, Unicode, validate

try:  # JupyterHub 6 talks to the proxy with aiohttp, JupyterHub 5 with tornado
    from aiohttp import ClientError
except ImportError:  # pragma: no cover - JupyterHub 5 without aiohttp
    ClientError = HTTPClientError


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(
            f"TestbedHub.extra_hub_bind_urls entry {url!r} must look like "
            "'http://172.30.0.1:8081' (scheme http, an IP address and a port)."
        )
    return parts.hostname, parts.port


class TestbedHub(JupyterHub):
    """JupyterHub that also listens on ``extra_hub_bind_urls``."""

    __test__ = False  # not a pytest test class despite the name

    name = "jupyterhub"

    extra_hub_bind_urls = List(
        Unicode(),
        config=True,
        help="More http://IP:PORT/ addresses on which the hub API listens "
        "(besides hub_bind_url), e.g. the jupyter network's gateway.",
    )

    route_check_interval = Float(
        5.0,
        config=True,
        help="Seconds between looks at the proxy's route table; when the hub's route or "
        "a running server's route is missing (the proxy restarted), JupyterHub's "
        "check_routes restores them. 0 leaves it to last_activity_interval.",
    )

    sharing_enabled = Bool(
        False,
        config=True,
        help="Whether users may share their servers (testbed_hub.config gives the user "
        "role the scopes when on). Off: every share and share code in the database is "
        "deleted at start, so earlier shares grant nothing either.",
    )

    audit_log = Unicode(
        "",
        config=True,
        help="Absolute path of the audit log (testbed_hub.audit) the hub appends logins, "
        "logouts, server starts and stops and run-notebook's batches to; '' = off. "
        "A failed write is logged as an error and never fails the request.",
    )

    @validate("audit_log")
    def _validate_audit_log(self, proposal):
        value = proposal["value"]
        if value and not value.startswith("/"):
            raise ValueError(
                f"TestbedHub.audit_log = {value!r} must be an absolute path, e.g. "
                "/var/log/testbed/audit.log, or '' (auditing off)."
            )
        return value

    def hub_addresses(self) -> set[str]:
        """The IPs the hub binds to and is reached at (hub_bind_url, extra_hub_bind_urls,
        hub_connect_url): a request from one of them came through the station's proxy."""
        urls = [self.hub_bind_url, self.hub_connect_url, *self.extra_hub_bind_urls]
        return {urlsplit(u).hostname for u in urls if u and urlsplit(u).hostname}

    @validate("extra_hub_bind_urls")
    def _validate_extra(self, proposal):
        for url in proposal["value"]:
            _host_port(url)
        return proposal["value"]

    def init_tornado_settings(self):
        # Pages show testbed identifiers (templates/page.html, spawn_pending.html), not
        # mapped hub names. JupyterHub calls a callable template var with the logged-in
        # user, but a page may be about another one (an admin on a user's spawn page):
        # the templates get the function itself, testbed_identity_of(user).
        identity_of = getattr(self.authenticator, "identity_of", None)
        if identity_of is not None:
            self.template_vars = {
                **self.template_vars,
                "testbed_identity_of": lambda _current_user: identity_of,
                # the logged-in user, for the navigation bar on any page
                "testbed_current_user": lambda current_user: current_user,
            }
        # the audit trail (testbed_hub.auditing): handlers and spawners find it here
        from testbed_hub.auditing import SETTING, HubAudit

        audit = HubAudit(self.audit_log, self.hub_addresses(), log=self.log)
        self.tornado_settings = {**self.tornado_settings, SETTING: audit}
        if audit.enabled:
            self.log.info("Audit trail: appending to %s", self.audit_log)
        super().init_tornado_settings()

    async def init_users(self):
        auth = self.authenticator
        if not auth.allow_all:
            allowed = {auth.normalize_username(n) for n in auth.allowed_users}
            gone = {
                u.name
                for u in self.db.query(orm.User)
                if u.name not in allowed and u.name not in auth.blocked_users
            }
            if gone:
                self.log.warning(
                    "Not in the allowed users any more, blocked until allowed again: %s",
                    ", ".join(sorted(gone)),
                )
                auth.blocked_users = set(auth.blocked_users) | gone
        await super().init_users()

    def revoke_all_shares(self) -> int:
        """Delete every share and share code (sharing is off); returns how many."""
        db = self.db
        count = 0
        for model in (orm.Share, orm.ShareCode):
            count += db.query(model).delete()
        db.commit()
        if count:
            self.log.warning("Sharing is off: %d shares and share codes revoked", count)
        return count

    def revoke_disallowed_shares(self) -> list[tuple[str, str]]:
        """With sharing on, delete what testbed_hub.sharing would not grant today: every
        share code, shares with groups, and every share whose owner or shared-with user
        is blocked (or no longer allowed) or a hub admin. Each is logged. Returns the
        (owner, server name) of the servers whose shares with a blocked user were deleted.
        """
        db = self.db
        codes = db.query(orm.ShareCode).delete()
        if codes:
            self.log.warning("Share codes are off on this hub: %d revoked", codes)
        blocked = set(self.authenticator.blocked_users)
        shared_with_blocked = []
        for share in db.query(orm.Share).all():
            owner = share.owner.name
            user = share.user.name if share.user else None
            if share.group is not None:
                why = f"group {share.group.name}: shares with groups are off"
            elif owner in blocked or user in blocked:
                why = f"{owner if owner in blocked else user} is blocked"
                if user in blocked and share.spawner.server is not None:
                    shared_with_blocked.append((owner, share.spawner.name))
            elif share.owner.admin or (share.user is not None and share.user.admin):
                why = f"{owner if share.owner.admin else user} is a hub admin"
            else:
                continue
            self.log.warning(
                "Share of %s/%s with %s revoked: %s",
                owner,
                share.spawner.name,
                user or share.group.name,
                why,
            )
            db.delete(share)
        db.commit()
        return shared_with_blocked

    async def init_blocked_users(self):
        await super().init_blocked_users()
        # after JupyterHub's role assignment and blocking: admins and the blocked are known
        if self.sharing_enabled:
            self._stop_shared_with_blocked = self.revoke_disallowed_shares()
        else:
            self.revoke_all_shares()
        blocked = self.authenticator.blocked_users
        if not blocked:
            return
        db = self.db
        for user in db.query(orm.User).filter(orm.User.name.in_(blocked)):
            tokens = list(user.api_tokens)
            codes = db.query(orm.OAuthCode).filter_by(user_id=user.id).all()
            for row in tokens + codes:
                db.delete(row)
            user.cookie_id = new_token()
            self.log.warning(
                "Blocked user %s: %d API/OAuth tokens and %d OAuth codes revoked, "
                "browser sessions ended",
                user.name,
                len(tokens),
                len(codes),
            )
        db.commit()

    _stop_shared_with_blocked: list[tuple[str, str]] = []

    async def init_spawners(self):
        await super().init_spawners()
        # A blocked user's open kernels and terminals on a server shared with them
        # survive the revoke (websockets): the owner's server restarts without them.
        for owner, server in self._stop_shared_with_blocked:
            user = self.users[owner]
            spawner = user.spawners.get(server)
            if spawner is None or not (spawner.active or spawner.ready):
                continue
            self.log.warning(
                "Stopping %s/%s: it was shared with a blocked user, whose open "
                "sessions end with it",
                owner,
                server,
            )
            try:
                await user.stop(server)
            except Exception:
                self.log.exception("Failed to stop %s/%s", owner, server)
        self._stop_shared_with_blocked = []

    async def start(self):
        sockets = []
        for url in self.extra_hub_bind_urls:
            host, port = _host_port(url)
            sockets.extend(bind_sockets(port, address=host))
            self.log.info("Hub API bound to %s too (serving once the hub has started)", url)
        await super().start()
        if self.http_server is not None and sockets:
            self.http_server.add_sockets(sockets)
        if self.route_check_interval > 0:
            pc = PeriodicCallback(self.restore_missing_routes, 1e3 * self.route_check_interval)
            self._periodic_callbacks["route_check"] = pc
            pc.start()

    def missing_routes(self, routes: dict) -> list[str]:
        """Routespecs the proxy should have and has not: the hub's, then each ready
        server's (``routes``: the proxy's table, routespec -> route)."""
        wanted = [self.hub.routespec]
        for user in self.users.values():
            wanted.extend(s.proxy_spec for s in user.spawners.values() if s.ready)
        return [spec for spec in wanted if spec not in routes]

    async def restore_missing_routes(self) -> list[str]:
        """One look at the proxy's table; returns the routespecs that were missing
        (restored by ``Proxy.check_routes``). A proxy that does not answer is logged
        and looked at again at the next interval."""
        try:
            routes = await self.proxy.get_all_routes()
        # the proxy is (re)starting (JupyterHub retried for up to 30 s); systemd brings
        # it back, and the next look restores the routes
        except (TimeoutError, OSError, ClientError, HTTPClientError) as e:
            self.log.warning("Proxy route table not readable, looking again soon: %s", e)
            return []
        missing = self.missing_routes(routes)
        if missing:
            self.log.warning(
                "Proxy lacks %d route(s), restoring them: %s", len(missing), ", ".join(missing)
            )
            await self.proxy.check_routes(self.users, self._service_map, routes or None)
        return missing


main = TestbedHub.launch_instance

if __name__ == "__main__":
    main()
