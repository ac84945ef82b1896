"""The latency benchmark helper: statistics, ratios, real measurement, CLI."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed_proxy import bench, echo


@pytest.fixture(scope="module")
def echo_url():
    server = echo.make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Status(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def url_401():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/x"
    server.shutdown()
    server.server_close()


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 90) == 90
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert bench.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="empty"):
        bench.percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        bench.percentile([1], 101)


def test_summarize_in_milliseconds():
    s = bench.summarize([0.001, 0.002, 0.003, 0.010])
    assert s["n"] == 4
    assert s["median_ms"] == 2.5
    assert s["mean_ms"] == 4.0
    assert (s["min_ms"], s["max_ms"]) == (1.0, 10.0)


def test_ratios_divide_medians_by_baseline():
    summary = {"noauth": {"median_ms": 2.0}, "auth": {"median_ms": 3.0}}
    assert bench.ratios(summary, "noauth") == {"noauth": 1.0, "auth": 1.5}
    with pytest.raises(bench.BenchError, match="baseline case 'x'"):
        bench.ratios(summary, "x")


def test_measure_interleaves_cases_with_injected_clock(echo_url):
    # Every request is timed by two clock() calls; durations: a 1 ms, b 3 ms.
    durations = {"a": 0.001, "b": 0.003}
    order = []
    state = {"t": 0.0, "start": True}

    def clock():
        if state["start"]:
            state["start"] = False
            return state["t"]
        case = "a" if len(order) % 2 == 0 else "b"
        order.append(case)
        state["t"] += durations[case]
        state["start"] = True
        return state["t"]

    result = bench.measure(
        {"a": echo_url + "/a", "b": echo_url + "/b"}, requests=5, warmup=2, clock=clock
    )
    assert order[:4] == ["a", "b", "a", "b"]
    assert result["cases"]["a"]["median_ms"] == pytest.approx(1.0)
    assert result["cases"]["b"]["median_ms"] == pytest.approx(3.0)
    assert result["ratio"] == {"a": 1.0, "b": 3.0}
    assert result["cases"]["a"]["n"] == 5


def test_measure_real_requests(echo_url):
    result = bench.measure({"x": echo_url + "/x", "y": echo_url + "/y?z=1"}, requests=20, warmup=2)
    assert result["baseline"] == "x"
    for s in result["cases"].values():
        assert s["n"] == 20
        assert 0 < s["min_ms"] <= s["median_ms"] <= s["max_ms"]


def test_measure_refuses_wrong_status(url_401):
    with pytest.raises(bench.BenchError, match="answered 401, expected 200"):
        bench.measure({"auth": url_401}, requests=3, warmup=0)


def test_measure_rejects_bad_input():
    with pytest.raises(bench.BenchError, match="no cases"):
        bench.measure({})
    with pytest.raises(bench.BenchError, match="requests must be >= 1"):
        bench.measure({"a": "http://127.0.0.1:1/"}, requests=0)
    with pytest.raises(bench.BenchError, match="unsupported URL scheme"):
        bench.measure({"a": "ftp://127.0.0.1/"}, requests=1)


def test_cli_prints_json_and_checks_max_ratio(echo_url, capsys):
    rc = bench.main(
        ["--case", f"a={echo_url}/a", "--case", f"b={echo_url}/b", "--requests", "5"]
        + ["--warmup", "1"]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["cases"]) == {"a", "b"}
    rc = bench.main(
        ["--case", f"a={echo_url}/a", "--case", f"b={echo_url}/b", "--requests", "5"]
        + ["--max-ratio", "0.001"]
    )
    assert rc == 1
    assert "ratio above 0.001" in capsys.readouterr().err


def test_cli_bad_case_is_a_clear_error(capsys):
    assert bench.main(["--case", "nourl"]) == 2
    assert "NAME=http(s)://" in capsys.readouterr().err
    assert bench.main(["--case", "a=http://127.0.0.1:9/", "--login", "http://x/"]) == 2
    assert "--login needs --user" in capsys.readouterr().err
