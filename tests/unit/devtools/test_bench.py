"""The benchmark's arithmetic and report (the measuring itself needs a base station)."""

from __future__ import annotations

import json

import pytest

from testbed_devtools import bench

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


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [([3.0], 50, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8)],
)
def test_percentile_interpolates(values, q, want):
    assert bench.percentile(values, q) == pytest.approx(want)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        bench.percentile([], 50)


def test_busy_cpu_seconds_grows_with_work():
    before = bench.busy_cpu_seconds()
    sum(i * i for i in range(3_000_000))
    assert bench.busy_cpu_seconds() > before


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
    met = {r[0]: r[3] for r in bench.rows(sample_results())}
    assert met["fresh converge (container + site.yml, image build)"] == "yes"
    assert met["idempotent re-run of site.yml"] == "NO"  # 52 s > 45 s
    assert met["spawn 1 user, login -> JupyterLab (n=5)"] == "yes"
    assert met["burst of 20 users at once"] == "NO"  # last one at 31 s
    assert met["nginx auth_request overhead, cache on (ratio)"] == "yes"
    assert met["batch 20 experiments, --jobs 2 vs papermill loop"] == "yes"
    assert met["notebook image size"] == "yes"


def test_rerun_with_changes_is_not_idempotent():
    res = {"rerun": {"seconds": 10.0, "changed": 2}}
    assert bench.rows(res)[0][3] == "NO"
    assert "changed=2" in bench.rows(res)[0][1]


def test_table_skips_missing_steps_and_aligns():
    text = bench.table({"image": {"gb": 1.5}})
    lines = text.splitlines()
    assert len(lines) == 3 and lines[2].split()[-1] == "NO"
    assert lines[0].index("value") == lines[2].index("1.50 GB")


def test_write_inventory_links_demo_vars_and_adds_users(tmp_path):
    inv = bench.write_inventory(tmp_path / "inv", "tb-bench", ["a@x", "b@x"])
    assert "tb-bench:" in (inv / "hosts.yml").read_text()
    assert (inv / "group_vars").resolve() == bench.DEMO_GROUP_VARS.resolve()
    text = (inv / "host_vars" / "tb-bench.yml").read_text()
    body = json.loads(text[text.index("{") :])
    assert body["testbed_sim_auth_users"] == [{"name": "a@x"}, {"name": "b@x"}]
    assert body["reverse_proxy_bench_enabled"] is True
    # Writing again replaces, not nests, the link.
    bench.write_inventory(tmp_path / "inv", "tb-bench", ["a@x"])
    assert (inv / "group_vars").is_symlink()


def test_bad_arguments_exit_2_before_anything_runs(capsys, monkeypatch):
    monkeypatch.setattr(bench, "ansible", lambda *a, **k: pytest.fail("must not run"))
    assert bench.main(["--samples", "0", "--experiments", "30"]) == 2
    err = capsys.readouterr().err
    assert "--samples must be at least 1" in err and "seeds 24 experiments" in err


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
