"""The README's researcher commands run as written, where the README says to run them.

Every fenced block of the README section "Using it (researchers)" is run the
way a researcher would, in Chromium, as a demo user:

- a ``python`` block ("In a notebook") goes, exactly as written, into the one
  cell of a fresh notebook that JupyterLab opens and runs (Run All Cells): no
  error output, and the last expression shows what its comment promises;
- an ``sh`` block ("in a JupyterLab terminal") is typed line by line into a
  terminal opened from JupyterLab's File menu (a login shell in the notebook
  directory, as a researcher gets it); each command exits 0 and no command is
  missing. ``run-notebook`` also has to leave what the README promises: the
  batch folder ``runs/<notebook>/<timestamp>/`` with the summary of the recorded
  values at its top, an executed notebook and its HTML per experiment in its
  ``experiments/``, summary.html links that open the notebook in this JupyterLab
  and the HTML beside it, and summary.ipynb's relative links to both.

The section must hold at least one block of each kind, and every block must be
one of the two kinds, with the place to run it said above it: a README change
cannot make these tests pass by showing nothing they check.

The terminal's output is read from the frames its WebSocket delivers to the
page (what xterm.js draws), so no line is lost to wrapping, scrolling or the
renderer. Both tests work in a JupyterLab workspace of their own, removed
afterwards with the terminal and the kernel; the notebook is deleted when its
test passes, the batch folder ``run-notebook`` wrote stays (the contents API
does not delete a folder that is not empty). Screenshots land in
``artifacts/e2e/readme-*.png``; a failure saves every open page and its
console (conftest.py).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import quote, unquote, urlsplit

import pytest
from conftest import ALICE, REPO, shot
from test_browser import login, wait_kernel_ready, xsrf

SECTION = "## Using it (researchers)"
#: Where the README has to say each kind of block runs, in the text above it.
KINDS = {
    "python": ("in a notebook", re.compile(r"\bin a (?:fresh |new )?notebook\b", re.I)),
    "sh": ("in a JupyterLab terminal", re.compile(r"\bin a JupyterLab terminal\b", re.I)),
}
#: What the comment on a snippet's last line promises -> what its output must hold.
PROMISES = {
    "audio player": ("text/html", "<audio"),
    "DataFrame": ("text/html", "<table"),
}
FENCE = re.compile(r"^([ \t]*)```([^\n`]*)\n(.*?)^\1```[ \t]*$", re.M | re.S)
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, bracketed paste
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window title
    r"|\x1b[()][0-9A-Za-z]|\x1b[=>78DEHMc]"
)
COMMAND_DEADLINE_S = 600
WORKSPACE = "e2e-readme"
BATCH_DIR = r"\d{8}T\d{6}Z(?:-\d+)?"


class ReadmeError(Exception):
    """The README's researcher section is not something these tests can check."""


@dataclass(frozen=True)
class Block:
    kind: str
    number: int  # the n-th block of its kind in the section
    code: str
    line: int  # README line of the opening fence

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.number}"


def researcher_blocks(text: str) -> list[Block]:
    """The fenced blocks of the researcher section, each checked for kind and place."""
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        raise ReadmeError(f"README.md has no section {SECTION!r}")
    start += 1
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end > 0 else len(text)]
    first_line = text.count("\n", 0, start) + 1
    blocks, above_from = [], 0
    for m in FENCE.finditer(section):
        kind, line = m.group(2).strip(), first_line + section.count("\n", 0, m.start())
        above = section[above_from : m.start()]
        above_from = m.end()
        if kind not in KINDS:
            raise ReadmeError(
                f"README.md line {line}: a ```{kind} block in {SECTION!r}; these tests run "
                f"```python blocks in a notebook and ```sh blocks in a JupyterLab terminal: "
                "mark the block as one of them (or move it out of the section)"
            )
        where, said = KINDS[kind]
        if not said.search(above):
            raise ReadmeError(
                f"README.md line {line}: the text above this ```{kind} block does not say "
                f"to run it {where!r}; say where a researcher runs it"
            )
        indent = m.group(1)
        code = "".join(
            ln[len(indent) :] if ln.startswith(indent) else ln
            for ln in m.group(3).splitlines(keepends=True)
        )
        number = 1 + sum(b.kind == kind for b in blocks)
        blocks.append(Block(kind, number, code.rstrip("\n"), line))
    return blocks


