"""Two researchers on one server (issue 16, item 4): bob shares his server with carol
from the hub's home page; carol opens his notebook and types into a cell; bob's open
notebook shows the text (JupyterLab's real-time collaboration). Before the share
carol is refused at bob's server; alice, a hub admin in the demo, can be shared with
by nobody. Bob then revokes from the same page, which restarts his server, and a
fresh request of carol's is refused again.

Sharing is off by default; the demo inventory turns it on. Three browser profiles
(own cookies each) in Chromium; screenshots in artifacts/e2e/. Whatever happens, the
``bobs_shares`` fixture revokes every share of bob's server at the end, so the other
files' "403 at someone else's server" checks stay true.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import pytest
from conftest import ALICE, BOB, CAROL, open_context, shot
from test_browser import login, xsrf

from testbed_hub.auth import identity_to_username

NOTEBOOK = "together.ipynb"
TEXT = "print('typed by carol')"
SEEN_WITHIN_MS = 15_000


def notebook() -> dict:
    return {
        "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": []}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def hub_login(page, base_url: str, user: str) -> None:
    """Log in at the testbed and land on the hub's home page (no server started)."""
    page.goto(f"{base_url}/jupyter/hub/home")
    if urlsplit(page.url).path == "/auth/login":
        page.fill("input[name=username]", user)
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jupyter/hub/home"), timeout=60_000)


def hub_api(page, base_url: str, method: str, path: str):
    """JupyterHub's API with the page's hub session (xsrf token in the header)."""
    page.goto(f"{base_url}/jupyter/hub/home")
    token = page.evaluate("window.jhdata.xsrf_token")
    return page.request.fetch(
        f"{base_url}/jupyter/hub/api/{path}", method=method, headers={"X-XSRFToken": token}
    )


def open_notebook(page, url: str):
    """Open a notebook in JupyterLab; on a shared server JupyterHub asks the visitor
    once to authorize it (its OAuth consent page)."""
    page.goto(url)
    page.wait_for_url(re.compile(r"/lab/tree/|/hub/api/oauth2/authorize"), timeout=120_000)
    if "/oauth2/authorize" in page.url:
        shot(page, "22-carol-authorizes-bobs-server")
        page.click("button[type=submit]:has-text('Authorize')")
        page.wait_for_url(re.compile(r"/lab/tree/"), timeout=120_000)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(timeout=120_000)
    return panel


def wait_server_ready(page, base_url: str, user: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = hub_api(page, base_url, "GET", f"users/{user}")
        server = (r.json().get("servers") or {}).get("") if r.ok else None
        if server and server.get("ready"):
            return
        assert time.monotonic() < deadline, f"{user}'s server not ready: {r.status} {r.text()}"
        page.wait_for_timeout(1000)


@pytest.fixture(scope="module")
def carol() -> str:
    return identity_to_username(CAROL)


@pytest.fixture
def bobs_shares(browser, base_url, bob):
    """At the end, pass or fail: every share of bob's server revoked (his session)."""
    yield
    ctx = open_context(browser)
    try:
        page = ctx.new_page()
        hub_login(page, base_url, BOB)
        r = hub_api(page, base_url, "DELETE", f"shares/{bob}/")
        assert r.status in (204, 404), r.text()  # 404: bob never had a server
        r = hub_api(page, base_url, "GET", f"shares/{bob}")
        assert r.status in (200, 404) and not (r.ok and r.json()["items"]), r.text()
    finally:
        ctx.close()


def test_carol_edits_bobs_notebook_live_after_he_shares_it(
    new_context, bobs_shares, base_url, alice, bob, carol
):
    # bob logs in (his server starts); carol logs in to the hub only
    bob_page = new_context().new_page()
    login(bob_page, base_url, BOB, bob)
    r = bob_page.request.put(
        f"{base_url}/jupyter/user/{bob}/api/contents/{NOTEBOOK}",
        data=json.dumps({"type": "notebook", "format": "json", "content": notebook()}),
        headers={"X-XSRFToken": xsrf(bob_page, bob), "Content-Type": "application/json"},
    )
    assert r.status in (200, 201), r.text()
    lab_url = f"{base_url}/jupyter/user/{bob}/lab/tree/{NOTEBOOK}?reset"
    carol_page = new_context().new_page()
    hub_login(carol_page, base_url, CAROL)

    # carol has no share: refused at bob's server
    response = carol_page.goto(lab_url)
    shot(carol_page, "20-no-share-refused")
    assert response.status == 403, (response.status, carol_page.url)
    api = carol_page.request.get(f"{base_url}/jupyter/user/{bob}/api/contents")
    assert api.status in (302, 403), api.status
    assert NOTEBOOK not in api.text()

    # bob cannot share with alice, a hub admin in the demo
    bob_page.goto(f"{base_url}/jupyter/hub/home")
    bob_page.fill("#testbed-share-identity", ALICE)
    bob_page.click("#testbed-share-button")
    status = bob_page.locator("#testbed-share-status")
    status.filter(has_text="is a hub admin").wait_for(timeout=30_000)
    assert f"{alice} is a hub admin" in status.inner_text()

    # bob shares his server with carol from the hub's home page
    bob_page.fill("#testbed-share-identity", CAROL)
    bob_page.click("#testbed-share-button")
    shared = bob_page.locator(f"#testbed-shares tr[data-user='{carol}']")
    shared.wait_for(timeout=30_000)
    assert "they can now open your server" in status.inner_text()
    # the list names carol as the testbed knows her, not by her hub user name
    assert shared.locator("td").first.inner_text().strip() == CAROL
    shot(bob_page, "21-bob-shared-with-carol")

    # both have the notebook open; carol types, bob sees it
    bob_panel = open_notebook(bob_page, lab_url)
    carol_panel = open_notebook(carol_page, lab_url)
    shot(carol_page, "23-carol-in-bobs-notebook")
    carol_panel.locator(".jp-Cell .cm-content").first.click()
    carol_page.keyboard.type(TEXT)
    started = time.monotonic()
    bob_panel.locator(".jp-Cell .cm-content", has_text=TEXT).first.wait_for(timeout=SEEN_WITHIN_MS)
    print(f"bob saw carol's text after {time.monotonic() - started:.1f} s")
    shot(bob_page, "24-bob-sees-carols-text")
    shot(carol_page, "24-carol-typed")

    # bob revokes from the home page: confirm, revoke, his server restarts
    bob_page.goto(f"{base_url}/jupyter/hub/home")
    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    bob_page.on("dialog", accept)
    row = bob_page.locator(f"#testbed-shares tr[data-user='{carol}']")
    row.locator("button:has-text('Revoke')").click()
    row.wait_for(state="detached", timeout=30_000)
    status.filter(has_text="your server restarted").wait_for(timeout=300_000)
    assert dialogs and "running kernels and terminals stop" in dialogs[0], dialogs
    shot(bob_page, "25-bob-revoked")
    wait_server_ready(bob_page, base_url, bob)

    # a fresh request of carol's: refused again
    response = carol_page.goto(lab_url)
    shot(carol_page, "26-refused-after-revoke")
    assert response.status == 403, (response.status, carol_page.url)
