"""The benchmark harness's statistics, targets, report and steps, with fakes for the
machine and the base station (the measuring itself needs a base station)."""

from __future__ import annotations

import json
import statistics
import subprocess

import pytest
import yaml

from testbed_devtools import bench, stats

RECAP = """
PLAY RECAP *********************************************************************
localhost                  : ok=3    changed=1    unreachable=0    failed=0    skipped=0
testbed-hub-bench          : ok=151  changed=63   unreachable=0    failed=0    skipped=20
"""


def test_parse_recap_sums_hosts():
    assert bench.parse_recap("TASK [x]\nok: [h]\n" + RECAP) == {
        "ok": 154,
        "changed": 64,
        "unreachable": 0,
        "failed": 0,
    }


def test_parse_recap_ignores_lines_before_the_recap():
    text = "h : ok=9 changed=9 unreachable=0 failed=0\n" + RECAP
    assert bench.parse_recap(text)["changed"] == 64
    assert bench.parse_recap("no recap at all")["changed"] == 0


# -- stats: one percentile definition ----------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [
        ([3.0], 50, 3.0),
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # between the two middle ranks
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order does not matter
        ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8),  # h = 3.8: 4 + 0.8 * (5 - 4)
        (list(range(1, 101)), 90, 90.1),  # h = 89.1 (NumPy's default gives 90.1)
        ([1.0, 2.0, 10.0], 0, 1.0),
        ([1.0, 2.0, 10.0], 100, 10.0),
    ],
)
def test_percentile_interpolates_linearly_between_closest_ranks(values, q, want):
    assert stats.percentile(values, q) == pytest.approx(want)


def test_p50_is_the_median():
    for values in ([5.0, 1.0, 3.0], [5.0, 1.0, 3.0, 8.0], [0.2] * 4):
        assert stats.percentile(values, 50) == pytest.approx(statistics.median(values))


def test_percentile_refuses_nothing_and_out_of_range():
    with pytest.raises(ValueError, match="empty"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        stats.percentile([1.0], 101)


def test_summary_in_the_callers_unit():
    assert stats.summary([4.0, 1.0, 2.0, 3.0]) == {
        "n": 4,
        "p50": 2.5,
        "p95": 3.85,
        "mean": 2.5,
        "min": 1.0,
        "max": 4.0,
    }
    assert stats.summary([1.0, 2.0, 3.0, 10.0], ndigits=2)["p95"] == 8.95


def test_compare_divides_medians_by_the_baseline():
    samples = {"noauth": [0.002, 0.002, 0.001, 0.003], "auth": [0.003, 0.004, 0.002, 0.003]}
    out = stats.compare(samples, "noauth", scale=1000)
    assert out["baseline"] == "noauth"
    assert out["cases"]["noauth"]["p50"] == 2.0 and out["cases"]["auth"]["p50"] == 3.0
    assert out["ratio"] == {"noauth": 1.0, "auth": 1.5}
    with pytest.raises(ValueError, match="baseline case 'x'"):
        stats.compare(samples, "x")
    with pytest.raises(ValueError, match="nothing to divide by"):
        stats.compare({"a": [0.0]}, "a")


def test_ratio_of_nothing_is_none():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(3.0, 0.0) is None


# -- stats: targets, rows, table, JSON ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("fresh_converge_s", "<= 180 s"),
        ("rerun_s", "<= 30 s"),
        ("spawn_p50_s", "p50 <= 0.9 s"),
        ("spawn_p95_s", "p95 <= 1.2 s"),
        ("spawn_cpu_s", "<= 0.8 s"),
        ("browser_p50_s", "p50 <= 2.5 s"),
        ("burst_first_s", "first <= 3 s"),
        ("burst_p50_s", "p50 <= 7 s"),
        ("burst_last_s", "last <= 12 s"),
        ("burst_large_last_s", "last <= 35 s"),
        ("server_rss_mb", "<= 150 MB"),
        ("empty_run_s", "<= 0.5 s"),
        ("batch_speedup", ">= 1.9x"),
        ("auth_ratio_cached", "<= 1.2x"),
        ("image_size_gb", "<= 1 GB"),
        ("nist_seed_cold_s", "<= 120 s"),
        ("m2e_eval_s", "<= 2 s"),
        ("m2e_notebook_error_ms", "<= 1 ms"),
    ],
)
def test_each_target_of_issue_18_is_defined_once_with_its_direction_and_unit(key, text):
    target = stats.TARGETS[key]
    assert target.key == key and str(target) == text
    step = 0.01
    inside = target.limit - step if target.op == "<=" else target.limit + step
    outside = target.limit + step if target.op == "<=" else target.limit - step
    assert target.met(target.limit) and target.met(inside)
    assert not target.met(outside) and not target.met(None)