def block_params(kind: str) -> list:
    """One parameter per block of ``kind``; a message (the test fails with it) if none."""
    try:
        blocks = researcher_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    except ReadmeError as exc:
        return [pytest.param(str(exc), id="README")]
    mine = [pytest.param(b, id=b.id) for b in blocks if b.kind == kind]
    return mine or [
        pytest.param(
            f"README.md section {SECTION!r} shows no ```{kind} block "
            f"({KINDS[kind][0]}): nothing to check, the README changed",
            id="README",
        )
    ]


def plain(text: str) -> str:
    """Terminal output without escape sequences, with ``\\n`` line ends."""
    return ANSI.sub("", text).replace("\r\n", "\n")


def tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


@dataclass
class Lab:
    """A researcher's JupyterLab in one browser page, and what to clean up after."""

    page: object
    base_url: str
    user: str
    cleanup: list[str] = field(default_factory=list)  # API paths to DELETE at teardown

    def url(self, path: str) -> str:
        return f"{self.base_url}/jupyter/user/{self.user}/{path}"

    def api(self, path: str) -> str:
        return self.url(f"api/{path}")

    def headers(self) -> dict[str, str]:
        return {"X-XSRFToken": xsrf(self.page, self.user), "Content-Type": "application/json"}

    def get_json(self, path: str):
        r = self.page.request.get(self.api(path))
        assert r.status == 200, f"GET {path}: {r.status} {r.text()[:500]}"
        return r.json()

    def listing(self, path: str) -> dict[str, dict]:
        return {i["name"]: i for i in self.get_json(f"contents/{path}")["content"]}

    def text_file(self, path: str) -> str:
        return self.get_json(f"contents/{path}?content=1&type=file&format=text")["content"]


@pytest.fixture
def lab(new_context, base_url, alice):
    page = new_context().new_page()
    login(page, base_url, ALICE, alice)
    env = Lab(page, base_url, alice)
    # A workspace of its own, empty: no tabs restored from, or left for, the user's own.
    page.goto(env.url(f"lab/workspaces/{WORKSPACE}?reset"))
    page.wait_for_selector("#jp-main-dock-panel")
    yield env
    # After the failure report (screenshots) is made: free the kernels and terminals,
    # JupyterLab gone first (reconnecting, it would start a terminal again).
    page.goto("about:blank")
    for path in env.cleanup:
        page.request.delete(env.api(path), headers=env.headers())
    page.request.delete(env.url(f"lab/api/workspaces/{WORKSPACE}"), headers=env.headers())


# --- in a JupyterLab terminal ------------------------------------------------------


class Terminal:
    """A JupyterLab terminal in the page; its output as the WebSocket delivered it."""

    def __init__(self, lab: Lab):
        self.lab, self.page = lab, lab.page
        self.chunks: list[str] = []
        self.name = ""

    def _on_websocket(self, ws) -> None:
        m = re.search(r"/terminals/websocket/([^/?]+)", ws.url)
        if not m or self.name:
            return
        self.name = m.group(1)
        self.lab.cleanup.append(f"terminals/{self.name}")
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        msg = json.loads(payload)
        if isinstance(msg, list) and msg and msg[0] == "stdout":
            self.chunks.append(msg[1])

    @property
    def output(self) -> str:
        return plain("".join(self.chunks))

    def open(self) -> None:
        """File > New > Terminal, then wait for the shell's prompt."""
        self.page.on("websocket", self._on_websocket)
        self.page.click(".lm-MenuBar-itemLabel:text-is('File')")
        self.page.hover(".lm-Menu-itemLabel:text-is('New')")
        self.page.click(".lm-Menu-itemLabel:text-is('Terminal')")
        self.page.locator(".jp-Terminal").first.wait_for(timeout=60_000)
        self.wait_for(
            lambda out: re.search(r"[$#] ?$", out.rstrip("\n")) is not None,
            60,
            "the terminal's shell prompt",
        )
        self.page.locator(".jp-Terminal .xterm").first.click()

    def wait_for(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.output):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what} in the terminal after {timeout:.0f} s; it shows:\n"
                    + tail(self.output)
                )
            self.page.wait_for_timeout(250)  # poll interval; events arrive meanwhile

    def type(self, text: str) -> None:
        for line in text.split("\n"):
            self.page.keyboard.type(line)
            self.page.keyboard.press("Enter")

    def run(self, command: str, number: int) -> tuple[int, str]:
        """Type ``command`` as written, then a line that reports its exit status."""
        start = len(self.output)
        self.type(command)
        self.type(f'echo "__EXIT_{number}__$?"')
        marker = re.compile(rf"__EXIT_{number}__(\d+)")
        self.wait_for(
            lambda out: marker.search(out, start), COMMAND_DEADLINE_S, f"end of {command!r}"
        )
        out = self.output
        m = marker.search(out, start)
        return int(m.group(1)), out[start : m.start()]


