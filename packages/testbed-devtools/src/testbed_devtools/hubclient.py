"""A researcher's walk through the base station, without a browser.

Used by the end-to-end tests (security checks, kernel over WebSocket) and by
the benchmark (spawn latency): log in at the testbed login through nginx, let
JupyterHub spawn the user's server, wait until JupyterLab answers, start a
kernel and run code over its WebSocket channel, all through the public
HTTPS origin exactly as a browser does.
"""

from __future__ import annotations

import html
import json
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
import urllib3

from testbed_proxy.client import Target
from testbed_proxy.client import login as login_form

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


#: The hub's spawn form (JupyterHub's spawn.html) and the selects in it.
SPAWN_FORM_RE = re.compile(r'<form[^>]*id="spawn_form"[^>]*>(.*?)</form>', re.S)
SPAWN_ACTION_RE = re.compile(r'<form[^>]*id="spawn_form"[^>]*action="([^"]*)"', re.S)
SELECT_RE = re.compile(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', re.S)
OPTION_RE = re.compile(r'<option value="([^"]*)"( selected)?')
XSRF_RE = re.compile(r'xsrf_token: "([^"]+)"')


def spawn_form_choices(page: str) -> dict[str, str] | None:
    """``{select name: preselected value}`` of the spawn form in ``page`` (the first
    option where none is marked, as a browser does); None when there is no form."""
    form = SPAWN_FORM_RE.search(page)
    if not form:
        return None
    out = {}
    for name, body in SELECT_RE.findall(form.group(1)):
        options = OPTION_RE.findall(body)
        chosen = next((v for v, sel in options if sel), options[0][0] if options else "")
        out[html.unescape(name)] = html.unescape(chosen)
    return out


class HubFlowError(AssertionError):
    """A step of the walk gave an answer a browser would not accept."""


@dataclass
class Timing:
    """Seconds from submitting the login form to a JupyterLab page (status 200)."""

    login_s: float = 0.0
    ready_s: float = 0.0
    polls: int = 0
    redirects: list[str] = field(default_factory=list)


class HubSession:
    """One user's cookie jar against ``base_url`` (e.g. ``https://localhost:8443``)."""

    def __init__(
        self,
        base_url: str,
        hub_path: str = "/jupyter/",
        login_path: str = "/auth/login",
        next_param: str = "next",
        cookie_name: str = "testbed_session",
        verify: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.hub_path = "/" + hub_path.strip("/") + "/"
        self.login_path = login_path
        self.next_param = next_param
        self.cookie_name = cookie_name
        self.timeout = timeout
        self.http = requests.Session()
        # Never through the site's HTTP proxy, never with its CA bundle: the
        # base station is reached directly and uses a self-signed certificate.
        self.http.trust_env = False
        self.http.verify = verify
        if not verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.username: str | None = None
        self.login_redirect: str | None = None
        #: what press_start submitted on the spawn form (None: no form on the way)
        self.spawn_choices: dict[str, str] | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def hub(self, path: str = "") -> str:
        return self.url(self.hub_path + path.lstrip("/"))

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.http.get(self.url(path), **kw)

    # -- login ---------------------------------------------------------------
    def login(self, user: str, password: str = "") -> requests.Response:
        """Open the hub, be sent to the testbed login, submit it, follow it back.

        The form goes through the one login-form client,
        :func:`testbed_proxy.client.login`; its session cookie joins this
        session's jar. Returns the last answer of the redirect chain from the
        login's ``next`` URL (the hub's spawn page, spawn-pending page or
        JupyterLab itself); a spawn form on the way is submitted with its
        preselected choices (:meth:`press_start`).
        """
        first = self.http.get(
            self.hub(), headers={"Accept": BROWSER_ACCEPT}, allow_redirects=False, timeout=30
        )
        location = first.headers.get("Location", "")
        if first.status_code != 302 or urlsplit(location).path != self.login_path:
            raise HubFlowError(
                f"GET {self.hub()} without a session: expected 302 to {self.login_path}, got "
                f"{first.status_code} Location={location!r}"
            )
        nxt = parse_qs(urlsplit(location).query).get(self.next_param, [""])[0]
        target = Target(self.base_url, verify=bool(self.http.verify), timeout=self.timeout)
        try:
            jar, posted = login_form(
                target,
                user,
                password,
                login_path=self.login_path,
                next_url=nxt,
                next_param=self.next_param,
                cookie_name=self.cookie_name,
            )
        except AssertionError as exc:  # no session cookie: say so as a step of the walk
            raise HubFlowError(str(exc)) from None
        host = urlsplit(self.base_url).hostname or ""
        for name, value in jar.items():
            self.http.cookies.set(name, value, domain=host, path="/")
        back = posted.header("Location")
        if posted.status not in (301, 302, 303, 307, 308) or not back:
            raise HubFlowError(
                f"login as {user!r}: expected a redirect to {nxt!r}, got {posted.status} "
                f"Location={back!r}"
            )
        self.login_redirect = urljoin(self.url(self.login_path), back)
        landed = self.http.get(
            self.login_redirect, headers={"Accept": BROWSER_ACCEPT}, timeout=self.timeout
        )
        return self.press_start(landed)

    def press_start(self, page: requests.Response) -> requests.Response:
        """On the hub's spawn form (a choice of image or resource profile), press Start
        with what the form preselects, as a researcher who changes nothing does; any
        other page is returned as it is."""
        choices = spawn_form_choices(page.text) if page.status_code == 200 else None
        if choices is None:
            return page
        xsrf = XSRF_RE.search(page.text)
        data = {**choices, **({"_xsrf": xsrf.group(1)} if xsrf else {})}
        self.spawn_choices = choices
        action = SPAWN_ACTION_RE.search(page.text)
        return self.http.post(
            urljoin(page.url, html.unescape(action.group(1)) if action else page.url),
            data=data,
            headers={"Accept": BROWSER_ACCEPT, **self._hub_xsrf()},
            timeout=self.timeout,
        )

    def _xsrf_header(self, path_prefix: str) -> dict[str, str]:
        """X-XSRFToken from the _xsrf cookie scoped to ``path_prefix``.

        The hub and each user server set their own _xsrf cookie (per path) and
        each checks the one scoped to its own path.
        """
        tokens = [c for c in self.http.cookies if c.name == "_xsrf"]
        tokens.sort(key=lambda c: not (c.path or "").startswith(path_prefix))
        return {"X-XSRFToken": tokens[0].value} if tokens else {}

    def _hub_xsrf(self) -> dict[str, str]:
        return self._xsrf_header(self.hub_path + "hub")

    def wait_progress(self, username: str, timeout: float = 120.0) -> bool | None:
        """Follow the hub's spawn progress stream (what the spawn-pending page does).

        True when the hub reports the server ready, None when the stream is not
        available (the caller polls instead); a failed spawn raises.
        """
        url = self.hub(f"hub/api/users/{username}/server/progress")
        headers = {"Accept": "text/event-stream", **self._hub_xsrf()}
        with self.http.get(url, headers=headers, stream=True, timeout=(10, timeout)) as r:
            if r.status_code != 200:
                return None
            for line in r.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                event = json.loads(line[len("data:") :])
                if event.get("failed"):
                    raise HubFlowError(f"spawn of {username} failed: {event.get('message')}")
                if event.get("ready"):
                    return True
        return None

    def wait_lab(self, username: str, timeout: float = 120.0) -> tuple[requests.Response, int]:
        """Wait for the spawn (progress stream, else polling), then open JupyterLab (200)."""
        self.username = username
        target = self.hub(f"user/{username}/lab")
        deadline = time.monotonic() + timeout
        self.wait_progress(username, timeout)
        polls = 0
        last = ""
        while True:
            polls += 1
            r = self.http.get(target, headers={"Accept": BROWSER_ACCEPT}, timeout=self.timeout)
            if r.status_code == 200 and r.url == target and "jupyter-config-data" in r.text:
                return r, polls
            last = f"{r.status_code} at {r.url}"
            if time.monotonic() > deadline:
                raise HubFlowError(f"JupyterLab of {username} not ready after {timeout} s: {last}")
            if r.status_code >= 500 and "spawn" not in r.url:
                raise HubFlowError(f"JupyterLab of {username}: {last}: {r.text[:300]}")
            time.sleep(0.2)

    def login_to_lab(self, user: str, username: str, timeout: float = 120.0) -> Timing:
        """Login form submitted -> JupyterLab ready; the figure the benchmark reports."""
        t0 = time.monotonic()
        r = self.login(user)
        t1 = time.monotonic()
        _, polls = self.wait_lab(username, timeout)
        t2 = time.monotonic()
        return Timing(
            login_s=t1 - t0,
            ready_s=t2 - t0,
            polls=polls,
            redirects=[
                self.login_redirect or "",
                *(h.headers.get("Location", "") for h in r.history),
            ],
        )

    # -- the single-user server's REST API and kernels --------------------------
    def api(self, method: str, path: str, **kw) -> requests.Response:
        """``<hub>/user/<name>/api/<path>`` with the browser's cookies and XSRF token."""
        if not self.username:
            raise HubFlowError("no user server yet: call wait_lab() first")
        xsrf = self._xsrf_header(self.hub_path + f"user/{self.username}")
        headers = {"Accept": "application/json", **xsrf, **kw.pop("headers", {})}
        return self.http.request(
            method,
            self.hub(f"user/{self.username}/api/{path.lstrip('/')}"),
            headers=headers,
            timeout=kw.pop("timeout", self.timeout),
            allow_redirects=False,
            **kw,
        )

    def execute(self, code: str, timeout: float = 60.0) -> dict:
        """Start a kernel, run ``code`` over the kernel WebSocket, shut the kernel down.

        Returns ``{"status": ..., "stdout": ..., "result": ..., "kernel_id": ...}``.
        """
        import websocket  # websocket-client, a test dependency

        r = self.api("POST", "kernels", json={"name": "python3"})
        if r.status_code != 201:
            raise HubFlowError(f"POST kernels: {r.status_code} {r.text[:300]}")
        kernel_id = r.json()["id"]
        try:
            ws_url = self.hub(f"user/{self.username}/api/kernels/{kernel_id}/channels")
            ws_url = "wss" + ws_url[len("https") :] if ws_url.startswith("https") else ws_url
            cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
            sslopt = {} if self.http.verify else {"cert_reqs": ssl.CERT_NONE}
            origin = self.base_url
            ws = websocket.create_connection(
                ws_url,
                cookie=cookie,
                origin=origin,
                sslopt=sslopt,
                timeout=timeout,
                http_no_proxy=["*"],
            )
            try:
                return {"kernel_id": kernel_id, **_run_on_channel(ws, code, timeout)}
            finally:
                ws.close()
        finally:
            self.api("DELETE", f"kernels/{kernel_id}")


def _run_on_channel(ws, code: str, timeout: float) -> dict:
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "e2e",
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False},
                "buffers": [],
                "channel": "shell",
            }
        )
    )
    out: dict = {"status": None, "stdout": "", "result": None}
    deadline = time.monotonic() + timeout
    idle = False
    while time.monotonic() < deadline and not (idle and out["status"]):
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if kind == "stream" and content.get("name") == "stdout":
            out["stdout"] += content["text"]
        elif kind == "execute_result":
            out["result"] = content["data"].get("text/plain")
        elif kind == "error":
            out["error"] = f"{content['ename']}: {content['evalue']}"
        elif kind == "execute_reply":
            out["status"] = content["status"]
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
    if not out["status"]:
        raise HubFlowError(f"no execute_reply within {timeout} s over the kernel WebSocket")
    return out
