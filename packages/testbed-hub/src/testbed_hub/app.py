"""JupyterHub with additional hub listeners.

JupyterHub binds its hub API to one address (``hub_bind_url``). On the base station
the hub must answer on loopback (nginx/CHP side, local tools) and on the gateway
address of the ``jupyter`` Docker network (notebook servers and services), and on
nothing else. ``TestbedHub.extra_hub_bind_urls`` adds listeners on the same tornado
HTTP server; their sockets are bound before the hub starts its services and
spawners, so nothing that connects early is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from jupyterhub.app import JupyterHub
from tornado.netutil import bind_sockets
from traitlets import List, Unicode, validate


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(
            f"TestbedHub.extra_hub_bind_urls entry {url!r} must look like "
            "'http://172.30.0.1:8081' (scheme http, an IP address and a port)."
        )
    return parts.hostname, parts.port


class TestbedHub(JupyterHub):
    """JupyterHub that also listens on ``extra_hub_bind_urls``."""

    __test__ = False  # not a pytest test class despite the name

    name = "jupyterhub"

    extra_hub_bind_urls = List(
        Unicode(),
        config=True,
        help="More http://IP:PORT/ addresses on which the hub API listens "
        "(besides hub_bind_url), e.g. the jupyter network's gateway.",
    )

    @validate("extra_hub_bind_urls")
    def _validate_extra(self, proposal):
        for url in proposal["value"]:
            _host_port(url)
        return proposal["value"]

    async def start(self):
        sockets = []
        for url in self.extra_hub_bind_urls:
            host, port = _host_port(url)
            sockets.extend(bind_sockets(port, address=host))
            self.log.info("Hub API bound to %s too (serving once the hub has started)", url)
        await super().start()
        if self.http_server is not None and sockets:
            self.http_server.add_sockets(sockets)


main = TestbedHub.launch_instance

if __name__ == "__main__":
    main()
