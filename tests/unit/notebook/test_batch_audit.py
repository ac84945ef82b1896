"""run-notebook records its batches through the hub (testbed.batch.audit).

A local HTTP server on a real socket stands in for the hub's
``/jupyter/hub/api/testbed/audit``; each test asserts what reached it (method, path,
token, JSON body) and what the researcher saw on stderr.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from testbed.batch.audit import MAX_EXPERIMENTS, BatchAudit
from testbed.batch.cli import main

TOKEN = "0123456789abcdef0123456789abcdef"
PATH = "/jupyter/hub/api/testbed/audit"


class FakeHub:
    """Answers every POST with ``status`` and ``message``; keeps what it received."""

    def __init__(self):
        self.status, self.message = 201, ""
        self.requests: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(body),
                    }
                )
                if hub.status == 201:
                    answer = json.dumps({"seq": len(hub.requests)})
                else:
                    answer = json.dumps({"status": hub.status, "message": hub.message})
                self.send_response(hub.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.env = {
            "JUPYTERHUB_API_URL": f"http://127.0.0.1:{self.server.server_port}/jupyter/hub/api",
            "JUPYTERHUB_API_TOKEN": TOKEN,
        }

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def random_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub():
    fake = FakeHub()
    yield fake
    fake.close()


def test_start_and_end_reach_the_hub_with_the_servers_token(hub):
    err = io.StringIO()
    audit = BatchAudit(hub.env, err)
    assert audit.start(["exp-001", "exp-002"], notebook="/home/jovyan/nist/a.ipynb", jobs=2)
    assert audit.end(["exp-001", "exp-002"], ok=1, failed=1, output="runs/a/x")
    assert [(r["method"], r["path"]) for r in hub.requests] == [("POST", PATH)] * 2
    assert {r["authorization"] for r in hub.requests} == {f"token {TOKEN}"}
    assert {r["content_type"] for r in hub.requests} == {"application/json"}
    assert [r["body"] for r in hub.requests] == [
        {
            "event": "batch_start",
            "object": ["exp-001", "exp-002"],
            "details": {"notebook": "/home/jovyan/nist/a.ipynb", "jobs": 2},
        },
        {
            "event": "batch_end",
            "object": ["exp-001", "exp-002"],
            "details": {"ok": 1, "failed": 1, "output": "runs/a/x"},
        },
    ]
    assert err.getvalue() == ""


@pytest.mark.parametrize(
    "env",
    [{}, {"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api"}, {"JUPYTERHUB_API_TOKEN": TOKEN}],
)
def test_outside_the_hub_nothing_is_sent_or_said(env):
    err = io.StringIO()
    audit = BatchAudit(env, err)
    assert not audit.enabled
    assert audit.start(["exp-001"]) is False
    assert err.getvalue() == ""


def test_a_long_selection_sends_the_first_ids_and_the_total(hub):
    ids = [f"exp-{i:05d}" for i in range(MAX_EXPERIMENTS + 7)]
    assert BatchAudit(hub.env, io.StringIO()).start(ids, jobs=1)
    (request,) = hub.requests
    assert request["body"]["object"] == ids[:MAX_EXPERIMENTS]
    assert request["body"]["details"] == {"jobs": 1, "experiments_total": MAX_EXPERIMENTS + 7}


def test_a_failing_hub_gives_one_warning_and_the_batch_goes_on(hub):
    hub.status, hub.message = 503, "The hub could not write the audit log"
    err = io.StringIO()
    audit = BatchAudit(hub.env, err)
    assert audit.start(["exp-001"]) is False
    assert audit.end(["exp-001"], ok=1, failed=0) is False
    assert len(hub.requests) == 2  # the end is still offered to the hub
    lines = err.getvalue().splitlines()
    assert lines == [
        "run-notebook: warning: the hub did not record the batch_start (HTTP 503: The hub "
        "could not write the audit log); this batch may be missing from the station's audit "
        "trail, the runs go on"
    ]


def test_auditing_off_is_said_once_and_not_asked_again(hub):
    hub.status, hub.message = 404, "Auditing is off on this hub (jupyterhub_audit_log is '')"
    err = io.StringIO()
    audit = BatchAudit(hub.env, err)
    assert audit.start(["exp-001"]) is False
    assert audit.end(["exp-001"]) is False
    assert len(hub.requests) == 1
    assert err.getvalue().count("warning") == 1
    assert "the hub keeps no audit trail (HTTP 404: Auditing is off" in err.getvalue()


def test_an_unreachable_hub_gives_one_warning():
    port = random_port()  # nothing listens there
    env = {"JUPYTERHUB_API_URL": f"http://127.0.0.1:{port}/hub/api", "JUPYTERHUB_API_TOKEN": "t"}
    err = io.StringIO()
    audit = BatchAudit(env, err, timeout=2)
    assert audit.start(["exp-001"]) is False and audit.end(["exp-001"]) is False
    assert err.getvalue().count("\n") == 1
    assert (
        f"the hub did not record the batch_start (http://127.0.0.1:{port}/hub/api/testbed/audit:"
        in (err.getvalue())
    )


def test_only_an_http_url_is_asked(tmp_path):
    target = tmp_path / "api"
    env = {"JUPYTERHUB_API_URL": f"file://{target}", "JUPYTERHUB_API_TOKEN": "t"}
    err = io.StringIO()
    audit = BatchAudit(env, err)
    assert audit.start(["exp-001"]) is False and audit.end(["exp-001"]) is False
    assert not audit.enabled and not target.exists()
    assert err.getvalue().count("warning") == 1
    assert f"JUPYTERHUB_API_URL is not an http(s) URL ('file://{target}/testbed/audit')" in (
        err.getvalue()
    )


def test_a_proxy_in_the_environment_is_not_used_for_the_hub(hub, monkeypatch):
    dead = f"http://127.0.0.1:{random_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert BatchAudit(hub.env, io.StringIO()).start(["exp-001"])
    assert len(hub.requests) == 1


# -- run-notebook itself -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("testbed_env")
def test_run_notebook_records_its_batch(hub, tmp_path, monkeypatch, capsys):
    for name, value in hub.env.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                'experiment_id = "exp-001"\nfail_on = ""', metadata={"tags": ["parameters"]}
            ),
            nbformat.v4.new_code_cell(
                "if experiment_id == fail_on:\n    raise RuntimeError('deliberate')"
            ),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    argv = [str(path), "-e", "exp-001", "exp-002", "-p", "fail_on", "exp-002"]
    code = main([*argv, "-j", "2", "-o", str(tmp_path / "runs"), "--progress", "lines"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "warning" not in err
    start, end = (r["body"] for r in hub.requests)
    assert start == {
        "event": "batch_start",
        "object": ["exp-001", "exp-002"],
        "details": {"notebook": str(path.resolve()), "jobs": 2},
    }
    assert end["event"] == "batch_end" and end["object"] == ["exp-001", "exp-002"]
    assert end["details"] == {
        "notebook": str(path.resolve()),
        "ok": 1,
        "failed": 1,
        "output": out.strip(),
    }
    assert Path(out.strip()).is_dir()


def test_long_ids_are_cut_to_the_hubs_body_cap_with_the_total():
    from testbed.batch.audit import MAX_BODY_BYTES

    ids = [f"exp-{i:05d}-" + "x" * 180 for i in range(3000)]  # about 580 kB as JSON
    body = BatchAudit.body("batch_end", ids, {"ok": 3000})
    record = json.loads(body)
    assert MAX_BODY_BYTES - 200 < len(body) <= MAX_BODY_BYTES
    n = len(record["object"])
    assert 0 < n < 3000 and record["object"] == ids[:n]
    assert record["details"] == {"ok": 3000, "experiments_total": 3000}
    # one id more would not have fitted
    more = json.dumps({"event": "batch_end", "object": ids[: n + 1], "details": record["details"]})
    assert len(more.encode()) > MAX_BODY_BYTES


def test_the_client_and_the_hub_agree_on_the_caps():
    from testbed.batch import audit
    from testbed_hub import auditing

    assert audit.MAX_BODY_BYTES == auditing.MAX_BODY_BYTES
    assert audit.MAX_EXPERIMENTS == auditing.MAX_EXPERIMENTS
