"""Latency of proxied requests with and without nginx's auth sub-request.

The reverse_proxy role, with ``reverse_proxy_bench_enabled: true``, opens three
loopback-only listeners in front of the same hub upstream:

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
request) and reports per-case latency and the ratio of medians to the baseline.

Standard library only, one file: the Molecule scenarios copy it into the
base-station instance, where the loopback listeners are::

    python3 bench.py --case noauth=http://127.0.0.1:8090/jupyter/hub/api/ \\
        --case auth=http://127.0.0.1:8091/jupyter/hub/api/ \\
        --case auth_cached=http://127.0.0.1:8092/jupyter/hub/api/ \\
        --login http://127.0.0.1:8091/auth/login --user alice@testbed.example
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import ssl
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit


class BenchError(RuntimeError):
    """A case could not be measured (wrong status, refused connection)."""


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


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Milliseconds: median, mean, p90, p99, min, max; plus the sample count."""
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "p90_ms": round(percentile(ms, 90), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "min_ms": round(min(ms), 4),
        "max_ms": round(max(ms), 4),
    }


def ratios(summary: Mapping[str, Mapping[str, float]], baseline: str) -> dict[str, float]:
    """Median of each case divided by the baseline's median."""
    if baseline not in summary:
        raise BenchError(f"baseline case {baseline!r} is not among {sorted(summary)}")
    base = summary[baseline]["median_ms"]
    if base <= 0:
        raise BenchError(f"baseline median is {base} ms: too fast to divide by")
    return {name: round(s["median_ms"] / base, 3) for name, s in summary.items()}


def login_cookie(
    login_url: str,
    user: str,
    password: str = "",
    cookie_name: str = "testbed_session",
    timeout: float = 10.0,
) -> str:
    """Log in through the testbed login form; the value of the session cookie."""
    conn = _connection(login_url, timeout)
    try:
        body = urlencode({"username": user, "password": password}).encode()
        conn.request(
            "POST",
            _target(login_url),
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        r = conn.getresponse()
        r.read()
        for raw in r.headers.get_all("Set-Cookie") or []:
            c = SimpleCookie()
            c.load(raw)
            if cookie_name in c and c[cookie_name].value:
                return c[cookie_name].value
        raise BenchError(
            f"login as {user!r} at {login_url} answered {r.status} without a {cookie_name} cookie"
        )
    finally:
        conn.close()


def measure(
    cases: Mapping[str, str],
    requests: int = 300,
    warmup: int = 20,
    headers: Mapping[str, str] | None = None,
    expect_status: int = 200,
    baseline: str | None = None,
    timeout: float = 10.0,
    clock=time.perf_counter,
) -> dict:
    """Measure every case ``requests`` times, interleaved; see the module docstring.

    Returns ``{"cases": {name: summary}, "ratio": {name: median/baseline median},
    "baseline": name, "requests": n}``. Raises BenchError when an answer has another
    status than ``expect_status``.
    """
    if not cases:
        raise BenchError("no cases to measure: give at least one name=URL")
    if requests < 1 or warmup < 0:
        raise BenchError(f"requests must be >= 1 and warmup >= 0, got {requests}, {warmup}")
    baseline = baseline or next(iter(cases))
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
                samples[name].append(one(name))
    finally:
        for conn in conns.values():
            conn.close()
    summary = {name: summarize(s) for name, s in samples.items()}
    return {
        "requests": requests,
        "baseline": baseline,
        "cases": summary,
        "ratio": ratios(summary, baseline),
    }


def _parse_cases(items: Iterable[str]) -> dict[str, str]:
    cases: dict[str, str] = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise BenchError(f"--case wants NAME=http(s)://host:port/path, got {item!r}")
        cases[name] = url
    return cases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="testbed-proxy-bench",
        description="Latency of proxied requests with vs without the auth sub-request.",
    )
    p.add_argument("--case", action="append", default=[], metavar="NAME=URL", required=True)
    p.add_argument("--baseline", help="case the ratios divide by (default: the first)")
    p.add_argument("--requests", type=int, default=300, help="measured requests per case")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests per case")
    p.add_argument("--cookie", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--login", metavar="URL", help="log in at this login form URL first")
    p.add_argument("--user", help="user name for --login")
    p.add_argument("--password", default="", help="password for --login")
    p.add_argument("--cookie-name", default="testbed_session", help="session cookie name")
    p.add_argument("--expect-status", type=int, default=200)
    p.add_argument("--max-ratio", type=float, help="exit 1 when a ratio exceeds this")
    p.add_argument("--max-ratio-case", action="append", default=[], help="cases --max-ratio checks")
    args = p.parse_args(argv)
    try:
        cases = _parse_cases(args.case)
        cookies = dict(c.split("=", 1) for c in args.cookie if "=" in c)
        if args.login:
            if not args.user:
                raise BenchError("--login needs --user")
            cookies[args.cookie_name] = login_cookie(
                args.login, args.user, args.password, args.cookie_name
            )
        headers = {"Accept": "application/json"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        result = measure(
            cases,
            requests=args.requests,
            warmup=args.warmup,
            headers=headers,
            expect_status=args.expect_status,
            baseline=args.baseline,
        )
    except BenchError as exc:
        print(f"testbed-proxy-bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    if args.max_ratio is not None:
        checked = args.max_ratio_case or [n for n in result["ratio"] if n != result["baseline"]]
        unknown = sorted(set(checked) - set(result["ratio"]))
        if unknown:
            print(f"testbed-proxy-bench: --max-ratio-case {unknown} not measured", file=sys.stderr)
            return 2
        over = {n: result["ratio"][n] for n in checked if result["ratio"][n] > args.max_ratio}
        if over:
            print(f"testbed-proxy-bench: ratio above {args.max_ratio}: {over}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
