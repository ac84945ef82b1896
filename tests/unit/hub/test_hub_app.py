"""TestbedHub: the hub API on loopback plus exactly the extra addresses."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
import requests
from jupyterhub import orm
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import async_requests
from jupyterhub.utils import random_port

from testbed_hub.app import TestbedHub


class MockTestbedHub(MockHub, TestbedHub):
    pass


@contextlib.asynccontextmanager
async def started_hub(config):
    """A started MockTestbedHub with ``config``; stopped and cleared afterwards."""
    MockTestbedHub.clear_instance()
    app = MockTestbedHub.instance(config=config)
    await app.initialize([])
    await app.start()
    try:
        yield app
    finally:
        app.log.handlers = []
        MockTestbedHub.clear_instance()
        await app.stop()


@pytest.mark.asyncio
async def test_hub_api_listens_on_loopback_and_extra_address_only(hub_config):
    extra_port = random_port()
    hub_config.TestbedHub.extra_hub_bind_urls = [f"http://127.0.0.2:{extra_port}"]
    async with started_hub(hub_config) as app:
        main = await async_requests.get(app.hub.url + "health")
        assert main.status_code == 200
        extra = await async_requests.get(f"http://127.0.0.2:{extra_port}/jupyter/hub/health")
        assert extra.status_code == 200
        # the extra listener is bound to that address only, not to 0.0.0.0
        with pytest.raises(requests.ConnectionError):
            await async_requests.get(f"http://127.0.0.3:{extra_port}/jupyter/hub/health")


@pytest.mark.parametrize("url", ["172.30.0.1:8081", "https://172.30.0.1:8081", "http://h"])
def test_bad_extra_bind_url_is_explained(url):
    with pytest.raises(ValueError, match="must look like 'http://172.30.0.1:8081'"):
        TestbedHub(extra_hub_bind_urls=[url])


@pytest.mark.asyncio
async def test_routes_lost_by_a_proxy_restart_come_back(hub_config):
    """An emptied route table (configurable-http-proxy restarted) is refilled at the
    next route check: the hub's route and every running server's."""
    hub_config.TestbedHub.route_check_interval = 0.2
    async with started_hub(hub_config) as app:
        orm_user = orm.User(name="alice")
        app.db.add(orm_user)
        app.db.commit()
        user = app.users[orm_user]
        await user.spawn()
        await app.proxy.add_user(user)
        wanted = {app.hub.routespec, user.spawner.proxy_spec}
        assert wanted <= set(app.proxy.routes)
        assert app.missing_routes(await app.proxy.get_all_routes()) == []
        app.proxy.routes.clear()  # what a restarted proxy has
        deadline = time.monotonic() + 5
        while not wanted <= set(app.proxy.routes) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert wanted <= set(app.proxy.routes), app.proxy.routes
        assert app.proxy.routes[user.spawner.proxy_spec]["target"] == user.spawner.server.host
        await user.stop()


@pytest.mark.asyncio
async def test_route_check_off_leaves_the_table_alone(hub_config):
    hub_config.TestbedHub.route_check_interval = 0
    async with started_hub(hub_config) as app:
        assert "route_check" not in app._periodic_callbacks
        app.proxy.routes.clear()
        assert app.missing_routes(app.proxy.routes) == [app.hub.routespec]
        await asyncio.sleep(0.3)
        assert app.proxy.routes == {}
