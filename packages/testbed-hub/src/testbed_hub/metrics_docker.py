"""CPU and memory of each user's notebook container, for Prometheus.

Prometheus on the station (role ``prometheus``) has no cAdvisor (not in Debian 12):
a systemd timer runs ``python -m testbed_hub.metrics_docker`` every 30 s; it asks the
Docker engine (``/run/docker.sock``) for the running ``jupyter-*`` containers and
their statistics and writes them, atomically (a hidden temporary file, then a
rename), into node exporter's textfile-collector folder, which node exporter serves
with its own metrics::

    testbed_user_container_cpu_seconds_total{user="alice",server=""} 12.5
    testbed_user_container_memory_bytes{user="alice",server=""} 104857600
    testbed_user_container_memory_limit_bytes{user="alice",server=""} 2147483648
    testbed_user_container_metrics_up 1

``user`` and ``server`` are the hub's user and server name (``""``: the default
server), read from the container's ``JUPYTERHUB_USER`` and ``JUPYTERHUB_SERVER_NAME``
(DockerSpawner sets them); no other value of its environment is kept. Memory is
what ``docker stats`` shows: usage minus the inactive page cache. When the engine
does not answer, the file says ``testbed_user_container_metrics_up 0`` (and no
series), and the command exits 1 so that systemd records the failure.

Standard library only: it runs in the hub's virtualenv, as root (the Docker socket).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_SOCKET = "/run/docker.sock"
DEFAULT_PREFIX = "jupyter-"
DEFAULT_OUTPUT = "/var/lib/prometheus/node-exporter/testbed_user_containers.prom"

METRICS = (
    (
        "testbed_user_container_cpu_seconds_total",
        "counter",
        "CPU time used by a user's notebook container since it started, in seconds "
        "(Docker engine).",
    ),
    (
        "testbed_user_container_memory_bytes",
        "gauge",
        "Memory used by a user's notebook container without the inactive page cache, "
        "in bytes (as docker stats shows it).",
    ),
    (
        "testbed_user_container_memory_limit_bytes",
        "gauge",
        "Memory limit of a user's notebook container, in bytes.",
    ),
)
UP = "testbed_user_container_metrics_up"


class DockerError(RuntimeError):
    """The Docker engine did not answer as expected."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerClient:
    """The few read-only calls of the Docker engine API this module needs."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 10.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        """GET ``path`` and return the JSON body; None for 404 (the container is gone)."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request("GET", url)
            resp = conn.getresponse()
            body = resp.read()
        except OSError as e:
            raise DockerError(f"Docker engine at {self.socket_path}: {e}") from e
        finally:
            conn.close()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise DockerError(f"Docker engine: GET {url} answered {resp.status}: {body[:200]!r}")
        return json.loads(body)


@dataclass(frozen=True)
class Sample:
    user: str
    server: str
    cpu_seconds: float
    memory_bytes: int
    memory_limit_bytes: int


def _env(inspect: Mapping[str, Any]) -> dict[str, str]:
    wanted = ("JUPYTERHUB_USER=", "JUPYTERHUB_SERVER_NAME=")
    out = {}
    for item in (inspect.get("Config") or {}).get("Env") or []:
        if item.startswith(wanted):
            key, _, value = item.partition("=")
            out[key] = value
    return out


def memory_used(memory_stats: Mapping[str, Any]) -> int:
    """Usage minus the inactive page cache (cgroup v2 ``inactive_file``, v1
    ``total_inactive_file``), as the docker CLI computes it."""
    usage = int(memory_stats.get("usage") or 0)
    stats = memory_stats.get("stats") or {}
    cache = stats.get("inactive_file", stats.get("total_inactive_file", 0)) or 0
    return max(usage - int(cache), 0)


def collect(client: DockerClient, prefix: str = DEFAULT_PREFIX) -> list[Sample]:
    """One sample per running container whose name starts with ``prefix``."""
    listed = client.get("/containers/json", {"filters": json.dumps({"name": [prefix]})}) or []
    samples = []
    for entry in listed:
        names = [n.lstrip("/") for n in entry.get("Names") or []]
        if not any(n.startswith(prefix) for n in names):
            continue  # the engine's name filter matches anywhere in the name
        cid = entry["Id"]
        inspect = client.get(f"/containers/{cid}/json")
        stats = client.get(f"/containers/{cid}/stats", {"stream": "false", "one-shot": "true"})
        if inspect is None or stats is None:
            continue  # stopped in the meantime
        env = _env(inspect)
        if "JUPYTERHUB_USER" not in env:
            continue  # not a server the hub started (e.g. a batch container)
        mem = stats.get("memory_stats") or {}
        cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
        samples.append(
            Sample(
                user=env["JUPYTERHUB_USER"],
                server=env.get("JUPYTERHUB_SERVER_NAME", ""),
                cpu_seconds=int(cpu) / 1e9,
                memory_bytes=memory_used(mem),
                memory_limit_bytes=int(mem.get("limit") or 0),
            )
        )
    return sorted(samples, key=lambda s: (s.user, s.server))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(samples: Iterable[Sample] | None) -> str:
    """The textfile-collector file: every metric's HELP and TYPE, one line per
    container; ``samples`` None means the engine did not answer (up 0)."""
    lines = []
    rows = list(samples or [])
    for (name, kind, help_text), attr in zip(
        METRICS, ("cpu_seconds", "memory_bytes", "memory_limit_bytes"), strict=True
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for s in rows:
            labels = f'user="{_label(s.user)}",server="{_label(s.server)}"'
            lines.append(f"{name}{{{labels}}} {_number(getattr(s, attr))}")
    lines += [
        f"# HELP {UP} 1 when the Docker engine answered the last collection, else 0.",
        f"# TYPE {UP} gauge",
        f"{UP} {0 if samples is None else 1}",
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a hidden temporary file in the same folder
    (node exporter reads only ``*.prom``) and a rename: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed_hub.metrics_docker",
        description="Write the CPU and memory of the users' notebook containers for "
        "node exporter's textfile collector.",
    )
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="Docker engine socket")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="container name prefix")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="the .prom file to write")
    args = parser.parse_args(argv)
    try:
        samples: list[Sample] | None = collect(DockerClient(args.socket), args.prefix)
    except (DockerError, http.client.HTTPException, ValueError, KeyError) as e:
        print(f"metrics_docker: {e}; is docker.service running?", file=sys.stderr)
        samples = None
    write_atomically(args.output, render(samples))
    return 0 if samples is not None else 1


if __name__ == "__main__":  # pragma: no cover - python -m testbed_hub.metrics_docker
    sys.exit(main())
