"""The benchmark's NIST QoE figures (issue 15) without Docker: the seeding's settings
read from the station, its argv against the testbed_sim role's, the station script run
here with a fake ``testbed-sim-seed`` (cold, cache filled, warm; the temporary folder
gone afterwards), the in-image script (testbed_devtools.qoe_bench) with a fake
``testbed.qoe.m2e`` and a fake ``run-notebook``, and the rows beside their targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed_devtools import bench, qoe_bench

REPO = Path(__file__).resolve().parents[3]
SETTINGS = {"seed": 20240304, "experiments": 24, "access_experiments": 4, "media": "/srv/w"}
CONFIG = json.dumps({"seed": 20240304, "experiments": 24, "nist_media_dir": "/srv/w"})


# -- what the station was seeded with ---------------------------------------------------


def test_seed_settings_from_the_stand_ins_config_and_the_roles_marker():
    stamps = [
        "/srv/w/.testbed-sim-seed-7-24-rec2-nist2-0123abcd.json",  # another seed: not this one
        "/srv/w/.testbed-sim-seed-20240304-24-rec2-nist4-89abcdef.json",
        "/srv/w/.testbed-sim-seed-20240304-24-nist9-00000000.json",  # older (ls -t), format 1
    ]
    assert bench.seed_settings(CONFIG, stamps) == SETTINGS


@pytest.mark.parametrize("nist_enabled", [True, False])
def test_the_roles_stamp_is_the_one_the_bench_reads(nist_enabled):
    """__testbed_sim_media_stamp rendered by Ansible from the role's own variables:
    the bench's pattern matches it with NIST's tests and not without them."""
    role = REPO / "roles/testbed_sim"
    expr = "{{ __testbed_sim_media_stamp | basename }}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(
        [
            "ansible",
            "localhost",
            "-o",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={expr}",
            "-e",
            f"@{role / 'defaults/main.yml'}",
            "-e",
            f"@{role / 'vars/main.yml'}",
            "-e",
            json.dumps({"testbed_sim_nist_enabled": nist_enabled}),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    stamp = json.loads(out.stdout.split("=>", 1)[1])["msg"]
    assert stamp.startswith(".testbed-sim-seed-20240304-24-rec2"), stamp
    match = bench.SEED_STAMP.fullmatch(stamp)
    assert bool(match) is nist_enabled, stamp
    if match:
        assert match.groups() == ("20240304", "24", "4")


def test_seed_settings_without_nist_says_so():
    config = json.dumps({"seed": 1, "experiments": 24})
    with pytest.raises(RuntimeError, match="testbed_sim_nist_enabled is false"):
        bench.seed_settings(config, [])


def test_seed_settings_without_the_roles_marker_says_where_it_looked():
    stamps = ["/srv/w/.testbed-sim-seed-20240304-24-rec2.json"]  # seeded without NIST
    with pytest.raises(RuntimeError, match=r"-nist\*\.json in /srv/w"):
        bench.seed_settings(CONFIG, stamps)


def test_seed_argv_is_the_roles_command_with_the_same_settings():
    """roles/testbed_sim/tasks/media.yml's argv, flag for flag and in its order; the
    simulator's venv as the role's default puts it."""
    task = yaml.safe_load((REPO / "roles/testbed_sim/tasks/media.yml").read_text())[1]
    role_args = task["vars"]["__seed_args"]
    nist_args = task["vars"]["__nist_args"]
    defaults = yaml.safe_load((REPO / "roles/testbed_sim/defaults/main.yml").read_text())
    assert role_args[0] == "{{ testbed_sim_venv_dir }}/bin/testbed-sim-seed"
    assert bench.SIM_SEED == f"{defaults['testbed_sim_venv_dir']}/bin/testbed-sim-seed"
    role_flags = [a for a in role_args if a.startswith("--")]
    for flag in ("--nist", "--nist-access-experiments", "--nist-cache-dir"):
        assert f"'{flag}'" in nist_args
    cold = bench.seed_argv(SETTINGS, "/tmp/m", "/tmp/m.json")
    assert [a for a in cold if a.startswith("--")] == [
        *role_flags,
        "--nist",
        "--nist-access-experiments",
    ]
    assert cold[cold.index("--seed") + 1] == "20240304"
    assert cold[cold.index("--experiments") + 1] == "24"
    assert cold[cold.index("--nist-access-experiments") + 1] == "4"
    assert cold[cold.index("--file-mode") + 1] == "0644"
    warm = bench.seed_argv(SETTINGS, "/tmp/m", "/tmp/m.json", "/tmp/cache")
    assert warm == [*cold, "--nist-cache-dir", "/tmp/cache"]


# -- the station script, run here --------------------------------------------------------

FAKE_SEED = """#!{python}
# testbed-sim-seed as the bench sees it: recordings, then NIST's report; a cache
# folder is filled from a measured folder and restores into a new one.
import json, os, sys
argv = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(argv) + "\\n")
media = argv[argv.index("--media-dir") + 1]
cache = argv[argv.index("--nist-cache-dir") + 1] if "--nist-cache-dir" in argv else None
if media.endswith(os.environ.get("FAKE_SEED_FAIL", "-")):
    print("NistError: QoEsim broke", file=sys.stderr)
    sys.exit(1)
