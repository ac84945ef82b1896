"""The benchmark's new measuring steps (issue 18) with fakes for the base station, the
hub and the browser: what they read from /proc, cgroups and ``docker stats``, the
bursts' figures, the hub's CPU and memory, the browser step and the whole run's exit
status when a figure cannot be measured."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types

import pytest

from testbed_devtools import bench

# -- /proc, cgroups, docker stats -------------------------------------------------------

#       pid  comm (spaces, parentheses)  state ppid pgrp sess tty tpgid flags minflt
#       cminflt majflt cmajflt utime stime cutime cstime ...
STAT = "4242 (python3 (hub) x) S 1 4242 4242 0 -1 4194560 12345 0 0 0 250 75 30 40 20 0 12"


def test_proc_stat_gives_user_and_system_seconds_after_the_command_name():
    got = bench.parse_proc_stat(STAT, ticks_per_s=100)
    assert got == pytest.approx({"utime_s": 2.5, "stime_s": 0.75, "cpu_s": 3.25})
    assert bench.parse_proc_stat(STAT, ticks_per_s=250)["cpu_s"] == pytest.approx(1.3)


@pytest.mark.parametrize("text", ["", "4242 no parentheses 1 2 3", "4242 (x) S 1 2"])
def test_proc_stat_refuses_what_is_not_one(text):
    with pytest.raises(ValueError, match="/proc/<pid>/stat"):
        bench.parse_proc_stat(text, 100)


def test_proc_status_kb_fields_in_bytes():
    text = "Name:\tpython3\nState:\tS (sleeping)\nVmHWM:\t  330000 kB\nVmRSS:\t  310000 kB\n"
    assert bench.parse_proc_status(text) == {"VmHWM": 330000 * 1024, "VmRSS": 310000 * 1024}
    assert bench.parse_proc_status("Name:\tkthreadd\n") == {}


def test_memory_stat_lines():
    text = "anon 104857600\nfile 2097152\nbogus line here\npgfault 12\n"
    assert bench.parse_memory_stat(text) == {"anon": 104857600, "file": 2097152, "pgfault": 12}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("123.4MiB / 7.6GiB", round(123.4 * 1024**2)),
        ("1.5GiB / 7.6GiB", round(1.5 * 1024**3)),
        ("980kB / 1GB", 980_000),
        ("512B / 1GiB", 512),
        ("  99.5MB", 99_500_000),
    ],
)
def test_docker_stats_memory_usage(text, want):
    assert bench.parse_mem_usage(text) == want


@pytest.mark.parametrize("text", ["", "--", "12 parsecs / 1GiB", "MiB / 1GiB"])
def test_docker_stats_memory_usage_refuses_other_text(text):
    with pytest.raises(ValueError, match="docker stats"):
        bench.parse_mem_usage(text)


def test_sections_split_a_probes_output():
    text = "noise\n== pid\n42\n== status 7\nVmRSS: 1 kB\nName: x\n== empty\n"
    assert bench.sections(text) == {"pid": "42", "status 7": "VmRSS: 1 kB\nName: x", "empty": ""}


def hub_probe_output(pid=4242, utime=250, stime=75, rss_kb=310_000, hwm_kb=330_000, servers=50):
    stat = STAT.replace(" 250 75 ", f" {utime} {stime} ").replace("4242 (", f"{pid} (")
    return (
        f"== pid\n{pid}\n== ticks\n100\n== stat\n{stat}\n== status\nName:\tpython3\n"
        f"VmHWM:\t{hwm_kb} kB\nVmRSS:\t{rss_kb} kB\n== servers\n{servers}\n"
    )


def test_hub_probe_reads_the_hubs_process_and_counts_the_servers():
    got = bench.parse_hub_probe(hub_probe_output())
    assert got == {
        "pid": 4242,
        "cpu_s": pytest.approx(3.25),
        "rss_bytes": 310_000 * 1024,
        "hwm_bytes": 330_000 * 1024,
        "servers": 50,
    }
    assert "systemctl show -p MainPID --value jupyterhub.service" in bench.HUB_PROBE
    assert 'name=^jupyter-"' in bench.HUB_PROBE


def test_hub_probe_without_a_hub_says_where_to_look():
    with pytest.raises(RuntimeError, match="no running jupyterhub process.*systemctl status"):
        bench.parse_hub_probe("== pid\n0\n== ticks\n100\n== stat\n\n== servers\n0\n")


def test_hub_usage_over_the_burst():
    before = bench.parse_hub_probe(hub_probe_output(utime=250, stime=75, servers=0))
    after = bench.parse_hub_probe(hub_probe_output(utime=1750, stime=575, rss_kb=409_600))
    got = bench.hub_usage(before, after, wall_s=40.0)
    assert got == {
        "pid": 4242,
        "cpu_s": 20.0,
        "wall_s": 40.0,
        "cpu_pct": 50.0,
        "rss_mb": 400.0,
        "peak_rss_mb": 322.3,
        "servers_running": 50,
    }


def test_hub_usage_refuses_a_restarted_hub():
    before = bench.parse_hub_probe(hub_probe_output(pid=10))
    after = bench.parse_hub_probe(hub_probe_output(pid=11))
    with pytest.raises(RuntimeError, match="hub restarted during the burst"):
        bench.hub_usage(before, after, 30.0)


class ProbedStation:
    """An Instance whose hub spends ``cpu_ticks[i]`` ticks by its i-th probe; it records
    every other command; ``fail_probe`` makes that probe's command fail."""

    def __init__(self, cpu_ticks, fail_probe=None):
        self.ticks, self.fail_probe, self.commands, self.probes = cpu_ticks, fail_probe, [], 0

    def run(self, cmd, check=True, input=None):
        self.commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def check_output(self, cmd):
        assert cmd == bench.HUB_PROBE
        i, self.probes = self.probes, self.probes + 1
        if i == self.fail_probe:
            raise RuntimeError("in station: probe exited 1")
        return hub_probe_output(utime=self.ticks[i], stime=0)


