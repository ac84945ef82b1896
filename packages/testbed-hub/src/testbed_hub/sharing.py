"""What this hub allows of JupyterHub's sharing, and the home page's share endpoint.

Hub and single-user servers are served from one web origin (``/jupyter/...``), so a
share is mutual trust: the owner's server can run script in the visitor's browser as
the visitor, and the visitor runs code as the owner. The handlers here keep sharing
to what the README promises:

* :class:`LimitedServerShareAPIHandler` replaces JupyterHub's ``/api/shares/<owner>/
  <server>`` for a POST: only ``access:servers`` on that server may be granted (no
  start/stop, no activity scopes that would keep the idle culler away), only to a
  named user (not a group), and never from or to a hub admin;
* :class:`ShareCodesOffHandler` and :class:`AcceptShareOffHandler` answer 403 on the
  share-code API and on ``/accept-share``: a share code lets anyone with the link in;
* :class:`TestbedShareAPIHandler` (``POST /hub/api/testbed/shares``) shares the
  current user's default server with a testbed identifier, so the browser needs no
  ``read:users:name``; it answers the same whether or not that person uses the hub.
  Its ``GET`` lists the shares of that server with each user's testbed identifier
  where the hub knows it (``HeaderAuthenticator.identity_of``), for the home page.

The authenticator's handlers come before JupyterHub's own (``JupyterHub.init_handlers``)
and tornado takes the first pattern that matches, so these replace JupyterHub's.
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.apihandlers.shares import ServerShareAPIHandler
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import isoformat
from tornado import web

from testbed_hub.identity import normalize_identity

SHARE_CODES_OFF = "share codes are off on this hub; share with a named user"
ADMIN_REFUSED = (
    "{who} is a hub admin: admins neither share their servers nor open shared ones "
    "(hub and servers share one web origin, see the README's Security section)"
)


def granted_scope(owner: str, server: str) -> str:
    """The one scope a share grants on this hub."""
    return f"access:servers!server={owner}/{server}"


def check_scopes(scopes, owner: str, server: str) -> None:
    """Refuse (400) requested scopes other than access to that one server."""
    if scopes in (None, []):
        return
    allowed = {"access:servers", granted_scope(owner, server)}
    if not isinstance(scopes, list) or not set(scopes) <= allowed:
        raise web.HTTPError(
            400,
            "A share on this hub grants only access to the server "
            f"({granted_scope(owner, server)}): leave out 'scopes' or send "
            '["access:servers"].',
        )


def refuse_admins(handler: BaseHandler, owner_name: str, target_name: str | None) -> None:
    """403 when the owner or the user to share with is a hub admin."""
    for name in (owner_name, target_name):
        user = handler.find_user(name) if name else None
        if user is not None and user.admin:
            raise web.HTTPError(403, ADMIN_REFUSED.format(who=name))


class LimitedServerShareAPIHandler(ServerShareAPIHandler):
    """JupyterHub's share API, with a POST that grants access only, between non-admins."""

    @needs_scope("shares")
    async def post(self, user_name, server_name=None):
        model = self.get_json_body() or {}
        if not isinstance(model, dict):
            raise web.HTTPError(400, 'Send a JSON object: {"user": "<hub user name>"}')
        if model.get("group") is not None:
            raise web.HTTPError(400, "Shares with groups are off on this hub: share with a user")
        check_scopes(model.get("scopes"), user_name, server_name or "")
        refuse_admins(self, user_name, model.get("user"))
        return await super().post(user_name, server_name)


class ShareCodesOffHandler(APIHandler):
    """``/hub/api/share-codes/...``: share codes are off."""

    def _off(self, *args):
        raise web.HTTPError(403, SHARE_CODES_OFF)

    get = post = patch = delete = _off


class AcceptShareOffHandler(BaseHandler):
    """``/hub/accept-share``: share codes are off."""

    def _off(self, *args):
        raise web.HTTPError(403, SHARE_CODES_OFF)

    get = post = _off