n = int(argv[argv.index("--experiments") + 1])
done = os.path.join(media, "nist-done")
report = {{"measured": 0, "from_cache": 0, "kept": 0}}
if os.path.exists(done):
    report["kept"] = n
elif cache and os.path.isdir(cache) and os.listdir(cache):
    report["from_cache"] = n
else:
    report["measured"] = n
os.makedirs(media, exist_ok=True)
open(done, "w").write("x" * 1000)
if cache:
    os.makedirs(cache, exist_ok=True)
    open(os.path.join(cache, "abc.tar"), "w").write("tar")
print(json.dumps({{"media_dir": media, "recordings": 4 * n, "written": 4 * n}}))
print(json.dumps({{"nist": {{**report, "access_time": ["exp-003"], "seconds": 1.0}}}}))
"""


class LocalStation(bench.Instance):
    """The bench station's commands run here (``sh -c``), as ``docker exec`` runs them."""

    def __init__(self, env: dict[str, str]):
        super().__init__("local")
        self.env = env

    def run(self, cmd: str, check: bool = True, input: str | None = None):
        r = subprocess.run(
            ["sh", "-c", cmd], capture_output=True, text=True, input=input, env=self.env
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"{cmd!r} exited {r.returncode}: {r.stderr}")
        return r


@pytest.fixture()
def station(tmp_path, monkeypatch):
    """A station here: the stand-in's config, the role's marker in its media folder, a
    fake testbed-sim-seed logging its argv, and TMPDIR for the bench's folder."""
    media = tmp_path / "wavs"
    media.mkdir()
    (media / ".testbed-sim-seed-20240304-24-rec2-nist4-89abcdef.json").write_text("{}")
    (media / "exp-001").mkdir()  # the station's own media: never touched
    config = tmp_path / "mongo.json"
    config.write_text(
        json.dumps({"seed": 20240304, "experiments": 24, "nist_media_dir": str(media)})
    )
    seed = tmp_path / "testbed-sim-seed"
    argv_log = tmp_path / "argv.log"
    seed.write_text(FAKE_SEED.format(python=sys.executable, log=str(argv_log)))
    seed.chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(bench, "SIM_SEED", str(seed))
    monkeypatch.setattr(bench, "SIM_MONGO_CONFIG", str(config))
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp)}
    return LocalStation(env), media, tmp, argv_log


def test_seeding_cold_then_warm_in_a_temporary_folder_removed_afterwards(station, capsys):
    inst, media, tmp, argv_log = station
    before = sorted(p.name for p in media.iterdir())
    res = bench.nist_seeding(inst)
    assert (res["seed"], res["experiments"], res["access_experiments"]) == (20240304, 24, 4)
    assert res["cold"]["rc"] == 0 and res["cold"]["recordings"] == 96
    assert res["cold"]["nist"]["measured"] == 24
    assert res["fill"]["nist"]["kept"] == 24  # the cold run's folder into the cache
    assert res["warm"]["nist"] == {
        "measured": 0,
        "from_cache": 24,
        "kept": 0,
        "access_time": ["exp-003"],
        "seconds": 1.0,
    }
    assert all(0 <= res[r]["seconds"] < 30 for r in ("cold", "fill", "warm"))
    assert res["media_mb"] == 0.0 and "warm_error" not in res
    assert list(tmp.iterdir()) == []  # the temporary folder is gone
    assert sorted(p.name for p in media.iterdir()) == before  # the station's media are not
    cold, fill, warm = (json.loads(line) for line in argv_log.read_text().splitlines())
    root = Path(cold[cold.index("--media-dir") + 1]).parent
    assert root.parent == tmp and root.name.startswith("testbed-hub-bench-nist.")
    # the fake logs its arguments, the program name aside
    assert cold == bench.seed_argv(SETTINGS, f"{root}/cold", f"{root}/cold.stamp.json")[1:]
    assert fill == [*cold, "--nist-cache-dir", f"{root}/cache"]
    assert (
        warm
        == bench.seed_argv(SETTINGS, f"{root}/warm", f"{root}/warm.stamp.json", f"{root}/cache")[1:]
    )
    assert "seeding 24 experiments (seed 20240304, 4 with an access-time test)" in (
        capsys.readouterr().out
    )