def test_scrape_overhead_is_the_hubs_cpu_with_prometheus_minus_without():
    # 100 ticks/s: 0.9 s of CPU over the scraped window, 0.45 s with Prometheus stopped
    station = ProbedStation([1000, 1090, 2000, 2045])
    clock = iter([0.0, 45.0, 100.0, 145.0])
    slept = []
    got = bench.scrape_overhead(
        station, window_s=45.0, sleep=slept.append, clock=lambda: next(clock)
    )
    assert slept == [45.0, 45.0]
    assert got["scraped_cpu_pct"] == 2.0 and got["not_scraped_cpu_pct"] == 1.0
    assert got["overhead_cpu_pct"] == 1.0 and got["window_s"] == 45.0
    assert station.commands == [
        "systemctl stop prometheus.service",
        "systemctl start prometheus.service",
    ]


def test_scrape_overhead_starts_prometheus_again_when_a_window_fails():
    station = ProbedStation([1000, 1090, 2000, 2045], fail_probe=3)
    with pytest.raises(RuntimeError, match="probe exited 1"):
        bench.scrape_overhead(station, window_s=1.0, sleep=lambda s: None)
    assert station.commands[-1] == "systemctl start prometheus.service"


SERVER_V2 = """== cgroup
/sys/fs/cgroup/system.slice/docker-abc.scope
== memory.stat
anon 94371840
file 31457280
== memory.current
136314880
== status 801
Name:\ttini
VmRSS:\t    1024 kB
== status 812
Name:\tjupyterhub-sing
VmRSS:\t  121856 kB
== status 999
== docker stats
129.5MiB / 7.6GiB
"""

SERVER_V1 = """== cgroup
/sys/fs/cgroup/memory/docker/abc
== memory.stat
cache 1000
rss 50000
total_rss 104857600
== memory.current
157286400
== status 812
VmRSS:\t  102400 kB
== docker stats
"""


def test_server_memory_sums_the_containers_processes_cgroup_v2():
    assert bench.parse_server_memory(SERVER_V2) == {
        "rss_mb": 120.0,  # (1024 + 121856) kB; a process gone meanwhile counts nothing
        "processes": 2,
        "cgroup": "/sys/fs/cgroup/system.slice/docker-abc.scope",
        "cgroup_anon_mb": 90.0,
        "cgroup_current_mb": 130.0,
        "docker_stats_mb": 129.5,
    }


def test_server_memory_cgroup_v1_and_no_docker_stats():
    got = bench.parse_server_memory(SERVER_V1)
    assert (got["rss_mb"], got["processes"], got["cgroup_anon_mb"]) == (100.0, 1, 100.0)
    assert (got["cgroup_current_mb"], got["docker_stats_mb"]) == (150.0, None)


def test_server_memory_without_processes_is_an_error():
    with pytest.raises(RuntimeError, match="no process of the server's container"):
        bench.parse_server_memory("== cgroup\n/sys/fs/cgroup/x\n== memory.stat\nanon 1\n")


