"""Stand-in for the testbed's login service (and its web UI home page).

Endpoints (paths, header and parameter names are configurable):

- ``GET /auth/check``: 200 + ``X-Authorized-User: <name>`` for a valid session cookie,
  otherwise 401. Never a redirect (nginx ``auth_request`` accepts only 2xx/401/403).
  ``check_padding_bytes`` (test aid, default 0 = off) adds filler headers to the 200.
- ``GET /auth/login?next=<url>``: login form; ``POST`` checks user (and password when
  the user has one), sets the HMAC-signed ``testbed_session`` cookie and redirects to
  ``next`` when it is same-origin, else to the home page.
- ``GET /auth/logout?next=<url>``: clears the cookie, redirects like login.
- ``GET /``: the "testbed home" page with a link to JupyterHub.

Same origin: the scheme and host[:port] of ``next`` must equal the request's as the
browser sees them. Behind nginx that is ``X-Forwarded-Proto`` / ``X-Forwarded-Host``
(trusted when ``trust_forwarded_headers`` is true, the default, because the service
listens on 127.0.0.1 behind the proxy; nginx must overwrite both headers), else the
connection's scheme and the ``Host`` header.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import tornado.ioloop
import tornado.web
from tornado.escape import xhtml_escape

from testbed_sim.jsonconfig import read_json_object

log = logging.getLogger("testbed_sim.auth")

_HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")
_COOKIE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_PARAM_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAX_PADDING = 1024 * 1024


@dataclass(frozen=True)
class User:
    name: str
    password: str | None = None


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build with :meth:`from_mapping`."""

    users: tuple[User, ...]
    cookie_secret: bytes
    listen_address: str = "127.0.0.1"
    port: int = 9000
    cookie_name: str = "testbed_session"
    session_ttl_s: int = 8 * 3600
    cookie_secure: bool = False
    user_header: str = "X-Authorized-User"
    check_path: str = "/auth/check"
    login_path: str = "/auth/login"
    logout_path: str = "/auth/logout"
    next_param: str = "next"
    home_path: str = "/"
    hub_path: str = "/jupyter/"
    trust_forwarded_headers: bool = True
    title: str = "MCV testbed"
    # Test aid, off (0): pad the check's 200 answer with filler headers to at
    # least this many bytes, like a login service sending many groups and a
    # big token (proxies must accept large auth answer headers).
    check_padding_bytes: int = 0

    #: Config keys by kind; KEYS (every accepted key) is derived from them.
    BOOL_KEYS = ("cookie_secure", "trust_forwarded_headers")
    INT_KEYS = (
        ("port", 1, 65535),
        ("session_ttl_s", 1, 366 * 86400),
        ("check_padding_bytes", 0, _MAX_PADDING),
    )
    STR_KEYS = (
        "listen_address",
        "cookie_name",
        "user_header",
        "check_path",
        "login_path",
        "logout_path",
        "next_param",
        "home_path",
        "hub_path",
        "title",
    )
    KEYS = ("users", "cookie_secret_file", *BOOL_KEYS, *(k for k, _, _ in INT_KEYS), *STR_KEYS)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], secret: bytes | None = None) -> Settings:
        """Validate ``cfg`` (the JSON config); raise ``ValueError`` naming the bad key."""
        unknown = set(cfg) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {list(cls.KEYS)}")
        users_raw = cfg.get("users")
        if not isinstance(users_raw, list) or not users_raw:
            raise ValueError(
                '\'users\' must be a non-empty list of {"name": ..., "password": optional}'
            )
        users = []
        for i, u in enumerate(users_raw):
            if isinstance(u, str):
                u = {"name": u}
            if not isinstance(u, Mapping) or not isinstance(u.get("name"), str) or not u["name"]:
                raise ValueError(f"users[{i}] needs a non-empty string 'name'")
            pw = u.get("password")
            if pw is not None and (not isinstance(pw, str) or not pw):
                raise ValueError(f"users[{i}].password must be a non-empty string or absent")
            users.append(User(u["name"], pw))
        if len({u.name for u in users}) != len(users):
            raise ValueError("'users' has duplicate names")
        if secret is None:
            path = cfg.get("cookie_secret_file")
            if not path:
                raise ValueError("'cookie_secret_file' is required (a file with >= 32 bytes)")
            try:
                secret = Path(path).read_bytes().strip()
            except OSError as exc:
                raise ValueError(f"cannot read cookie_secret_file {path}: {exc.strerror}") from exc
        if len(secret) < 32:
            raise ValueError("the cookie secret must be at least 32 bytes; regenerate the file")
        kw: dict[str, Any] = {}
        for key in cls.BOOL_KEYS:
            if key in cfg:
                if not isinstance(cfg[key], bool):
                    raise ValueError(f"'{key}' must be true or false")
                kw[key] = cfg[key]
        for key, lo, hi in cls.INT_KEYS:
            if key in cfg:
                v = cfg[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ValueError(f"'{key}' must be an integer from {lo} to {hi}, got {v!r}")
                kw[key] = v
        for key in cls.STR_KEYS:
            if key in cfg:
                if not isinstance(cfg[key], str) or not cfg[key]:
                    raise ValueError(f"'{key}' must be a non-empty string")
                kw[key] = cfg[key]
        for key in ("check_path", "login_path", "logout_path", "home_path", "hub_path"):
            if key in kw and not kw[key].startswith("/"):
                raise ValueError(f"'{key}' must be an absolute path starting with '/'")
        if "user_header" in kw and not _HEADER_RE.match(kw["user_header"]):
            raise ValueError("'user_header' must be an HTTP header name (letters, digits, '-')")
        if "cookie_name" in kw and not _COOKIE_RE.match(kw["cookie_name"]):
            raise ValueError("'cookie_name' may only contain letters, digits, '_', '.', '-'")
        if "next_param" in kw and not _PARAM_RE.match(kw["next_param"]):
            raise ValueError("'next_param' may only contain letters, digits, '_', '.', '-'")
        return cls(users=tuple(users), cookie_secret=secret, **kw)

    def user(self, name: str) -> User | None:
        for u in self.users:
            if u.name == name:
                return u
        return None


# -- session cookie -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(secret: bytes, user: str, ttl_s: int, now: float | None = None) -> str:
    """Cookie value ``<payload>.<signature>``; payload carries user, issue and expiry."""
    now = time.time() if now is None else now
    payload = _b64(
        json.dumps(
            {"u": user, "iat": int(now), "exp": int(now) + ttl_s}, separators=(",", ":")
        ).encode()
    )
    sig = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(sig)}"


