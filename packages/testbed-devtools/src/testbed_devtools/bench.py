"""``make bench``: the base station's figures, measured in one run on this machine.

A disposable base station (a container like the demo's, named ``testbed-hub-bench``,
provisioned by the same ``playbooks/demo.yml`` and ``site.yml``) is converged from
nothing, converged again, then used from outside exactly as researchers use it:

============================  ==========================================================
fresh converge                ``playbooks/demo.yml``: container start + ``site.yml``,
                              including the notebook image build (no Docker cache)
idempotent re-run             ``site.yml`` again: seconds and the ``changed`` count
spawn, one user               login form submitted -> JupyterLab answers 200, p50/p95
                              over ``--samples`` new users, one at a time; CPU seconds
                              the whole machine spent per spawn (idle rate subtracted)
spawn, burst                  ``--burst`` new users log in at the same moment: p50/p95,
                              the last one ready, failures
auth overhead                 nginx with auth_request vs without (same requests, same
                              run, real JupyterHub upstream), cache on and off
batch speed-up                ``run-notebook --jobs <cores>`` vs a sequential loop of
                              the ``papermill`` CLI, 20 experiments, in the notebook image
image size                    the notebook image on the base station
============================  ==========================================================

Prints a table (figure, value, target, PASS/FAIL) and writes every raw figure as
JSON (``artifacts/bench/bench.json``). Exit 0 when every step ran, 1 when a step
failed (a target not met is reported, not an error). The statistics, the targets,
the table and the JSON file come from :mod:`testbed_devtools.stats`; the auth
overhead's raw samples from :mod:`testbed_proxy.bench` (run inside the base
station, through loopback listeners it installs there after the re-run), the
batch figures' raw timings from :mod:`testbed_devtools.batch_bench` (sent into a
notebook-image container on stdin).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testbed_devtools.hubclient import HubSession
from testbed_devtools.stats import TARGETS, Row, judge, percentile, ratio, table, write_json
from testbed_hub.auth import identity_to_username
from testbed_proxy import bench as proxy_bench

# The repository (editable install): the first folder above this file holding site.yml.
REPO = next((p for p in Path(__file__).resolve().parents if (p / "site.yml").is_file()), Path.cwd())
DEMO_GROUP_VARS = REPO / "inventory" / "demo" / "group_vars"
BATCH_SCRIPT = Path(__file__).with_name("batch_bench.py")
# The hub's virtualenv on the station (jupyterhub_venv_dir) describes a user's
# notebook container; the batch benchmark runs in one of a user of its own.
HUB_PYTHON = "/opt/jupyterhub/bin/python"
BATCH_USER = "bench-batch"
# Where the benchmark listeners go on the bench base station (Debian's nginx.conf
# includes conf.d/*.conf); the reverse_proxy role never writes this file.
LISTENERS_CONF = "/etc/nginx/conf.d/testbed-hub-bench.conf"
LISTENERS_PORT = 8090
LISTENERS_CACHE_S = 10
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


# -- small helpers -----------------------------------------------------------------
def log(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def parse_recap(output: str) -> dict[str, int]:
    """Sum of ok/changed/unreachable/failed over the PLAY RECAP of ansible-playbook."""
    totals = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0}
    tail = output[output.rfind("PLAY RECAP") :] if "PLAY RECAP" in output else ""
    for m in RECAP.finditer(tail):
        for key in totals:
            totals[key] += int(m.group(key))
    return totals


def busy_cpu_seconds(stat: Path = Path("/proc/stat"), ticks_per_s: int | None = None) -> float:
    """CPU seconds this machine has spent not idle since boot (all cores, ``/proc/stat``)."""
    with open(stat) as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    ticks = ticks_per_s or os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / ticks


class Instance:
    """The bench base station: ``docker exec`` into it (testinfra-like ``check_output``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(
        self, cmd: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``sh -c cmd`` in the instance; ``input`` goes to its standard input."""
        r = subprocess.run(
            ["docker", "exec", *(["-i"] if input is not None else []), self.name, "sh", "-c", cmd],
            capture_output=True,
            text=True,
            input=input,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"in {self.name}: {cmd!r} exited {r.returncode}: {r.stderr[-2000:]}")
        return r

    def check_output(self, cmd: str) -> str:
        return self.run(cmd).stdout.strip()

    def ip(self) -> str:
        return subprocess.run(
            ["docker", "inspect", self.name, "--format", "{{.NetworkSettings.IPAddress}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


# -- the steps --------------------------------------------------------------------
def write_inventory(folder: Path, name: str, users: list[str]) -> Path:
    """An inventory for the bench container: the demo's group_vars + bench host_vars."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts.yml").write_text(
        "---\nbasestation:\n  hosts:\n"
        f"    {name}:\n"
        "      ansible_connection: community.docker.docker\n"
        "      ansible_python_interpreter: /usr/bin/python3\n"
    )
    link = folder / "group_vars"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(DEMO_GROUP_VARS)
    host_vars = folder / "host_vars"
    host_vars.mkdir(exist_ok=True)
    (host_vars / f"{name}.yml").write_text(
        "---\n# Written by testbed_devtools.bench: the demo plus the bench users.\n"
        + json.dumps({"testbed_sim_auth_users": [{"name": u} for u in users]}, indent=2)
        + "\n"
    )
    return folder


def _ansible_playbook() -> str:
    """The ansible-playbook of this virtualenv when there is one, else the PATH's."""
    here = Path(sys.executable).with_name("ansible-playbook")
    return str(here) if here.exists() else "ansible-playbook"


def ansible(inventory: Path, playbook: Path, logfile: Path, extra: list[str]) -> dict[str, Any]:
    """Run one playbook, log it, return seconds and the recap totals."""
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    t0 = time.monotonic()
    r = subprocess.run(
        [_ansible_playbook(), "-i", str(inventory), str(playbook), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    seconds = time.monotonic() - t0
    logfile.write_text(r.stdout + r.stderr)
    recap = parse_recap(r.stdout)
    if r.returncode != 0:
        raise RuntimeError(f"{playbook.name} exited {r.returncode}: see {logfile}")
    return {"seconds": round(seconds, 1), **recap, "log": str(logfile.relative_to(REPO))}


def spawn_one(base_url: str, user: str, timeout: float = 120.0) -> dict[str, Any]:
    name = identity_to_username(user)
    try:
        t = HubSession(base_url).login_to_lab(user, name, timeout=timeout)
        return {"user": name, "ok": True, "ready_s": round(t.ready_s, 3), "polls": t.polls}
    except Exception as exc:  # noqa: BLE001 - a failed spawn is a figure, not a crash
        return {"user": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def spawn_single(
    base_url: str,
    users: list[str],
    settle_s: float = 3.0,
    idle_s: float = 5.0,
    *,
    spawn: Callable[[str, str], dict[str, Any]] = spawn_one,
    cpu: Callable[[], float] = busy_cpu_seconds,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One user at a time; CPU seconds per spawn with the idle rate subtracted.

    The idle rate is the machine's busy CPU seconds per second over ``idle_s``
    before the first spawn; each spawn's CPU is counted until ``settle_s`` after
    its JupyterLab answered (the server keeps starting its extensions after the
    first 200), minus that idle rate over the same time.
    """
    c0, t0 = cpu(), clock()
    sleep(idle_s)
    idle_rate = (cpu() - c0) / (clock() - t0)
    runs = []
    for user in users:
        c0, t0 = cpu(), clock()
        res = spawn(base_url, user)
        sleep(settle_s)
        elapsed = clock() - t0
        res["cpu_s"] = round(cpu() - c0 - idle_rate * elapsed, 2)
        runs.append(res)
        log(f"spawn {res['user']}: {res.get('ready_s', res.get('error'))} s, cpu {res['cpu_s']} s")
    ready = [r["ready_s"] for r in runs if r["ok"]]
    return {
        "runs": runs,
        "idle_cpu_rate": round(idle_rate, 3),
        "failures": sum(not r["ok"] for r in runs),
        "p50_s": round(percentile(ready, 50), 2) if ready else None,
        "p95_s": round(percentile(ready, 95), 2) if ready else None,
        "cpu_s_median": round(percentile((r["cpu_s"] for r in runs), 50), 2),
    }


def spawn_burst(base_url: str, users: list[str]) -> dict[str, Any]:
    """All users submit the login form at the same moment (threads behind a barrier)."""
    barrier = threading.Barrier(len(users))

    def go(user: str) -> dict[str, Any]:
        barrier.wait()
        return spawn_one(base_url, user, timeout=180.0)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        runs = list(pool.map(go, users))
    wall = time.monotonic() - t0
    ready = [r["ready_s"] for r in runs if r["ok"]]
    return {
        "users": len(users),
        "runs": runs,
        "failures": sum(not r["ok"] for r in runs),
        "p50_s": round(percentile(ready, 50), 2) if ready else None,
        "p95_s": round(percentile(ready, 95), 2) if ready else None,
        "all_ready_s": round(max(ready), 2) if ready else None,
        "wall_s": round(wall, 2),
    }


def install_listeners(
    inst: Instance, port: int = LISTENERS_PORT, cache_seconds: int = LISTENERS_CACHE_S
) -> str:
    """Put the benchmark listeners into nginx on the bench base station; reload; wait.

    Done after the re-run (the converge figures never see the file). nginx
    checks the whole configuration first; a bad file is removed again.
    """
    conf = proxy_bench.listeners_conf(port, cache_seconds=cache_seconds)
    dest = shlex.quote(LISTENERS_CONF)
    r = inst.run(f"cat > {dest} && nginx -t -q && systemctl reload nginx", check=False, input=conf)
    if r.returncode != 0:
        inst.run(f"rm -f {dest}", check=False)
        raise RuntimeError(f"nginx refused the benchmark listeners ({LISTENERS_CONF}): {r.stderr}")
    last = port + len(proxy_bench.CASES) - 1
    # reload is asynchronous: wait (with a deadline) until the last listener answers
    inst.run(
        f"i=0; until curl -s -o /dev/null http://127.0.0.1:{last}/; do "
        f"i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done"
    )
    return LISTENERS_CONF


def auth_overhead(inst: Instance, base_url: str, user: str) -> dict[str, Any]:
    from testbed_proxy.checks import bench_in_instance

    install_listeners(inst)
    s = HubSession(base_url)
    s.login(user)
    cookie = next(c.value for c in s.http.cookies if c.name == "testbed_session")
    return bench_in_instance(inst, cookie, port=LISTENERS_PORT)


def batch_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """The batch figures from the raw timings of :mod:`testbed_devtools.batch_bench`.

    ``speedup`` is ``sequential_s / batch_s`` (None when ``batch_s`` is not
    positive); the overheads are medians (p50) of their samples, None when a
    sample failed; ``meets_target`` needs no failure and the speed-up target.
    """
    complete = raw.get("overhead_samples", 0)

    def p50(samples: list[float]) -> float | None:
        return round(percentile(samples, 50), 3) if samples and len(samples) == complete else None

    target = TARGETS["batch_speedup"]
    speedup = ratio(raw["sequential_s"], raw["batch_s"])
    failed = list(raw.get("failed_runs", []))
    return {
        "experiments": raw["experiments"],
        "jobs": raw["jobs"],
        "sequential_s": round(raw["sequential_s"], 3),
        "batch_s": round(raw["batch_s"], 3),
        "speedup": speedup,
        "kernel_start_s": p50(raw["kernel_start_s"]),
        "empty_run_s": p50(raw["empty_run_s"]),
        "failures": len(failed),
        "failed_runs": failed,
        "target_speedup": target.limit,
        "meets_target": not failed and target.met(speedup),
        "samples": {k: raw[k] for k in ("kernel_start_s", "empty_run_s")},
    }


def docker_run_options(container: dict[str, Any]) -> list[str]:
    """``docker run`` options for a container the hub describes (``testbed_hub.container``)."""
    opts = ["--network", container["network"], "--workdir", container["working_dir"]]
    for key, value in container["env"].items():
        opts += ["-e", f"{key}={value}"]
    for m in container["mounts"]:
        ro = ",readonly" if m["read_only"] else ""
        opts += ["--mount", f"type={m['type']},source={m['source']},target={m['target']}{ro}"]
    for name, address in container["etc_hosts"].items():
        opts += ["--add-host", f"{name}:{address}"]
    if "pids_limit" in container:
        opts += ["--pids-limit", str(container["pids_limit"])]
    for opt in container.get("security_opt", []):
        opts += ["--security-opt", opt]
    for cap in container.get("cap_drop", []):
        opts += ["--cap-drop", cap]
    for cap in container.get("cap_add", []):
        opts += ["--cap-add", cap]
    return opts


def batch_speedup(inst: Instance, experiments: int, jobs: int) -> dict[str, Any]:
    """The batch timings in a fresh notebook container as the hub starts a user's
    (image, network, mounts, environment from ``testbed_hub.container_cli``).

    :mod:`testbed_devtools.batch_bench` goes in on the container's standard
    input (``python -``): nothing of the benchmark is installed in the image.
    """
    container = json.loads(
        inst.check_output(f"{HUB_PYTHON} -m testbed_hub.container_cli --user {BATCH_USER}")
    )
    nb_dir = container["working_dir"]
    ids = " ".join(f"exp-{i:03d}" for i in range(1, experiments + 1))
    cmd = (
        f"docker run -i --rm {shlex.join(docker_run_options(container))} "
        f"{shlex.quote(container['image'])} python - "
        f"{nb_dir}/share/demo-notebooks/02-ptt-performance.ipynb --experiment {ids} --jobs {jobs}"
    )
    out = inst.run(cmd, check=False, input=BATCH_SCRIPT.read_text(encoding="utf-8"))
    lines = out.stdout.strip().splitlines()
    if out.returncode not in (0, 1) or not lines:
        raise RuntimeError(
            f"batch bench exited {out.returncode}: {out.stdout[-1500:]}{out.stderr[-1500:]}"
        )
    result = batch_summary(json.loads(lines[-1]))
    log(
        f"batch: papermill loop {result['sequential_s']} s, run-notebook --jobs {jobs} "
        f"{result['batch_s']} s, {result['failures']} failed run(s)"
    )
    return result


def image_size(inst: Instance) -> dict[str, Any]:
    image = json.loads(inst.check_output("cat /etc/jupyterhub/settings.json"))["spawner"]["image"]
    size = int(inst.check_output(f"docker image inspect {image} --format '{{{{.Size}}}}'"))
    return {"image": image, "bytes": size, "gb": round(size / 1e9, 3)}


# -- report ------------------------------------------------------------------------------
def rows(res: dict[str, Any]) -> list[Row]:
    """The table's rows, each figure beside its target (``stats.TARGETS``); absent steps
    are skipped."""
    out = []
    if fc := res.get("fresh_converge"):
        v = fc["seconds"]
        out.append(
            judge(
                "fresh converge (container + site.yml, image build)",
                f"{v:.0f} s",
                "fresh_converge_s",
                v,
            )
        )
    if rr := res.get("rerun"):
        v = rr["seconds"]
        out.append(
            judge(
                "idempotent re-run of site.yml",
                f"{v:.0f} s, changed={rr['changed']}",
                "rerun_s",
                v,
                ("changed=0", rr["changed"] == 0),
            )
        )
    if sp := res.get("spawn_single"):
        out.append(
            judge(
                f"spawn 1 user, login -> JupyterLab (n={len(sp['runs'])})",
                f"p50 {sp['p50_s']} s, p95 {sp['p95_s']} s, failed {sp['failures']}",
                "spawn_p50_s",
                sp["p50_s"],
            )
        )
        out.append(Row("CPU seconds per spawn (whole machine, median)", f"{sp['cpu_s_median']} s"))
    if bu := res.get("spawn_burst"):
        out.append(
            judge(
                f"burst of {bu['users']} users at once",
                f"p50 {bu['p50_s']} s, p95 {bu['p95_s']} s, last {bu['all_ready_s']} s, "
                f"failed {bu['failures']}",
                "burst_all_ready_s",
                bu["all_ready_s"],
                ("0 failed", bu["failures"] == 0),
            )
        )
    if au := res.get("auth"):
        ratios = au["ratio"]
        out.append(
            judge(
                "nginx auth_request overhead, cache on (ratio)",
                f"{ratios['auth_cached']:.2f}x",
                "auth_ratio_cached",
                ratios["auth_cached"],
            )
        )
        out.append(Row("nginx auth_request overhead, cache off (ratio)", f"{ratios['auth']:.2f}x"))
    if ba := res.get("batch"):
        speedup = "-" if ba["speedup"] is None else f"{ba['speedup']:.2f}x"
        out.append(
            judge(
                f"batch {ba['experiments']} experiments, --jobs {ba['jobs']} vs papermill loop",
                f"{speedup} ({ba['sequential_s']:.1f} s -> {ba['batch_s']:.1f} s)",
                "batch_speedup",
                ba["speedup"],
                ("0 failed", not ba["failures"]),
            )
        )
        out.append(
            Row(
                "per-run overhead: kernel start / empty papermill run",
                f"{ba['kernel_start_s']} s / {ba['empty_run_s']} s",
            )
        )
    if im := res.get("image"):
        out.append(judge("notebook image size", f"{im['gb']:.2f} GB", "image_size_gb", im["gb"]))
    return out


def plot(res: dict[str, Any], path: Path) -> Path | None:
    """Cumulative share of users with a ready JupyterLab over time (single and burst)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = [
        (
            f"one at a time (n={len(res[k]['runs'])})"
            if k == "spawn_single"
            else f"burst of {res[k]['users']} at once",
            sorted(r["ready_s"] for r in res[k]["runs"] if r["ok"]),
        )
        for k in ("spawn_single", "spawn_burst")
        if k in res
    ]
    if not series:
        return None
    single, burst = TARGETS["spawn_p50_s"], TARGETS["burst_all_ready_s"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, ready in series:
        if ready:
            ax.step(
                ready, [(i + 1) / len(ready) for i in range(len(ready))], where="post", label=label
            )
    ax.axvline(single.limit, color="grey", ls=":", label=f"target p50, one user ({single})")
    ax.axvline(burst.limit, color="grey", ls="--", label=f"target, burst ({burst})")
    ax.set_xlabel("seconds from login to a ready JupyterLab")
    ax.set_ylabel("share of users ready")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m testbed_devtools.bench", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--name", default="testbed-hub-bench", help="bench container (default %(default)s)"
    )
    p.add_argument(
        "--samples", type=int, default=5, help="single-user spawns (default %(default)s)"
    )
    p.add_argument("--burst", type=int, default=20, help="users in the burst (default %(default)s)")
    p.add_argument("--experiments", type=int, default=20, help="batch size (default %(default)s)")
    p.add_argument(
        "--reuse", action="store_true", help="keep an existing bench instance (no fresh converge)"
    )
    p.add_argument(
        "--keep", action="store_true", help="leave the bench instance running afterwards"
    )
    p.add_argument("--json", type=Path, default=REPO / "artifacts" / "bench" / "bench.json")
    args = p.parse_args(argv)
    problems = [
        f"--{k} must be at least 1 (got {getattr(args, k)})"
        for k in ("samples", "burst", "experiments")
        if getattr(args, k) < 1
    ]
    if args.experiments > 24:
        problems.append(f"--experiments {args.experiments}: the simulator seeds 24 experiments")
    if problems:
        print("bench: " + "; ".join(problems), file=sys.stderr)
        return 2

    out_dir = args.json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    single = [f"bench-{i:02d}@testbed.example" for i in range(1, args.samples + 1)]
    burst = [f"burst-{i:02d}@testbed.example" for i in range(1, args.burst + 1)]
    users = ["alice@testbed.example", "bob@testbed.example", *single, *burst]
    inventory = write_inventory(out_dir / "inventory", args.name, users)
    inst = Instance(args.name)
    res: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "started": time.strftime("%FT%TZ", time.gmtime()),
    }
    failed: list[str] = []

    def step(key: str, title: str, fn: Callable[[], Any]) -> None:
        log(title)
        try:
            res[key] = fn()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other figures
            failed.append(key)
            res[key + "_error"] = f"{type(exc).__name__}: {exc}"
            log(f"{key} FAILED: {exc}")

    clean = REPO / "playbooks" / "demo-clean.yml"
    extra = ["-e", "demo_https_port=18443", "-e", "demo_http_port=18080"]
    if not args.reuse:
        log(f"removing any earlier {args.name}")
        ansible(inventory, clean, out_dir / "clean.log", [])
        step(
            "fresh_converge",
            "fresh converge: playbooks/demo.yml (container + site.yml)",
            lambda: ansible(
                inventory, REPO / "playbooks" / "demo.yml", out_dir / "converge.log", extra
            ),
        )
    step(
        "rerun",
        "idempotent re-run: site.yml",
        lambda: ansible(inventory, REPO / "site.yml", out_dir / "rerun.log", []),
    )
    if "fresh_converge" not in failed:
        base_url = f"https://{inst.ip()}"
        step("image", "notebook image size", lambda: image_size(inst))
        step(
            "spawn_single",
            f"spawn latency, {args.samples} users one at a time",
            lambda: spawn_single(base_url, single),
        )
        step(
            "spawn_burst",
            f"spawn latency, burst of {args.burst} users",
            lambda: spawn_burst(base_url, burst),
        )
        step(
            "auth",
            "nginx auth overhead (real hub upstream)",
            lambda: auth_overhead(inst, base_url, "alice@testbed.example"),
        )
        step(
            "batch",
            f"batch speed-up, {args.experiments} experiments",
            lambda: batch_speedup(inst, args.experiments, os.cpu_count() or 2),
        )
    res["finished"] = time.strftime("%FT%TZ", time.gmtime())
    res["failed_steps"] = failed
    write_json(args.json, res)
    print()
    print(table(rows(res)))
    print(f"\nraw figures: {args.json}")
    if picture := plot(res, out_dir / "spawn.png"):
        print(f"spawn latency plot: {picture}")
    if not args.keep:
        log(f"removing {args.name} (--keep leaves it running)")
        ansible(inventory, clean, out_dir / "clean.log", [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
