"""What the hub writes to the audit trail (testbed_hub.auditing), in a real hub.

A MockTestbedHub (conftest's ``restart_hub``) with ``TestbedHub.audit_log`` set takes
logins, refusals and logouts through the header login as nginx forwards them
(``X-Real-IP`` = the browser's address), and ``POST /hub/api/testbed/audit`` with a
server's API token; each test reads the log file back and checks the chain with
``testbed_hub.audit.verify``. The spawner's server_start / server_stop records are
checked on a TestbedDockerSpawner whose Docker calls are replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest
import pytest_asyncio
from jupyterhub.utils import random_port
from traitlets.config import Config

from testbed_hub.audit import records, verify
from testbed_hub.auditing import (
    MAX_BODY_BYTES,
    MAX_DETAILS_BYTES,
    MAX_EXPERIMENTS,
    SETTING,
    FloodGuard,
    HubAudit,
)
from testbed_hub.auth import username_for

from .conftest import HubClient

pytestmark = pytest.mark.asyncio

BROWSER = "192.0.2.10"
ALICE = "Alice@Example.org"
ALICE_ID = "alice@example.org"  # the canonical testbed identity (case folded)
ALICE_NAME = username_for(ALICE, fold_case=True)


@pytest_asyncio.fixture
async def audit_hub(restart_hub, tmp_path):
    """A hub that audits to tmp_path/log/audit.log; ue-09 blocked, ue-05 not allowed."""
    path = tmp_path / "log" / "audit.log"

    def configure(c):
        c.TestbedHub.audit_log = str(path)
        c.Authenticator.allow_all = False
        c.Authenticator.allowed_users = {"ue-01", "ue-02", ALICE_NAME}
        c.Authenticator.blocked_users = {"ue-09"}

    app = await restart_hub(configure)
    app.audit_path = path
    return app


def read(app) -> list[dict]:
    return records(app.audit_path) if app.audit_path.exists() else []


def brief(record: dict) -> tuple:
    return (record["event"], record["identity"], record["user"], record["source"])


def browser(app) -> HubClient:
    client = HubClient(app)
    plain = client.headers

    def headers(identity=None, secret=None, **extra):
        h = plain(identity, secret if secret is not None else _secret(), **extra)
        h.setdefault("X-Real-IP", BROWSER)  # nginx: proxy_set_header X-Real-IP $remote_addr
        return h

    client.headers = headers
    return client


def _secret():
    from .conftest import SECRET

    return SECRET


# -- logins, refusals, logouts ----------------------------------------------------------


async def test_a_login_records_the_testbed_identity_the_hub_name_and_the_browser(audit_hub):
    client = browser(audit_hub)
    r = await client.get("login", identity=ALICE)
    assert r.status_code == 302
    (login,) = read(audit_hub)
    assert brief(login) == ("login", ALICE_ID, ALICE_NAME, BROWSER)
    assert login["object"] is None and login["seq"] == 1
    assert verify(audit_hub.audit_path).ok


@pytest.mark.parametrize(("identity", "reason"), [("ue-05", "not allowed"), ("ue-09", "blocked")])
async def test_a_refused_login_says_who_and_why(audit_hub, identity, reason):
    r = await browser(audit_hub).get("login", identity=identity)
    assert r.status_code == 403
    (refused,) = read(audit_hub)
    assert brief(refused) == ("login_refused", identity, identity, BROWSER)
    assert refused["details"] == {"reason": reason}


async def test_a_wrong_secret_is_refused_without_believing_the_identity(audit_hub):
    client = browser(audit_hub)
    r = await client.get("login", identity="ue-01", secret="x" * 40)
    assert r.status_code == 302 and r.headers["Location"].startswith("/auth/login?")
    (refused,) = read(audit_hub)
    assert brief(refused) == ("login_refused", "(none)", None, BROWSER)
    assert refused["details"] == {"reason": "wrong X-Testbed-Hub-Secret header"}


async def test_no_headers_yet_is_no_refusal(audit_hub):
    """The first visit before the testbed login carries no headers: nothing to record."""
    client = browser(audit_hub)
    headers = {"X-Forwarded-Host": "bs.example", "X-Real-IP": BROWSER}
    r = await client.session.get(client.base + "login", headers=headers, allow_redirects=False)
    assert r.status_code == 302
    assert read(audit_hub) == []


async def test_a_redirect_loop_is_a_refused_login(audit_hub):
    client = browser(audit_hub)
    headers = {"X-Forwarded-Host": "bs.example", "X-Real-IP": BROWSER}
    codes = []
    for _ in range(3):  # max_login_redirects 2: the third visit is refused
        r = await client.session.get(client.base + "login", headers=headers, allow_redirects=False)
        codes.append(r.status_code)
    assert codes == [302, 302, 403]
    (refused,) = read(audit_hub)
    assert brief(refused) == ("login_refused", "(none)", None, BROWSER)
    assert refused["details"] == {"reason": "no valid header pair after 2 redirects"}


async def test_a_logout_is_recorded_after_the_login(audit_hub):
    client = browser(audit_hub)
    assert (await client.get("login", identity="ue-01")).status_code == 302
    r = await client.get("logout", identity="ue-01")
    assert r.status_code == 302
    assert [brief(x) for x in read(audit_hub)] == [
        ("login", "ue-01", "ue-01", BROWSER),
        ("logout", "ue-01", "ue-01", BROWSER),
    ]
    assert verify(audit_hub.audit_path).records == 2


# -- POST /hub/api/testbed/audit --------------------------------------------------------


def server_token(app, name: str) -> str:
    """A token with the scopes JupyterHub gives a server's JUPYTERHUB_API_TOKEN (the
    ``server`` role: users:activity!user, access:servers!server)."""
    return app.users[name].new_api_token(
        scopes=["users:activity!user", f"access:servers!server={name}/"]
    )


async def post(app, body, token=None, raw=None):
    client = HubClient(app)
    headers = {"Authorization": f"token {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    return await client.session.post(
        client.base + "api/testbed/audit", data=data, headers=headers, allow_redirects=False
    )


async def test_a_server_records_a_batch_as_its_own_user(audit_hub):
    await browser(audit_hub).get("login", identity=ALICE)  # the hub learns the identity
    token = server_token(audit_hub, ALICE_NAME)
    body = {"event": "batch_start", "object": ["exp-001", "exp-002"], "details": {"jobs": 2}}
    r = await post(audit_hub, body, token)
    assert r.status_code == 201, r.text
    login, batch = read(audit_hub)
    assert r.json() == {"seq": batch["seq"]} and batch["seq"] == 2
    assert brief(batch) == ("batch_start", ALICE_ID, ALICE_NAME, "127.0.0.1")
    assert batch["object"] == ["exp-001", "exp-002"] and batch["details"] == {"jobs": 2}
    end = {"event": "batch_end", "object": ["exp-001"], "details": {"ok": 1, "failed": 0}}
    assert (await post(audit_hub, end, token)).status_code == 201
    assert verify(audit_hub.audit_path).records == 3


async def test_one_users_token_writes_only_that_users_records(audit_hub):
    """No field of the body chooses identity, user or source."""
    token = server_token(audit_hub, "ue-02")
    forged = {"event": "batch_start", "object": [], "user": "ue-01", "identity": "ue-01"}
    r = await post(audit_hub, forged, token)
    assert r.status_code == 400
    assert "Unknown field(s) identity, user" in r.json()["message"]
    r = await post(audit_hub, {"event": "batch_start", "object": []}, token)
    assert r.status_code == 201
    assert [brief(x)[:3] for x in read(audit_hub)] == [("batch_start", "ue-02", "ue-02")]


async def test_a_token_without_the_activity_scope_is_refused(audit_hub):
    token = audit_hub.users["ue-01"].new_api_token(scopes=["read:users:name!user"])
    r = await post(audit_hub, {"event": "batch_start", "object": []}, token)
    assert r.status_code == 403
    assert "may not record activity of ue-01" in r.json()["message"]
    assert (await post(audit_hub, {"event": "batch_start", "object": []})).status_code == 403
    assert read(audit_hub) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event": "login", "object": []}, "event 'login' is not one a server may record"),
        ({"object": []}, "event None is not one a server may record: use batch_start or"),
        ({"event": "batch_end", "object": "exp-001"}, "object must be a list of experiment ids"),
        ({"event": "batch_end", "object": [""]}, "object must be a list of experiment ids"),
        ({"event": "batch_end", "object": ["e" * 201]}, "(text of 1 to 200 characters)"),
        ({"event": "batch_end", "object": [1]}, "object must be a list of experiment ids"),
        (
            {"event": "batch_end", "object": ["e"] * (MAX_EXPERIMENTS + 1)},
            f"object lists {MAX_EXPERIMENTS + 1} experiment ids, more than {MAX_EXPERIMENTS}",
        ),
        ({"event": "batch_end", "object": [], "details": [1]}, "details must be a JSON object"),
        (
            {"event": "batch_end", "object": [], "details": {"x": "y" * MAX_DETAILS_BYTES}},
            f"more than {MAX_DETAILS_BYTES}",
        ),
        (["batch_start"], "Send a JSON object"),
    ],
)
async def test_a_bad_body_is_refused_with_what_is_wrong(audit_hub, body, message):
    r = await post(audit_hub, body, server_token(audit_hub, "ue-01"))
    assert r.status_code == 400
    assert message in r.json()["message"]
    assert read(audit_hub) == []


async def test_a_body_that_is_not_json_is_refused(audit_hub):
    r = await post(audit_hub, None, server_token(audit_hub, "ue-01"), raw="{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["message"]


async def test_a_failed_write_is_503_and_logged_with_the_record(audit_hub, tmp_path):
    audit: HubAudit = audit_hub.tornado_settings[SETTING]
    (tmp_path / "file").write_text("")
    from testbed_hub.audit import AuditLog

    audit.audit = AuditLog(tmp_path / "file" / "audit.log")  # its folder is a file
    audit.path = str(audit.audit.path)
    seen = []
    handler = logging.Handler(logging.ERROR)
    # the hub's own records only (its access log formats its arguments itself)
    handler.addFilter(lambda rec: rec.pathname.endswith("auditing.py"))
    handler.emit = lambda rec: seen.append(rec.getMessage())
    audit.log.addHandler(handler)
    try:
        body = {"event": "batch_start", "object": ["exp-007"]}
        r = await post(audit_hub, body, server_token(audit_hub, "ue-01"))
        # a login goes on working while the log cannot be written
        login = await browser(audit_hub).get("login", identity="ue-01")
    finally:
        audit.log.removeHandler(handler)
    assert r.status_code == 503 and "could not write the audit log" in r.json()["message"]
    assert login.status_code == 302
    assert len(seen) == 2
    assert seen[0].startswith(f"Audit log {audit.path}: the batch_start record was NOT written")
    assert '"object": ["exp-007"]' in seen[0] and '"user": "ue-01"' in seen[0]
    assert "the login record was NOT written" in seen[1]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_guard(app, burst=3, per_minute=6) -> Clock:
    """Give the hub's audit a guard of ``burst`` and ``per_minute`` on a fake clock."""
    clock = Clock()
    app.tornado_settings[SETTING].guard = FloodGuard(burst, per_minute, clock=clock)
    return clock