class TestbedShareAPIHandler(APIHandler):
    """``POST /hub/api/testbed/shares`` ``{"identity": "bob@testbed.example"}``: share the
    current user's default server with that testbed user.

    The identity is mapped to a hub user name with the login's function; the share is
    created as JupyterHub's own share API does (``orm.Share._apply_filter``, the
    caller's scopes, ``orm.Share.grant``), granting ``access:servers`` on that server.
    The answer is the same whether or not that person has used the hub (or may use it
    today), so the endpoint tells nobody who the hub's users are.
    """

    __test__ = False

    async def get(self):
        """``{"items": [{"user": <hub name>, "identity": <shown name>, "created_at":
        <ISO 8601 UTC>}]}``: the shares of the current user's default server, oldest
        first (by creation); ``identity`` is the hub name when the hub does not know
        the identifier."""
        owner = self.current_user
        if owner is None:
            raise web.HTTPError(403, "Log in to the hub first.")
        # as JupyterHub's GET /api/shares/<owner>/<server>: a narrow token (a server's
        # OAuth token of a visitor, a script's) lists nothing
        if not self.has_scope(f"read:shares!server={owner.name}/"):
            raise web.HTTPError(403, "This token may not read the shares of your server.")
        identity_of = getattr(self.authenticator, "identity_of", lambda u: u.name)
        spawner = owner.orm_spawners.get("")
        shares = [] if spawner is None else spawner.shares
        items = [
            {
                "user": share.user.name,
                "identity": identity_of(share.user),
                "created_at": isoformat(share.created_at),
            }
            for share in sorted(shares, key=lambda s: s.id)
            if share.user is not None
        ]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"items": items}))

    async def post(self):
        owner = self.current_user
        if owner is None:
            raise web.HTTPError(403, "Log in to the hub first.")
        model = self.get_json_body() or {}
        raw = model.get("identity", "") if isinstance(model, dict) else ""
        auth = self.authenticator
        try:
            identity = normalize_identity(raw, fold_case=getattr(auth, "fold_case", True))
        except (TypeError, ValueError):
            raise web.HTTPError(
                400, "identity must be a testbed identifier, e.g. bob@testbed.example"
            ) from None
        name = auth.identity_to_username(identity)  # as the login names that user
        server = ""  # the default server
        if not self.has_scope(f"shares!server={owner.name}/{server}"):
            raise web.HTTPError(403, "Sharing is off on this hub.")
        if name == owner.name:
            raise web.HTTPError(400, "That is you: share with another testbed user.")
        refuse_admins(self, owner.name, name)

        target = self.find_user(name)
        may_use = getattr(auth, "may_use_hub", lambda _n: True)
        if target is not None and may_use(name):
            owner.spawner  # noqa: B018 - makes the default server's database row
            spawner = owner.orm_spawners[server]
            # as JupyterHub's ServerShareAPIHandler.post: filter, check, grant
            scopes = orm.Share._apply_filter(
                frozenset([granted_scope(owner.name, server)]), owner.name, server
            )
            for scope in scopes:
                if not self.has_scope(scope):
                    raise web.HTTPError(403, f"Do not have permission to grant {scope}")
            orm.Share.grant(self.db, spawner, target.orm_user, scopes=scopes)
            known = getattr(auth, "known_identities", None)
            if known is not None:
                # the home page lists the share by this identifier; what the sharer
                # typed never replaces one the header or the inventory gave
                known.setdefault(name, identity)
            self.log.info("%s shared server %s/ with %s", owner.name, owner.name, name)
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "identity": identity,
                    "message": f"If {identity} has logged in to the hub before, "
                    "they can now open your server.",
                }
            )
        )


def handlers() -> list[tuple[str, type]]:
    """URL patterns (below the hub prefix) for ``Authenticator.get_handlers``."""
    return [
        (r"/api/shares/([^/]+)", LimitedServerShareAPIHandler),
        (r"/api/shares/([^/]+)/([^/]*)", LimitedServerShareAPIHandler),
        (r"/api/share-codes/([^/]+)", ShareCodesOffHandler),
        (r"/api/share-codes/([^/]+)/([^/]*)", ShareCodesOffHandler),
        (r"/accept-share", AcceptShareOffHandler),
        (r"/api/testbed/shares", TestbedShareAPIHandler),
    ]
