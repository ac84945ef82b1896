"""hubclient: the login walk (against a stand-in for nginx + the testbed login), which
XSRF token goes where, reading a kernel's replies."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote

import pytest
import requests

from testbed_devtools.hubclient import (
    HubFlowError,
    HubSession,
    _run_on_channel,
    spawn_form_choices,
)


def session_with_cookies() -> HubSession:
    s = HubSession("https://base.example")
    jar = s.http.cookies
    jar.set("_xsrf", "hub-token", path="/jupyter/hub/")
    jar.set("_xsrf", "alice-token", path="/jupyter/user/alice/")
    jar.set("other", "x", path="/")
    return s


def test_each_server_gets_the_token_scoped_to_its_path():
    s = session_with_cookies()
    assert s._hub_xsrf() == {"X-XSRFToken": "hub-token"}
    assert s._xsrf_header("/jupyter/user/alice") == {"X-XSRFToken": "alice-token"}


def test_no_xsrf_cookie_no_header():
    assert HubSession("https://base.example")._xsrf_header("/jupyter/hub") == {}


def test_session_ignores_the_environment_proxy_and_ca_bundle():
    s = HubSession("https://base.example/", verify=False)
    assert s.http.trust_env is False and s.http.verify is False
    assert s.hub("hub/home") == "https://base.example/jupyter/hub/home"
    assert isinstance(s.http, requests.Session)


class LoginSite(BaseHTTPRequestHandler):
    """nginx + the testbed login in one: the hub path wants a session, the form gives one."""

    protocol_version = "HTTP/1.1"
    posts: list[dict] = []

    def log_message(self, *args):
        pass

    def _answer(self, status, headers=(), body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        here = f"http://{self.headers['Host']}{self.path}"
        if "testbed_session=s-alice" in (self.headers.get("Cookie") or ""):
            return self._answer(200, [("Content-Type", "text/html")], b"hub home")
        return self._answer(302, [("Location", f"/auth/login?next={quote(here, safe='')}")])

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        type(self).posts.append(form)
        if (form.get("username"), form.get("password")) != ("alice", "wonderland"):
            return self._answer(401, body=b"wrong password")
        cookie = ("Set-Cookie", "testbed_session=s-alice; Path=/; HttpOnly")
        return self._answer(302, [cookie, ("Location", form["next"])])


@pytest.fixture(scope="module")
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), LoginSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_login_posts_the_form_once_and_comes_back_with_the_session(site):
    LoginSite.posts.clear()
    s = HubSession(site)
    r = s.login("alice", "wonderland")
    assert (r.status_code, r.text, r.url) == (200, "hub home", f"{site}/jupyter/")
    assert LoginSite.posts == [
        {"username": "alice", "password": "wonderland", "next": f"{site}/jupyter/"}
    ]
    assert s.login_redirect == f"{site}/jupyter/"
    assert [c.value for c in s.http.cookies if c.name == "testbed_session"] == ["s-alice"]
    # the session cookie goes with the session's later requests
    assert s.get("/jupyter/hub/home", allow_redirects=False).status_code == 200


def test_a_refused_login_names_the_user_and_the_answer(site):
    with pytest.raises(HubFlowError, match="login as 'alice' .* gave 401 and no testbed_session"):
        HubSession(site).login("alice", "not-the-password")


def test_api_needs_a_server_first():
    with pytest.raises(HubFlowError, match="wait_lab"):
        HubSession("https://base.example").api("GET", "contents")


class FakeChannel:
    """Replays kernel messages; the first message sent fixes the parent msg_id."""

    def __init__(self, replies):
        self.replies = replies
        self.sent = None

    def send(self, text):
        self.sent = json.loads(text)

    def recv(self):
        parent = {"msg_id": self.sent["header"]["msg_id"]}
        kind, content, mine = self.replies.pop(0)
        return json.dumps(
            {
                "header": {"msg_type": kind},
                "parent_header": parent if mine else {"msg_id": "someone-else"},
                "content": content,
            }
        )


def test_reads_stdout_result_and_status_of_its_own_request_only():
    ws = FakeChannel(
        [
            ("stream", {"name": "stdout", "text": "noise\n"}, False),
            ("status", {"execution_state": "busy"}, True),
            ("stream", {"name": "stdout", "text": "42\n"}, True),
            ("execute_result", {"data": {"text/plain": "1024"}}, True),
            ("execute_reply", {"status": "ok"}, True),
            ("status", {"execution_state": "idle"}, True),
        ]
    )
    out = _run_on_channel(ws, "print(42); 2**10", timeout=5)
    assert ws.sent["content"]["code"] == "print(42); 2**10"
    assert ws.sent["header"]["msg_type"] == "execute_request"
    assert out == {"status": "ok", "stdout": "42\n", "result": "1024"}


def test_an_error_is_reported_with_its_name():
    ws = FakeChannel(
        [
            ("error", {"ename": "OSError", "evalue": "Read-only file system"}, True),
            ("execute_reply", {"status": "error"}, True),
            ("status", {"execution_state": "idle"}, True),
        ]
    )
    out = _run_on_channel(ws, "open('/x', 'w')", timeout=5)
    assert out["status"] == "error" and out["error"] == "OSError: Read-only file system"


# --- the spawn form (a choice of image or profile): Start with what it preselects ------

SPAWN_PAGE = """<html><script>window.jhdata = { xsrf_token: "tok-1" };</script>
<form enctype="multipart/form-data" id="spawn_form" action="/jupyter/hub/spawn/alice"
      method="post" role="form">
<select class="form-select" id="testbed-image" name="image">
<option value="testbed-hub/notebook:new" selected>new &middot; (current)</option>
<option value="testbed-hub/notebook:old">old (earlier)</option></select>
<select name="profile"><option value="standard">standard</option>
<option value="audio">audio</option></select>
<button type="submit">Start</button></form></html>"""


def test_the_spawn_form_choices_are_what_it_preselects():
    assert spawn_form_choices(SPAWN_PAGE) == {
        "image": "testbed-hub/notebook:new",
        "profile": "standard",  # none marked: the first, as a browser submits it
    }
    assert spawn_form_choices("<html>hub home</html>") is None


class SpawnFormSite(LoginSite):
    """After the login the hub shows its spawn form; POSTing it starts the server."""

    spawned: list[dict] = []

    def do_GET(self):
        if "testbed_session=s-alice" in (self.headers.get("Cookie") or ""):
            return self._answer(200, [("Content-Type", "text/html")], SPAWN_PAGE.encode())
        return super().do_GET()

    def do_POST(self):
        if not self.path.startswith("/jupyter/hub/spawn"):
            return super().do_POST()
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).spawned.append({k: v[0] for k, v in parse_qs(body).items()})
        return self._answer(200, [("Content-Type", "text/html")], b"spawn pending")


def test_login_presses_start_on_the_spawn_form():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SpawnFormSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = HubSession(f"http://127.0.0.1:{server.server_address[1]}")
        r = s.login("alice", "wonderland")
    finally:
        server.shutdown()
        server.server_close()
    assert r.text == "spawn pending"
    assert SpawnFormSite.spawned == [
        {"image": "testbed-hub/notebook:new", "profile": "standard", "_xsrf": "tok-1"}
    ]
    assert s.spawn_choices == {"image": "testbed-hub/notebook:new", "profile": "standard"}
