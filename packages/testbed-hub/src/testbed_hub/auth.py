"""Header authenticator for JupyterHub behind the testbed's nginx auth_request.

nginx asks the testbed whether the browser is logged in, drops any client copy of
the identity and secret headers, and forwards the request with
``X-Authorized-User: <testbed identifier>`` and ``X-Testbed-Hub-Secret: <secret>``.
The hub's port is also reachable from the notebook containers, so the identity
header is believed only together with the secret (constant-time comparison).

Testbed identifiers (e-mail addresses, mixed case, odd characters) are first
brought to one canonical form wherever they enter the hub (the header, the
allowed/admin/blocked lists): see :func:`normalize_identity`. The canonical form is
then mapped to a JupyterHub user name that is a valid container/volume name and
never collides: see :func:`identity_to_username`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from urllib.parse import urlencode, urlsplit, urlunsplit

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.handlers.login import LogoutHandler
from tornado import web
from traitlets import Bool, Dict, Enum, Integer, Unicode, default, validate

from testbed_hub import auditing
from testbed_hub.identity import IDENTITY_CASES, normalize_identity, repair_header_text

__all__ = [
    "IDENTITY_CASES",
    "HeaderAuthenticator",
    "docker_escape",
    "identity_to_username",
    "normalize_identity",
    "repair_header_text",
    "username_for",
]

#: JupyterHub user names produced by this module (and the only ones the hub
#: accepts, via ``Authenticator.username_pattern``): lower-case letters, digits
#: and inner dashes, 1-40 characters. Valid as DNS label, container and volume name.
SAFE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
SAFE_NAME_PATTERN = SAFE_NAME_RE.pattern
#: Suffix that marks a mapped (hashed) name. A raw identifier that already ends
#: like this is hashed too, so a raw name can never equal a mapped one.
_HASH_LEN = 12
_HASH_SUFFIX_RE = re.compile(rf"-[0-9a-f]{{{_HASH_LEN}}}$")
_PREFIX_MAX = 40 - 1 - _HASH_LEN
_UNSAFE_RUN_RE = re.compile(r"[^a-z0-9]+")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]+$")

LOGIN_GUARD_COOKIE = "testbed-hub-login-attempts"


def username_for(raw: str, *, fold_case: bool, header: bool = False) -> str:
    """Hub user name of a testbed identifier: normalised, then mapped."""
    return identity_to_username(normalize_identity(raw, fold_case=fold_case, header=header))


def identity_to_username(identity: str) -> str:
    """Map a testbed identifier to a safe, collision-free JupyterHub user name.

    * An identifier that is already a safe name (``SAFE_NAME_RE``) and does not
      end in ``-<12 hex>`` is kept as it is (``ue-01`` -> ``ue-01``).
    * Anything else becomes ``<readable prefix>-<first 12 hex of sha256(identifier)>``
      (``Alice@Example.org`` -> ``alice-example-org-3f2a...``).

    Kept names never end in ``-<12 hex>`` and mapped names always do, so a kept
    name never equals a mapped one; two mapped names are equal only if the
    SHA-256 digests of two different identifiers share their first 48 bits.
    """
    if not isinstance(identity, str) or identity == "":
        raise ValueError("identity must be a non-empty string")
    if SAFE_NAME_RE.match(identity) and not _HASH_SUFFIX_RE.search(identity):
        return identity
    prefix = _UNSAFE_RUN_RE.sub("-", identity.lower()).strip("-")[:_PREFIX_MAX].rstrip("-")
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    return f"{prefix or 'user'}-{digest}"


def docker_escape(name: str) -> str:
    """``DockerSpawner.escape`` that keeps names this module produced unchanged.

    DockerSpawner's default escaping turns ``-`` into ``-2d``; our names are already
    valid container and volume names. Anything else (only possible if
    ``username_pattern`` was relaxed) falls back to DockerSpawner's own escaping.
    """
    if SAFE_NAME_RE.match(name):
        return name
    from dockerspawner import DockerSpawner

    return DockerSpawner._escape(name)


def _first_forwarded(value: str | None) -> str:
    return (value or "").split(",")[0].strip()


class HeaderLoginHandler(BaseHandler):
    """``/hub/login``: log in from the trusted headers, or go to the testbed login."""

    async def get(self):
        authenticator: HeaderAuthenticator = self.authenticator
        identity = authenticator.identity_from_request(self.request)
        if identity is None:
            why = self._bad_header()
            if why:
                await auditing.record(
                    self, "login_refused", auditing.NO_IDENTITY, details={"reason": why}
                )
            await self._redirect_to_external_login()
            return
        # identity_from_request returns the canonical form (normalize_identity)
        username = authenticator.normalize_username(identity_to_username(identity))
        previous = self.get_current_user_cookie()
        if previous is not None and previous.name != username:
            # The testbed identity of this browser changed: end the old hub session
            # (this also revokes the OAuth tokens the old session gave to servers).
            self.log.info(
                "Testbed identity changed from %s to %s: ending the old session",
                previous.name,
                username,
            )
            self.clear_login_cookie()
        user = await self.login_user()
        if user is None:
            blocked = not authenticator.check_blocked_users(username)
            await auditing.record(
                self,
                "login_refused",
                identity,
                user=username,
                details={"reason": "blocked" if blocked else "not allowed"},
            )
            raise web.HTTPError(
                403,
                f"The testbed account {identity!r} (JupyterHub user {username!r}) is not "
                "allowed to use JupyterHub. Ask an administrator to add it to the hub's "
                "allowed users.",
            )
        self.clear_cookie(LOGIN_GUARD_COOKIE, path=self.hub.base_url)
        await auditing.record(self, "login", identity, user=user.name)
        self.redirect(self.get_next_url(user))

    def _bad_header(self) -> str:
        """Why the headers that reached the hub were not believed ('' when the browser
        simply has not logged in at the testbed yet: no secret header at all)."""
        authenticator: HeaderAuthenticator = self.authenticator
        sent = self.request.headers.get(authenticator.secret_header, "")
        if not sent:
            return ""
        secret = authenticator.read_secret()
        if secret is None:
            return f"the hub cannot read its secret {authenticator.secret_file}"
        if not hmac.compare_digest(sent.strip().encode("utf-8", "replace"), secret):
            return f"wrong {authenticator.secret_header} header"
        return f"{authenticator.user_header} header missing or not a testbed identity"

    def _absolute(self, path: str) -> str:
        proto = _first_forwarded(self.request.headers.get("X-Forwarded-Proto"))
        host = _first_forwarded(self.request.headers.get("X-Forwarded-Host"))
        return f"{proto or self.request.protocol}://{host or self.request.host}{path}"

    async def _redirect_to_external_login(self):
        authenticator: HeaderAuthenticator = self.authenticator
        try:
            attempts = int(self.get_cookie(LOGIN_GUARD_COOKIE) or 0)
        except ValueError:
            attempts = 0
        if attempts >= authenticator.max_login_redirects:
            self.clear_cookie(LOGIN_GUARD_COOKIE, path=self.hub.base_url)
            await auditing.record(
                self,
                "login_refused",
                auditing.NO_IDENTITY,
                details={"reason": f"no valid header pair after {attempts} redirects"},
            )
            raise web.HTTPError(
                403,
                f"Logged in at the testbed, but the request reached JupyterHub without a "
                f"valid {authenticator.user_header} / {authenticator.secret_header} header "
                f"pair {attempts} times in a row. Check that nginx forwards both headers "
                f"and that it reads the secret from {authenticator.secret_file}.",
            )
        self.set_cookie(
            LOGIN_GUARD_COOKIE,
            str(attempts + 1),
            path=self.hub.base_url,
            expires_days=None,
            max_age=authenticator.login_guard_seconds,
            httponly=True,
        )
        next_url = self._absolute(self.request.uri)
        self.redirect(authenticator.external_login(next_url), permanent=False)


class HeaderLogoutHandler(LogoutHandler):
    """``/hub/logout``: end the hub session, then log out of the testbed."""

    async def default_handle_logout(self):
        user = self.current_user
        await super().default_handle_logout()
        if user is not None:
            await auditing.record(
                self, "logout", auditing.identity_of(self.authenticator, user), user=user.name
            )

    async def render_logout_page(self):
        authenticator: HeaderAuthenticator = self.authenticator
        if not authenticator.logout_redirect_url:
            await super().render_logout_page()
            return
        proto = _first_forwarded(self.request.headers.get("X-Forwarded-Proto"))
        host = _first_forwarded(self.request.headers.get("X-Forwarded-Host"))
        back = (
            f"{proto or self.request.protocol}://{host or self.request.host}"
            f"{self.base_url}{authenticator.logged_out_path}"
        )
        self.redirect(authenticator.external_logout(back), permanent=False)


class HeaderAuthenticator(Authenticator):
    """Trust an identity header set by nginx, but only with the shared secret."""

    user_header = Unicode(
        "X-Authorized-User",
        config=True,
        help="Request header that carries the testbed identifier (set by nginx).",
    )
    secret_header = Unicode(
        "X-Testbed-Hub-Secret",
        config=True,
        help="Request header that carries the shared secret nginx adds to every request.",
    )
    secret_file = Unicode(
        "/etc/jupyterhub/secrets/proxy-auth-secret",
        config=True,
        help="File holding the shared secret (read by the hub and by nginx, mode 0600).",
    )
    min_secret_length = Integer(
        32,
        config=True,
        help="Shortest secret accepted; a shorter secret file disables header login.",
    )
    external_login_url = Unicode(
        "/auth/login",
        config=True,
        help="Testbed login page the browser is sent to when the headers are missing.",
    )
    external_login_next_param = Unicode(
        "next",
        config=True,
        help="Query parameter of external_login_url that carries the URL to return to.",
    )
    logout_redirect_url = Unicode(
        "/auth/logout",
        config=True,
        help="Testbed logout URL visited after the hub session ended ('' = hub default).",
    )
    logout_next_param = Unicode(
        "next",
        config=True,
        help="Query parameter of logout_redirect_url that carries the URL to return to.",
    )
    logged_out_path = Unicode(
        "logged-out",
        config=True,
        help="Page, below the hub's base URL, the testbed logout returns to: nginx serves "
        "it without a session and says the user has logged out ('' = the base URL, "
        "which lands on the testbed login).",
    )
    known_identities = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="Hub user name -> testbed identifier, shown on the hub's pages instead of "
        "the mapped name (testbed_hub.config fills it from the allowed, admin and "
        "blocked lists). Logins and shares add to it while the hub runs; it is not "
        "stored, and a name it does not know is shown as it is.",
    )
    max_login_redirects = Integer(
        2,
        config=True,
        help="Redirects to the testbed login within login_guard_seconds before the hub "
        "shows an error instead (stops a redirect loop when nginx drops the headers).",
    )
    login_guard_seconds = Integer(
        60,
        config=True,
        help="Lifetime in seconds of the cookie that counts redirects to the testbed login.",
    )
    check_header_on_refresh = Bool(
        True,
        config=True,
        help="Re-check the headers on cookie-authenticated requests (every "
        "auth_refresh_age seconds) and end the session when the identity changed.",
    )

    identity_case = Enum(
        list(IDENTITY_CASES),
        "fold",
        config=True,
        help="'fold': testbed identifiers that differ only in letter case are one hub "
        "user (Alice@x and alice@x); 'keep': the testbed's identifiers are case-sensitive. "
        "Applies to the header and to the allowed/admin/blocked lists alike.",
    )

    @property
    def fold_case(self) -> bool:
        return self.identity_case == "fold"

    def canonical_identity(self, identity: str) -> str:
        """The canonical form of an identifier taken from the request header."""
        return normalize_identity(identity, fold_case=self.fold_case, header=True)

    def username_for(self, identity: str) -> str:
        """Hub user name of an identifier from the request header."""
        return identity_to_username(self.canonical_identity(identity))

    @staticmethod
    def identity_to_username(identity: str) -> str:
        """:func:`identity_to_username`, the login's mapping, for handlers that hold the
        authenticator (``testbed_hub.sharing``, which must not import this module)."""
        return identity_to_username(identity)

    def remember_identity(self, identity: str) -> str:
        """Note the canonical ``identity`` for display; returns its hub user name."""
        name = identity_to_username(identity)
        self.known_identities[name] = identity
        return name

    def identity_of(self, user) -> str:
        """What the hub shows for ``user`` (a User, an orm.User or a name): its testbed
        identifier when known (:attr:`known_identities`), else the hub name; "" for None.
        """
        if user is None:
            return ""
        name = user if isinstance(user, str) else user.name
        return self.known_identities.get(name, name)

    @default("auth_refresh_age")
    def _auth_refresh_age_default(self):
        # 0 disables refresh in JupyterHub; 1 s is the shortest interval it supports.
        return 1

    @default("auto_login")
    def _auto_login_default(self):
        return True

    @default("auto_login_oauth2_authorize")
    def _auto_login_oauth2_authorize_default(self):
        return True

    @default("username_pattern")
    def _username_pattern_default(self):
        return SAFE_NAME_PATTERN

    @default("username_regex")
    def _username_regex_default(self):
        # JupyterHub compiles username_pattern only when it is set, not for a default
        return re.compile(self.username_pattern) if self.username_pattern else None

    @validate("user_header", "secret_header")
    def _validate_header(self, proposal):
        value = proposal["value"]
        if not _HEADER_NAME_RE.match(value or ""):
            raise ValueError(
                f"HeaderAuthenticator.{proposal['trait'].name} = {value!r} is not an HTTP "
                "header name: use letters, digits and '-', e.g. 'X-Authorized-User'."
            )
        return value

    @validate("secret_file")
    def _validate_secret_file(self, proposal):
        value = proposal["value"]
        if not os.path.isabs(value or ""):
            raise ValueError(
                f"HeaderAuthenticator.secret_file = {value!r} must be an absolute path, "
                "e.g. /etc/jupyterhub/secrets/proxy-auth-secret."
            )
        return value

    @validate("min_secret_length")
    def _validate_min_secret_length(self, proposal):
        if proposal["value"] < 16:
            raise ValueError(
                f"HeaderAuthenticator.min_secret_length = {proposal['value']} is too short "
                "to resist guessing: use 16 or more (default 32)."
            )
        return proposal["value"]

    @validate("external_login_url", "logout_redirect_url")
    def _validate_url(self, proposal):
        value = proposal["value"]
        name = proposal["trait"].name
        if value == "" and name == "logout_redirect_url":
            return value
        parts = urlsplit(value or "")
        if not (value.startswith("/") or parts.scheme in ("http", "https")):
            raise ValueError(
                f"HeaderAuthenticator.{name} = {value!r} must be a path starting with '/' "
                "or an http(s) URL, e.g. '/auth/login'."
            )
        return value

    @validate("max_login_redirects", "login_guard_seconds")
    def _validate_positive(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(
                f"HeaderAuthenticator.{proposal['trait'].name} = {proposal['value']} "
                "must be 1 or more."
            )
        return proposal["value"]

    _secret_cache: tuple | None = None

    def read_secret(self) -> bytes | None:
        """The shared secret, or None (logged) when the file is missing or too short."""
        try:
            st = os.stat(self.secret_file)
        except OSError as e:
            self.log.error("Cannot read the proxy secret %s: %s", self.secret_file, e)
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._secret_cache is None or self._secret_cache[0] != key:
            with open(self.secret_file, "rb") as f:
                secret = f.read().strip()
            self._secret_cache = (key, secret)
        secret = self._secret_cache[1]
        if len(secret) < self.min_secret_length:
            self.log.error(
                "The proxy secret in %s has %d characters, fewer than min_secret_length=%d: "
                "header login is disabled until the file holds a longer secret.",
                self.secret_file,
                len(secret),
                self.min_secret_length,
            )
            return None
        return secret

    def identity_from_request(self, request) -> str | None:
        """The testbed identifier, if the request carries it with the right secret."""
        sent = request.headers.get(self.secret_header, "")
        if not sent:
            return None
        secret = self.read_secret()
        if secret is None:
            return None
        if not hmac.compare_digest(sent.strip().encode("utf-8", "replace"), secret):
            self.log.warning(
                "Request from %s to %s carried a wrong %s header: identity ignored",
                request.remote_ip,
                request.uri,
                self.secret_header,
            )
            return None
        raw = request.headers.get(self.user_header, "")
        try:
            return self.canonical_identity(raw)
        except ValueError:
            return None

    async def authenticate(self, handler, data=None):
        identity = self.identity_from_request(handler.request)
        if identity is None:
            return None
        name = identity_to_username(identity)
        if self.may_use_hub(name):
            self.remember_identity(identity)
        return {"name": name, "user_info": {"testbed_id": identity}}

    def may_use_hub(self, name: str) -> bool:
        """Whether the hub user ``name`` passes today's blocked and allowed lists.

        The lists come from the inventory at each hub start (``allow_existing_users``
        is off), so this is the inventory's answer, not the database's.
        """
        if not self.check_blocked_users(name):
            return False
        return bool(self.allow_all or self.check_allowed(name))

    async def refresh_user(self, user, handler=None):
        if not self.may_use_hub(user.name):
            # Removed from the allowed users or blocked: a browser session ends at its
            # next request; API tokens were revoked at hub start (testbed_hub.access).
            self.log.warning("User %s is no longer allowed: session refused", user.name)
            return False
        if handler is None or not self.check_header_on_refresh:
            return True
        if getattr(handler, "_token_authenticated", False):
            # API requests of servers and services carry tokens, not the headers.
            return True
        identity = self.identity_from_request(handler.request)
        if identity is None:
            return False
        if self.normalize_username(identity_to_username(identity)) != user.name:
            return False
        self.remember_identity(identity)  # known again after a hub restart
        return True

    def external_login(self, next_url: str) -> str:
        return _add_query(self.external_login_url, {self.external_login_next_param: next_url})

    def external_logout(self, next_url: str) -> str:
        return _add_query(self.logout_redirect_url, {self.logout_next_param: next_url})

    def get_handlers(self, app):
        # Before JupyterHub's own handlers (JupyterHub.init_handlers): the sharing
        # handlers replace JupyterHub's for the same URLs (testbed_hub.sharing).
        from testbed_hub.auditing import handlers as audit_handlers
        from testbed_hub.sharing import handlers as sharing_handlers

        return [
            ("/login", HeaderLoginHandler),
            ("/logout", HeaderLogoutHandler),
            *sharing_handlers(),
            *audit_handlers(),
        ]


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