def test_server_memory_reads_the_users_container_on_the_station(capsys):
    class Station:
        def check_output(self, cmd: str) -> str:
            self.cmd = cmd
            return SERVER_V2

    station = Station()
    got = bench.server_memory(station, "bench-01@testbed.example")
    container = got["container"]
    assert container.startswith("jupyter-") and got["rss_mb"] == 120.0
    assert f"docker inspect --format '{{{{.State.Pid}}}}' {container}" in station.cmd
    assert f'--format "{{{{.MemUsage}}}}" {container}' in station.cmd
    assert f"idle server {container}: RSS 120.0 MB" in capsys.readouterr().out


# -- bursts --------------------------------------------------------------------------------


def fake_spawn(ready: dict[str, float | None], calls: list):
    def spawn(base_url: str, user: str, timeout: float) -> dict:
        calls.append((base_url, user, timeout))
        if ready[user] is None:
            return {"user": user, "ok": False, "error": "HubFlowError: boom"}
        return {"user": user, "ok": True, "ready_s": ready[user]}

    return spawn


def test_burst_gives_first_p50_last_and_keeps_the_users_order():
    ready = {"u1": 9.0, "u2": 2.0, "u3": None, "u4": 5.0}
    calls: list = []
    got = bench.spawn_burst("https://h", list(ready), spawn=fake_spawn(ready, calls), timeout=60)
    assert sorted(calls) == [("https://h", u, 60) for u in ready]
    assert [r["user"] for r in got["runs"]] == ["u1", "u2", "u3", "u4"]
    assert (got["users"], got["failures"]) == (4, 1)
    assert (got["first_s"], got["p50_s"], got["all_ready_s"]) == (2.0, 5.0, 9.0)


def test_burst_where_nobody_got_a_server():
    ready = {"u1": None, "u2": None}
    got = bench.spawn_burst("https://h", list(ready), spawn=fake_spawn(ready, []))
    assert got["failures"] == 2
    assert got["first_s"] is got["p50_s"] is got["all_ready_s"] is None
    (row,) = bench.rows({"spawn_burst": got})
    assert row.result == "FAIL" and "first -, p50 -, last -, failed 2" in row.value


def test_large_burst_stops_every_server_then_measures_the_hub_around_it():
    calls: list[str] = []
    probes = iter(
        [
            bench.parse_hub_probe(hub_probe_output(utime=100, stime=0, servers=0)),
            bench.parse_hub_probe(hub_probe_output(utime=1100, stime=500, servers=50)),
        ]
    )
    times = iter([100.0, 130.0])

    def stop():
        calls.append("stop")
        return {"stopped": 27, "seconds": 4.0}

    def probe():
        calls.append("probe")
        return next(probes)

    def burst(base_url, users):
        calls.append(f"burst {len(users)}")
        return {"users": len(users), "runs": [], "all_ready_s": 29.0}

    got = bench.spawn_burst_large(
        None,
        "https://h",
        ["u"] * 50,
        stop=stop,
        probe=probe,
        burst=burst,
        clock=lambda: next(times),
    )
    assert calls == ["stop", "probe", "burst 50", "probe"]
    assert got["stopped_before"] == {"stopped": 27, "seconds": 4.0}
    hub = got["hub"]
    assert (hub["cpu_s"], hub["wall_s"], hub["cpu_pct"]) == (15.0, 30.0, 50.0)
    assert (hub["servers_running"], hub["rss_mb"]) == (50, 302.7)


def test_large_burst_keeps_its_figures_when_the_hub_cannot_be_read():
    def probe():
        raise RuntimeError("no running jupyterhub process")

    got = bench.spawn_burst_large(
        None,
        "https://h",
        ["u"],
        stop=lambda: {},
        probe=probe,
        burst=lambda b, u: {"users": 1, "all_ready_s": 3.0},
    )
    assert got["all_ready_s"] == 3.0
    assert got["hub"] == {"error": "RuntimeError: no running jupyterhub process"}


# -- stopping every server through the hub's API as the admin ------------------------------


class FakeResponse:
    def __init__(self, status: int, body=None):
        self.status_code, self.body, self.text = status, body, json.dumps(body)

    def json(self):
        return self.body


class FakeHubAPI:
    """Users with a server: "running", or "spawn" (pending, running at the next look)."""

    def __init__(self, servers: dict[str, str], stuck: bool = False):
        self.servers, self.stuck = servers, stuck
        self.deleted: list[str] = []
        self.logins: list[str] = []

    def get(self, url, headers, timeout):
        assert url == "https://h/jupyter/hub/api/users?state=active"
        assert headers["X-XSRFToken"] == "tok"
        active = [
            {"name": n, "pending": None if s == "running" else s} for n, s in self.servers.items()
        ]
        if not self.stuck:
            self.servers = {n: "running" for n in self.servers}
        return FakeResponse(200, active)

    def delete(self, url, headers, timeout):
        name = url.split("/users/")[1].split("/")[0]
        self.deleted.append(name)
        self.servers.pop(name, None)
        return FakeResponse(202)