def verify_session(secret: bytes, value: str | None, now: float | None = None) -> str | None:
    """The user name in a valid, unexpired cookie value, else None."""
    if not value or value.count(".") != 1:
        return None
    payload, sig = value.split(".")
    want = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    try:
        got = _unb64(sig)
        if not hmac.compare_digest(want, got):
            return None
        data = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    now = time.time() if now is None else now
    if not isinstance(data, dict) or not isinstance(data.get("u"), str):
        return None
    exp = data.get("exp")
    if not isinstance(exp, int) or exp <= now:
        return None
    return data["u"]


# -- same-origin check ----------------------------------------------------------------

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _norm_hostport(hostport: str, scheme: str) -> str:
    hostport = hostport.strip().lower()
    if hostport.endswith(":" + _DEFAULT_PORTS.get(scheme, "")):
        hostport = hostport.rsplit(":", 1)[0]
    return hostport.rstrip(".")


def safe_redirect(target: str | None, scheme: str, host: str) -> str | None:
    """Return ``target`` when it is a same-origin URL for ``scheme://host``, else None.

    Accepted: absolute ``http(s)://host[:port]/...`` with the request's scheme and
    host:port, or a path starting with a single ``/``. Refused: other hosts or schemes,
    scheme-relative ``//evil``, backslashes, control characters and whitespace,
    userinfo (``https://host@evil``), ``javascript:`` and other schemes.
    """
    if not target or len(target) > 4096:
        return None
    if "\\" in target or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return None
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if not parts.scheme and not parts.netloc:
        if target.startswith("/") and not target.startswith("//"):
            return target
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if "@" in parts.netloc:
        return None
    if parts.scheme != scheme.lower():
        return None
    if _norm_hostport(parts.netloc, parts.scheme) != _norm_hostport(host, scheme):
        return None
    if not parts.path.startswith("/"):
        return None
    return target


