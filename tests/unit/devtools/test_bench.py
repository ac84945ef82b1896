"""The benchmark harness's statistics, targets, report and steps, with fakes for the
machine and the base station (the measuring itself needs a base station)."""

from __future__ import annotations

import json
import statistics
import subprocess

import pytest

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


def test_each_target_is_defined_once_with_its_direction_and_unit():
    t = stats.TARGETS
    assert str(t["fresh_converge_s"]) == "<= 360 s"
    assert str(t["batch_speedup"]) == ">= 1.7x"
    assert str(t["image_size_gb"]) == "<= 1.2 GB"
    assert t["batch_speedup"].met(1.7) and not t["batch_speedup"].met(1.69)
    assert t["spawn_p50_s"].met(2.0) and not t["spawn_p50_s"].met(2.01)
    assert not t["spawn_p50_s"].met(None)


def test_judge_adds_conditions_to_the_target():
    row = stats.judge("re-run", "42 s, changed=2", "rerun_s", 42.0, ("changed=0", False))
    assert (row.target, row.met, row.result) == ("<= 45 s, changed=0", False, "FAIL")
    row = stats.judge("re-run", "42 s, changed=0", "rerun_s", 42.0, ("changed=0", True))
    assert row.result == "PASS"
    assert stats.Row("cpu", "1.4 s").result == "-"


def test_table_prints_each_figure_beside_its_target():
    text = stats.table([stats.judge("image", "1.50 GB", "image_size_gb", 1.5)])
    header, rule, line = text.splitlines()
    assert header.split() == ["figure", "value", "target", "result"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert line.split()[-1] == "FAIL"
    assert header.index("value") == line.index("1.50 GB")
    assert header.index("target") == line.index("<= 1.2 GB")


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
    return {
        "fresh_converge": {"seconds": 251.0, "changed": 63},
        "rerun": {"seconds": 52.4, "changed": 0},
        "spawn_single": {
            "runs": [{}] * 5,
            "p50_s": 1.8,
            "p95_s": 2.4,
            "failures": 0,
            "cpu_s_median": 3.1,
        },
        "spawn_burst": {
            "users": 20,
            "p50_s": 12.0,
            "p95_s": 25.0,
            "all_ready_s": 31.0,
            "failures": 0,
        },
        "auth": {"ratio": {"noauth": 1.0, "auth": 2.5, "auth_cached": 1.1}},
        "batch": {
            "experiments": 20,
            "jobs": 2,
            "speedup": 2.6,
            "sequential_s": 57.5,
            "batch_s": 22.1,
            "failures": 0,
            "kernel_start_s": 0.55,
            "empty_run_s": 1.7,
        },
        "image": {"gb": 0.92},
    }


def test_rows_judge_each_target():
    result = {r.figure: (r.target, r.result) for r in bench.rows(sample_results())}
    assert result == {
        "fresh converge (container + site.yml, image build)": ("<= 360 s", "PASS"),
        "idempotent re-run of site.yml": ("<= 45 s, changed=0", "FAIL"),  # 52 s > 45 s
        "spawn 1 user, login -> JupyterLab (n=5)": ("<= 2 s", "PASS"),
        "CPU seconds per spawn (whole machine, median)": ("report", "-"),
        "burst of 20 users at once": ("<= 30 s, 0 failed", "FAIL"),  # last one at 31 s
        "nginx auth_request overhead, cache on (ratio)": ("<= 1.2x", "PASS"),
        "nginx auth_request overhead, cache off (ratio)": ("report", "-"),
        "batch 20 experiments, --jobs 2 vs papermill loop": (">= 1.7x, 0 failed", "PASS"),
        "per-run overhead: kernel start / empty papermill run": ("report", "-"),
        "notebook image size": ("<= 1.2 GB", "PASS"),
    }


def test_rerun_with_changes_is_not_idempotent():
    (row,) = bench.rows({"rerun": {"seconds": 10.0, "changed": 2}})
    assert row.result == "FAIL" and "changed=2" in row.value


def test_table_skips_missing_steps():
    lines = stats.table(bench.rows({"image": {"gb": 1.5}})).splitlines()
    assert len(lines) == 3 and lines[2].startswith("notebook image size")


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


def test_bad_arguments_exit_2_before_anything_runs(capsys, monkeypatch):
    monkeypatch.setattr(bench, "ansible", lambda *a, **k: pytest.fail("must not run"))
    assert bench.main(["--samples", "0", "--experiments", "30"]) == 2
    err = capsys.readouterr().err
    assert "--samples must be at least 1" in err and "seeds 24 experiments" in err


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