@pytest.fixture()
def hub_api(monkeypatch):
    def make(servers, stuck=False):
        api = FakeHubAPI(servers, stuck)

        class Session:
            def __init__(self, base_url):
                self.http = api

            def login(self, user):
                api.logins.append(user)

            def _hub_xsrf(self):
                return {"X-XSRFToken": "tok"}

            def hub(self, path):
                return "https://h/jupyter/" + path

        monkeypatch.setattr(bench, "HubSession", Session)
        monkeypatch.setattr(bench.time, "sleep", lambda s: None)
        return api

    return make


def test_stop_servers_as_the_admin_waits_for_pending_ones(hub_api):
    api = hub_api({"alice": "spawn", "bench-01": "running", "burst-01": "running"})
    got = bench.stop_servers("https://h")
    assert api.logins == [bench.ADMIN]
    assert api.deleted == ["bench-01", "burst-01", "alice"]  # alice once her spawn is done
    assert got["stopped"] == 3 and api.servers == {}


def test_stop_servers_gives_up_after_its_deadline(hub_api):
    hub_api({"stuck-01": "stop"}, stuck=True)
    with pytest.raises(RuntimeError, match="servers still active after 0 s: stuck-01"):
        bench.stop_servers("https://h", timeout=0)


# -- in Chromium -----------------------------------------------------------------------------


class FakePage:
    """``url`` is the page's address once a wait ended: ``urls`` in turn, then the last."""

    def __init__(self, log: list, fail_at: str | None = None, urls: list[str] | None = None):
        self.log, self.fail_at = log, fail_at
        self.urls = list(urls or ["https://h/jupyter/user/x/lab"])
        self.url = ""

    def _do(self, what: str):
        self.log.append(what)
        if self.fail_at and what.startswith(self.fail_at):
            raise TimeoutError(f"{what}: timeout 1000ms exceeded")

    def goto(self, url, timeout):
        self._do(f"goto {url}")

    def fill(self, selector, value, timeout):
        self._do(f"fill {selector} {value}")

    def click(self, selector, timeout):
        self._do(f"click {selector}")

    def wait_for_url(self, pattern, timeout):
        self._do(f"url {pattern.pattern}")
        self.url = self.urls.pop(0) if len(self.urls) > 1 else self.urls[0]

    def wait_for_selector(self, selector, state, timeout):
        self._do(f"wait {selector} {state}")


class FakeBrowser:
    def __init__(self, fail_at: str | None = None, urls: list[str] | None = None):
        self.log: list[str] = []
        self.fail_at = fail_at
        self.urls = urls
        self.closed = False

    def new_context(self, **kw):
        assert kw["ignore_https_errors"] is True
        browser = self

        class Context:
            def new_page(self):
                return FakePage(browser.log, browser.fail_at, browser.urls)

            def close(self):
                browser.log.append("context closed")

        return Context()

    def close(self):
        self.closed = True


LAB_OR_FORM = "{lab}|/jupyter/hub/spawn(/|$|\\?)"


def test_browser_login_waits_for_jupyterlab_rendered():
    name = bench.identity_to_username("browser-01@testbed.example")
    browser = FakeBrowser(urls=[f"https://h/jupyter/user/{name}/lab"])
    got = bench.browser_login(browser, "https://h", "browser-01@testbed.example")
    assert got["user"] == name
    assert got["ok"] is True and got["ready_s"] >= 0 and got["spawn_form"] is False
    lab = f"/jupyter/user/{re.escape(name)}/lab"
    assert browser.log == [
        "goto https://h/jupyter/",
        "fill input[name=username] browser-01@testbed.example",
        "click button[type=submit]",
        "url " + LAB_OR_FORM.format(lab=lab),
        f"url {lab}",
        "wait #jp-main-dock-panel visible",
        "wait #jupyterlab-splash detached",
        "context closed",
    ]


def test_browser_login_presses_start_on_the_spawn_form():
    name = bench.identity_to_username("browser-01@testbed.example")
    browser = FakeBrowser(
        urls=["https://h/jupyter/hub/spawn", f"https://h/jupyter/user/{name}/lab"]
    )
    got = bench.browser_login(browser, "https://h", "browser-01@testbed.example")
    assert got["ok"] is True and got["spawn_form"] is True
    lab = f"/jupyter/user/{re.escape(name)}/lab"
    assert browser.log[3:6] == [
        "url " + LAB_OR_FORM.format(lab=lab),
        "click #spawn_form [type=submit]",
        f"url {lab}",
    ]