def test_judge_adds_conditions_to_the_target():
    row = stats.judge("re-run", "28 s, changed=2", "rerun_s", 28.0, ("changed=0", False))
    assert (row.target, row.met, row.result) == ("<= 30 s, changed=0", False, "FAIL")
    row = stats.judge("re-run", "28 s, changed=0", "rerun_s", 28.0, ("changed=0", True))
    assert row.result == "PASS"
    assert stats.Row("cpu", "1.4 s").result == "-"


@pytest.mark.parametrize(
    ("p50", "p95", "result"),
    [(0.9, 1.2, "PASS"), (0.91, 1.0, "FAIL"), (0.8, 1.21, "FAIL"), (None, None, "FAIL")],
)
def test_judge_all_needs_every_target(p50, p95, result):
    row = stats.judge_all("spawn", "x", {"spawn_p50_s": p50, "spawn_p95_s": p95})
    assert (row.target, row.result) == ("p50 <= 0.9 s, p95 <= 1.2 s", result)


def test_not_measured_is_a_failure_beside_its_targets():
    row = stats.not_measured("burst", ["burst_first_s", "burst_last_s"], "RuntimeError:\n  boom")
    assert (row.value, row.target, row.result) == (
        "not measured (RuntimeError: boom)",
        "first <= 3 s, last <= 12 s",
        "FAIL",
    )
    row = stats.not_measured("hub CPU", [], "")
    assert (row.value, row.target, row.result) == ("not measured", "report", "FAIL")