# -- handlers -------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:34em;margin:3em auto}}
label{{display:block;margin:.6em 0}} .err{{color:#b00}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


class _Base(tornado.web.RequestHandler):
    settings_: Settings

    def initialize(self, settings: Settings) -> None:
        self.settings_ = settings

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")

    def external_scheme(self) -> str:
        s = self.settings_
        if s.trust_forwarded_headers:
            proto = self.request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
            if proto in ("http", "https"):
                return proto
        return self.request.protocol

    def external_host(self) -> str:
        s = self.settings_
        if s.trust_forwarded_headers:
            fwd = self.request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
            if fwd:
                return fwd
        return self.request.headers.get("Host", "")

    def current_user_name(self) -> str | None:
        s = self.settings_
        name = verify_session(s.cookie_secret, self.get_cookie(s.cookie_name))
        if name is None or s.user(name) is None:
            return None
        return name

    def raw_next(self) -> str | None:
        """The success URL as sent. nginx cannot URL-encode, so a proxy that builds
        ``?next=$scheme://$http_host$request_uri`` leaves the original query's ``&``
        unescaped; when ``next`` is the first parameter and its value has a query of
        its own, the whole rest of the query string is the URL."""
        prefix = self.settings_.next_param + "="
        query = self.request.query
        if query.startswith(prefix):
            rest = query[len(prefix) :]
            if "?" in rest and "&" in rest and rest[:1] in ("/", "h"):
                return rest
        return self.get_argument(self.settings_.next_param, None)

    def next_target(self) -> str | None:
        return safe_redirect(self.raw_next(), self.external_scheme(), self.external_host())

    def page(self, body: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_PAGE.format(title=xhtml_escape(self.settings_.title), body=body))


class CheckHandler(_Base):
    def get(self) -> None:
        name = self.current_user_name()
        if name is None:
            self.set_status(401)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("not logged in\n")
            return
        self.set_header(self.settings_.user_header, name)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.pad_headers(self.settings_.check_padding_bytes)
        self.finish("ok\n")

    def pad_headers(self, total: int) -> None:
        """Filler headers of at least ``total`` bytes: a token, then group lines."""
        if total <= 0:
            return
        token = min(total // 4, 16 * 1024)
        self.set_header("X-Testbed-Sim-Token", "t" * token)
        sent, n = token + len("X-Testbed-Sim-Token: \r\n"), 0
        while sent < total:
            line = f"testbed-sim-padding-group-{n:05d}"
            self.add_header("X-Testbed-Sim-Group", line)
            sent += len(line) + len("X-Testbed-Sim-Group: \r\n")
            n += 1

    head = get


class LoginHandler(_Base):
    def form(self, error: str = "", status: int = 200, user: str = "") -> None:
        s = self.settings_
        raw_next = self.raw_next() or ""
        err = f'<p class="err">{xhtml_escape(error)}</p>' if error else ""
        body = (
            f'{err}<form method="post" action="{xhtml_escape(s.login_path)}">'
            f'<label>User <input name="username" value="{xhtml_escape(user)}" '
            'autocomplete="username" autofocus required></label>'
            '<label>Password <input name="password" type="password" '
            'autocomplete="current-password"></label>'
            f'<input type="hidden" name="{xhtml_escape(s.next_param)}" '
            f'value="{xhtml_escape(raw_next)}">'
            '<button type="submit">Log in</button></form>'
        )
        self.page(body, status)

    def get(self) -> None:
        target = self.next_target()
        if target and self.current_user_name():
            self.redirect(target, status=302)
            return
        self.form()

    def post(self) -> None:
        s = self.settings_
        name = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        user = s.user(name)
        ok = user is not None and (
            user.password is None or hmac.compare_digest(user.password.encode(), password.encode())
        )
        if not ok:
            log.info("login failed for %r from %s", name, self.request.remote_ip)
            self.form("Unknown user or wrong password.", status=401, user=name)
            return
        secure = s.cookie_secure or self.external_scheme() == "https"
        self.set_cookie(
            s.cookie_name,
            sign_session(s.cookie_secret, name, s.session_ttl_s),
            path="/",
            httponly=True,
            secure=secure,
            samesite="Lax",
            max_age=s.session_ttl_s,
        )
        target = self.next_target() or s.home_path
        log.info("login %r, redirect to %s", name, target)
        self.redirect(target, status=302)


class LogoutHandler(_Base):
    def get(self) -> None:
        s = self.settings_
        self.clear_cookie(s.cookie_name, path="/")
        target = self.next_target() or s.login_path
        self.redirect(target, status=302)

    post = get


class HomeHandler(_Base):
    def get(self) -> None:
        s = self.settings_
        name = self.current_user_name()
        hub = xhtml_escape(s.hub_path)
        if name:
            who = (
                f"<p>Logged in as <b>{xhtml_escape(name)}</b> "
                f'(<a href="{xhtml_escape(s.logout_path)}">log out</a>).</p>'
            )
        else:
            login = s.login_path + "?" + s.next_param + "=" + quote(s.hub_path, safe="/")
            who = f'<p>Not logged in. <a href="{xhtml_escape(login)}">Log in</a>.</p>'
        body = (
            f'{who}<ul><li><a href="{hub}">JupyterHub: analyse experiments</a></li></ul>'
            "<p>This is the testbed simulator's home page.</p>"
        )
        self.page(body)


def make_app(settings: Settings) -> tornado.web.Application:
    kw = {"settings": settings}
    routes = [
        (re.escape(settings.check_path), CheckHandler, kw),
        (re.escape(settings.login_path), LoginHandler, kw),
        (re.escape(settings.logout_path), LogoutHandler, kw),
        (re.escape(settings.home_path), HomeHandler, kw),
    ]
    return tornado.web.Application(routes, xheaders=False)


def load_settings(path: Path) -> Settings:
    cfg = read_json_object(path)
    try:
        return Settings.from_mapping(cfg)
    except ValueError as exc:
        raise ValueError(f"config file {path}: {exc}") from exc


def generate_secret() -> str:
    return secrets.token_hex(32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="testbed-sim-auth",
        description="The testbed login service stand-in (login page, session cookie, "
        "auth check for nginx auth_request, home page).",
    )
    p.add_argument("--config", type=Path, required=True, help="JSON config file")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = load_settings(args.config)
    except ValueError as exc:
        print(f"testbed-sim-auth: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config}: ok ({len(settings.users)} users)")
        return 0
    app = make_app(settings)
    try:
        app.listen(settings.port, address=settings.listen_address)
    except OSError as exc:
        print(
            f"testbed-sim-auth: cannot listen on {settings.listen_address}:{settings.port}: "
            f"{exc.strerror}",
            file=sys.stderr,
        )
        return 1
    log.info(
        "listening on %s:%d (check %s, login %s, header %s)",
        settings.listen_address,
        settings.port,
        settings.check_path,
        settings.login_path,
        settings.user_header,
    )
    tornado.ioloop.IOLoop.current().start()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
