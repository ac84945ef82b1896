"""TestbedHub: the hub API on loopback plus exactly the extra addresses."""

from __future__ import annotations

import pytest
import requests
from jupyterhub.tests.mocking import MockHub
from jupyterhub.tests.utils import async_requests
from jupyterhub.utils import random_port

from testbed_hub.app import TestbedHub


class MockTestbedHub(MockHub, TestbedHub):
    pass


@pytest.mark.asyncio
async def test_hub_api_listens_on_loopback_and_extra_address_only(hub_config):
    extra_port = random_port()
    hub_config.TestbedHub.extra_hub_bind_urls = [f"http://127.0.0.2:{extra_port}"]
    MockTestbedHub.clear_instance()
    app = MockTestbedHub.instance(config=hub_config)
    await app.initialize([])
    await app.start()
    try:
        main = await async_requests.get(app.hub.url + "health")
        assert main.status_code == 200
        extra = await async_requests.get(f"http://127.0.0.2:{extra_port}/jupyter/hub/health")
        assert extra.status_code == 200
        # the extra listener is bound to that address only, not to 0.0.0.0
        with pytest.raises(requests.ConnectionError):
            await async_requests.get(f"http://127.0.0.3:{extra_port}/jupyter/hub/health")
    finally:
        app.log.handlers = []
        MockTestbedHub.clear_instance()
        await app.stop()


@pytest.mark.parametrize("url", ["172.30.0.1:8081", "https://172.30.0.1:8081", "http://h"])
def test_bad_extra_bind_url_is_explained(url):
    with pytest.raises(ValueError, match="must look like 'http://172.30.0.1:8081'"):
        TestbedHub(extra_hub_bind_urls=[url])