def test_table_prints_each_figure_beside_its_target():
    text = stats.table([stats.judge("image", "1.50 GB", "image_size_gb", 1.5)])
    header, rule, line = text.splitlines()
    assert header.split() == ["figure", "value", "target", "result"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert line.split()[-1] == "FAIL"
    assert header.index("value") == line.index("1.50 GB")
    assert header.index("target") == line.index("<= 1 GB")


def test_write_json_makes_the_folder(tmp_path):
    path = stats.write_json(tmp_path / "a" / "b.json", {"x": [1, 2]})
    assert path.read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'


# -- the machine's CPU, with a fake /proc/stat and a fake clock ---------------------------


def test_busy_cpu_seconds_reads_the_non_idle_ticks(tmp_path):
    stat = tmp_path / "stat"
    #                user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  1000 20 300 90000 500 6 4 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert bench.busy_cpu_seconds(stat, ticks_per_s=100) == pytest.approx(13.4)


class FakeMachine:
    """A clock and a busy-CPU counter: idle at 0.1 CPU s/s, 2 CPU s per spawn."""

    IDLE = 0.1

    def __init__(self):
        self.t = 1000.0
        self.busy = 50.0
        self.spawned: list[str] = []

    def clock(self) -> float:
        return self.t

    def cpu(self) -> float:
        return self.busy

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.busy += self.IDLE * seconds

    def spawn(self, base_url: str, user: str) -> dict:
        self.spawned.append(user)
        ready = 1.0 + len(self.spawned) / 10
        self.sleep(ready)
        self.busy += 2.0
        if user == "broken":
            return {"user": user, "ok": False, "error": "HubFlowError: boom"}
        return {"user": user, "ok": True, "ready_s": ready, "polls": 3}


def test_spawn_single_subtracts_the_idle_rate(capsys):
    m = FakeMachine()
    res = bench.spawn_single(
        "https://h",
        ["a", "b", "broken", "c"],
        settle_s=3.0,
        idle_s=5.0,
        spawn=m.spawn,
        cpu=m.cpu,
        clock=m.clock,
        sleep=m.sleep,
    )
    assert m.spawned == ["a", "b", "broken", "c"]
    assert res["idle_cpu_rate"] == 0.1
    assert [r["cpu_s"] for r in res["runs"]] == [2.0, 2.0, 2.0, 2.0]
    assert res["cpu_s_median"] == 2.0
    assert res["failures"] == 1
    assert (res["p50_s"], res["p95_s"]) == (1.2, 1.38)  # of 1.1, 1.2, 1.4
    assert "spawn broken: HubFlowError: boom s, cpu 2.0 s" in capsys.readouterr().out


# -- the report ----------------------------------------------------------------------------


def sample_results():
    """Every step's figures, each meeting its target."""
    return {
        "fresh_converge": {"seconds": 175.0, "changed": 63},
        "rerun": {"seconds": 29.6, "changed": 0, "linear": {"seconds": 74.0, "changed": 0}},
        "spawn_single": {
            "runs": [{}] * 5,
            "p50_s": 0.85,
            "p95_s": 1.1,
            "failures": 0,
            "cpu_s_median": 0.7,
        },
        "server_memory": {
            "rss_mb": 120.5,
            "processes": 2,
            "cgroup_anon_mb": 101.0,
            "docker_stats_mb": 140.2,
        },
        "spawn_browser": {"runs": [{}] * 5, "p50_s": 2.2, "p95_s": 2.9, "failures": 0},
        "spawn_burst": {
            "users": 20,
            "first_s": 2.1,
            "p50_s": 6.5,
            "p95_s": 11.0,
            "all_ready_s": 11.8,
            "failures": 0,
        },
        "spawn_burst_large": {
            "users": 50,
            "first_s": 2.5,
            "p50_s": 17.0,
            "p95_s": 31.0,
            "all_ready_s": 33.0,
            "failures": 0,
            "hub": {
                "cpu_s": 21.4,
                "wall_s": 33.1,
                "cpu_pct": 64.7,
                "rss_mb": 310.2,
                "peak_rss_mb": 322.0,
                "servers_running": 50,
            },
        },
        "auth": {"ratio": {"noauth": 1.0, "auth": 2.5, "auth_cached": 1.1}},
        "batch": {
            "experiments": 20,
            "jobs": 2,
            "speedup": 2.0,
            "sequential_s": 44.0,
            "batch_s": 22.0,
            "runner_baseline_jobs": 1,
            "runner_baseline_s": 40.0,
            "runner_speedup": 1.818,
            "failures": 0,
            "kernel_start_s": 0.55,
            "empty_run_s": 0.45,
        },
        "image": {"gb": 0.92},
    }


def test_rows_print_every_figure_of_issue_18_beside_its_target():
    result = {r.figure: (r.value, r.target, r.result) for r in bench.rows(sample_results())}
    assert result == {
        "fresh converge (container + site.yml, image build)": ("175 s", "<= 180 s", "PASS"),
        "idempotent re-run of site.yml (Mitogen, ansible.cfg)": (
            "30 s, changed=0",
            "<= 30 s, changed=0",
            "PASS",
        ),
        "idempotent re-run of site.yml, ANSIBLE_STRATEGY=linear (baseline)": (
            "74 s, changed=0; Mitogen 2.50x faster",
            "report",
            "-",
        ),
        "spawn 1 new user, login -> JupyterLab answers (n=5)": (
            "p50 0.85 s, p95 1.1 s, failed 0",
            "p50 <= 0.9 s, p95 <= 1.2 s, 0 failed",
            "PASS",
        ),
        "CPU seconds per spawn (whole machine, median)": ("0.7 s", "<= 0.8 s", "PASS"),
        "memory of one idle user server (RSS)": (
            "120.5 MB (2 process(es); cgroup anon 101 MB, docker stats 140.2 MB)",
            "<= 150 MB",
            "PASS",
        ),
        "login -> JupyterLab rendered in Chromium (n=5)": (
            "p50 2.2 s, p95 2.9 s, failed 0",
            "p50 <= 2.5 s, 0 failed",
            "PASS",
        ),
        "burst: 20 new users at once, first / p50 / last ready": (
            "first 2.1 s, p50 6.5 s, last 11.8 s, failed 0",
            "first <= 3 s, p50 <= 7 s, last <= 12 s, 0 failed",
            "PASS",
        ),
        "burst: 50 new users at once, last ready": (
            "last 33 s (first 2.5 s, p50 17 s), failed 0",
            "last <= 35 s, 0 failed",
            "PASS",
        ),
        "hub CPU during the burst of 50": (
            "21.4 s CPU in 33.1 s (64.7% of a core)",
            "report",
            "-",
        ),
        "hub RSS after the burst (50 servers running)": (
            "310.2 MB (peak 322 MB)",
            "report",
            "-",
        ),
        "nginx auth_request overhead, cache on (ratio)": ("1.10x", "<= 1.2x", "PASS"),
        "nginx auth_request overhead, cache off (ratio)": ("2.50x", "report", "-"),
        "papermill run of an empty notebook (median)": ("0.45 s", "<= 0.5 s", "PASS"),
        "kernel start and stop (median)": ("0.55 s", "report", "-"),
        "20 experiments, run-notebook --jobs 2 vs papermill CLI loop": (
            "2.00x (44.0 s -> 22.0 s)",
            ">= 1.9x, 0 failed",
            "PASS",
        ),
        "20 experiments, run-notebook --jobs 2 vs --jobs 1": (
            "1.82x (40.0 s -> 22.0 s)",
            "report",
            "-",
        ),
        "notebook image size": ("0.92 GB", "<= 1 GB", "PASS"),
    }


def _with(step: str, **changes) -> dict:
    res = sample_results()
    res[step] = {**res[step], **changes}
    return res


# One figure changed at a time, just past its target: only that row fails.
@pytest.mark.parametrize(
    ("step", "changes", "figure"),
    [
        ("fresh_converge", {"seconds": 181.0}, "fresh converge"),
        ("rerun", {"seconds": 30.5}, "idempotent re-run"),
        ("rerun", {"changed": 1}, "idempotent re-run"),
        ("spawn_single", {"p50_s": 0.91}, "spawn 1 new user"),
        ("spawn_single", {"p95_s": 1.21}, "spawn 1 new user"),
        ("spawn_single", {"failures": 1}, "spawn 1 new user"),
        ("spawn_single", {"p50_s": None, "p95_s": None}, "spawn 1 new user"),
        ("spawn_single", {"cpu_s_median": 0.81}, "CPU seconds per spawn"),
        ("server_memory", {"rss_mb": 150.1}, "memory of one idle user server"),
        ("spawn_browser", {"p50_s": 2.51}, "login -> JupyterLab rendered"),
        ("spawn_browser", {"failures": 2}, "login -> JupyterLab rendered"),
        ("spawn_burst", {"first_s": 3.1}, "burst: 20"),
        ("spawn_burst", {"p50_s": 7.1}, "burst: 20"),
        ("spawn_burst", {"all_ready_s": 12.1}, "burst: 20"),
        ("spawn_burst", {"failures": 1}, "burst: 20"),
        ("spawn_burst_large", {"all_ready_s": 35.1}, "burst: 50"),
        ("spawn_burst_large", {"failures": 1}, "burst: 50"),
        ("batch", {"empty_run_s": 0.51}, "papermill run of an empty notebook"),
        ("batch", {"speedup": 1.89}, "20 experiments, run-notebook --jobs 2 vs papermill"),
        ("batch", {"failures": 1}, "20 experiments, run-notebook --jobs 2 vs papermill"),
    ],
)
def test_each_target_fails_just_past_it_and_only_its_row(step, changes, figure):
    assert all(r.result in ("PASS", "-") for r in bench.rows(sample_results()))
    failed = [r.figure for r in bench.rows(_with(step, **changes)) if r.result == "FAIL"]
    assert len(failed) == 1 and failed[0].startswith(figure), failed


def test_a_failed_step_prints_its_figures_as_not_measured():
    res = sample_results()
    for step in ("spawn_browser", "spawn_burst_large"):
        del res[step]
        res[f"{step}_error"] = "RuntimeError: Playwright is not importable (No module)"
    by_figure = {r.figure: r for r in bench.rows(res)}
    browser = by_figure["login -> JupyterLab rendered in Chromium"]
    assert browser.value.startswith("not measured (RuntimeError: Playwright is not importable")
    assert (browser.target, browser.result) == ("p50 <= 2.5 s", "FAIL")
    for figure, target in (
        ("burst: new users at once, last ready", "last <= 35 s"),
        ("hub CPU during the burst", "report"),
        ("hub RSS after the burst", "report"),
    ):
        assert (by_figure[figure].target, by_figure[figure].result) == (target, "FAIL")


def test_hub_figures_that_failed_are_not_measured_beside_the_burst():
    res = _with("spawn_burst_large", hub={"error": "RuntimeError: the hub restarted"})
    rows = {r.figure: r for r in bench.rows(res)}
    assert rows["burst: 50 new users at once, last ready"].result == "PASS"
    for figure in ("hub CPU during the burst", "hub RSS after the burst"):
        assert rows[figure].value == "not measured (RuntimeError: the hub restarted)"
        assert rows[figure].result == "FAIL"


def test_rerun_with_changes_is_not_idempotent():
    row, baseline = bench.rows({"rerun": {"seconds": 10.0, "changed": 2}})
    assert row.result == "FAIL" and "changed=2" in row.value
    # no baseline measured: the row says so instead of a ratio
    assert baseline.value == "not measured (did not run)"


def test_rerun_is_not_idempotent_when_the_baseline_changed_something():
    """The linear baseline is the first re-run after the converge: what it changed,
    the gated Mitogen run would not see again."""
    row, _baseline = bench.rows(
        {"rerun": {"seconds": 38.0, "changed": 0, "linear": {"seconds": 95.0, "changed": 3}}}
    )
    assert row.result == "FAIL"


def test_rerun_reports_the_linear_baseline_and_mitogens_ratio():
    _row, baseline = bench.rows(
        {"rerun": {"seconds": 38.0, "changed": 0, "linear": {"seconds": 95.0, "changed": 0}}}
    )
    assert baseline.value == "95 s, changed=0; Mitogen 2.50x faster"
    _row, failed = bench.rows(
        {"rerun": {"seconds": 38.0, "changed": 0, "linear_error": "site.yml exited 2"}}
    )
    assert failed.value == "not measured (site.yml exited 2)"


def test_table_skips_missing_steps():
    lines = stats.table(bench.rows({"image": {"gb": 1.5}})).splitlines()
    assert len(lines) == 3 and lines[2].startswith("notebook image size")


def test_every_step_with_rows_has_its_not_measured_figures():
    assert set(bench.ROWS) == set(bench.FIGURES)
    for figures in bench.FIGURES.values():
        for _, keys in figures:
            assert all(key in stats.TARGETS for key in keys)


def test_write_inventory_links_demo_vars_and_adds_users(tmp_path):
    inv = bench.write_inventory(tmp_path / "inv", "tb-bench", ["a@x", "b@x"])
    assert "tb-bench:" in (inv / "hosts.yml").read_text()
    assert (inv / "group_vars").resolve() == bench.DEMO_GROUP_VARS.resolve()
    assert bench.DEMO_GROUP_VARS.is_dir()
    text = (inv / "host_vars" / "tb-bench.yml").read_text()
    body = json.loads(text[text.index("{") :])
    assert body == {"testbed_sim_auth_users": [{"name": "a@x"}, {"name": "b@x"}]}
    # Writing again replaces, not nests, the link.
    bench.write_inventory(tmp_path / "inv", "tb-bench", ["a@x"])
    assert (inv / "group_vars").is_symlink()
    # --no-spawn-form: no resource profiles, so the hub starts without its form
    bench.write_inventory(tmp_path / "inv", "tb-bench", ["a@x"], spawn_form=False)
    text = (inv / "host_vars" / "tb-bench.yml").read_text()
    body = json.loads(text[text.index("{") :])
    assert body == {
        "testbed_sim_auth_users": [{"name": "a@x"}],
        "jupyterhub_profiles": [],
        "notebook_image_keep_previous": 0,
    }
    # the demo's group_vars, which the default (form) bench keeps, do have profiles
    demo = yaml.safe_load((bench.DEMO_GROUP_VARS / "all" / "main.yml").read_text())
    assert len(demo["jupyterhub_profiles"]) == 2


def test_bad_arguments_exit_2_before_anything_runs(capsys, monkeypatch):
    monkeypatch.setattr(bench, "ansible", lambda *a, **k: pytest.fail("must not run"))
    argv = ["--samples", "0", "--experiments", "30", "--burst-large", "0"]
    assert bench.main([*argv, "--browser-samples", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--samples must be at least 1" in err and "seeds 24 experiments" in err
    assert "--burst-large must be at least 1 (got 0)" in err
    assert "--browser-samples must be at least 1 (got -1)" in err


def test_options_and_their_defaults():
    args, problems = bench.parse_args([])
    assert problems == []
    assert (args.samples, args.browser_samples, args.burst, args.burst_large) == (5, 5, 20, 50)
    assert (args.experiments, args.reuse, args.keep) == (20, False, False)
    args, problems = bench.parse_args(["--burst-large", "8", "--browser-samples", "2", "--keep"])
    assert (args.burst_large, args.browser_samples, args.keep, problems) == (8, 2, True, [])


def test_each_step_has_new_users_and_the_station_knows_them_all():
    args, _ = bench.parse_args(["--samples", "2", "--browser-samples", "1", "--burst", "3"])
    users = bench.bench_users(args)
    assert users["single"] == ["bench-01@testbed.example", "bench-02@testbed.example"]
    assert users["browser"] == ["browser-01@testbed.example"]
    assert len(users["burst"]) == 3 and len(users["burst_large"]) == 50
    everyone = users["all"]
    assert len(users["burst_unlimited"]) == 3
    assert not set(users["burst_unlimited"]) & set(users["burst"])
    assert len(everyone) == len(set(everyone)) == 2 + 2 + 1 + 3 + 3 + 50
    assert bench.ADMIN in everyone
    for key in ("single", "browser", "burst", "burst_unlimited", "burst_large"):
        assert set(users[key]) <= set(everyone)


# -- the benchmark listeners on the bench station ---------------------------------------------


class FakeNginxStation:
    def __init__(self, nginx_ok: bool = True):
        self.nginx_ok = nginx_ok
        self.calls: list[tuple[str, str | None]] = []

    def run(self, cmd: str, check: bool = True, input: str | None = None):
        self.calls.append((cmd, input))
        code = 1 if ("nginx -t" in cmd and not self.nginx_ok) else 0
        return subprocess.CompletedProcess(cmd, code, "", "nginx: [emerg] no" if code else "")


def test_install_listeners_tests_reloads_and_waits():
    station = FakeNginxStation()
    assert bench.install_listeners(station) == "/etc/nginx/conf.d/testbed-hub-bench.conf"
    (write, conf), (wait, _) = station.calls
    assert write == (
        "cat > /etc/nginx/conf.d/testbed-hub-bench.conf && nginx -t -q && systemctl reload nginx"
    )
    assert conf == bench.proxy_bench.listeners_conf(8090, cache_seconds=10)
    assert "curl -s -o /dev/null http://127.0.0.1:8092/" in wait


def test_install_listeners_removes_a_file_nginx_refuses():
    station = FakeNginxStation(nginx_ok=False)
    with pytest.raises(RuntimeError, match="nginx refused the benchmark listeners"):
        bench.install_listeners(station)
    assert station.calls[-1][0] == "rm -f /etc/nginx/conf.d/testbed-hub-bench.conf"


# -- the plot -------------------------------------------------------------------------------


def test_plot_draws_the_spawn_curves(tmp_path):
    res = {
        "spawn_single": {"runs": [{"ok": True, "ready_s": 1.9}, {"ok": True, "ready_s": 2.1}]},
        "spawn_burst": {"users": 3, "runs": [{"ok": True, "ready_s": 9.0}, {"ok": False}]},
    }
    path = bench.plot(res, tmp_path / "spawn.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_plot_without_spawn_figures_draws_nothing(tmp_path):
    assert bench.plot({"image": {"gb": 1.0}}, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