async def test_a_flood_of_refused_logins_from_one_source_is_counted_not_written(audit_hub):
    clock = fake_guard(audit_hub)
    # ten browsers without cookies: each request is one refusal
    codes = [
        (await browser(audit_hub).get("login", identity="ue-01", secret="x" * 40)).status_code
        for _ in range(10)
    ]
    # every request is refused (sent to the testbed login) as before; 3 lines are written
    assert set(codes) == {302}
    client = browser(audit_hub)
    assert [r["event"] for r in read(audit_hub)] == ["login_refused"] * 3
    # another source has its own allowance
    other = await client.get(
        "login", headers=client.headers("ue-05", **{"X-Real-IP": "192.0.2.99"})
    )
    assert other.status_code == 403
    assert read(audit_hub)[-1]["source"] == "192.0.2.99"
    # 10 s later (6 per minute) one more is written, with the count of those left out
    clock.now += 10
    await client.get("login", identity="ue-09")
    last = read(audit_hub)[-1]
    assert brief(last) == ("login_refused", "ue-09", "ue-09", BROWSER)
    assert last["details"] == {"reason": "blocked", "suppressed": 7}
    assert verify(audit_hub.audit_path).ok
    # a good login is never held back
    assert (await client.get("login", identity="ue-01")).status_code == 302
    assert read(audit_hub)[-1]["event"] == "login"


