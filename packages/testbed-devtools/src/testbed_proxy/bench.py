"""Latency of proxied requests with and without nginx's auth sub-request: the raw samples.

Benchmark and test base stations only. :func:`listeners_conf` writes an nginx
file (``/etc/nginx/conf.d/testbed-hub-bench.conf``; Debian's ``nginx.conf``
includes that folder) with three loopback-only listeners in front of the hub.
The reverse_proxy role never writes it: ``make bench`` installs it after its
converge, the reverse_proxy Molecule scenario in its converge. The
listeners repeat the role's hub location (identity headers stripped, user
header and hub secret set, the same auth sub-request):

=========  ==================================================
port       what runs before the request reaches the upstream
=========  ==================================================
P          nothing (no auth_request): the baseline
P + 1      auth_request to the auth service, no cache
P + 2      auth_request with the positive-answer cache
=========  ==================================================

:func:`measure` sends the same request to each case in interleaved rounds over
one keep-alive connection per case (so drift hits every case alike), checks that
every answer is the expected status (a fast 401 must never pass as a fast
request) and returns every latency in seconds. The statistics (medians, the
ratio to the baseline) are computed on the control node by
``testbed_devtools.stats.compare``: ``testbed_proxy.checks.bench_in_instance``
does both steps.

Standard library only, one file: it is copied into the base-station instance,
where the loopback listeners are::

    python3 bench.py listeners --cache-seconds 10 > /etc/nginx/conf.d/testbed-hub-bench.conf
    python3 bench.py measure --case noauth=http://127.0.0.1:8090/jupyter/hub/api/ \\
        --case auth=http://127.0.0.1:8091/jupyter/hub/api/ \\
        --case auth_cached=http://127.0.0.1:8092/jupyter/hub/api/ \\
        --cookie testbed_session=<a session cookie value>
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import ssl
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

# The reverse_proxy role's defaults the listeners mirror (roles/reverse_proxy/defaults).
STRIP_HEADERS = (
    "X-Authorized-User",
    "X-Testbed-Hub-Secret",
    "Remote-User",
    "X-Forwarded-User",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "frame-ancestors 'self'",
}
CASES = ("noauth", "auth", "auth_cached")


class BenchError(RuntimeError):
    """A case could not be measured (wrong status, refused connection), or bad input."""


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=ctx)
    if parts.scheme != "http":
        raise BenchError(f"unsupported URL scheme in {url!r}: use http:// or https://")
    return http.client.HTTPConnection(parts.netloc, timeout=timeout)


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def measure(
    cases: Mapping[str, str],
    requests: int = 300,
    warmup: int = 20,
    headers: Mapping[str, str] | None = None,
    expect_status: int = 200,
    timeout: float = 10.0,
    clock=time.perf_counter,
) -> dict:
    """Time every case ``requests`` times, interleaved; see the module docstring.

    Returns ``{"requests": n, "warmup": w, "unit": "s", "cases": {name: url},
    "samples": {name: [seconds, ...]}}``. Raises BenchError when an answer has
    another status than ``expect_status``.
    """
    if not cases:
        raise BenchError("no cases to measure: give at least one name=URL")
    if requests < 1 or warmup < 0:
        raise BenchError(f"requests must be >= 1 and warmup >= 0, got {requests}, {warmup}")
    hdrs = dict(headers or {})
    conns = {name: _connection(url, timeout) for name, url in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}

    def one(name: str) -> float:
        conn = conns[name]
        t0 = clock()
        try:
            conn.request("GET", _target(cases[name]), headers=hdrs)
            r = conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise BenchError(f"case {name} ({cases[name]}): {exc}") from exc
        dt = clock() - t0
        if r.status != expect_status:
            raise BenchError(
                f"case {name} ({cases[name]}) answered {r.status}, expected {expect_status}: "
                "check the cookie and that the upstream is up"
            )
        if r.will_close:
            conn.close()
        return dt

    try:
        for _ in range(warmup):
            for name in cases:
                one(name)
        for _ in range(requests):
            for name in cases:
                samples[name].append(round(one(name), 7))
    finally:
        for conn in conns.values():
            conn.close()
    return {
        "requests": requests,
        "warmup": warmup,
        "unit": "s",
        "cases": dict(cases),
        "samples": samples,
    }


# -- the listeners ------------------------------------------------------------------------
def _strip(headers: Iterable[str], indent: str) -> str:
    return "\n".join(f'{indent}proxy_set_header {h} "";' for h in headers)


def listeners_conf(
    port: int = 8090,
    *,
    cache_seconds: int = 10,
    hub_path: str = "/jupyter/",
    hub_upstream: str = "127.0.0.1:8000",
    auth_url: str = "http://127.0.0.1:9000/auth/check",
    user_header: str = "X-Authorized-User",
    cookie_name: str = "testbed_session",
    secret_snippet: str = "/etc/nginx/snippets/testbed-hub-hub-secret.conf",  # noqa: S107 - a path
    cache_dir: str = "/var/cache/nginx/testbed-hub-bench-auth",
    log_dir: str = "/var/log/nginx",
) -> str:
    """The nginx file of the three benchmark listeners (http level, ports P..P+2).

    The defaults are the reverse_proxy role's (site ``testbed-hub``, hub on
    127.0.0.1:8000, testbed auth check on 127.0.0.1:9000); ``secret_snippet``
    is the file the role writes with the hub's shared-secret header.
    """
    problems = []
    if not 1 <= port <= 65533:
        problems.append(f"port {port}: P, P+1 and P+2 must be TCP ports (1-65535)")
    if cache_seconds < 1:
        problems.append(f"cache seconds {cache_seconds}: the cached listener needs at least 1")
    if not re.fullmatch(r"/([A-Za-z0-9._~-]+/)+", hub_path):
        problems.append(f"hub path {hub_path!r} must look like /jupyter/")
    if not re.fullmatch(r"[A-Za-z0-9.-]+:[0-9]+", hub_upstream):
        problems.append(f"hub upstream {hub_upstream!r} must be host:port")
    auth = urlsplit(auth_url)
    if auth.scheme != "http" or not auth.port or not auth.path:
        problems.append(f"auth URL {auth_url!r} must be http://host:port/path (loopback)")
    for name, value in (("user header", user_header), ("cookie name", cookie_name)):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            problems.append(f"{name} {value!r} must be letters, digits, '-' or '_'")
    if problems:
        raise BenchError("; ".join(problems))

    auth_target = auth.path + (f"?{auth.query}" if auth.query else "")
    user_var = "$upstream_http_" + user_header.lower().replace("-", "_")
    hidden = [h.lower() for h in SECURITY_HEADERS if h != "Content-Security-Policy"]
    common = "\n".join(
        [
            "    server_name _;",
            "    server_tokens off;",
            "    underscores_in_headers off;",
            "    ignore_invalid_headers on;",
            "    absolute_redirect off;",
            f"    access_log {log_dir}/testbed-hub-bench.access.log;",
            f"    error_log {log_dir}/testbed-hub-bench.error.log;",
            *(f'    add_header {k} "{v}" always;' for k, v in SECURITY_HEADERS.items()),
        ]
    )
    forwarded = "\n".join(
        [
            "        proxy_http_version 1.1;",
            "        proxy_set_header Host $http_host;",
            "        proxy_set_header X-Forwarded-Host $http_host;",
            "        proxy_set_header X-Forwarded-Proto $scheme;",
            "        proxy_set_header X-Scheme $scheme;",
            "        proxy_set_header X-Forwarded-For $remote_addr;",
            "        proxy_set_header X-Real-IP $remote_addr;",
            '        proxy_set_header Connection "";',
            *(f"        proxy_hide_header {h};" for h in hidden),
        ]
    )
    keep = {user_header.lower(), "x-testbed-hub-secret"}
    to_hub = [h for h in STRIP_HEADERS if h.lower() not in keep]

    def app(cached: bool) -> str:
        cache = (
            f"""
        proxy_cache testbed_bench_auth;
        proxy_cache_key "bench|$cookie_{cookie_name}";
        proxy_cache_methods GET HEAD POST;
        proxy_cache_valid 200 202 204 {cache_seconds}s;
        proxy_no_cache $testbed_bench_no_session;
        proxy_cache_bypass $testbed_bench_no_session;
        proxy_ignore_headers Cache-Control Expires Set-Cookie Vary
                             X-Accel-Expires X-Accel-Redirect;"""
            if cached
            else ""
        )
        return f"""    location = /_testbed_bench_auth {{
        internal;
        proxy_pass http://testbed_bench_auth{auth_target};
        proxy_method GET;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {auth.netloc};
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-Uri $request_uri;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Real-IP $remote_addr;
{_strip(STRIP_HEADERS, " " * 8)}
        proxy_connect_timeout 5s;
        proxy_send_timeout 5s;
        proxy_read_timeout 5s;{cache}
    }}

    location {hub_path} {{
        auth_request /_testbed_bench_auth;
        auth_request_set $testbed_bench_user {user_var};
        error_page 401 = @testbed_bench_unauthorized;
        error_page 403 = @testbed_bench_forbidden;
        error_page 500 = @testbed_bench_auth_unavailable;
        error_page 502 504 = @testbed_bench_hub_unavailable;
        proxy_pass http://testbed_bench_hub;
{forwarded}
{_strip(to_hub, " " * 8)}
        proxy_set_header {user_header} $testbed_bench_user;
        include {secret_snippet};
        proxy_buffering off;
        proxy_read_timeout 86400s;
        proxy_send_timeout 86400s;
    }}

    location @testbed_bench_unauthorized {{
        default_type application/json;
        return 401 '{{"status": 401, "message": "Not logged in to the testbed."}}\\n';
    }}

    location @testbed_bench_forbidden {{
        default_type text/plain;
        return 403 "403 Forbidden\\n";
    }}

    location @testbed_bench_auth_unavailable {{
        default_type text/plain;
        return 503 "503 Login service unavailable\\n";
    }}

    location @testbed_bench_hub_unavailable {{
        default_type text/plain;
        return 502 "502 JupyterHub is not answering\\n";
    }}"""

    return f"""# Benchmark listeners of testbed-hub: bench and test base stations only, never
