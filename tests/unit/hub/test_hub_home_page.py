"""The hub's home page (testbed_hub/templates/home.html) inside a real hub (MockHub).

JupyterHub's own home page, extended: a user whose running server still has the
previous notebook image after an upgrade is told to stop and start it, and every
user reads that scheduled jobs run only while their server runs. The hub runs the
real TestbedDockerSpawner; no server is started (no Docker): the server's state is
loaded as the hub loads it from its database at start.
"""

from __future__ import annotations

import html

import pytest
import pytest_asyncio
from jinja2 import Environment, FileSystemLoader

from testbed_hub.config import TEMPLATES
from testbed_hub.spawner import TestbedDockerSpawner

OLD, NEW = "testbed-hub/notebook:0123456789ab", "testbed-hub/notebook:ba9876543210"
OUTDATED = (
    f"Your server runs an earlier notebook image ({OLD}); stop and start it to move to "
    f"the current one ({NEW}). Your files are kept."
)
JOBS = "Scheduled notebook jobs run only while your server runs."


def text(page: str) -> str:
    return " ".join(html.unescape(page).split())


@pytest_asyncio.fixture
async def testbed_hub(make_hub, hub_config):
    c = hub_config.copy()
    c.JupyterHub.template_paths = [TEMPLATES]  # as testbed_hub.config.apply sets it
    c.JupyterHub.spawner_class = TestbedDockerSpawner
    c.DockerSpawner.image = NEW
    return await make_hub(c)


async def home(app, make_client, identity):
    client = make_client(app)
    r = await client.get("login", identity=identity)
    assert r.status_code == 302, r.text[:300]
    return client


@pytest.mark.asyncio
async def test_a_server_on_the_previous_image_is_told_to_restart(testbed_hub, make_client):
    client = await home(testbed_hub, make_client, "ue-01")
    spawner = testbed_hub.users["ue-01"].spawner
    spawner.load_state({"object_id": "c0ffee", "started_image": OLD})
    r = await client.get("home", identity="ue-01")
    assert r.status_code == 200, r.text[:300]
    page = text(r.text)
    assert OUTDATED in page
    assert JOBS in page
    assert "My Server" in page  # JupyterHub's own page is still there


@pytest.mark.asyncio
async def test_no_notice_on_the_current_image_or_when_stopped(testbed_hub, make_client):
    client = await home(testbed_hub, make_client, "ue-02")
    spawner = testbed_hub.users["ue-02"].spawner
    r = await client.get("home", identity="ue-02")
    page = text(r.text)
    assert "earlier notebook image" not in page and JOBS in page
    spawner.load_state({"object_id": "c0ffee", "started_image": NEW})
    page = text((await client.get("home", identity="ue-02")).text)
    assert "earlier notebook image" not in page and JOBS in page


def test_the_template_extends_the_stock_home_page():
    source = (FileSystemLoader(TEMPLATES).get_source(Environment(), "home.html"))[0]
    assert '{% extends "templates/home.html" %}' in source
    assert "{{ super() }}" in source


@pytest_asyncio.fixture
async def named_hub(make_hub, hub_config):
    c = hub_config.copy()
    c.JupyterHub.template_paths = [TEMPLATES]
    c.JupyterHub.spawner_class = TestbedDockerSpawner
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 2
    c.DockerSpawner.image = NEW
    return await make_hub(c)


@pytest.mark.asyncio
async def test_a_named_server_on_an_earlier_image_is_named(named_hub, make_client):
    client = await home(named_hub, make_client, "ue-05")
    user = named_hub.users["ue-05"]
    user.get_or_create_spawner("batch", "batch").load_state(
        {"object_id": "c0ffee", "started_image": OLD}
    )
    user.get_or_create_spawner("live", "live").load_state(
        {"object_id": "beef", "started_image": NEW}
    )
    r = await client.get("home", identity="ue-05")
    assert r.status_code == 200, r.text[:300]
    page = text(r.text)
    assert f"Server batch runs an earlier notebook image ({OLD}); the current one is {NEW}." in page
    assert "Server live runs" not in page
    assert r.text.count("testbed-outdated-named") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("sharing", [True, False])
async def test_the_share_form_only_when_sharing_is_on(make_hub, hub_config, make_client, sharing):
    c = hub_config.copy()
    c.JupyterHub.template_paths = [TEMPLATES]
    c.JupyterHub.spawner_class = TestbedDockerSpawner
    c.DockerSpawner.image = NEW
    c.JupyterHub.template_vars = {"testbed_sharing": sharing}  # as testbed_hub.config sets it
    app = await make_hub(c)
    client = await home(app, make_client, "ue-06")
    r = await client.get("home", identity="ue-06")
    assert r.status_code == 200, r.text[:300]
    page = text(r.text)
    assert ('id="testbed-share-form"' in r.text) is sharing
    assert ("Share this server with a testbed user" in page) is sharing
    assert ('id="testbed-shares"' in r.text) is sharing  # the list with its Revoke buttons
    assert ("Share only with someone you trust with your account" in page) is sharing
    # the script: the server-side share endpoint, the xsrf token in a header only
    # (a URL lands in the proxy's logs), and a Revoke that restarts the server
    assert ('"testbed/shares"' in r.text) is sharing
    assert "_xsrf=" not in r.text
    assert ('"X-XSRFToken": jh.xsrf_token' in r.text) is sharing
    assert ("running kernels and terminals stop" in r.text) is sharing
    assert ('call("DELETE", "users/" + me + "/server")' in r.text) is sharing
    assert JOBS in page and "My Server" in page  # the rest of the page either way
    assert 'require(["home"])' in r.text  # JupyterHub's own script still runs
