"""Fixtures: a real JupyterHub (JupyterHub's own MockHub) with the header authenticator.

The hub runs in the test's event loop with JupyterHub's MockSpawner; instead of
configurable-http-proxy it gets an in-memory route table (``RouteTableProxy``), and
the tests talk to the hub's own port, which is what nginx/CHP forward to.
"""

from __future__ import annotations

import secrets

import pytest
import pytest_asyncio
from jupyterhub.proxy import Proxy
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import AsyncSession
from jupyterhub.utils import random_port
from traitlets.config import Config

from testbed_hub.app import TestbedHub

SECRET = secrets.token_urlsafe(32)


class RouteTableProxy(Proxy):
    """A Proxy that keeps routes in a dict (no external process)."""

    should_start = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.routes = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "proxy-auth-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def hub_config(secret_file):
    c = Config()
    c.JupyterHub.authenticator_class = "testbed_hub.auth.HeaderAuthenticator"
    c.JupyterHub.proxy_class = RouteTableProxy
    c.JupyterHub.bind_url = f"http://127.0.0.1:{random_port()}/jupyter/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{random_port()}"
    c.HeaderAuthenticator.secret_file = str(secret_file)
    # keep JupyterHub from writing jupyterhub_cookie_secret into the working directory
    c.JupyterHub.cookie_secret_file = str(secret_file.parent / "cookie_secret")
    c.Authenticator.allow_all = True
    c.Authenticator.admin_users = {"ops-admin"}
    return c


@pytest_asyncio.fixture
async def make_hub():
    hubs = []

    async def _make(config):
        MockHub.clear_instance()
        app = MockHub.instance(config=config)
        await app.initialize([])
        await app.start()
        hubs.append(app)
        return app

    yield _make
    for app in hubs:
        app.log.handlers = []
        MockHub.clear_instance()
        await app.stop()


@pytest_asyncio.fixture
async def hub(make_hub, hub_config):
    return await make_hub(hub_config)


class MockTestbedHub(MockHub, TestbedHub):
    """JupyterHub's MockHub with this project's hub class (restarts, access, sharing)."""


@pytest_asyncio.fixture
async def restart_hub(hub_config, tmp_path, monkeypatch):
    """Start (and start again) a MockTestbedHub on one database that outlives each hub,
    as a playbook re-run restarts the hub. ``await restart_hub(configure)`` stops the
    previous hub as systemd would (short of JupyterHub.stop(), which would cancel every
    task of the test's event loop), then starts one on a copy of ``hub_config`` that
    ``configure(c)`` has changed; the last one is stopped at the end."""
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", f"sqlite:///{tmp_path / 'hub.sqlite'}")
    started = []

    async def _run(configure):
        for app in started[-1:]:
            app.http_server.stop()
            for pc in app._periodic_callbacks.values():
                pc.stop()
            app.db.close()
        MockTestbedHub.clear_instance()
        c = hub_config.copy()
        c.JupyterHub.cleanup_servers = False
        c.JupyterHub.bind_url = f"http://127.0.0.1:{random_port()}/jupyter/"
        c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{random_port()}"
        configure(c)
        app = MockTestbedHub.instance(config=c)
        app.test_clean_db = not started  # a later hub keeps the first one's database
        await app.initialize([])
        await app.start()
        started.append(app)
        return app

    yield _run
    for app in started[-1:]:
        app.log.handlers = []
        await app.stop()
    MockTestbedHub.clear_instance()


class HubClient:
    """Browser-like session against the hub port, with nginx's headers when asked."""

    def __init__(self, app):
        self.app = app
        self.base = app.hub.url  # http://127.0.0.1:PORT/jupyter/hub/
        self.session = AsyncSession()

    def headers(self, identity=None, secret=SECRET, **extra):
        # no X-Forwarded-Proto: https would make the hub's cookies Secure-only
        h = {"X-Forwarded-Host": "bs.example"}
        if identity is not None:
            h["X-Authorized-User"] = identity
        if secret is not None:
            h["X-Testbed-Hub-Secret"] = secret
        h.update(extra)
        return h

    async def get(self, path, identity=None, secret=SECRET, **kwargs):
        headers = kwargs.pop("headers", None) or self.headers(identity, secret)
        return await self.session.get(
            self.base + path, headers=headers, allow_redirects=False, **kwargs
        )

    async def whoami(self, identity=None, secret=SECRET):
        """Name of the logged-in user per /hub/api/user, or None (403)."""
        headers = self.headers(identity, secret)
        r = await self.session.get(self.base + "api/user", headers=headers)
        if r.status_code == 403:
            return None
        r.raise_for_status()
        return r.json()["name"]


@pytest.fixture
def client(hub):
    return HubClient(hub)


@pytest.fixture
def make_client():
    return HubClient


@pytest.fixture
def quick_start(monkeypatch):
    """``TestbedDockerSpawner.start`` around a stand-in container: no audit record, and a
    port that answers at once (a test may patch ``_port_answers`` again after this)."""
    from testbed_hub.spawner import TestbedDockerSpawner

    async def answers(self, ip, port, timeout):
        return True

    async def no_audit(self, *args):
        return None

    monkeypatch.setattr(TestbedDockerSpawner, "_port_answers", answers)
    monkeypatch.setattr(TestbedDockerSpawner, "_audit", no_audit)