# written by the reverse_proxy role. Generated by testbed_proxy.bench (listeners).
# Plain HTTP on 127.0.0.1, {hub_path} proxied to the hub {hub_upstream}:
#   {port}  without auth_request (the baseline)
#   {port + 1}  behind auth_request, every request asks {auth_url}
#   {port + 2}  the same, positive answers cached {cache_seconds} s per {cookie_name} cookie

upstream testbed_bench_hub {{
    server {hub_upstream};
    keepalive 32;
}}

upstream testbed_bench_auth {{
    server {auth.netloc};
    keepalive 16;
}}

proxy_cache_path {cache_dir} levels=1:2 keys_zone=testbed_bench_auth:1m
                 max_size=16m inactive=10m use_temp_path=off;
map $cookie_{cookie_name} $testbed_bench_no_session {{
    ""      1;
    default 0;
}}

server {{
    listen 127.0.0.1:{port};
{common}
    location {hub_path} {{
        proxy_pass http://testbed_bench_hub;
{forwarded}
{_strip(STRIP_HEADERS, " " * 8)}
        proxy_buffering off;
    }}
}}

server {{
    listen 127.0.0.1:{port + 1};
{common}
{app(cached=False)}
}}

server {{
    listen 127.0.0.1:{port + 2};
{common}
{app(cached=True)}
}}
"""


# -- command line -------------------------------------------------------------------------
def _parse_cases(items: Iterable[str]) -> dict[str, str]:
    cases: dict[str, str] = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise BenchError(f"--case wants NAME=http(s)://host:port/path, got {item!r}")
        cases[name] = url
    return cases


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="testbed-proxy-bench",
        description="Latency of proxied requests with vs without the auth sub-request "
        "(raw samples as JSON), and the nginx file of the benchmark listeners.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time the cases, print every latency as JSON")
    m.add_argument("--case", action="append", default=[], metavar="NAME=URL", required=True)
    m.add_argument("--requests", type=int, default=300, help="measured requests per case")
    m.add_argument("--warmup", type=int, default=20, help="unmeasured requests per case")
    m.add_argument("--cookie", action="append", default=[], metavar="NAME=VALUE")
    m.add_argument("--expect-status", type=int, default=200)
    n = sub.add_parser("listeners", help="print the nginx file of the benchmark listeners")
    n.add_argument("--port", type=int, default=8090, help="first port P (P+1, P+2 too)")
    n.add_argument("--cache-seconds", type=int, default=10, help="auth cache of P+2")
    n.add_argument("--hub-path", default="/jupyter/")
    n.add_argument("--hub-upstream", default="127.0.0.1:8000", metavar="HOST:PORT")
    n.add_argument("--auth-url", default="http://127.0.0.1:9000/auth/check")
    n.add_argument("--secret-snippet", default="/etc/nginx/snippets/testbed-hub-hub-secret.conf")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "listeners":
            print(
                listeners_conf(
                    args.port,
                    cache_seconds=args.cache_seconds,
                    hub_path=args.hub_path,
                    hub_upstream=args.hub_upstream,
                    auth_url=args.auth_url,
                    secret_snippet=args.secret_snippet,
                ),
                end="",
            )
            return 0
        cases = _parse_cases(args.case)
        headers = {"Accept": "application/json"}
        cookies = [c for c in args.cookie if "=" in c]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        result = measure(
            cases,
            requests=args.requests,
            warmup=args.warmup,
            headers=headers,
            expect_status=args.expect_status,
        )
    except BenchError as exc:
        print(f"testbed-proxy-bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
