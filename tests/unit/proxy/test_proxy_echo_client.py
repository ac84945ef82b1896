"""The header-echo upstream and the raw client, against each other on loopback."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed_proxy import echo
from testbed_proxy.client import (
    Response,
    Target,
    cookie_header,
    forwarded_headers,
    login,
    redirect_param,
    request,
    websocket,
)


@pytest.fixture(scope="module")
def echo_target():
    server = echo.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Target(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def test_websocket_accept_matches_rfc6455_example():
    assert echo.websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("masked", [False, True])
def test_frames_round_trip(size, masked):
    import io

    payload = os.urandom(size)
    mask = b"\x01\x02\x03\x04" if masked else None
    frame = echo.encode_frame(payload, echo.OPCODE_TEXT, mask)
    header = 2 + (2 if 126 <= size < 65536 else 8 if size >= 65536 else 0) + (4 if masked else 0)
    assert len(frame) == header + size
    assert frame[0] == 0x81
    assert echo.read_frame(io.BytesIO(frame)) == (echo.OPCODE_TEXT, payload)


def test_frame_mask_must_be_four_bytes():
    with pytest.raises(ValueError, match="4 bytes"):
        echo.encode_frame(b"x", mask=b"\x00")


def test_echo_shows_duplicate_and_odd_case_headers_in_order(echo_target):
    r = request(
        echo_target,
        "/jupyter/hub/x?a=1&b=%3D",
        headers=[
            ("X-Authorized-User", "one"),
            ("x-authorized-user", "two"),
            ("X-Authorized_User", "three"),
        ],
    )
    assert r.status == 200
    seen = r.json()
    assert seen["path"] == "/jupyter/hub/x?a=1&b=%3D"
    assert seen["method"] == "GET"
    names = [k for k, _ in seen["headers"]]
    assert names == ["Host", "X-Authorized-User", "x-authorized-user", "X-Authorized_User"]
    assert forwarded_headers(seen, "X-AUTHORIZED-USER") == ["one", "two", "three"]


def test_echo_counts_body_and_answers_head_without_body(echo_target):
    r = request(echo_target, "/up", "POST", [("Content-Type", "text/plain")], b"x" * 12345)
    assert r.json()["body_length"] == 12345
    head = request(echo_target, "/up", "HEAD")
    assert head.status == 200 and head.body == b""


def test_websocket_through_echo(echo_target):
    ws = websocket(echo_target, "/ws?x=1", headers=[("X-Authorized-User", "alice")])
    assert ws.status == 101
    assert (dict(ws.headers)["Sec-WebSocket-Accept"]) != ""
    first = json.loads(ws.first_frame)
    assert first["path"] == "/ws?x=1"
    assert forwarded_headers(first, "X-Authorized-User") == ["alice"]
    assert ws.reply == b"echo:ping-through-nginx"


def test_websocket_without_key_is_400(echo_target):
    r = request(echo_target, "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert r.status == 400


def test_redirect_param_decodes_exactly_one_value():
    loc = "/auth/login?next=https%3A%2F%2Fh%3A8443%2Fp%3Fa%3D1%26b%3Dx%253Dy"
    assert redirect_param(loc, "next") == "https://h:8443/p?a=1&b=x%3Dy"
    with pytest.raises(AssertionError, match="expected one 'next'"):
        redirect_param("/auth/login?next=a&next=b", "next")
    with pytest.raises(AssertionError, match="expected one 'rd'"):
        redirect_param(loc, "rd")


def test_response_helpers():
    r = Response(
        200,
        [
            ("Set-Cookie", "testbed_session=abc.def; Path=/; HttpOnly"),
            ("set-cookie", "other=1"),
            ("Content-Type", "application/json"),
        ],
        b'{"a": 1}',
    )
    assert r.cookies() == {"testbed_session": "abc.def", "other": "1"}
    assert r.header("content-type") == "application/json"
    assert r.json() == {"a": 1}
    assert cookie_header({"a": "1", "b": "2"}) == ("Cookie", "a=1; b=2")
    with pytest.raises(AssertionError, match="expected a JSON body"):
        Response(401, [], b"<html>").json()


class _LoginForm(BaseHTTPRequestHandler):
    """Minimal testbed login form: alice/wonderland gets a cookie."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        from urllib.parse import parse_qs

        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        ok = form.get("username") == "alice" and form.get("password") == "wonderland"
        self.send_response(302 if ok else 401)
        if ok:
            self.send_header("Set-Cookie", "testbed_session=signed-value; Path=/; HttpOnly")
            self.send_header("Location", form.get("next", "/"))
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_login_returns_cookie_or_names_the_failure():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoginForm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t = Target(f"http://127.0.0.1:{server.server_address[1]}")
        jar, r = login(t, "alice", "wonderland", next_url="https://h/p?a=1&b=2")
        assert jar == {"testbed_session": "signed-value"}
        assert r.header("Location") == "https://h/p?a=1&b=2"
        with pytest.raises(AssertionError, match="login as 'alice' .* gave 401"):
            login(t, "alice", "wrong")
    finally:
        server.shutdown()
        server.server_close()


def test_target_connect_override_keeps_host_header(echo_target):
    port = echo_target.address()[1]
    t = Target("http://localhost:8443", connect=("127.0.0.1", port))
    seen = request(t, "/x").json()
    assert forwarded_headers(seen, "Host") == ["localhost:8443"]
