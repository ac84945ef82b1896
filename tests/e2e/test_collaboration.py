"""Two researchers on one server (issue 16, item 4): alice shares her server with bob
from the hub's home page; bob opens her notebook and types into a cell; alice's open
notebook shows the text (JupyterLab's real-time collaboration); carol, with no share,
is refused at alice's server. Alice then revokes the share from the same page.

Three browser profiles (own cookies each) in Chromium; screenshots in artifacts/e2e/.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import pytest
from conftest import ALICE, BOB, CAROL, shot
from test_browser import login, xsrf

from testbed_hub.auth import identity_to_username

NOTEBOOK = "together.ipynb"
TEXT = "print('typed by bob')"
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


def open_notebook(page, url: str):
    """Open a notebook in JupyterLab; on a shared server JupyterHub asks the visitor
    once to authorize it (its OAuth consent page)."""
    page.goto(url)
    page.wait_for_url(re.compile(r"/lab/tree/|/hub/api/oauth2/authorize"), timeout=120_000)
    if "/oauth2/authorize" in page.url:
        shot(page, "22-bob-authorizes-alices-server")
        page.click("button[type=submit]:has-text('Authorize')")
        page.wait_for_url(re.compile(r"/lab/tree/"), timeout=120_000)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell").first.wait_for(timeout=120_000)
    return panel


@pytest.fixture(scope="module")
def carol() -> str:
    return identity_to_username(CAROL)


def test_bob_edits_alices_notebook_live_after_she_shares_it(
    new_context, base_url, alice, bob, carol
):
    # alice and bob log in, each in their own browser profile
    alice_page = new_context().new_page()
    login(alice_page, base_url, ALICE, alice)
    bob_page = new_context().new_page()
    login(bob_page, base_url, BOB, bob)
    r = alice_page.request.put(
        f"{base_url}/jupyter/user/{alice}/api/contents/{NOTEBOOK}",
        data=json.dumps({"type": "notebook", "format": "json", "content": notebook()}),
        headers={"X-XSRFToken": xsrf(alice_page, alice), "Content-Type": "application/json"},
    )
    assert r.status in (200, 201), r.text()
    lab_url = f"{base_url}/jupyter/user/{alice}/lab/tree/{NOTEBOOK}?reset"

    # carol has no share: refused at alice's server
    carol_page = new_context().new_page()
    hub_login(carol_page, base_url, CAROL)
    response = carol_page.goto(lab_url)
    shot(carol_page, "20-no-share-refused")
    assert response.status == 403, (response.status, carol_page.url)
    api = carol_page.request.get(f"{base_url}/jupyter/user/{alice}/api/contents")
    assert api.status in (302, 403), api.status
    assert NOTEBOOK not in api.text()

    # alice shares her server with bob from the hub's home page
    alice_page.goto(f"{base_url}/jupyter/hub/home")
    alice_page.fill("#testbed-share-identity", BOB)
    alice_page.click("#testbed-share-button")
    alice_page.locator(f"#testbed-shares tr[data-user='{bob}']").wait_for(timeout=30_000)
    assert "Shared with" in alice_page.inner_text("#testbed-share-status")
    shot(alice_page, "21-alice-shared-with-bob")

    # both have the notebook open; bob types, alice sees it
    alice_panel = open_notebook(alice_page, lab_url)
    bob_panel = open_notebook(bob_page, lab_url)
    shot(bob_page, "23-bob-in-alices-notebook")
    bob_panel.locator(".jp-Cell .cm-content").first.click()
    bob_page.keyboard.type(TEXT)
    started = time.monotonic()
    alice_panel.locator(".jp-Cell .cm-content", has_text=TEXT).first.wait_for(
        timeout=SEEN_WITHIN_MS
    )
    print(f"alice saw bob's text after {time.monotonic() - started:.1f} s")
    shot(alice_page, "24-alice-sees-bobs-text")
    shot(bob_page, "24-bob-typed")
    # carol is still refused
    assert carol_page.goto(lab_url).status == 403

    # alice revokes the share from the home page
    alice_page.goto(f"{base_url}/jupyter/hub/home")
    row = alice_page.locator(f"#testbed-shares tr[data-user='{bob}']")
    row.locator("button:has-text('Revoke')").click()
    row.wait_for(state="detached", timeout=30_000)
    assert "revoked" in alice_page.inner_text("#testbed-share-status")
    shot(alice_page, "25-alice-revoked")