def test_browser_login_that_never_renders_is_a_failed_sample():
    browser = FakeBrowser(fail_at="wait #jupyterlab-splash")
    got = bench.browser_login(browser, "https://h", "browser-01@testbed.example")
    assert got["ok"] is False and got["error"].startswith("TimeoutError: wait #jupyterlab-splash")
    assert browser.log[-1] == "context closed"


def fake_playwright(monkeypatch, browser: FakeBrowser) -> list:
    launched: list = []

    class PW:
        class chromium:  # noqa: N801 - Playwright's attribute
            @staticmethod
            def launch(**kw):
                launched.append(kw)
                return browser

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    module = types.ModuleType("playwright.sync_api")
    module.sync_playwright = PW
    monkeypatch.setitem(sys.modules, "playwright.sync_api", module)
    return launched


def test_spawn_browser_launches_chromium_as_the_browser_tests_do(monkeypatch, tmp_path):
    chromium = tmp_path / "chromium"
    chromium.write_text("")
    browser = FakeBrowser()
    launched = fake_playwright(monkeypatch, browser)
    answers = iter([1.9, None, 2.4, 2.1])

    def login(b, base_url, user):
        assert b is browser and base_url == "https://h"
        ready = next(answers)
        if ready is None:
            return {"user": user, "ok": False, "error": "TimeoutError: x"}
        return {"user": user, "ok": True, "ready_s": ready}

    users = ["b1", "b2", "b3", "b4"]
    got = bench.spawn_browser(
        "https://h", users, chromium=str(chromium), login=login, sleep=lambda s: None
    )
    assert launched == [
        {"executable_path": str(chromium), "headless": True, "args": bench.CHROMIUM_ARGS}
    ]
    assert browser.closed
    assert (got["failures"], got["p50_s"], got["first_s"]) == (1, 2.1, 1.9)
    assert [r["user"] for r in got["runs"]] == users


def test_spawn_browser_without_playwright_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    with pytest.raises(RuntimeError, match="Playwright is not importable"):
        bench.spawn_browser("https://h", ["b1"])


def test_spawn_browser_without_chromium_is_an_error(monkeypatch, tmp_path):
    fake_playwright(monkeypatch, FakeBrowser())
    with pytest.raises(RuntimeError, match="missing: run `make host`"):
        bench.spawn_browser("https://h", ["b1"], chromium=str(tmp_path / "none"))


# -- the whole run, every step faked ---------------------------------------------------------


