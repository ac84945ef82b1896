"""A researcher in Chromium: testbed login -> JupyterLab -> a demo notebook runs.

Chromium from Debian (``/usr/bin/chromium``) driven by Playwright; screenshots
of each step land in ``artifacts/e2e/`` (and of the failing page, with its
console, when a test fails: see conftest.py).
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import ALICE, BOB, CAROL, in_instance, open_context, shot

DEMO = "share/demo-notebooks/03-audio.ipynb"


def login(page, base_url: str, user: str, username: str) -> None:
    """Open the hub URL, land on the testbed login, log in, arrive in JupyterLab."""
    page.goto(f"{base_url}/jupyter/")
    assert urlsplit(page.url).path == "/auth/login", page.url
    nxt = parse_qs(urlsplit(page.url).query)["next"][0]
    assert nxt == f"{base_url}/jupyter/", nxt
    page.fill("input[name=username]", user)
    page.click("button[type=submit]")
    lab = re.compile(rf"/jupyter/user/{re.escape(username)}/lab")
    # With a choice (an earlier notebook image kept, resource profiles), the hub
    # shows its spawn form first: press Start with what it preselects.
    page.wait_for_url(re.compile(rf"{lab.pattern}|/jupyter/hub/spawn(/|$|\?)"), timeout=120_000)
    if not lab.search(page.url):
        shot(page, "01b-spawn-form")
        page.click("#spawn_form [type=submit]")
    page.wait_for_url(lab, timeout=120_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)


def wait_kernel_ready(page, base_url: str, username: str, path: str, timeout: float = 180):
    """Wait until the notebook's kernel is really usable, not just labelled so.

    The server's view (REST API): a session for ``path`` whose kernel is idle and
    has a WebSocket connection (the browser's); then JupyterLab's own view: the
    notebook's execution indicator says idle.
    """
    url = f"{base_url}/jupyter/user/{username}/api/sessions"
    deadline = time.monotonic() + timeout
    while True:
        r = page.request.get(url)
        last = f"{r.status} {r.text()[:500]}"
        if r.status == 200:
            kernels = [
                s["kernel"]
                for s in r.json()
                if path in (s.get("path"), (s.get("notebook") or {}).get("path"))
                and s.get("kernel")
            ]
            if any(
                k.get("execution_state") == "idle" and k.get("connections", 0) >= 1 for k in kernels
            ):
                break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the kernel of {path} is not idle with a connection after {timeout} s: {last}"
            )
        page.wait_for_timeout(500)  # poll interval; the page keeps running meanwhile
    remaining_ms = max(1.0, deadline - time.monotonic()) * 1000
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=remaining_ms
    )


def xsrf(page, username: str) -> str:
    cookies = [c for c in page.context.cookies() if c["name"] == "_xsrf"]
    cookies.sort(key=lambda c: not c["path"].startswith(f"/jupyter/user/{username}"))
    return cookies[0]["value"]


def contents(page, base_url: str, username: str, path: str = "") -> list[str]:
    r = page.request.get(f"{base_url}/jupyter/user/{username}/api/contents/{path}")
    assert r.status == 200, r.text()
    return sorted(item["name"] for item in r.json()["content"])


@pytest.fixture(scope="module")
def alice_page(browser, base_url, alice):
    ctx = open_context(browser)
    page = ctx.new_page()
    page.goto(f"{base_url}/jupyter/")
    shot(page, "01-testbed-login")
    login(page, base_url, ALICE, alice)
    shot(page, "02-jupyterlab")
    yield page
    ctx.close()


@pytest.fixture(scope="module")
def copied_notebook(alice_page, base_url, alice) -> str:
    page = alice_page
    r = page.request.post(
        f"{base_url}/jupyter/user/{alice}/api/contents",
        data={"copy_from": DEMO},
        headers={"X-XSRFToken": xsrf(page, alice), "Content-Type": "application/json"},
    )
    assert r.status == 201, f"copy {DEMO}: {r.status} {r.text()}"
    return r.json()["path"]


def test_demo_notebook_runs_with_plot_and_audio(alice_page, copied_notebook, base_url, alice):
    page = alice_page
    # ?reset: a fresh workspace (no tabs restored from an earlier session).
    page.goto(f"{base_url}/jupyter/user/{alice}/lab/tree/{copied_notebook}?reset")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(timeout=120_000)
    # Wait for the kernel to be connected and idle, then Run > Run All Cells.
    wait_kernel_ready(page, base_url, alice, copied_notebook)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    # Cells below the fold are kept in the DOM but not painted: wait for
    # "attached", then scroll the player into view for the screenshot.
    panel.locator("audio").first.wait_for(state="attached", timeout=180_000)
    panel.locator(".jp-OutputArea-output img").first.wait_for(state="attached", timeout=180_000)
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-InputPrompt')]"
        ".some(e => e.textContent.includes('[*]'))",
        timeout=180_000,
    )
    plot = panel.locator(".jp-OutputArea-output img").first
    plot.evaluate("e => e.scrollIntoView()")
    plot.wait_for(state="visible")
    shot(page, "03-demo-notebook-plot")
    player = panel.locator("audio").first
    player.evaluate("a => a.closest('.jp-Cell').scrollIntoView()")
    player.wait_for(state="visible")
    shot(page, "03-demo-notebook-ran")
    assert panel.locator(".jp-OutputArea-output img").count() >= 1
    audio = panel.locator("audio")
    assert audio.count() >= 1
    src = audio.first.evaluate("a => a.querySelector('source')?.src || a.src")
    assert src.startswith("data:audio/wav"), src[:60]
    busy = [p for p in panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts() if "*" in p]
    assert busy == [], busy
    # Save from the UI, then read the file back: every code cell ran, in order.
    page.keyboard.press("Control+s")
    page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)
    r = page.request.get(
        f"{base_url}/jupyter/user/{alice}/api/contents/{copied_notebook}?content=1"
    )
    cells = [c for c in r.json()["content"]["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells]
    assert None not in counts and counts == sorted(counts), counts
    # JupyterLab 4 draws tracebacks as stderr on the page: the saved file says
    # for certain whether a cell raised.
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == [], [(e["ename"], e["evalue"]) for e in errors]
    mimes = {m for c in cells for o in c["outputs"] for m in o.get("data", {})}
    assert {"image/png", "text/html"} <= mimes, mimes


def test_a_batch_summary_opens_each_experiments_notebook_in_jupyterlab(alice_page, base_url, alice):
    """run-notebook in alice's server, then in her JupyterLab: the batch folder's
    summary.ipynb lists the runs, and clicking an experiment opens its executed notebook
    in a JupyterLab tab (no "refused to connect" frame, no Trust HTML needed)."""
    page = alice_page
    run = in_instance(
        f"docker exec -u jovyan -w /home/jovyan/nist jupyter-{alice} run-notebook "
        "share/demo-notebooks/02-ptt-performance.ipynb -e exp-001 -e exp-002 -o e2e-runs"
    )
    batch = run.stdout.strip().splitlines()[-1]  # stdout: the batch folder only
    assert batch.startswith("e2e-runs/"), run.stdout
    assert "summary.ipynb" in run.stderr, run.stderr[-500:]
    page.goto(f"{base_url}/jupyter/user/{alice}/lab/tree/{batch}/summary.ipynb?reset")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    table = panel.locator(".jp-MarkdownOutput table")
    table.wait_for(timeout=120_000)
    shot(page, "10-batch-summary")
    rows = table.locator("tbody tr")
    assert rows.count() == 2, table.inner_text()
    assert "ok" in rows.first.inner_text()
    table.locator("a", has_text="exp-002").first.click()
    # JupyterLab opens the executed notebook in a new tab of the same page
    tab = page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    tab.filter(has_text="exp-002.ipynb").wait_for(timeout=60_000)
    opened = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    opened.locator(".jp-Cell").first.wait_for(timeout=60_000)
    assert "refused to connect" not in page.content()
    shot(page, "11-batch-experiment-opened")
    in_instance(f"docker exec -u jovyan jupyter-{alice} rm -rf /home/jovyan/nist/e2e-runs")


def test_second_user_sees_only_their_own_files(
    alice_page, copied_notebook, new_context, base_url, alice, bob
):
    assert copied_notebook in contents(alice_page, base_url, alice)
    page = new_context().new_page()
    login(page, base_url, BOB, bob)
    shot(page, "04-second-user")
    mine = contents(page, base_url, bob)
    assert copied_notebook not in mine, mine
    # The shared folder is common to both; the other user's server is not.
    assert "share" in mine
    response = page.goto(f"{base_url}/jupyter/user/{alice}/lab")
    shot(page, "05-second-user-at-first-users-url")
    assert response.status == 403, (response.status, page.url)
    api = page.request.get(f"{base_url}/jupyter/user/{alice}/api/contents")
    assert api.status in (302, 403), api.status
    assert copied_notebook not in api.text()


def test_logout_says_so_and_returns_to_the_testbed_login(new_context, base_url, alice):
    page = new_context().new_page()
    login(page, base_url, ALICE, alice)
    page.goto(f"{base_url}/jupyter/hub/home")
    page.click("#logout")
    # the hub ends its session, the testbed logout ends the testbed's, and nginx's
    # own page (no session needed) says so
    page.wait_for_url(f"{base_url}/jupyter/logged-out", timeout=30_000)
    shot(page, "06-logged-out")
    assert page.locator("#logged-out").inner_text() == "You have logged out"
    assert "of JupyterHub and of the testbed" in page.locator("body").inner_text()
    # logged out for real: JupyterLab sends the browser to the testbed login
    page.goto(f"{base_url}/jupyter/user/{alice}/lab")
    assert urlsplit(page.url).path == "/auth/login", page.url
    # and "Log in again" leads there too
    page.goto(f"{base_url}/jupyter/logged-out")
    page.click("#log-in-again")
    page.wait_for_url(re.compile(r"/auth/login"), timeout=30_000)
    assert page.locator("input[name=username]").count() == 1


def test_hub_pages_show_the_testbed_identity_title_and_logo(alice_page, base_url, alice):
    page = alice_page
    assert page.goto(f"{base_url}/jupyter/hub/home").status == 200
    shot(page, "07-hub-home")
    me = page.locator("#testbed-identity")
    assert me.inner_text().strip() == ALICE
    assert me.get_attribute("title") == f"hub user name: {alice}"
    assert alice not in page.locator("nav").inner_text()
    assert page.title() == "MCV testbed JupyterHub"
    # the demo's logo (jupyterhub_logo_src), served by the hub and drawn by the browser
    logo = page.request.get(f"{base_url}/jupyter/hub/logo")
    assert logo.status == 200 and logo.headers["content-type"].startswith("image/svg")
    assert b"MCV testbed" in logo.body()
    assert page.locator("#jupyterhub-logo img").evaluate("i => i.naturalWidth") > 0


def test_the_start_page_offers_the_choices_and_says_what_happens(new_context, base_url):
    """Carol's start through the spawn form: its heading and choices; the page shown
    while the server starts names her and the spawner's steps (when the start takes
    longer than the hub's 1 s wait before it shows that page)."""
    page = new_context().new_page()
    page.goto(f"{base_url}/jupyter/hub/home")
    page.fill("input[name=username]", CAROL)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jupyter/hub/home"), timeout=120_000)
    name = page.evaluate("() => window.jhdata.user")
    assert name.startswith("carol-testbed-example-"), name
    if page.locator("#stop").is_visible():  # her server runs (an earlier test)
        page.click("#stop")
        deadline = time.monotonic() + 120
        while page.request.get(f"{base_url}/jupyter/hub/api/users/{name}").json()["servers"]:
            assert time.monotonic() < deadline, "carol's server did not stop within 120 s"
            page.wait_for_timeout(500)
    page.goto(f"{base_url}/jupyter/hub/spawn/{name}")
    shot(page, "08-spawn-form")
    assert page.locator("#testbed-spawn-heading h1").inner_text() == "Start JupyterLab"
    assert page.title() == "MCV testbed JupyterHub"
    profiles = page.locator("#testbed-profile option").all_inner_texts()
    assert [p.split(" ")[0] for p in profiles] == ["standard", "audio"], profiles
    assert page.locator("#testbed-profile").input_value() == "standard"

    # Start, then look at the start as it happens, beside the browser (its session
    # cookie, JupyterHub's own URLs): the page shown while the server starts, and the
    # progress stream that page reads, which ends when the server is ready. The hub
    # holds the form's POST up to 1 s before it answers with that page, so the test
    # does not wait for the browser to get there.
    page.select_option("#testbed-profile", "audio")
    page.click("#spawn_form [type=submit]", no_wait_after=True)
    pending_url = f"{base_url}/jupyter/hub/spawn-pending/{name}"
    deadline = time.monotonic() + 60
    while True:
        r = page.request.get(pending_url, max_redirects=0)
        if r.status == 200 and 'id="testbed-spawn-message"' in r.text():
            break
        assert time.monotonic() < deadline, f"never saw the start pending: {r.status}"
        time.sleep(0.05)
    pending = r.text()
    message = " ".join(
        re.sub(
            r"<[^>]+>", " ", pending.split('id="testbed-spawn-message"')[1].split("</p>")[0]
        ).split()
    )
    assert f"Starting JupyterLab for {CAROL}" in message, message
    progress = re.search(r'new EventSource\("([^"]+)"\)', pending).group(1)
    stream = page.request.get(base_url + progress.replace("&amp;", "&"), timeout=180_000).text()
    print(f"progress stream: {stream[:2000]}")
    assert "Starting your container" in stream and "audio (3G memory" in stream, stream
    assert '"ready": true' in stream, stream
    page.wait_for_url(re.compile(rf"/jupyter/user/{re.escape(name)}/lab"), timeout=120_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    shot(page, "09-started-from-the-form")