async def test_batch_records_beyond_the_allowance_are_429_with_retry_after(audit_hub):
    clock = fake_guard(audit_hub, burst=2, per_minute=6)
    token = server_token(audit_hub, "ue-01")
    body = {"event": "batch_start", "object": ["exp-001"]}
    codes = [(await post(audit_hub, body, token)).status_code for _ in range(2)]
    r = await post(audit_hub, body, token)
    assert codes == [201, 201] and r.status_code == 429
    assert r.headers["Retry-After"] == "10"
    assert "More than 2 batch records in a row from ue-01: not recorded" in r.json()["message"]
    # another user's server is not held back by ue-01's
    assert (await post(audit_hub, body, server_token(audit_hub, "ue-02"))).status_code == 201
    clock.now += 10
    assert (await post(audit_hub, body, token)).status_code == 201
    assert [x["user"] for x in read(audit_hub)] == ["ue-01", "ue-01", "ue-02", "ue-01"]


async def test_a_body_over_the_cap_is_413_before_it_is_read(audit_hub):
    ids = ["e" * 100] * (MAX_BODY_BYTES // 100)
    r = await post(
        audit_hub, {"event": "batch_end", "object": ids}, server_token(audit_hub, "ue-01")
    )
    assert r.status_code == 413
    assert f"more than {MAX_BODY_BYTES}: send the first experiment ids" in r.json()["message"]
    assert read(audit_hub) == []


async def test_a_held_lock_neither_holds_a_login_nor_loses_its_record(audit_hub):
    """The log's lock held (a verify reading every rotated file, a stuck rotation):
    after the hub's wait the login goes on and a batch record is answered 202; both
    records stay queued and are written, in order, once the lock frees."""
    import fcntl
    import os
    import time

    from testbed_hub.audit.log import lock_path

    audit: HubAudit = audit_hub.tornado_settings[SETTING]
    audit.wait_s = 0.3
    audit_hub.audit_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(audit_hub.audit_path), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as verify and report hold it
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.addFilter(lambda rec: rec.pathname.endswith("auditing.py"))
    handler.emit = lambda rec: seen.append(rec.getMessage())
    audit.log.addHandler(handler)
    try:
        started = time.monotonic()
        login = await browser(audit_hub).get("login", identity="ue-01")
        took = time.monotonic() - started
        body = {"event": "batch_start", "object": ["exp-001"]}
        batch = await post(audit_hub, body, server_token(audit_hub, "ue-01"))
        assert read(audit_hub) == []  # nothing written while the lock is held
    finally:
        os.close(fd)
        audit.log.removeHandler(handler)
    assert login.status_code == 302 and 0.3 <= took < 3, took
    assert batch.status_code == 202 and batch.json() == {"seq": None}
    assert len(seen) == 2 and "the login record of ue-01 waits for the log" in seen[0]
    deadline = time.monotonic() + 10
    while len(read(audit_hub)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [brief(r)[:3] for r in read(audit_hub)] == [
        ("login", "ue-01", "ue-01"),
        ("batch_start", "ue-01", "ue-01"),
    ]
    assert verify(audit_hub.audit_path).ok


async def test_auditing_off_answers_404_and_writes_nothing(restart_hub, tmp_path):
    app = await restart_hub(lambda c: None)
    assert app.audit_log == ""
    assert (await browser(app).get("login", identity="ue-01")).status_code == 302
    r = await post(app, {"event": "batch_start", "object": []}, server_token(app, "ue-01"))
    assert r.status_code == 404 and "Auditing is off" in r.json()["message"]
    assert list(tmp_path.rglob("audit.log*")) == []


# -- the source address -----------------------------------------------------------------


def request(peer: str, real_ip: str):
    """A tornado request as seen after xheaders: remote_ip from X-Real-IP, the peer kept."""
    context = SimpleNamespace(_orig_remote_ip=peer)
    return SimpleNamespace(remote_ip=real_ip, connection=SimpleNamespace(context=context))


@pytest.mark.parametrize(
    ("peer", "real_ip", "source"),
    [
        ("127.0.0.1", BROWSER, BROWSER),  # nginx -> CHP -> hub on loopback
        ("172.30.0.1", BROWSER, BROWSER),  # CHP -> the hub's gateway address
        ("172.30.0.5", "10.9.9.9", "172.30.0.5"),  # a container sets X-Real-IP itself
        ("172.30.0.5", "172.30.0.5", "172.30.0.5"),
        ("127.0.0.1", "not-an-ip", None),
    ],
)
def test_the_source_is_believed_from_the_stations_proxy_only(peer, real_ip, source):
    audit = HubAudit("", {"127.0.0.1", "172.30.0.1"})
    assert audit.source_of(request(peer, real_ip)) == source


def test_the_hub_passes_its_own_addresses():
    from testbed_hub.app import TestbedHub

    hub = TestbedHub(
        hub_bind_url="http://127.0.0.1:8081",
        hub_connect_url="http://172.30.0.1:8081",
        extra_hub_bind_urls=["http://172.30.0.1:8081"],
    )
    assert hub.hub_addresses() == {"127.0.0.1", "172.30.0.1"}


def test_a_relative_audit_log_is_refused_by_the_hub():
    from testbed_hub.app import TestbedHub

    with pytest.raises(ValueError, match="must be an absolute path"):
        TestbedHub(audit_log="audit.log")


# -- server_start / server_stop (TestbedDockerSpawner) -------------------------------


@pytest_asyncio.fixture
async def docker_free(monkeypatch):
    """DockerSpawner's start and stop replaced: start 'runs' a port that answers."""
    from dockerspawner import DockerSpawner

    port = random_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    stopped = []

    async def start(self):
        return "127.0.0.1", port

    async def stop(self, now=False):
        stopped.append(self.name)

    monkeypatch.setattr(DockerSpawner, "start", start)
    monkeypatch.setattr(DockerSpawner, "stop", stop)
    yield stopped
    server.close()


def spawner(path, name="", handler=None):
    from testbed_hub.spawner import TestbedDockerSpawner

    c = Config()
    c.DockerSpawner.image = "testbed-hub/notebook:abc123"
    audit = HubAudit(str(path), {"127.0.0.1"})
    user = SimpleNamespace(name=ALICE_NAME, id=1, url="/u/", settings={SETTING: audit})
    auth = SimpleNamespace(identity_of=lambda u: {ALICE_NAME: ALICE_ID}.get(u.name, u.name))
    orm_spawner = SimpleNamespace(name=name, user_options={}, server=None)  # for Spawner.name
    s = TestbedDockerSpawner(config=c, user=user, authenticator=auth, orm_spawner=orm_spawner)
    s.handler = handler
    return s


async def test_a_start_through_a_request_and_a_stop_by_the_culler(tmp_path, docker_free):
    path = tmp_path / "audit.log"
    admin = SimpleNamespace(name="ops-admin")
    handler = SimpleNamespace(request=request("127.0.0.1", BROWSER), current_user=admin)
    s = spawner(path, name="analysis", handler=handler)
    s.profile = "large"
    await s.start()
    s.handler = None  # JupyterHub drops it after the start; the culler's stop has none
    await s.stop()
    start, stop = records(path)
    assert brief(start) == ("server_start", ALICE_ID, ALICE_NAME, BROWSER)
    assert start["object"] == "analysis"
    assert start["details"] == {"image": "notebook:abc123", "profile": "large"} | {
        "requested_by": "ops-admin"
    }
    assert brief(stop) == ("server_stop", ALICE_ID, ALICE_NAME, None)
    assert stop["object"] == "analysis" and stop["details"] == {"image": "notebook:abc123"}
    assert docker_free == ["analysis"]


async def test_the_identity_outlives_a_hub_restart_in_the_spawners_state(tmp_path, docker_free):
    """allow_all: the authenticator learns identities from logins only. A server started
    before a restart and stopped by the culler after it is recorded with the testbed
    identity, read back from the spawner's state, not the mapped hub name."""
    from testbed_hub.auth import HeaderAuthenticator

    path = tmp_path / "audit.log"
    before = HeaderAuthenticator()
    before.remember_identity(ALICE_ID)  # Alice logged in
    s = spawner(path, name="analysis")
    s.authenticator = before
    await s.start()
    state = s.get_state()
    assert state["testbed_identity"] == ALICE_ID

    after = HeaderAuthenticator()  # the hub restarted: nobody has logged in since
    assert after.identity_of(ALICE_NAME) == ALICE_NAME
    s2 = spawner(path, name="analysis")
    s2.authenticator = after
    s2.load_state(state)
    assert after.identity_of(ALICE_NAME) == ALICE_ID
    await s2.stop()
    assert brief(records(path)[-1]) == ("server_stop", ALICE_ID, ALICE_NAME, None)


@pytest.mark.parametrize(
    ("known", "stored", "shown"),
    [
        ({ALICE_NAME: "alice@example.org"}, "ALICE@example.org", "alice@example.org"),
        ({}, "bob@example.org", ALICE_NAME),  # another user's identity: not believed
        ({}, 42, ALICE_NAME),
    ],
    ids=["a_login_since_wins", "another_users", "not_text"],
)
async def test_a_stored_identity_never_overrides_a_known_one_or_another_users(known, stored, shown):
    from testbed_hub.auth import HeaderAuthenticator

    auth = HeaderAuthenticator()
    auth.known_identities.update(known)
    s = spawner("", name="")
    s.authenticator = auth
    s.load_state({"started_image": "testbed-hub/notebook:abc123", "testbed_identity": stored})
    assert auth.identity_of(ALICE_NAME) == shown


async def test_no_identity_is_stored_for_a_stopped_server_or_an_unknown_one():
    from testbed_hub.auth import HeaderAuthenticator

    auth = HeaderAuthenticator()
    s = spawner("", name="")
    s.authenticator = auth
    assert "testbed_identity" not in s.get_state()  # not started
    s.started_image = "testbed-hub/notebook:abc123"
    assert "testbed_identity" not in s.get_state()  # the hub does not know it


async def test_the_default_server_is_the_empty_name(tmp_path, docker_free):
    path = tmp_path / "audit.log"
    s = spawner(path, handler=None)
    await s.start()
    (start,) = records(path)
    assert start["object"] == "" and start["source"] is None
    assert "requested_by" not in start["details"]


async def test_a_failed_write_does_not_stop_the_start(tmp_path, docker_free):
    (tmp_path / "file").write_text("")
    s = spawner(tmp_path / "file" / "audit.log")
    assert (await s.start())[0] == "127.0.0.1"
    await s.stop()
    assert docker_free == [""]