@pytest.fixture()
def faked_station(monkeypatch, tmp_path):
    """Every step of main() answers at once with figures that meet their targets."""
    runs = [{"ok": True, "ready_s": 0.8}]
    ansible_calls: list[str] = []

    def ansible(inventory, playbook, logfile, extra, env=None):
        strategy = (env or {}).get("ANSIBLE_STRATEGY")
        ansible_calls.append(f"{playbook.name} ({strategy})" if strategy else playbook.name)
        return {"seconds": 20.0, "ok": 9, "changed": 0, "unreachable": 0, "failed": 0}

    def burst(users, first, p50, p95, last):
        """A burst's figures as spawn_burst returns them, every user served."""
        return {"users": len(users), "runs": runs * len(users), "first_s": first,
                "p50_s": p50, "p95_s": p95, "all_ready_s": last, "failures": 0}  # fmt: skip

    steps = {
        "ansible": ansible,
        "image_size": lambda inst: {"gb": 0.9},
        "spawn_single": lambda url, users: {
            "runs": runs * len(users),
            "p50_s": 0.8,
            "p95_s": 0.9,
            "failures": 0,
            "cpu_s_median": 0.5,
        },
        "server_memory": lambda inst, user: {"rss_mb": 100.0, "processes": 1},
        "spawn_burst": lambda url, users: burst(users, 1.0, 2.0, 3.0, 4.0),
        "cluster_burst": lambda users, out_dir: {
            **burst(users, 1.5, 5.0, 7.0, 8.0),
            "nodes": {"tb-swarm-w1": len(users) // 2, "tb-swarm-w2": len(users) - len(users) // 2},
            "converge_s": 400.0,
        },
        "spawn_burst_unlimited": lambda inst, url, users: burst(users, 3.0, 4.0, 5.0, 6.0),
        "spawn_burst_large": lambda inst, url, users: {
            "users": len(users),
            "runs": runs,
            "first_s": 1.0,
            "p50_s": 2.0,
            "p95_s": 3.0,
            "all_ready_s": 20.0,
            "failures": 0,
            "hub": {"error": "not read"},
        },
        "stop_servers": lambda url: {"stopped": 0},
        "auth_overhead": lambda inst, url, user: {"ratio": {"auth": 1.5, "auth_cached": 1.1}},
        "batch_speedup": lambda inst, n, jobs: {
            "experiments": n,
            "jobs": jobs,
            "speedup": 2.0,
            "sequential_s": 40.0,
            "batch_s": 20.0,
            "runner_speedup": None,
            "runner_baseline_jobs": 1,
            "failures": 0,
            "kernel_start_s": 0.4,
            "empty_run_s": 0.3,
        },
        "nist_seeding": lambda inst: {
            "experiments": 24,
            "access_experiments": 4,
            "cold": {"seconds": 90.0, "rc": 0, "nist": {"measured": 24}},
            "warm": {"seconds": 10.0, "rc": 0, "nist": {"from_cache": 24, "measured": 0}},
        },
        "scrape_overhead": lambda inst: {
            "window_s": 45.0,
            "scraped_cpu_pct": 0.511,
            "not_scraped_cpu_pct": 0.467,
            "overhead_cpu_pct": 0.044,
        },
        "m2e_evaluation": lambda inst: {
            "experiment": "exp-001",
            "import_s": 0.2,
            "first_call_s": 1.0,
            "first_s": 1.2,
            "second_call_s": 0.1,
        },
        "m2e_notebook": lambda inst, jobs: {
            "jobs": jobs,
            "seconds": 60.0,
            "runs": 24,
            "failures": 0,
            "worst_error_ms": 0.5,
            "worst_experiment": "exp-002",
        },
    }
    for name, fake in steps.items():
        monkeypatch.setattr(bench, name, fake)
    monkeypatch.setattr(bench.Instance, "ip", lambda self: "10.9.9.9")
    return tmp_path, ansible_calls


def test_without_playwright_the_browser_row_is_not_measured_and_the_run_fails(
    monkeypatch, faked_station, capsys
):
    tmp_path, ansible_calls = faked_station
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    code = bench.main(["--json", str(tmp_path / "bench.json"), "--samples", "1", "--burst", "2"])
    out = capsys.readouterr().out
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.startswith("login -> JupyterLab rendered")]
    assert "not measured (RuntimeError: Playwright is not importable" in line
    assert line.split()[-1] == "FAIL"
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["failed_steps"] == ["spawn_browser"]
    # the start line's baseline, in the same run, as a reported row
    # the burst on a swarm, after the bench station, as a reported row
    (swarm,) = [ln for ln in out.splitlines() if ln.startswith("burst on a swarm")]
    assert "(20 users)" in swarm and "servers on tb-swarm-w1 10, tb-swarm-w2 10" in swarm
    (base,) = [ln for ln in out.splitlines() if "(no start line: baseline)" in ln]
    assert "first 3 s, p50 4 s, last 6 s, failed 0" in base and base.split()[-1] == "-"
    # issue 15's figures: in the JSON and in the table, each beside its target
    assert saved["m2e_notebook"]["worst_error_ms"] == 0.5 and saved["nist_seed"]["cold"]
    seed = next(ln for ln in out.splitlines() if ln.startswith("seeding the demo data"))
    assert "90 s (24 measured" in seed and seed.split()[-1] == "PASS"
    (worst,) = [ln for ln in out.splitlines() if ln.startswith("worst |m2e_measured_ms")]
    assert "0.5 ms (exp-002)" in worst and worst.split()[-1] == "PASS"
    (scrape,) = [ln for ln in out.splitlines() if ln.startswith("hub CPU with Prometheus")]
    assert "(45 s each)" in scrape
    assert "0.044 % of one core (0.511 % scraped, 0.467 % not)" in scrape
    # the re-run twice: the linear baseline first, then with Mitogen (ansible.cfg's)
    assert ansible_calls == [
        "demo-clean.yml",
        "demo.yml",
        "site.yml (linear)",
        "site.yml (mitogen_linear)",
        "demo-clean.yml",
    ]


def test_when_the_fresh_converge_fails_every_later_figure_is_not_measured(
    monkeypatch, faked_station, capsys
):
    tmp_path, _ = faked_station

    def ansible(inventory, playbook, logfile, extra, env=None):
        if playbook.name == "demo.yml":
            raise RuntimeError("demo.yml exited 2: see converge.log")
        return {"seconds": 20.0, "changed": 0}

    monkeypatch.setattr(bench, "ansible", ansible)
    assert bench.main(["--json", str(tmp_path / "bench.json")]) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "not measured" in ln]
    # the cluster's burst needs no bench station: it is still measured
    station_only = {k: f for k, f in bench.FIGURES.items() if k not in ("rerun", "cluster_burst")}
    assert len(lines) == sum(len(f) for f in station_only.values())
    assert all(ln.split()[-1] == "FAIL" for ln in lines)
    assert any(ln.startswith("burst on a swarm") for ln in out.splitlines())
    assert any(ln.startswith("memory of one idle user server") for ln in lines)


