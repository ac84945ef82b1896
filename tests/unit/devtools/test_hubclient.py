"""hubclient's pure parts: which XSRF token goes where, reading a kernel's replies."""

from __future__ import annotations

import json

import pytest
import requests

from testbed_devtools.hubclient import HubFlowError, HubSession, _run_on_channel


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