def test_a_failed_cold_run_is_an_error_with_its_message(station):
    inst, _, tmp, argv_log = station
    inst.env["FAKE_SEED_FAIL"] = "/cold"
    with pytest.raises(RuntimeError, match=r"\(cold\) exited 1: NistError: QoEsim broke"):
        bench.nist_seeding(inst)
    assert len(argv_log.read_text().splitlines()) == 1  # neither fill nor warm ran
    assert list(tmp.iterdir()) == []


def test_a_failed_warm_run_keeps_the_cold_figure(station):
    inst, _, tmp, _ = station
    inst.env["FAKE_SEED_FAIL"] = "/warm"
    res = bench.nist_seeding(inst)
    assert res["cold"]["nist"]["measured"] == 24
    assert res["warm_error"] == "NistError: QoEsim broke"
    rows = bench.rows({"nist_seed": res})
    assert [r.result for r in rows] == ["PASS", "FAIL"]
    assert rows[1].value == "not measured (NistError: QoEsim broke)"
    assert list(tmp.iterdir()) == []


# -- in the notebook image -----------------------------------------------------------------


def test_m2e_timings_import_first_and_second_call(monkeypatch):
    pd = pytest.importorskip("pandas")
    from testbed import qoe

    calls = []

    def m2e(exp):
        calls.append(exp)
        row = {"n_trials": 8, "m2e_mean_ms": 250.4, "m2e_truth_ms": 250.0}
        return pd.DataFrame([{"trial": 1}]), pd.DataFrame([row])

    monkeypatch.setattr(qoe, "m2e", m2e)
    got = qoe_bench.m2e_timings("exp-007")
    assert calls == ["exp-007", "exp-007"]
    assert got["first_s"] == pytest.approx(got["import_s"] + got["first_call_s"], abs=2e-4)
    assert all(got[k] >= 0 for k in ("import_s", "first_call_s", "second_call_s"))
    assert (got["experiment"], got["n_trials"], got["m2e_mean_ms"]) == ("exp-007", 8, 250.4)


SUMMARY_CSV = """experiment,status,attempts,run_duration_s,error,notebook,html,n_trials,\
m2e_measured_ms,m2e_truth_ms
exp-001,ok,1,3.2,,a.ipynb,a.html,8,250.4,250.0
exp-002,failed,1,1.0,NoNistTest: no M2E test,b.ipynb,b.html,,,
exp-003,ok,1,3.1,,c.ipynb,c.html,8,199.1,200.0
"""


def test_summary_rows_keep_the_m2e_records_as_numbers():
    rows = qoe_bench.summary_rows(SUMMARY_CSV.splitlines(keepends=True))
    assert rows[0] == {
        "experiment": "exp-001",
        "status": "ok",
        "error": "",
        "n_trials": 8.0,
        "m2e_measured_ms": 250.4,
        "m2e_truth_ms": 250.0,
    }
    assert rows[1]["status"] == "failed" and rows[1]["m2e_measured_ms"] is None


