"""Helpers for testing and benchmarking the reverse proxy (nginx auth_request SSO).

- :mod:`testbed_proxy.echo`: a header-echo upstream (HTTP and WebSocket) standing in
  for JupyterHub, so a test sees exactly what nginx forwarded.
- :mod:`testbed_proxy.client`: a raw HTTP/WebSocket client that can forge duplicate
  and odd-case headers, and log in through the testbed login form.
- :mod:`testbed_proxy.checks`: the proxy's contract as reusable test functions.
- :mod:`testbed_proxy.bench`: latency with vs without the auth sub-request.

``echo`` and ``bench`` use the standard library only and run as single files.
"""