# -- the plot --------------------------------------------------------------------------------


def test_plot_marks_the_bursts_users_in_the_order_they_were_served(tmp_path):
    res = {
        "spawn_single": {"runs": [{"ok": True, "ready_s": 0.8}, {"ok": True, "ready_s": 1.0}]},
        "spawn_browser": {"runs": [{"ok": True, "ready_s": 2.2}, {"ok": False}]},
        "spawn_burst": {
            "users": 3,
            "runs": [{"ok": True, "ready_s": s} for s in (9.0, 1.5, 4.0)],
        },
        "spawn_burst_large": {
            "users": 4,
            "runs": [{"ok": True, "ready_s": s} for s in (30.0, 2.0, 12.0)] + [{"ok": False}],
        },
    }
    path = bench.plot(res, tmp_path / "spawn.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_burst_marks_are_first_p50_and_last():
    marks: list[tuple[str, float, float]] = []

    class Axes:
        def plot(self, *a, **k):
            pass

        def annotate(self, text, xy, **k):
            marks.append((text, *xy))

    bench._marks(Axes(), [1.5, 4.0, 9.0], "C0")
    assert marks == [
        ("first 1.5 s", 1.5, pytest.approx(1 / 3)),
        ("p50 4.0 s", 4.0, pytest.approx(2 / 3)),
        ("last 9.0 s", 9.0, 1.0),
    ]


def test_a_failed_baseline_is_reported_and_the_mitogen_rerun_still_runs(tmp_path, monkeypatch):
    calls = []

    def ansible(inventory, playbook, logfile, extra, env=None):
        calls.append((playbook.name, (env or {}).get("ANSIBLE_STRATEGY")))
        if (env or {}).get("ANSIBLE_STRATEGY") == "linear":
            raise RuntimeError("site.yml exited 2: see rerun-linear.log")
        return {"seconds": 29.0, "ok": 315, "changed": 0, "unreachable": 0, "failed": 0}

    monkeypatch.setattr(bench, "ansible", ansible)
    res = bench.rerun(tmp_path / "inventory", tmp_path)
    assert calls == [("site.yml", "linear"), ("site.yml", "mitogen_linear")]
    assert res["linear_error"] == "site.yml exited 2: see rerun-linear.log"
    assert res["seconds"] == 29.0 and "linear" not in res
    row, baseline = bench.rows({"rerun": res})
    assert row.result == "PASS"
    assert baseline.value == "not measured (site.yml exited 2: see rerun-linear.log)"
    assert baseline.result == "FAIL"


# -- the start line's baseline in the same run -------------------------------------------


def test_the_baseline_burst_runs_without_the_start_line_and_restores_it_even_if_it_fails():
    calls: list[str] = []

    def stop():
        calls.append("stop")
        return {"stopped": 21, "seconds": 3.0}

    def switch(value):
        calls.append(f"switch {value}")

    def burst(base_url, users):
        calls.append(f"burst {len(users)}")
        return {
            "users": len(users),
            "runs": [],
            "first_s": 8.3,
            "p50_s": 21.6,
            "all_ready_s": 25.9,
            "failures": 0,
        }

    got = bench.spawn_burst_unlimited(
        None, "https://h", ["u"] * 20, stop=stop, switch=switch, burst=burst
    )
    assert calls == ["stop", "switch 0", "burst 20", "switch restore"]
    assert got["stopped_before"] == {"stopped": 21, "seconds": 3.0}
    (row,) = bench.rows({"spawn_burst_unlimited": got})
    assert row.figure.endswith("(no start line: baseline) (20 users)")
    assert row.value == "first 8.3 s, p50 21.6 s, last 25.9 s, failed 0"
    assert (row.target, row.met) == ("report", None)

    def broken(base_url, users):
        calls.append("burst")
        raise RuntimeError("the hub went away")

    calls.clear()
    with pytest.raises(RuntimeError, match="went away"):
        bench.spawn_burst_unlimited(
            None, "https://h", ["u"], stop=stop, switch=switch, burst=broken
        )
    assert calls == ["stop", "switch 0", "burst", "switch restore"]


def test_the_start_line_switch_edits_the_settings_and_puts_them_back_byte_for_byte(tmp_path):
    """The station's script for real, with systemctl faked and a hub health check served
    here: ``0`` writes concurrent_starts 0 and keeps the original; ``restore`` moves the
    original back unchanged; both restart the hub and wait for its health check."""
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            self.send_response(200 if self.path == "/jupyter/hub/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = tmp_path / "settings.json"
    port = server.server_address[1]
    original = (
        f'{{"hub": {{"base_url": "/jupyter/"}}, "proxy": {{"public_port": {port}}},\n'
        ' "spawner": {"concurrent_starts": 2, "image": "x"}}\n'
    )
    settings.write_text(original)
    settings.chmod(0o600)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    restarts = tmp_path / "restarts"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {restarts}\n')
    (fake_bin / "systemctl").chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "SETTINGS": str(settings),
        "KEEP": str(tmp_path / "keep.json"),
    }

    def run(value):
        return subprocess.run(
            ["sh", "-c", f"set -- {value}\n{bench.START_LINE_SWITCH}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        r = run("0")
        assert r.returncode == 0, r.stderr
        edited = json.loads(settings.read_text())
        assert edited["spawner"] == {"concurrent_starts": 0, "image": "x"}
        assert settings.stat().st_mode & 0o777 == 0o600
        r = run("0")  # twice: the kept original is still the station's own
        assert r.returncode == 0, r.stderr
        r = run("restore")
        assert r.returncode == 0, r.stderr
        assert settings.read_text() == original
        assert not (tmp_path / "keep.json").exists()
        assert restarts.read_text().splitlines() == ["restart jupyterhub"] * 3
    finally:
        server.shutdown()


class FakeStation:
    """The cluster's manager: its address and what ``docker service ps`` says."""

    def __init__(self, nodes: str):
        self.nodes = nodes
        self.commands: list[str] = []

    def ip(self) -> str:
        return "172.17.0.2"

    def check_output(self, cmd: str) -> str:
        self.commands.append(cmd)
        return self.nodes


def test_the_cluster_burst_converges_the_swarm_bursts_then_destroys_it(tmp_path):
    calls = []

    def molecule(command, logfile, extra):
        calls.append((command, extra))

    def burst(base_url, users):
        calls.append(("burst", base_url, len(users)))
        return {"users": len(users), "runs": [], "first_s": 2.1, "p50_s": 9.2,
                "all_ready_s": 17.5, "failures": 0}  # fmt: skip

    station = FakeStation("tb-swarm-w1\ntb-swarm-w2\ntb-swarm-w1\n")
    users = ["swarm-01@testbed.example", "swarm-02@testbed.example", "swarm-03@testbed.example"]
    got = bench.cluster_burst(users, tmp_path, molecule=molecule, station=station, burst=burst)
    users_file = (tmp_path / "cluster-users.json").resolve()
    assert calls == [
        ("converge", ["-e", f"@{users_file}"]),
        ("burst", "https://172.17.0.2", 3),
        ("destroy", None),
    ]
    # the simulator's login knows the burst's users
    assert json.loads(users_file.read_text()) == {
        "testbed_sim_auth_users": [{"name": u} for u in users]
    }
    assert got["nodes"] == {"tb-swarm-w1": 2, "tb-swarm-w2": 1}
    (row,) = bench.rows({"cluster_burst": got})
    assert row.figure.startswith("burst on a swarm: station + 2 workers")
    assert row.value == (
        "first 2.1 s, p50 9.2 s, last 17.5 s, failed 0; servers on tb-swarm-w1 2, tb-swarm-w2 1"
    )
    assert (row.target, row.met) == ("report", None)


def test_the_cluster_is_destroyed_when_its_burst_fails(tmp_path):
    calls = []

    def molecule(command, logfile, extra):
        calls.append(command)

    def broken(base_url, users):
        raise RuntimeError("no hub")

    with pytest.raises(RuntimeError, match="no hub"):
        bench.cluster_burst(
            ["u"], tmp_path, molecule=molecule, station=FakeStation(""), burst=broken
        )
    assert calls == ["converge", "destroy"]


def test_cluster_options_are_checked():
    _, problems = bench.parse_args(["--cluster-burst", "-1"])
    assert problems == ["--cluster-burst must be 0 (no cluster step) or more (got -1)"]
    _, problems = bench.parse_args(["--cluster-only", "--cluster-burst", "0"])
    assert problems == ["--cluster-only needs --cluster-burst of at least 1"]
    args, problems = bench.parse_args(["--cluster-burst", "4"])
    assert problems == []
    users = bench.bench_users(args)
    assert users["cluster"] == [f"swarm-0{i}@testbed.example" for i in range(1, 5)]
    assert not set(users["cluster"]) & set(users["all"])  # not the bench station's