def test_run_notebook_all_times_the_command_and_reads_its_summary(tmp_path, monkeypatch):
    """A fake run-notebook on PATH: the command line the bench gives it, its summary."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "args.json"
    fake = bin_dir / "run-notebook"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"pathlib.Path({str(args_file)!r}).write_text(json.dumps(sys.argv[1:]))\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--output-dir') + 1]) / 'nb' / 'ts'\n"
        "out.mkdir(parents=True)\n"
        f"(out / 'summary.csv').write_text({SUMMARY_CSV!r})\n"
        "print('run-notebook: 2 ok, 1 failed', file=sys.stderr)\n"
        "print(out)\n"
        "sys.exit(1)\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    got = qoe_bench.run_notebook_all("/nb/04-mouth-to-ear.ipynb", 2, tmp_path / "work")
    assert json.loads(args_file.read_text()) == [
        "/nb/04-mouth-to-ear.ipynb",
        "--all",
        "--jobs",
        "2",
        "--timeout",
        "600",
        "--output-dir",
        str(tmp_path / "work"),
        "--progress",
        "lines",
    ]
    assert got["returncode"] == 1 and got["seconds"] > 0
    assert [r["experiment"] for r in got["rows"]] == ["exp-001", "exp-002", "exp-003"]
    assert got["stderr_tail"] == "run-notebook: 2 ok, 1 failed"


def test_qoe_bench_refuses_a_missing_notebook(tmp_path, capsys):
    assert qoe_bench.main(["notebook", str(tmp_path / "nope.ipynb")]) == 2
    assert "nope.ipynb does not exist" in capsys.readouterr().err
    assert qoe_bench.main(["notebook", str(tmp_path), "--jobs", "0"]) == 2


class NotebookStation:
    """The hub's container description, then the docker run with the script on stdin."""

    def __init__(self, out: str, code: int = 0):
        self.out, self.code, self.calls = out, code, []

    def check_output(self, cmd: str) -> str:
        self.calls.append((cmd, None))
        return json.dumps(
            {
                "image": "testbed-notebook:abc",
                "network": "jupyter",
                "working_dir": "/home/jovyan/nist",
                "env": {"TESTBED_MEDIA_DIR": "/home/jovyan/nist/media"},
                "mounts": [],
                "etc_hosts": {},
            }
        )

    def run(self, cmd: str, check: bool = True, input: str | None = None):
        self.calls.append((cmd, input))
        return subprocess.CompletedProcess(cmd, self.code, self.out, "Traceback: boom")


def test_m2e_notebook_runs_the_demo_notebook_in_the_image(capsys):
    raw = {
        "notebook": "/home/jovyan/nist/share/demo-notebooks/04-mouth-to-ear.ipynb",
        "jobs": 2,
        "seconds": 61.23,
        "returncode": 0,
        "rows": qoe_bench.summary_rows(
            [SUMMARY_CSV.splitlines()[0], "exp-001,ok,,,,,,8,250.4,250"]
        ),
    }
    station = NotebookStation("progress\n" + json.dumps(raw) + "\n")
    got = bench.m2e_notebook(station, 2)
    (hub, _), (docker, script) = station.calls
    assert "testbed_hub.container_cli --user bench-batch" in hub
    assert docker.startswith("docker run -i --rm --network jupyter --workdir /home/jovyan/nist")
    assert docker.endswith(
        "testbed-notebook:abc python - notebook "
        "/home/jovyan/nist/share/demo-notebooks/04-mouth-to-ear.ipynb --jobs 2"
    )
    assert script == Path(qoe_bench.__file__).read_text()
    assert (got["runs"], got["failures"], got["worst_error_ms"]) == (1, 0, 0.4)
    assert "1 runs, 0 failed in 61.2 s; worst M2E error 0.4 ms" in capsys.readouterr().out


def test_a_failing_in_image_script_is_an_error_with_its_output():
    station = NotebookStation("", code=1)
    with pytest.raises(RuntimeError, match="qoe bench m2e exited 1: Traceback: boom"):
        bench.m2e_evaluation(station)
    (_, (docker, _)) = station.calls
    assert docker.endswith("python - m2e exp-001")