def commands(code: str) -> list[str]:
    """The block's commands: its lines, continuation lines (``\\``) kept together."""
    result, current = [], []
    for line in code.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if not line.endswith("\\"):
            result.append("\n".join(current))
            current = []
    if current:
        result.append("\n".join(current))
    return result


def check_run_notebook(lab: Lab, command: str, output: str) -> None:
    """What the README promises of ``run-notebook``: batch folder, runs, summary."""
    args = shlex.split(command.split("#", 1)[0])
    notebook = next(a for a in args[1:] if a.endswith(".ipynb"))
    stem = PurePosixPath(notebook).stem
    printed = re.findall(rf"^(runs/{re.escape(stem)}/{BATCH_DIR})$", output, re.M)
    assert printed, (
        f"{command!r} did not name its batch folder runs/{stem}/<timestamp>:\n{tail(output)}"
    )
    batch = printed[-1]
    assert (
        f"summary: {batch}/summary.ipynb (open it in JupyterLab), also {batch}/summary.csv "
        f"and {batch}/summary.html"
    ) in output, tail(output)
    planned = re.search(r"on (\d+) experiment\(s\)", output)
    assert planned and int(planned.group(1)) > 0, tail(output)

    files = lab.listing(batch)
    assert set(files) == {
        "experiments",
        "summary.csv",
        "summary.html",
        "summary.ipynb",
    }, sorted(files)
    runs = {f"experiments/{name}" for name in lab.listing(f"{batch}/experiments")}
    rows = list(csv.DictReader(io.StringIO(lab.text_file(f"{batch}/summary.csv"))))
    assert len(rows) == int(planned.group(1)), (planned.group(0), len(rows))
    failed = [(r["experiment"], r["error"]) for r in rows if r["status"] != "ok"]
    assert not failed, failed
    links = re.findall(
        r'<a href="([^"]+)" target="_blank">', lab.text_file(f"{batch}/summary.html")
    )
    # summary.ipynb: written by run-notebook, its first cell's Markdown links the
    # runs' files relative to it (JupyterLab opens them in its own tabs)
    summary_nb = json.loads(lab.text_file(f"{batch}/summary.ipynb"))
    assert summary_nb["metadata"]["testbed"] == {"generated_by": "run-notebook"}, summary_nb
    first = summary_nb["cells"][0]
    assert first["cell_type"] == "markdown", first
    md_links = set(re.findall(r"(?<!\\)\]\(([^)\s]+)\)", "".join(first["source"])))
    assert {unquote(link) for link in md_links} <= runs, (sorted(md_links)[:4], sorted(runs))
    for row in rows:
        assert {row["notebook"], row["html"]} <= runs, (row, sorted(runs))
        assert row["notebook"].endswith(".ipynb") and row["html"].endswith(".html"), row
        # the notebook opens in this JupyterLab, the HTML by a link relative to the summary
        tree = urlsplit(lab.url(f"lab/tree/{quote(batch)}/{row['notebook']}")).path
        assert {tree, row["html"]} <= set(links), (row, links[:4])
        assert {quote(row["notebook"]), quote(row["html"])} <= md_links, (row, md_links)
    # The values each run recorded with testbed.record(name, value).
    source = lab.text_file(notebook)
    if "record(" in source:
        fixed = {"experiment", "status", "run_duration_s", "error", "notebook", "html", "attempts"}
        recorded = [c for c in rows[0] if c not in fixed]
        assert recorded, f"summary.csv of {batch} has no recorded values: {list(rows[0])}"
        empty = [(r["experiment"], c) for r in rows for c in recorded if r[c] == ""]
        assert not empty, f"runs without a recorded value in {batch}/summary.csv: {empty[:10]}"


