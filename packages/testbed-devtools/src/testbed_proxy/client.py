"""A raw HTTP(S)/WebSocket client for probing the reverse proxy.

``requests`` folds headers into a dict, so it cannot send the same header twice or
in two letter cases: the forgery tests need exactly that. This module speaks
HTTP/1.1 through :mod:`http.client` (every header line is sent as given, in
order) and does the WebSocket opening handshake over a plain socket.

It also knows the testbed login form (``POST <login> username, password, next``)
so a test can log in through nginx like a browser and keep the session cookie.

Standard library only.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from testbed_proxy.echo import OPCODE_CLOSE, encode_frame, read_frame

Headers = Sequence[tuple[str, str]]


@dataclass
class Response:
    """What came back: status, every header line in order, the body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    reason: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise AssertionError(
                f"expected a JSON body from a {self.status} answer, got {self.body[:300]!r}"
            ) from exc

    def cookies(self) -> dict[str, str]:
        """Cookies the answer sets (name -> value; an expiring cookie maps to '')."""
        jar: dict[str, str] = {}
        for raw in self.header_all("Set-Cookie"):
            c = SimpleCookie()
            c.load(raw)
            for name, morsel in c.items():
                jar[name] = morsel.value
        return jar


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one socket address, with SNI and the certificate check for another name."""

    def __init__(self, host, port, *, server_hostname, context, timeout):
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_hostname = server_hostname
        self._ssl_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self._server_hostname)


@dataclass
class Target:
    """Where to connect and how: the URL's origin, optionally another socket address.

    ``connect`` overrides the (host, port) the socket goes to while the URL's
    ``host[:port]`` stays in the Host header: use it to reach a container's
    address while the request looks like it came for ``localhost:8443``.
    """

    base_url: str
    connect: tuple[str, int] | None = None
    cafile: str | None = None
    verify: bool = True
    timeout: float = 10.0
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return urlsplit(self.base_url).scheme

    @property
    def hostport(self) -> str:
        return urlsplit(self.base_url).netloc

    def address(self) -> tuple[str, int]:
        if self.connect:
            return self.connect
        parts = urlsplit(self.base_url)
        return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)

    def ssl_context(self) -> ssl.SSLContext:
        if self._ctx is None:
            if self.verify:
                ctx = ssl.create_default_context(cafile=self.cafile)
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ctx = ctx
        return self._ctx

    def connection(self) -> http.client.HTTPConnection:
        host, port = self.address()
        if self.scheme == "https":
            return _HTTPSConnection(
                host,
                port,
                server_hostname=urlsplit(self.base_url).hostname,
                context=self.ssl_context(),
                timeout=self.timeout,
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


def request(
    target: Target,
    path: str,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Response:
    """Send one request with exactly the given header lines (plus Host unless given)."""
    own = conn is None
    conn = conn or target.connection()
    try:
        hdrs = list(headers)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in hdrs):
            conn.putheader("Host", target.hostport)
        for k, v in hdrs:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, list(r.getheaders()), data, r.reason)
    finally:
        if own:
            conn.close()


def cookie_header(cookies: dict[str, str]) -> tuple[str, str]:
    return ("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))


def login(
    target: Target,
    username: str,
    password: str = "",
    login_path: str = "/auth/login",
    next_url: str | None = None,
    next_param: str = "next",
    cookie_name: str = "testbed_session",
) -> tuple[dict[str, str], Response]:
    """Log in through the testbed login form; returns (cookies, the POST's answer).

    The project's one login-form client (docs/ARCHITECTURE.md, auth service
    contract): the proxy checks, ``testbed_devtools.hubclient.HubSession`` (the
    e2e tests, the benchmark's spawns and auth overhead) all log in here. The
    answer is not followed: a successful login is a redirect to ``next_url``.
    Raises AssertionError naming the user and status when no session cookie came back.
    """
    form = {"username": username, "password": password}
    if next_url is not None:
        form[next_param] = next_url
    data = urlencode(form).encode()
    r = request(
        target,
        login_path,
        "POST",
        [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "text/html")],
        data,
    )
    jar = r.cookies()
    if not jar.get(cookie_name):
        raise AssertionError(
            f"login as {username!r} at {target.url(login_path)} gave {r.status} and no "
            f"{cookie_name} cookie (Set-Cookie: {r.header_all('Set-Cookie')})"
        )
    return {cookie_name: jar[cookie_name]}, r


def redirect_param(location: str, param: str) -> str:
    """The single decoded value of query parameter ``param`` in a Location URL."""
    values = parse_qs(urlsplit(location).query, keep_blank_values=True).get(param, [])
    if len(values) != 1:
        raise AssertionError(f"expected one {param!r} parameter in {location!r}, got {values}")
    return values[0]


def forwarded_headers(echo: dict, name: str) -> list[str]:
    """Values the echo upstream saw for ``name``, matching any letter case and ``_``/``-``."""
    want = name.lower().replace("_", "-")
    return [v for k, v in echo["headers"] if k.lower().replace("_", "-") == want]


@dataclass
class WebSocketResult:
    status: int
    headers: list[tuple[str, str]]
    first_frame: bytes | None = None
    reply: bytes | None = None


def websocket(
    target: Target,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    message: bytes | None = b"ping-through-nginx",
) -> WebSocketResult:
    """WebSocket handshake through the proxy; on 101 read the first frame and echo once."""
    host, port = target.address()
    sock = socket.create_connection((host, port), target.timeout)
    if target.scheme == "https":
        sock = target.ssl_context().wrap_socket(
            sock, server_hostname=urlsplit(target.base_url).hostname
        )
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {target.hostport}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        stream = sock.makefile("rb")
        status_line = stream.readline().decode("latin-1").strip()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise AssertionError(f"not an HTTP answer to the WebSocket handshake: {status_line!r}")
        status = int(parts[1])
        resp_headers: list[tuple[str, str]] = []
        while True:
            line = stream.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            k, _, v = line.partition(":")
            resp_headers.append((k.strip(), v.strip()))
        result = WebSocketResult(status, resp_headers)
        if status != 101:
            return result
        _, result.first_frame = read_frame(stream)
        if message is not None:
            sock.sendall(encode_frame(message, mask=os.urandom(4)))
            _, result.reply = read_frame(stream)
        sock.sendall(encode_frame(b"\x03\xe8", OPCODE_CLOSE, mask=os.urandom(4)))
        return result
    finally:
        sock.close()
