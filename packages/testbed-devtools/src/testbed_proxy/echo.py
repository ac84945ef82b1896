"""A header-echo HTTP upstream that stands in for JupyterHub behind nginx.

Every HTTP request is answered with 200 and a JSON document describing what the
upstream received: method, raw request target, every header line in order (so
duplicates and letter cases stay visible) and the body length. A request asking
for a WebSocket upgrade is answered with ``101 Switching Protocols``; the server
then sends one text frame holding the same JSON document and echoes every text
frame the client sends until the client closes.

Standard library only: the Molecule scenario copies this one file to the
base-station instance and runs it with the system ``python3``::

    python3 echo.py --bind 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA


def websocket_accept(key: str) -> str:
    """The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key (RFC 6455)."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()  # noqa: S324
    return base64.b64encode(digest).decode("ascii")


def encode_frame(payload: bytes, opcode: int = OPCODE_TEXT, mask: bytes | None = None) -> bytes:
    """One final WebSocket frame; clients must mask (give ``mask``), servers must not."""
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    if len(mask) != 4:
        raise ValueError("a WebSocket masking key has exactly 4 bytes")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _recv_exact(sock: socket.socket | object, n: int) -> bytes:
    read = sock.read if hasattr(sock, "read") else None
    data = b""
    while len(data) < n:
        chunk = read(n - len(data)) if read else sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(stream) -> tuple[int, bytes]:
    """Read one frame from a file-like object or socket; returns (opcode, unmasked payload)."""
    b1, b2 = _recv_exact(stream, 2)
    opcode = b1 & 0x0F
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _recv_exact(stream, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _recv_exact(stream, 8))
    mask = _recv_exact(stream, 4) if b2 & 0x80 else None
    payload = _recv_exact(stream, n) if n else b""
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every method with the JSON description of the request."""

    protocol_version = "HTTP/1.1"
    server_version = "testbed-echo/1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the
    # client's delayed ACK add 40 ms to every keep-alive answer.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)

    def describe(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.raw_items()],
            "body_length": len(body),
        }

    def _answer(self) -> None:
        if "websocket" in (self.headers.get("Upgrade") or "").lower():
            self._websocket()
            return
        data = (json.dumps(self.describe()) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _answer

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        connection = (self.headers.get("Connection") or "").lower()
        if not key or "upgrade" not in connection:
            msg = b"websocket upgrade needs Connection: upgrade and Sec-WebSocket-Key\n"
            self.send_response(400)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        description = self.describe()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket_accept(key))
        self.end_headers()
        self.wfile.write(encode_frame(json.dumps(description).encode()))
        self.wfile.flush()
        while True:
            try:
                opcode, payload = read_frame(self.rfile)
            except (ConnectionError, OSError):
                break
            if opcode == OPCODE_CLOSE:
                self.wfile.write(encode_frame(payload[:2], OPCODE_CLOSE))
                self.wfile.flush()
                break
            if opcode == OPCODE_PING:
                self.wfile.write(encode_frame(payload, OPCODE_PONG))
            elif opcode == OPCODE_TEXT:
                self.wfile.write(encode_frame(b"echo:" + payload))
            self.wfile.flush()
        self.close_connection = True


def make_server(bind: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> ThreadingHTTPServer:
    """A ready (bound, not yet serving) echo server; port 0 picks a free port."""
    server = ThreadingHTTPServer((bind, port), EchoHandler)
    server.daemon_threads = True
    server.quiet = quiet
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.bind, args.port, quiet=not args.verbose)
    except OSError as exc:
        print(f"testbed-echo: cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"testbed-echo: listening on {args.bind}:{server.server_address[1]}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
