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

Prints a table (figure, value, target, met) and writes every raw figure as JSON
(``artifacts/bench/bench.json``). Exit 0 when every step ran, 1 when a step failed
(a target not met is reported, not an error).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testbed_devtools.hubclient import HubSession
from testbed_hub.auth import identity_to_username

REPO = Path(__file__).resolve().parents[2]
DEMO_GROUP_VARS = REPO / "inventory" / "demo" / "group_vars"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)
TARGETS = {
    "fresh_converge_s": 360.0,
    "rerun_s": 45.0,
    "spawn_p50_s": 2.0,
    "burst_all_ready_s": 30.0,
    "auth_ratio_cached": 1.2,
    "batch_speedup": 1.7,
    "image_size_gb": 1.2,
}


# -- small helpers -----------------------------------------------------------------
def log(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of an empty list")
    data = sorted(values)
    k = (len(data) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def parse_recap(output: str) -> dict[str, int]:
    """Sum of ok/changed/unreachable/failed over the PLAY RECAP of ansible-playbook."""
    totals = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0}
    tail = output[output.rfind("PLAY RECAP") :] if "PLAY RECAP" in output else ""
    for m in RECAP.finditer(tail):
        for key in totals:
            totals[key] += int(m.group(key))
    return totals


def busy_cpu_seconds() -> float:
    """CPU seconds this machine has spent not idle since boot (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Instance:
    """The bench base station: ``docker exec`` into it (testinfra-like ``check_output``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["docker", "exec", self.name, "sh", "-c", cmd], capture_output=True, text=True
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
        "---\n# Written by testbed_devtools.bench: the demo plus the bench users and\n"
        "# nginx's benchmark listeners (auth on/off/cached in front of the real hub).\n"
        + json.dumps(
            {
                "testbed_sim_auth_users": [{"name": u} for u in users],
                "reverse_proxy_bench_enabled": True,
            },
            indent=2,
        )
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


def spawn_single(base_url: str, users: list[str], settle_s: float = 3.0) -> dict[str, Any]:
    """One user at a time; CPU seconds per spawn with the idle rate subtracted."""
    c0, t0 = busy_cpu_seconds(), time.monotonic()
    time.sleep(5)
    idle_rate = (busy_cpu_seconds() - c0) / (time.monotonic() - t0)
    runs = []
    for user in users:
        c0, t0 = busy_cpu_seconds(), time.monotonic()
        res = spawn_one(base_url, user)
        # The server keeps starting its extensions after the first 200: count
        # the CPU until the machine settles back, not only until the page.
        time.sleep(settle_s)
        elapsed = time.monotonic() - t0
        res["cpu_s"] = round(busy_cpu_seconds() - c0 - idle_rate * elapsed, 2)
        runs.append(res)
        log(f"spawn {res['user']}: {res.get('ready_s', res.get('error'))} s, cpu {res['cpu_s']} s")
    ready = [r["ready_s"] for r in runs if r["ok"]]
    return {
        "runs": runs,
        "idle_cpu_rate": round(idle_rate, 3),
        "failures": sum(not r["ok"] for r in runs),
        "p50_s": round(percentile(ready, 50), 2) if ready else None,
        "p95_s": round(percentile(ready, 95), 2) if ready else None,
        "cpu_s_median": round(statistics.median(r["cpu_s"] for r in runs), 2),
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


def auth_overhead(inst: Instance, base_url: str, user: str) -> dict[str, Any]:
    from testbed_proxy.checks import bench_in_instance

    s = HubSession(base_url)
    s.login(user)
    cookie = next(c.value for c in s.http.cookies if c.name == "testbed_session")
    return bench_in_instance(inst, cookie)


def batch_speedup(inst: Instance, experiments: int, jobs: int) -> dict[str, Any]:
    """The batch benchmark inside a fresh notebook-image container, hub's mounts and env."""
    settings = json.loads(inst.check_output("cat /etc/jupyterhub/settings.json"))["spawner"]
    env = " ".join(f"-e {k}={shlex.quote(v)}" for k, v in settings["environment"].items())
    nb_dir = settings["notebook_dir"]
    ids = " ".join(f"exp-{i:03d}" for i in range(1, experiments + 1))
    cmd = (
        f"docker run --rm --add-host {settings['host_gateway_name']}:host-gateway {env} "
        f"-v {settings['media_dir']}:{nb_dir}/media:ro "
        f"-v {settings['shared_volume']}:{nb_dir}/share:ro --workdir /tmp "
        f"{settings['image']} python -m testbed.batch.bench "
        f"{nb_dir}/share/demo-notebooks/02-ptt-performance.ipynb --experiment {ids} --jobs {jobs}"
    )
    out = inst.run(cmd, check=False)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(
            f"batch bench exited {out.returncode}: {out.stdout[-1500:]}{out.stderr[-1500:]}"
        )
    print("\n".join(lines[:-1]))
    return json.loads(lines[-1])


def image_size(inst: Instance) -> dict[str, Any]:
    image = json.loads(inst.check_output("cat /etc/jupyterhub/settings.json"))["spawner"]["image"]
    size = int(inst.check_output(f"docker image inspect {image} --format '{{{{.Size}}}}'"))
    return {"image": image, "bytes": size, "gb": round(size / 1e9, 3)}


# -- report ------------------------------------------------------------------------------
def rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, met) for the table; absent steps are skipped."""

    def met(ok: bool | None) -> str:
        return "-" if ok is None else ("yes" if ok else "NO")

    out = []
    if fc := res.get("fresh_converge"):
        v = fc["seconds"]
        out.append(
            (
                "fresh converge (container + site.yml, image build)",
                f"{v:.0f} s",
                "<= 360 s",
                met(v <= TARGETS["fresh_converge_s"]),
            )
        )
    if rr := res.get("rerun"):
        v = rr["seconds"]
        out.append(
            (
                "idempotent re-run of site.yml",
                f"{v:.0f} s, changed={rr['changed']}",
                "<= 45 s, changed=0",
                met(v <= TARGETS["rerun_s"] and rr["changed"] == 0),
            )
        )
    if sp := res.get("spawn_single"):
        p50 = sp["p50_s"]
        out.append(
            (
                f"spawn 1 user, login -> JupyterLab (n={len(sp['runs'])})",
                f"p50 {p50} s, p95 {sp['p95_s']} s, failed {sp['failures']}",
                "p50 <= 2 s",
                met(p50 is not None and p50 <= TARGETS["spawn_p50_s"]),
            )
        )
        out.append(
            (
                "CPU seconds per spawn (whole machine, median)",
                f"{sp['cpu_s_median']} s",
                "report",
                "-",
            )
        )
    if bu := res.get("spawn_burst"):
        last = bu["all_ready_s"]
        out.append(
            (
                f"burst of {bu['users']} users at once",
                f"p50 {bu['p50_s']} s, p95 {bu['p95_s']} s, last {last} s, failed {bu['failures']}",
                "all <= 30 s, 0 failed",
                met(
                    last is not None
                    and last <= TARGETS["burst_all_ready_s"]
                    and bu["failures"] == 0
                ),
            )
        )
    if au := res.get("auth"):
        ratio = au["ratio"]
        out.append(
            (
                "nginx auth_request overhead, cache on (ratio)",
                f"{ratio['auth_cached']:.2f}x",
                "<= 1.2x",
                met(ratio["auth_cached"] <= TARGETS["auth_ratio_cached"]),
            )
        )
        out.append(
            (
                "nginx auth_request overhead, cache off (ratio)",
                f"{ratio['auth']:.2f}x",
                "report",
                "-",
            )
        )
    if ba := res.get("batch"):
        out.append(
            (
                f"batch {ba['experiments']} experiments, --jobs {ba['jobs']} vs papermill loop",
                f"{ba['speedup']:.2f}x ({ba['sequential_s']:.1f} s -> {ba['batch_s']:.1f} s)",
                ">= 1.7x",
                met(ba["speedup"] >= TARGETS["batch_speedup"] and not ba["failures"]),
            )
        )
        out.append(
            (
                "per-run overhead: kernel start / empty papermill run",
                f"{ba['kernel_start_s']} s / {ba['empty_run_s']} s",
                "report",
                "-",
            )
        )
    if im := res.get("image"):
        out.append(
            (
                "notebook image size",
                f"{im['gb']:.2f} GB",
                "<= 1.2 GB",
                met(im["gb"] <= TARGETS["image_size_gb"]),
            )
        )
    return out


def table(res: dict[str, Any]) -> str:
    data = [("figure", "value", "target", "met"), *rows(res)]
    widths = [max(len(r[i]) for r in data) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, ready in series:
        if ready:
            ax.step(
                ready, [(i + 1) / len(ready) for i in range(len(ready))], where="post", label=label
            )
    ax.axvline(TARGETS["spawn_p50_s"], color="grey", ls=":", label="target p50, one user (2 s)")
    ax.axvline(TARGETS["burst_all_ready_s"], color="grey", ls="--", label="target, burst (30 s)")
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
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print()
    print(table(res))
    print(f"\nraw figures: {args.json}")
    if picture := plot(res, out_dir / "spawn.png"):
        print(f"spawn latency plot: {picture}")
    if not args.keep:
        log(f"removing {args.name} (--keep leaves it running)")
        ansible(inventory, clean, out_dir / "clean.log", [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