@pytest.mark.parametrize("block", block_params("sh"))
def test_terminal_block_runs_as_written(lab, block):
    if isinstance(block, str):
        pytest.fail(block)
    term = Terminal(lab)
    term.open()
    for number, command in enumerate(commands(block.code), start=1):
        status, output = term.run(command, number)
        shot(lab.page, f"readme-terminal-{block.id}-{number}")
        assert "command not found" not in output, (
            f"README.md line {block.line}: {command!r} in a JupyterLab terminal:\n{tail(output)}"
        )
        assert status == 0, (
            f"README.md line {block.line}: {command!r} exited {status} in a JupyterLab "
            f"terminal:\n{tail(output)}"
        )
        if shlex.split(command)[0] == "run-notebook":
            check_run_notebook(lab, command, output)


# --- in a notebook ---------------------------------------------------------------


def fresh_notebook(lab: Lab, code: str, name: str) -> str:
    """A new notebook in the notebook directory whose one cell is ``code``."""
    specs = lab.get_json("kernelspecs")
    kernel = specs["kernelspecs"][specs["default"]]["spec"]
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "readme-snippet",
                "metadata": {},
                "outputs": [],
                "source": code,
            }
        ],
        "metadata": {
            "kernelspec": {
                "name": specs["default"],
                "display_name": kernel["display_name"],
                "language": kernel["language"],
            },
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    r = lab.page.request.put(
        lab.api(f"contents/{name}"),
        data={"type": "notebook", "format": "json", "content": nb},
        headers=lab.headers(),
    )
    assert r.status in (200, 201), f"create {name}: {r.status} {r.text()[:500]}"
    return name


def promised(code: str) -> tuple[str, str] | None:
    """What the comment on the last line promises the cell shows, if it says anything.

    ``(mime type, text in it)`` for a promise in PROMISES, ``("", "")`` for another
    comment on a last expression (some display), None for no promise.
    """
    last = ast.parse(code).body[-1]
    line = code.splitlines()[last.end_lineno - 1]
    comment = line.split("#", 1)[1].strip() if "#" in line else ""
    if not isinstance(last, ast.Expr) or not comment:
        return None
    for words, expected in PROMISES.items():
        if words.lower() in comment.lower():
            return expected
    return ("", "")


@pytest.mark.parametrize("block", block_params("python"))
def test_notebook_block_runs_as_written(lab, block):
    if isinstance(block, str):
        pytest.fail(block)
    page, user = lab.page, lab.user
    path = fresh_notebook(
        lab, block.code, f"readme-{block.id}-{time.strftime('%Y%m%dT%H%M%S')}.ipynb"
    )
    page.goto(lab.url(f"lab/workspaces/{WORKSPACE}/tree/{path}?reset"))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(timeout=120_000)
    wait_kernel_ready(page, lab.base_url, user, path)
    sessions = [s for s in lab.get_json("sessions") if s.get("path") == path]
    lab.cleanup.extend(f"sessions/{s['id']}" for s in sessions)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    # Done when every code cell shows an execution count ("[*]" while it runs).
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll("
        "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];"
        " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }",
        timeout=COMMAND_DEADLINE_S * 1000,
    )
    panel.locator(".jp-Cell").first.evaluate("e => e.scrollIntoView()")
    shot(page, f"readme-notebook-{block.id}")
    # What the notebook holds once saved, as a researcher would keep it. (In the
    # page, an error output is drawn like any stderr text: the file tells them apart.)
    page.keyboard.press("Control+s")
    page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)
    cell = lab.get_json(f"contents/{path}?content=1")["content"]["cells"][0]
    assert cell["source"] == block.code, "the cell does not hold the README's block as written"
    assert cell["execution_count"] is not None, cell
    errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
    assert not errors, (
        f"README.md line {block.line}, run in a fresh notebook:\n{block.code}\n\n"
        + tail(plain("\n".join(errors[0]["traceback"])))
    )
    expected = promised(block.code)
    if expected is not None:
        results = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
        assert results, (
            f"README.md line {block.line}: the last expression showed nothing: {cell['outputs']}"
        )
        mime, text = expected
        if mime:
            shown = results[-1]["data"].get(mime, "")
            shown = "".join(shown) if isinstance(shown, list) else shown
            assert text in shown, (
                f"README.md line {block.line}: the last line promises {text!r} in its "
                f"{mime} output; it showed: {json.dumps(results[-1]['data'])[:1000]}"
            )
            if text == "<audio":
                assert panel.locator(".jp-OutputArea-output audio").count() >= 1
    r = page.request.delete(lab.api(f"contents/{path}"), headers=lab.headers())
    assert r.status == 204, f"delete {path}: {r.status}"