def test_m2e_notebook_summary_worst_error_and_failures():
    raw = {
        "notebook": "04.ipynb",
        "jobs": 2,
        "seconds": 80.04,
        "returncode": 1,
        "rows": qoe_bench.summary_rows(SUMMARY_CSV.splitlines(keepends=True))
        + [  # ok but without the records: not measured either
            {"experiment": "exp-004", "status": "ok", "m2e_measured_ms": None}
        ],
    }
    got = bench.m2e_notebook_summary(raw)
    assert got["errors_ms"] == {"exp-001": 0.4, "exp-003": 0.9}
    assert (got["worst_error_ms"], got["worst_experiment"]) == (0.9, "exp-003")
    assert (got["runs"], got["failures"], got["failed"]) == (4, 2, ["exp-002", "exp-004"])
    assert got["seconds"] == 80.0
    empty = bench.m2e_notebook_summary({**raw, "rows": [], "stderr_tail": "no experiments"})
    assert empty["worst_error_ms"] is None and empty["error"] == "no experiments"


# -- rows ------------------------------------------------------------------------------------


def nist_results():
    """The three NIST steps' figures, each meeting its target."""
    return {
        "nist_seed": {
            "seed": 20240304,
            "experiments": 24,
            "access_experiments": 4,
            "cold": {"seconds": 98.4, "rc": 0, "recordings": 96, "nist": {"measured": 24}},
            "fill": {"seconds": 3.0, "rc": 0},
            "warm": {"seconds": 12.6, "rc": 0, "nist": {"measured": 0, "from_cache": 24}},
        },
        "m2e_eval": {
            "experiment": "exp-001",
            "import_s": 0.21,
            "first_call_s": 1.3,
            "first_s": 1.51,
            "second_call_s": 0.12,
        },
        "m2e_notebook": {
            "jobs": 2,
            "seconds": 71.26,
            "runs": 24,
            "failures": 0,
            "worst_error_ms": 0.62,
            "worst_experiment": "exp-017",
        },
    }


def test_nist_rows_beside_their_targets():
    got = {r.figure: (r.value, r.target, r.result) for r in bench.rows(nist_results())}
    assert got == {
        "seeding the demo data with NIST's tests, cold (no cache) "
        "(24 experiments, 4 with access time)": (
            "98 s (24 measured, 96 recordings)",
            "<= 120 s, 24 measured",
            "PASS",
        ),
        "seeding the demo data with NIST's tests, warm (from the cold run's cache)": (
            "13 s (24 from cache, 0 measured)",
            "report",
            "-",
        ),
        "testbed.qoe.m2e in the notebook image, first call (with NIST's import) (exp-001)": (
            "1.51 s (import 0.21 s + call 1.30 s)",
            "<= 2 s",
            "PASS",
        ),
        "testbed.qoe.m2e in the notebook image, second call (exp-001)": (
            "0.12 s",
            "report",
            "-",
        ),
        "run-notebook --all over 04-mouth-to-ear (24 experiments, --jobs 2)": (
            "71.3 s, 24 runs, failed 0",
            "report",
            "-",
        ),
        "worst |m2e_measured_ms - m2e_truth_ms| over the experiments": (
            "0.62 ms (exp-017)",
            "<= 1 ms, all 24 measured",
            "PASS",
        ),
    }


@pytest.mark.parametrize(
    ("step", "path", "value", "figure"),
    [
        ("nist_seed", ("cold", "seconds"), 120.1, "seeding the demo data with NIST's tests, cold"),
        ("nist_seed", ("cold", "nist"), {"measured": 20}, "seeding the demo data"),
        ("m2e_eval", ("first_s",), 2.01, "testbed.qoe.m2e in the notebook image, first"),
        ("m2e_notebook", ("worst_error_ms",), 1.01, "worst |m2e_measured_ms"),
        ("m2e_notebook", ("failures",), 1, "worst |m2e_measured_ms"),
        ("m2e_notebook", ("worst_error_ms",), None, "worst |m2e_measured_ms"),
    ],
)
def test_each_nist_target_fails_just_past_it_and_only_its_row(step, path, value, figure):
    res = nist_results()
    assert all(r.result in ("PASS", "-") for r in bench.rows(res))
    target = res[step]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    failed = [r.figure for r in bench.rows(res) if r.result == "FAIL"]
    assert len(failed) == 1 and failed[0].startswith(figure), failed


def test_a_failed_nist_step_prints_its_figures_as_not_measured():
    res = {"m2e_notebook_error": "RuntimeError: run-notebook --all ran nothing"}
    rows = bench.rows(res)
    assert [(r.target, r.result) for r in rows] == [("report", "FAIL"), ("<= 1 ms", "FAIL")]
    assert rows[1].value == "not measured (RuntimeError: run-notebook --all ran nothing)"
