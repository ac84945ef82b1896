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
idle server memory            RSS of the first of those users' server once idle (the
                              processes of its container, from ``/proc`` inside the
                              base station), and its cgroup's figures
spawn in Chromium             login form submitted -> JupyterLab rendered (its main
                              area shown, the splash screen gone) in Debian's Chromium
                              driven by Playwright, ``--browser-samples`` new users
spawn, burst                  ``--burst`` new users log in at the same moment: first,
                              p50, last ready, failures
spawn, large burst            every server stopped, then ``--burst-large`` new users at
                              once: the last one ready, failures; the hub process's CPU
                              seconds over the burst and its RSS with those servers
                              running (``/proc/<MainPID of jupyterhub>`` in the station)
auth overhead                 nginx with auth_request vs without (same requests, same
                              run, real JupyterHub upstream), cache on and off
batch speed-up                ``run-notebook --jobs <cores>`` vs a sequential loop of
                              the ``papermill`` CLI and vs ``run-notebook --jobs 1``,
                              20 experiments, in the notebook image; a papermill run of
                              an empty notebook
image size                    the notebook image on the base station
scrape overhead               the hub process's CPU over 45 s with Prometheus scraping
                              it, then over 45 s with Prometheus stopped
NIST seeding, cold / warm     ``testbed-sim-seed --nist`` with the simulator's own
                              virtualenv and the role's settings (seed, experiments,
                              access-time count, read on the station), audio included,
                              into a temporary folder removed afterwards: cold (no
                              cache), then from a cache filled by the cold run's output
M2E evaluation                ``testbed.qoe.m2e`` on one experiment in the notebook
                              image: first call (with NIST's import), second call
M2E notebook                  ``run-notebook --all`` over 04-mouth-to-ear in the
                              notebook image: seconds, runs, failures, and the worst
                              ``|m2e_measured_ms - m2e_truth_ms|`` over the experiments
============================  ==========================================================

Prints a table (figure, value, target, PASS/FAIL) and writes every raw figure as
JSON (``artifacts/bench/bench.json``). Exit 0 when every step ran, 1 when a step
failed (a target not met is reported, not an error); a figure whose step failed
is printed as "not measured" with FAIL. The statistics, the targets,
the table and the JSON file come from :mod:`testbed_devtools.stats`; the auth
overhead's raw samples from :mod:`testbed_proxy.bench` (run inside the base
station, through loopback listeners it installs there after the re-run), the
batch figures' raw timings from :mod:`testbed_devtools.batch_bench` and the M2E
figures from :mod:`testbed_devtools.qoe_bench` (each sent into a notebook-image
container on stdin).
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
from testbed_devtools.stats import (
    TARGETS,
    Row,
    judge,
    judge_all,
    not_measured,
    percentile,
    ratio,
    table,
    write_json,
)
from testbed_hub.auth import identity_to_username
from testbed_hub.migrate import CONTAINER_PREFIX
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
# The demo's admin (inventory/demo): stops every server before the large burst.
ADMIN = "alice@testbed.example"
# Chromium as the browser tests launch it (tests/e2e/conftest.py).
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server", "--disable-gpu"]
MB = 1024 * 1024
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


def sections(text: str) -> dict[str, str]:
    """A probe's output split at its ``== name`` lines: ``{name: text below it}``."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in out.items()}


def parse_proc_stat(text: str, ticks_per_s: int) -> dict[str, float]:
    """User and system CPU seconds of a process from its ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may hold spaces: the fields
    are counted after its closing parenthesis; utime and stime are fields 14 and 15.
    """
    if ")" not in text:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    rest = text[text.rindex(")") + 1 :].split()
    if len(rest) < 13:
        raise ValueError(f"/proc/<pid>/stat line too short: {text[:80]!r}")
    utime, stime = int(rest[11]) / ticks_per_s, int(rest[12]) / ticks_per_s
    return {"utime_s": utime, "stime_s": stime, "cpu_s": utime + stime}


def parse_proc_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...) in bytes."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * 1024
    return out


def parse_memory_stat(text: str) -> dict[str, int]:
    """A cgroup's ``memory.stat`` (``name value`` lines) as a dict of integers."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_mem_usage(text: str) -> int:
    """Bytes used from ``docker stats``' MemUsage (``"123.4MiB / 7.6GiB"``)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*(/.*)?", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a docker stats memory usage: {text!r}")
    return round(float(m.group(1)) * _UNITS[m.group(2).lower()])


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
def write_inventory(folder: Path, name: str, users: list[str], spawn_form: bool = True) -> Path:
    """An inventory for the bench container: the demo's group_vars + bench host_vars.

    ``spawn_form`` false: no resource profiles (the demo's two make the hub show its
    spawn form) and no earlier images offered, so the hub starts a server without asking.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts.yml").write_text(
        "---\nbasestation:\n  hosts:\n"
        f"    {name}:\n"
        "      ansible_connection: docker\n"
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
        + json.dumps(
            {
                "testbed_sim_auth_users": [{"name": u} for u in users],
                **(
                    {}
                    if spawn_form
                    else {"jupyterhub_profiles": [], "notebook_image_keep_previous": 0}
                ),
            },
            indent=2,
        )
        + "\n"
    )
    return folder


def rerun(inventory: Path, out_dir: Path) -> dict[str, Any]:
    """``site.yml`` again, twice: first with Ansible's own linear strategy (the
    baseline, ``linear``: the first re-run after the converge), then with Mitogen
    (``ANSIBLE_STRATEGY=mitogen_linear``, as ansible.cfg says, whatever the calling
    shell exported); seconds and recap totals of each. A failed baseline is reported
    in ``linear_error`` and the Mitogen run still happens."""
    baseline: dict[str, Any] = {}
    try:
        baseline["linear"] = ansible(
            inventory,
            REPO / "site.yml",
            out_dir / "rerun-linear.log",
            [],
            env={"ANSIBLE_STRATEGY": "linear"},
        )
    except RuntimeError as exc:
        baseline["linear_error"] = str(exc)
    mitogen = ansible(
        inventory,
        REPO / "site.yml",
        out_dir / "rerun.log",
        [],
        env={"ANSIBLE_STRATEGY": "mitogen_linear"},
    )
    return {**mitogen, **baseline}


def _ansible_playbook() -> str:
    """The ansible-playbook of this virtualenv when there is one, else the PATH's."""
    here = Path(sys.executable).with_name("ansible-playbook")
    return str(here) if here.exists() else "ansible-playbook"


def ansible(
    inventory: Path,
    playbook: Path,
    logfile: Path,
    extra: list[str],
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one playbook, log it, return seconds and the recap totals; ``env`` is
    added to the environment (``ANSIBLE_STRATEGY=linear``: Mitogen off)."""
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env or {})}
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
    session = HubSession(base_url)
    try:
        t = session.login_to_lab(user, name, timeout=timeout)
        return {
            "user": name,
            "ok": True,
            "ready_s": round(t.ready_s, 3),
            "polls": t.polls,
            # whether the hub showed its spawn form on the way (and Start was pressed)
            "spawn_form": session.spawn_choices is not None,
        }
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
    return {
        "runs": runs,
        "idle_cpu_rate": round(idle_rate, 3),
        **ready_figures(runs),
        "cpu_s_median": round(percentile((r["cpu_s"] for r in runs), 50), 2),
    }


def ready_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """First / p50 / p95 / last ready of the spawns that succeeded, and the failures."""
    ready = [r["ready_s"] for r in runs if r["ok"]]
    return {
        "failures": sum(not r["ok"] for r in runs),
        "first_s": round(min(ready), 2) if ready else None,
        "p50_s": round(percentile(ready, 50), 2) if ready else None,
        "p95_s": round(percentile(ready, 95), 2) if ready else None,
        "all_ready_s": round(max(ready), 2) if ready else None,
    }


def spawn_burst(
    base_url: str,
    users: list[str],
    *,
    spawn: Callable[..., dict[str, Any]] = spawn_one,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """All users submit the login form at the same moment (threads behind a barrier).

    ``all_ready_s`` is the last one ready; ``runs`` keep the users' order.
    """
    barrier = threading.Barrier(len(users))

    def go(user: str) -> dict[str, Any]:
        barrier.wait()
        return spawn(base_url, user, timeout=timeout)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        runs = list(pool.map(go, users))
    wall = time.monotonic() - t0
    return {"users": len(users), "runs": runs, **ready_figures(runs), "wall_s": round(wall, 2)}


# -- inside the base station: the hub process, a user's server -----------------------
HUB_PROBE = (
    "pid=$(systemctl show -p MainPID --value jupyterhub.service); "
    'echo "== pid"; echo "$pid"; '
    'echo "== ticks"; getconf CLK_TCK; '
    'echo "== stat"; cat "/proc/$pid/stat"; '
    'echo "== status"; cat "/proc/$pid/status"; '
    f'echo "== servers"; docker ps -q --filter "name=^{CONTAINER_PREFIX}-" | wc -l'
)


def parse_hub_probe(text: str) -> dict[str, Any]:
    """The hub process's pid, CPU seconds, RSS and peak RSS (bytes), and the number
    of user servers running, from the output of :data:`HUB_PROBE`."""
    sec = sections(text)
    pid = int(sec.get("pid") or 0)
    if pid <= 0 or "stat" not in sec:
        raise RuntimeError(
            f"no running jupyterhub process on the station (MainPID {sec.get('pid')!r}): "
            "check `systemctl status jupyterhub` there"
        )
    cpu = parse_proc_stat(sec["stat"], int(sec["ticks"]))
    status = parse_proc_status(sec.get("status", ""))
    return {
        "pid": pid,
        "cpu_s": cpu["cpu_s"],
        "rss_bytes": status.get("VmRSS"),
        "hwm_bytes": status.get("VmHWM"),
        "servers": int(sec.get("servers") or 0),
    }


def hub_probe(inst: Instance) -> dict[str, Any]:
    return parse_hub_probe(inst.check_output(HUB_PROBE))


def hub_usage(before: dict[str, Any], after: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The hub's CPU seconds between two probes (and in % of one core over ``wall_s``),
    its RSS and peak RSS at the second one, with the servers then running."""
    if before["pid"] != after["pid"]:
        raise RuntimeError(
            f"the hub restarted during the burst (pid {before['pid']} -> {after['pid']}): "
            "see `journalctl -u jupyterhub` on the station"
        )
    cpu_s = after["cpu_s"] - before["cpu_s"]

    def mb(value: int | None) -> float | None:
        return None if value is None else round(value / MB, 1)

    return {
        "pid": after["pid"],
        "cpu_s": round(cpu_s, 2),
        "wall_s": round(wall_s, 2),
        "cpu_pct": round(100 * cpu_s / wall_s, 1) if wall_s > 0 else None,
        "rss_mb": mb(after["rss_bytes"]),
        "peak_rss_mb": mb(after["hwm_bytes"]),
        "servers_running": after["servers"],
    }


def scrape_overhead(
    inst: Instance,
    window_s: float = 45.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The CPU the hub process spends over ``window_s`` seconds with Prometheus scraping
    it (every 15 s, ``monitoring_scrape_interval``), then over as long with Prometheus
    stopped; Prometheus is started again whatever happens. Returns both windows'
    :func:`hub_usage` and ``overhead_cpu_pct`` (scraped minus not scraped, in % of
    one core). Raises RuntimeError when the hub restarted during a window."""

    def window() -> dict[str, Any]:
        before, start = hub_probe(inst), clock()
        sleep(window_s)
        return hub_usage(before, hub_probe(inst), clock() - start)

    def pct(usage: dict[str, Any]) -> float:
        # hub_usage's cpu_pct is rounded to 0.1: too coarse for a figure near 0.05 %
        return 100 * usage["cpu_s"] / usage["wall_s"]

    scraped = window()
    inst.run("systemctl stop prometheus.service")
    try:
        not_scraped = window()
    finally:
        inst.run("systemctl start prometheus.service")
    return {
        "window_s": window_s,
        "scraped": scraped,
        "not_scraped": not_scraped,
        "scraped_cpu_pct": round(pct(scraped), 3),
        "not_scraped_cpu_pct": round(pct(not_scraped), 3),
        "overhead_cpu_pct": round(pct(scraped) - pct(not_scraped), 3),
    }


def server_memory_probe(container: str) -> str:
    """A shell script for the station: the memory of one user's container, as
    :func:`parse_server_memory` reads it (cgroup v2, else v1's memory controller)."""
    c = shlex.quote(container)
    return (
        f"pid=$(docker inspect --format '{{{{.State.Pid}}}}' {c}) || exit 3; "
        "d=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup); "
        '[ -f "$d/memory.stat" ] || '
        "d=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:[^:]*memory[^:]*://p' /proc/$pid/cgroup); "
        'echo "== cgroup"; echo "$d"; '
        'echo "== memory.stat"; cat "$d/memory.stat" 2>/dev/null; '
        'echo "== memory.current"; '
        'cat "$d/memory.current" 2>/dev/null || cat "$d/memory.usage_in_bytes" 2>/dev/null; '
        'for p in $(cat "$d/cgroup.procs" 2>/dev/null || echo "$pid"); do '
        'echo "== status $p"; cat "/proc/$p/status" 2>/dev/null; done; '
        f'echo "== docker stats"; docker stats --no-stream --format "{{{{.MemUsage}}}}" {c}'
    )


def parse_server_memory(text: str) -> dict[str, Any]:
    """RSS of a user's server: the sum of VmRSS over its container's processes; with its
    cgroup's anonymous memory and usage and ``docker stats``' figure beside it (MB)."""
    sec = sections(text)
    procs = [parse_proc_status(v) for k, v in sec.items() if k.startswith("status ")]
    rss = [p["VmRSS"] for p in procs if "VmRSS" in p]
    if not rss:
        raise RuntimeError(f"no process of the server's container found in {sec.get('cgroup')}")
    stat = parse_memory_stat(sec.get("memory.stat", ""))
    anon = stat.get("anon", stat.get("total_rss", stat.get("rss")))
    current = sec.get("memory.current", "")
    try:
        docker_stats = parse_mem_usage(sec.get("docker stats", ""))
    except ValueError:
        docker_stats = None

    def mb(value: int | None) -> float | None:
        return None if value is None else round(value / MB, 1)

    return {
        "rss_mb": mb(sum(rss)),
        "processes": len(rss),
        "cgroup": sec.get("cgroup"),
        "cgroup_anon_mb": mb(anon),
        "cgroup_current_mb": mb(int(current)) if current.isdigit() else None,
        "docker_stats_mb": mb(docker_stats),
    }


def server_memory(inst: Instance, user: str) -> dict[str, Any]:
    """The memory of ``user``'s (idle) server, its container on the station."""
    container = f"{CONTAINER_PREFIX}-{identity_to_username(user)}"
    res = parse_server_memory(inst.check_output(server_memory_probe(container)))
    log(f"idle server {container}: RSS {res['rss_mb']} MB over {res['processes']} process(es)")
    return {"container": container, **res}


def stop_servers(base_url: str, admin: str = ADMIN, timeout: float = 180.0) -> dict[str, Any]:
    """Stop every user's server through the hub's REST API as the admin (the admin's
    own too), and wait until the hub lists none active."""
    s = HubSession(base_url)
    s.login(admin)
    headers = {"Accept": "application/json", **s._hub_xsrf()}
    t0 = time.monotonic()
    stopped: set[str] = set()
    while True:
        r = s.http.get(s.hub("hub/api/users?state=active"), headers=headers, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"GET hub/api/users as {admin}: {r.status_code} {r.text[:300]}")
        active = r.json()
        if not active:
            return {"stopped": len(stopped), "seconds": round(time.monotonic() - t0, 1)}
        for user in active:
            if user.get("pending"):  # spawning or stopping: look again
                continue
            d = s.http.delete(
                s.hub(f"hub/api/users/{user['name']}/server"), headers=headers, timeout=30
            )
            if d.status_code not in (202, 204, 400):  # 400: not running (any more)
                raise RuntimeError(f"stop {user['name']}: {d.status_code} {d.text[:300]}")
            stopped.add(user["name"])
        if time.monotonic() - t0 > timeout:
            names = ", ".join(sorted(u["name"] for u in active))
            raise RuntimeError(f"servers still active after {timeout} s: {names}")
        time.sleep(0.5)


def spawn_burst_large(
    inst: Instance,
    base_url: str,
    users: list[str],
    *,
    stop: Callable[[], dict[str, Any]] | None = None,
    probe: Callable[[], dict[str, Any]] | None = None,
    burst: Callable[[str, list[str]], dict[str, Any]] = spawn_burst,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Every server stopped, then a burst; the hub's CPU over it and RSS after it.

    A failed hub probe leaves the burst's own figures and says why in ``hub``.
    """
    stopped = (stop or (lambda: stop_servers(base_url)))()
    probe = probe or (lambda: hub_probe(inst))
    try:
        before: dict[str, Any] | None = probe()
    except Exception as exc:  # noqa: BLE001 - the burst's figures still count
        before, hub_error = None, f"{type(exc).__name__}: {exc}"
    t0 = clock()
    res = burst(base_url, users)
    wall = clock() - t0
    if before is not None:
        try:
            res["hub"] = hub_usage(before, probe(), wall)
        except Exception as exc:  # noqa: BLE001
            res["hub"] = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        res["hub"] = {"error": hub_error}
    res["stopped_before"] = stopped
    return res


# -- the start line's baseline: every start at once ---------------------------------------
#: Run in the station with ``set -- <value>`` before it: ``0`` restarts the hub with no
#: start line (``spawner.concurrent_starts`` 0, the behaviour before it), ``restore``
#: puts the station's own settings file back, byte for byte, and restarts the hub; both
#: wait until the hub answers its health check through the proxy. ``SETTINGS`` and
#: ``KEEP`` are the files (the unit tests point them elsewhere).
START_LINE_SWITCH = r"""
set -e
s=${SETTINGS:-/etc/jupyterhub/settings.json}
keep=${KEEP:-/root/settings.json.bench-start-line}
if [ "$1" = restore ]; then
  [ ! -f "$keep" ] || mv -f "$keep" "$s"
else
  [ -f "$keep" ] || cp -p "$s" "$keep"
  python3 - "$s" "$1" <<'EOF'
import json, sys
path, slots = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    settings = json.load(f)
settings["spawner"]["concurrent_starts"] = slots
with open(path, "w") as f:
    json.dump(settings, f, indent=2)
EOF
fi
systemctl restart jupyterhub
python3 - "$s" <<'EOF'
import json, sys, time, urllib.request
with open(sys.argv[1]) as f:
    settings = json.load(f)
url = "http://127.0.0.1:%s%shub/health" % (
    settings["proxy"]["public_port"], settings["hub"]["base_url"])
for _ in range(120):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"the hub did not answer {url} within 60 s after its restart")
EOF
"""


def switch_start_line(inst: Instance, value: str) -> None:
    """``value`` ``"0"``: the hub restarted without a start line; ``"restore"``: with the
    station's own settings again (:data:`START_LINE_SWITCH`)."""
    inst.run(f"set -- {shlex.quote(value)}\n{START_LINE_SWITCH}")


def spawn_burst_unlimited(
    inst: Instance,
    base_url: str,
    users: list[str],
    *,
    stop: Callable[[], dict[str, Any]] | None = None,
    switch: Callable[[str], None] | None = None,
    burst: Callable[[str, list[str]], dict[str, Any]] = spawn_burst,
) -> dict[str, Any]:
    """The baseline of the start line, in the same run: every server stopped, the hub
    restarted with every start at once (``concurrent_starts`` 0), a burst of new users,
    then the station's own settings back (also when the burst fails)."""
    stopped = (stop or (lambda: stop_servers(base_url)))()
    switch = switch or (lambda value: switch_start_line(inst, value))
    switch("0")
    try:
        res = burst(base_url, users)
    finally:
        switch("restore")
    res["stopped_before"] = stopped
    return res


# -- on a swarm: the station and two workers (README: Scaling out) ---------------------
#: The Molecule scenario whose three instances make the bench's cluster.
CLUSTER_SCENARIO = "swarm"
CLUSTER_STATION = "tb-swarm-station"


def _molecule(command: str, logfile: Path, extra: list[str] | None = None) -> None:
    """``molecule <command> -s swarm`` (``-- extra`` passed on to ansible-playbook)."""
    here = Path(sys.executable).with_name("molecule")
    argv = [str(here) if here.exists() else "molecule", command, "-s", CLUSTER_SCENARIO]
    if extra:
        argv += ["--", *extra]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0"}
    r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env)
    logfile.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise RuntimeError(
            f"molecule {command} -s {CLUSTER_SCENARIO} exited {r.returncode}: see {logfile}"
        )


def service_nodes(station: Instance) -> dict[str, int]:
    """Users' servers per node of the swarm (``docker service ps`` on the manager)."""
    out = station.check_output(
        "for s in $(docker service ls -q --filter name=jupyter-); do "
        "docker service ps -q --filter desired-state=running --format '{{.Node}}' $s; done"
    )
    nodes: dict[str, int] = {}
    for node in out.split():
        nodes[node] = nodes.get(node, 0) + 1
    return dict(sorted(nodes.items()))


def cluster_burst(
    users: list[str],
    out_dir: Path,
    *,
    molecule: Callable[[str, Path, list[str] | None], None] = _molecule,
    station: Instance | None = None,
    burst: Callable[[str, list[str]], dict[str, Any]] = spawn_burst,
) -> dict[str, Any]:
    """The burst on a swarm: the Molecule scenario ``swarm`` converged (the demo's
    ``site.yml`` on a station and two workers, each its own Docker engine on this
    machine, the bench users added to the simulator's login), ``users`` at once
    through nginx on the station, where their servers landed, then the instances
    destroyed (also when a step fails). Seconds of the converge, the burst's figures."""
    station = station or Instance(CLUSTER_STATION)
    users_file = (out_dir / "cluster-users.json").resolve()  # molecule runs elsewhere
    users_file.write_text(json.dumps({"testbed_sim_auth_users": [{"name": u} for u in users]}))
    try:
        t0 = time.monotonic()
        molecule("converge", out_dir / "cluster-converge.log", ["-e", f"@{users_file}"])
        converge_s = time.monotonic() - t0
        res = burst(f"https://{station.ip()}", users)
        res["nodes"] = service_nodes(station)
        res["converge_s"] = round(converge_s, 1)
        return res
    finally:
        molecule("destroy", out_dir / "cluster-destroy.log", None)


# -- in Chromium -----------------------------------------------------------------------
def browser_login(browser: Any, base_url: str, user: str, timeout: float = 120.0) -> dict:
    """One new user in a fresh browser profile: login form submitted -> JupyterLab
    rendered (its main dock panel visible and the splash screen, shown until the
    workspace is restored, gone)."""
    name = identity_to_username(user)
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    ms = timeout * 1000
    try:
        page = ctx.new_page()
        page.goto(f"{base_url}/jupyter/", timeout=ms)
        page.fill("input[name=username]", user, timeout=ms)
        t0 = time.monotonic()
        page.click("button[type=submit]", timeout=ms)
        lab = re.compile(rf"/jupyter/user/{re.escape(name)}/lab")
        # a spawn form on the way (resource profiles, earlier images): Start at once,
        # with what it preselects, as hubclient does
        page.wait_for_url(re.compile(rf"{lab.pattern}|/jupyter/hub/spawn(/|$|\?)"), timeout=ms)
        form = not lab.search(page.url)
        if form:
            page.click("#spawn_form [type=submit]", timeout=ms)
        page.wait_for_url(lab, timeout=ms)
        page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=ms)
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=ms)
        return {
            "user": name,
            "ok": True,
            "ready_s": round(time.monotonic() - t0, 3),
            "spawn_form": form,
        }
    except Exception as exc:  # noqa: BLE001 - a failed login is a figure, not a crash
        return {"user": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        ctx.close()


def spawn_browser(
    base_url: str,
    users: list[str],
    settle_s: float = 3.0,
    *,
    chromium: str = CHROMIUM,
    login: Callable[[Any, str, str], dict[str, Any]] = browser_login,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """New users one at a time in Chromium (Playwright), as the browser tests launch it.

    Without Playwright or Chromium it raises: the figure is then "not measured".
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError(
            f"Playwright is not importable ({exc}): install the developer tooling (make venv)"
        ) from None
    if not Path(chromium).exists():
        raise RuntimeError(f"{chromium} is missing: run `make host` (installs Debian's chromium)")
    runs = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for user in users:
                res = login(browser, base_url, user)
                runs.append(res)
                log(f"browser {res['user']}: {res.get('ready_s', res.get('error'))} s")
                sleep(settle_s)
        finally:
            browser.close()
    return {"runs": runs, **ready_figures(runs)}


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
    positive), ``runner_speedup`` our own runner's ``runner_baseline_s / batch_s``
    (``--jobs 1`` vs ``--jobs N``; None when that arm did not run); the overheads
    are medians (p50) of their samples, None when a sample failed;
    ``meets_target`` needs no failure and the speed-up target.
    """
    complete = raw.get("overhead_samples", 0)

    def p50(samples: list[float]) -> float | None:
        return round(percentile(samples, 50), 3) if samples and len(samples) == complete else None

    target = TARGETS["batch_speedup"]
    speedup = ratio(raw["sequential_s"], raw["batch_s"])
    failed = list(raw.get("failed_runs", []))
    baseline_s = raw.get("runner_baseline_s")
    return {
        "experiments": raw["experiments"],
        "jobs": raw["jobs"],
        "sequential_s": round(raw["sequential_s"], 3),
        "batch_s": round(raw["batch_s"], 3),
        "speedup": speedup,
        "runner_baseline_jobs": raw.get("runner_baseline_jobs"),
        "runner_baseline_s": None if baseline_s is None else round(baseline_s, 3),
        "runner_speedup": None if baseline_s is None else ratio(baseline_s, raw["batch_s"]),
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


# -- NIST's QoE tests (issue 15): seeding, one evaluation, the M2E notebook ---------------
# The simulator's virtualenv on the station (testbed_sim_venv_dir) and its MongoDB
# stand-in's config (seed, experiments and, with NIST on, the media folder).
SIM_SEED = "/opt/testbed-sim/bin/testbed-sim-seed"
SIM_MONGO_CONFIG = "/etc/testbed-sim/mongo.json"
# The role's marker of a seeded media folder (roles/testbed_sim/vars/main.yml,
# __testbed_sim_media_stamp):
# .testbed-sim-seed-<seed>-<experiments>-rec<format>[-nist<N>-<hash>].json (no -rec<format>
# before the recordings' format 2)
SEED_STAMP = re.compile(r"\.testbed-sim-seed-(\d+)-(\d+)(?:-rec\d+)?-nist(\d+)-[0-9a-f]+\.json")
M2E_EXPERIMENT = "exp-001"
M2E_NOTEBOOK = "share/demo-notebooks/04-mouth-to-ear.ipynb"
QOE_SCRIPT = Path(__file__).with_name("qoe_bench.py")


def seed_settings(mongo_config: str, stamps: list[str]) -> dict[str, Any]:
    """What the testbed_sim role seeded the station with: seed, experiments and media
    folder from the MongoDB stand-in's config, the access-time count from the role's
    marker in that folder (its newest one for that seed and count, ``stamps`` newest
    first). Raises when the station seeded no NIST tests."""
    config = json.loads(mongo_config)
    media = config.get("nist_media_dir")
    if not media:
        raise RuntimeError(
            f"{SIM_MONGO_CONFIG} names no nist_media_dir: the station seeds no NIST tests "
            "(testbed_sim_nist_enabled is false); nothing to measure"
        )
    seed, experiments = int(config["seed"]), int(config["experiments"])
    for name in stamps:
        m = SEED_STAMP.fullmatch(Path(name).name)
        if m and (int(m.group(1)), int(m.group(2))) == (seed, experiments):
            access = int(m.group(3))
            break
    else:
        raise RuntimeError(
            f"no NIST seeding marker .testbed-sim-seed-{seed}-{experiments}-nist*.json in "
            f"{media}: the testbed_sim role has not seeded NIST's tests there"
        )
    return {"seed": seed, "experiments": experiments, "access_experiments": access, "media": media}


def seed_argv(
    settings: dict[str, Any], media_dir: str, stamp: str, cache_dir: str | None = None
) -> list[str]:
    """``testbed-sim-seed`` as roles/testbed_sim/tasks/media.yml runs it, into ``media_dir``."""
    argv = [SIM_SEED, "--seed", str(settings["seed"]), "--experiments"]
    argv += [str(settings["experiments"]), "--media-dir", media_dir, "--file-mode", "0644"]
    argv += ["--stamp", stamp, "--nist", "--nist-access-experiments"]
    argv += [str(settings["access_experiments"])]
    return argv + (["--nist-cache-dir", cache_dir] if cache_dir else [])


def seed_script(settings: dict[str, Any]) -> str:
    """A shell script for the station: the seeding cold, the cache filled, then warm,
    each timed there, all in one temporary folder removed on exit (the station's own
    media never change). Its output: ``== <run>`` (the command's JSON lines),
    ``== <run> rc``, ``== <run> seconds``, ``== <run> stderr`` (when it failed)."""

    def cmd(media: str, cache: bool) -> str:
        cache_dir = "$root/cache" if cache else None
        argv = seed_argv(settings, f"$root/{media}", f"$root/{media}.stamp.json", cache_dir)
        # the temporary folder's paths expand on the station; everything else is quoted
        return " ".join(f'"{a}"' if a.startswith("$root/") else shlex.quote(a) for a in argv)

    return "\n".join(
        [
            'root=$(mktemp -d "${TMPDIR:-/var/tmp}/testbed-hub-bench-nist.XXXXXX") || exit 3',
            "trap 'rm -rf \"$root\"' EXIT",
            "timed() {",
            '  name=$1; shift; t0=$(date +%s.%N); "$@" >"$root/$name.out" 2>"$root/$name.err"',
            '  rc=$?; t1=$(date +%s.%N); echo "== $name"; cat "$root/$name.out"',
            '  echo "== $name rc"; echo $rc; echo "== $name seconds"; echo "$t0 $t1"',
            '  [ $rc -eq 0 ] || { echo "== $name stderr"; tail -c 1500 "$root/$name.err"; }',
            "  return $rc",
            "}",
            f"timed cold {cmd('cold', False)} &&",
            f"timed fill {cmd('cold', True)} &&",
            f"timed warm {cmd('warm', True)}",
            "rc=$?",
            'echo "== media bytes"; du -sb "$root/cold" 2>/dev/null | cut -f1',
            "exit $rc",
        ]
    )


def _seed_run(sec: dict[str, str], name: str) -> dict[str, Any] | None:
    """One run of :func:`seed_script`'s output: seconds, exit status, the NIST report."""
    if f"{name} rc" not in sec:
        return None
    t0, t1 = (float(x) for x in sec[f"{name} seconds"].split())
    run: dict[str, Any] = {"seconds": round(t1 - t0, 1), "rc": int(sec[f"{name} rc"])}
    for line in sec.get(name, "").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "nist" in doc:
            run["nist"] = doc["nist"]
        elif isinstance(doc, dict) and "recordings" in doc:
            run["recordings"] = doc["recordings"]
    if run["rc"] != 0:
        run["error"] = " ".join(sec.get(f"{name} stderr", "").split()[-60:])
    return run


def parse_seeding(text: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The seeding's figures from :func:`seed_script`'s output; raises when the cold
    run did not finish (the warm run's failure is kept beside the cold figures)."""
    sec = sections(text)
    cold, fill, warm = (_seed_run(sec, n) for n in ("cold", "fill", "warm"))
    if cold is None or cold["rc"] != 0:
        why = "did not run" if cold is None else f"exited {cold['rc']}: {cold.get('error')}"
        raise RuntimeError(f"testbed-sim-seed --nist (cold) {why}")
    media = sec.get("media bytes", "")
    out = {
        **{k: settings[k] for k in ("seed", "experiments", "access_experiments")},
        "cold": cold,
        "fill": fill,
        "warm": warm,
        "media_mb": round(int(media) / MB, 1) if media.isdigit() else None,
    }
    if warm is None or warm["rc"] != 0:
        out["warm_error"] = (
            "did not run (filling the cache failed)" if warm is None else warm["error"]
        )
    return out


def nist_seeding(inst: Instance) -> dict[str, Any]:
    """Seeding the station's demo data with NIST's tests, cold then warm, into a
    temporary folder, with the simulator's own virtualenv and the role's settings."""
    config = inst.check_output(f"cat {SIM_MONGO_CONFIG}")
    media = json.loads(config).get("nist_media_dir") or "/nonexistent"
    stamps = inst.run(f"ls -t {shlex.quote(media)}/.testbed-sim-seed-*-nist*.json", check=False)
    settings = seed_settings(config, stamps.stdout.split())
    log(
        f"seeding {settings['experiments']} experiments (seed {settings['seed']}, "
        f"{settings['access_experiments']} with an access-time test): cold, then warm"
    )
    r = inst.run(seed_script(settings), check=False)
    res = parse_seeding(r.stdout, settings)
    warm = res["warm"] or {}
    log(f"seeding: cold {res['cold']['seconds']} s, warm {warm.get('seconds', '-')} s")
    return res


def notebook_container(inst: Instance) -> dict[str, Any]:
    """The hub's description of a notebook container for the bench's batch user."""
    return json.loads(
        inst.check_output(f"{HUB_PYTHON} -m testbed_hub.container_cli --user {BATCH_USER}")
    )


def in_notebook_image(inst: Instance, container: dict[str, Any], args: list[str]) -> dict:
    """:mod:`testbed_devtools.qoe_bench` with ``args`` in a fresh notebook container as
    the hub starts a user's (as :func:`batch_speedup`); its JSON line."""
    cmd = (
        f"docker run -i --rm {shlex.join(docker_run_options(container))} "
        f"{shlex.quote(container['image'])} python - {shlex.join(args)}"
    )
    out = inst.run(cmd, check=False, input=QOE_SCRIPT.read_text(encoding="utf-8"))
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(
            f"qoe bench {args[0]} exited {out.returncode}: {out.stdout[-800:]}{out.stderr[-1500:]}"
        )
    return json.loads(lines[-1])


def m2e_evaluation(inst: Instance, experiment: str = M2E_EXPERIMENT) -> dict[str, Any]:
    """``testbed.qoe.m2e`` on one experiment in the notebook image: first call (with
    ``from testbed import qoe`` and NIST's import) and second call."""
    raw = in_notebook_image(inst, notebook_container(inst), ["m2e", experiment])
    log(f"qoe.m2e({experiment}): {raw['first_s']:.2f} s first, {raw['second_call_s']:.2f} s next")
    return raw


def m2e_notebook_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """The M2E notebook's figures from :mod:`testbed_devtools.qoe_bench`'s ``notebook``
    output: runs, failures (a failed run, or an ok one without both records), and the
    worst ``|m2e_measured_ms - m2e_truth_ms|`` over the runs that have both."""
    rows = raw["rows"]
    errors = {
        r["experiment"]: round(abs(r["m2e_measured_ms"] - r["m2e_truth_ms"]), 3)
        for r in rows
        if r["status"] == "ok"
        and r.get("m2e_measured_ms") is not None
        and r.get("m2e_truth_ms") is not None
    }
    failed = [r["experiment"] for r in rows if r["experiment"] not in errors]
    worst = max(errors, key=lambda e: (errors[e], e)) if errors else None
    out: dict[str, Any] = {
        "notebook": raw["notebook"],
        "jobs": raw["jobs"],
        "seconds": round(raw["seconds"], 1),
        "returncode": raw["returncode"],
        "runs": len(rows),
        "failures": len(failed),
        "failed": failed,
        "worst_error_ms": None if worst is None else errors[worst],
        "worst_experiment": worst,
        "errors_ms": errors,
    }
    if not rows:
        out["error"] = raw.get("stderr_tail") or f"run-notebook exited {raw['returncode']}"
    return out


def m2e_notebook(inst: Instance, jobs: int) -> dict[str, Any]:
    """``run-notebook --all`` over the M2E demo notebook in the notebook image."""
    container = notebook_container(inst)
    notebook = f"{container['working_dir']}/{M2E_NOTEBOOK}"
    raw = in_notebook_image(inst, container, ["notebook", notebook, "--jobs", str(jobs)])
    res = m2e_notebook_summary(raw)
    if not res["runs"]:
        raise RuntimeError(f"run-notebook --all over {M2E_NOTEBOOK} ran nothing: {res['error']}")
    log(
        f"run-notebook --all 04-mouth-to-ear: {res['runs']} runs, {res['failures']} failed "
        f"in {res['seconds']} s; worst M2E error {res['worst_error_ms']} ms"
    )
    return res


# -- report ------------------------------------------------------------------------------
def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:g} MB"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fresh_converge(fc: dict[str, Any]) -> list[Row]:
    v = fc["seconds"]
    return [judge(FIGURES["fresh_converge"][0][0], f"{v:.0f} s", "fresh_converge_s", v)]


def _rerun(rr: dict[str, Any]) -> list[Row]:
    (fig, _), (linear_fig, _) = FIGURES["rerun"]
    v = rr["seconds"]
    out = [
        judge(
            fig,
            f"{v:.0f} s, changed={rr['changed']}",
            "rerun_s",
            v,
            # the baseline ran first: a change only a second run makes shows there
            ("changed=0", rr["changed"] == 0 and (rr.get("linear") or {}).get("changed", 0) == 0),
        )
    ]
    linear = rr.get("linear")
    if linear is None:
        return out + [not_measured(linear_fig, [], rr.get("linear_error", "did not run"))]
    ratio = linear["seconds"] / v if v else None
    return out + [
        Row(
            linear_fig,
            f"{linear['seconds']:.0f} s, changed={linear['changed']}; Mitogen {_x(ratio)} faster",
        )
    ]


def _spawn_single(sp: dict[str, Any]) -> list[Row]:
    (spawn, _), (cpu, _) = FIGURES["spawn_single"]
    return [
        judge_all(
            f"{spawn} (n={len(sp['runs'])})",
            f"p50 {_s(sp['p50_s'])}, p95 {_s(sp['p95_s'])}, failed {sp['failures']}",
            {"spawn_p50_s": sp["p50_s"], "spawn_p95_s": sp["p95_s"]},
            ("0 failed", sp["failures"] == 0),
        ),
        judge(cpu, _s(sp["cpu_s_median"]), "spawn_cpu_s", sp["cpu_s_median"]),
    ]


def _server_memory(sm: dict[str, Any]) -> list[Row]:
    return [
        judge(
            FIGURES["server_memory"][0][0],
            f"{_mb(sm['rss_mb'])} ({sm['processes']} process(es); cgroup anon "
            f"{_mb(sm.get('cgroup_anon_mb'))}, docker stats {_mb(sm.get('docker_stats_mb'))})",
            "server_rss_mb",
            sm["rss_mb"],
        )
    ]


def _spawn_browser(br: dict[str, Any]) -> list[Row]:
    return [
        judge(
            f"{FIGURES['spawn_browser'][0][0]} (n={len(br['runs'])})",
            f"p50 {_s(br['p50_s'])}, p95 {_s(br['p95_s'])}, failed {br['failures']}",
            "browser_p50_s",
            br["p50_s"],
            ("0 failed", br["failures"] == 0),
        )
    ]


def _ready(bu: dict[str, Any]) -> str:
    """A burst's first / p50 / last ready and its failures, as the table shows them."""
    return (
        f"first {_s(bu['first_s'])}, p50 {_s(bu['p50_s'])}, last {_s(bu['all_ready_s'])}, "
        f"failed {bu['failures']}"
    )


def _spawn_burst(bu: dict[str, Any]) -> list[Row]:
    return [
        judge_all(
            f"burst: {bu['users']} new users at once, first / p50 / last ready",
            _ready(bu),
            {
                "burst_first_s": bu["first_s"],
                "burst_p50_s": bu["p50_s"],
                "burst_last_s": bu["all_ready_s"],
            },
            ("0 failed", bu["failures"] == 0),
        )
    ]


def _spawn_burst_unlimited(bu: dict[str, Any]) -> list[Row]:
    return [Row(f"{FIGURES['spawn_burst_unlimited'][0][0]} ({bu['users']} users)", _ready(bu))]


def _cluster_burst(cb: dict[str, Any]) -> list[Row]:
    placed = ", ".join(f"{node} {n}" for node, n in cb["nodes"].items()) or "none"
    return [
        Row(
            f"{FIGURES['cluster_burst'][0][0]} ({cb['users']} users)",
            f"{_ready(cb)}; servers on {placed}",
        )
    ]


def _spawn_burst_large(bl: dict[str, Any]) -> list[Row]:
    n = bl["users"]
    out = [
        judge(
            f"burst: {n} new users at once, last ready",
            f"last {_s(bl['all_ready_s'])} (first {_s(bl['first_s'])}, p50 {_s(bl['p50_s'])}), "
            f"failed {bl['failures']}",
            "burst_large_last_s",
            bl["all_ready_s"],
            ("0 failed", bl["failures"] == 0),
        )
    ]
    hub = bl.get("hub") or {"error": "no hub figures"}
    (_, _), (cpu, _), (rss, _) = FIGURES["spawn_burst_large"]
    if "error" in hub:
        return out + [not_measured(cpu, [], hub["error"]), not_measured(rss, [], hub["error"])]
    pct = "-" if hub["cpu_pct"] is None else f"{hub['cpu_pct']:g}%"
    return out + [
        Row(f"{cpu} of {n}", f"{_s(hub['cpu_s'])} CPU in {_s(hub['wall_s'])} ({pct} of a core)"),
        Row(
            f"{rss} ({hub['servers_running']} servers running)",
            f"{_mb(hub['rss_mb'])} (peak {_mb(hub['peak_rss_mb'])})",
        ),
    ]


def _auth(au: dict[str, Any]) -> list[Row]:
    ratios = au["ratio"]
    (cached, _), (uncached, _) = FIGURES["auth"]
    return [
        judge(cached, _x(ratios["auth_cached"]), "auth_ratio_cached", ratios["auth_cached"]),
        Row(uncached, _x(ratios["auth"])),
    ]


def _batch(ba: dict[str, Any]) -> list[Row]:
    (empty, _), (kernel, _), (_, _), (runner, _) = FIGURES["batch"]
    jobs, base = ba["jobs"], ba.get("runner_baseline_jobs")
    out = [
        judge(empty, _s(ba["empty_run_s"]), "empty_run_s", ba["empty_run_s"]),
        Row(kernel, _s(ba["kernel_start_s"])),
        judge(
            f"{ba['experiments']} experiments, run-notebook --jobs {jobs} vs papermill CLI loop",
            f"{_x(ba['speedup'])} ({ba['sequential_s']:.1f} s -> {ba['batch_s']:.1f} s)",
            "batch_speedup",
            ba["speedup"],
            ("0 failed", not ba["failures"]),
        ),
    ]
    if ba.get("runner_speedup") is not None:
        out.append(
            Row(
                f"{ba['experiments']} experiments, run-notebook --jobs {jobs} vs --jobs {base}",
                f"{_x(ba['runner_speedup'])} ({ba['runner_baseline_s']:.1f} s -> "
                f"{ba['batch_s']:.1f} s)",
            )
        )
    else:
        out.append(not_measured(runner, [], f"run-notebook --jobs {base} did not run"))
    return out


def _image(im: dict[str, Any]) -> list[Row]:
    return [judge(FIGURES["image"][0][0], f"{im['gb']:.2f} GB", "image_size_gb", im["gb"])]


def _nist_seed(ns: dict[str, Any]) -> list[Row]:
    (cold_fig, _), (warm_fig, _) = FIGURES["nist_seed"]
    cold, n = ns["cold"], ns["experiments"]
    measured = (cold.get("nist") or {}).get("measured")
    out = [
        judge(
            f"{cold_fig} ({n} experiments, {ns['access_experiments']} with access time)",
            f"{cold['seconds']:.0f} s ({measured} measured, {cold.get('recordings')} recordings)",
            "nist_seed_cold_s",
            cold["seconds"],
            (f"{n} measured", measured == n),
        )
    ]
    warm = ns.get("warm")
    if warm is None or "warm_error" in ns:
        return out + [not_measured(warm_fig, [], ns.get("warm_error", "did not run"))]
    report = warm.get("nist") or {}
    return out + [
        Row(
            warm_fig,
            f"{warm['seconds']:.0f} s ({report.get('from_cache')} from cache, "
            f"{report.get('measured')} measured)",
        )
    ]


def _scrape(sc: dict[str, Any]) -> list[Row]:
    ((figure, _),) = FIGURES["scrape"]
    return [
        Row(
            f"{figure} ({sc['window_s']:.0f} s each)",
            f"{sc['overhead_cpu_pct']:.3f} % of one core ({sc['scraped_cpu_pct']:.3f} % "
            f"scraped, {sc['not_scraped_cpu_pct']:.3f} % not)",
        )
    ]


def _m2e_eval(me: dict[str, Any]) -> list[Row]:
    (first, _), (second, _) = FIGURES["m2e_eval"]
    return [
        judge(
            f"{first} ({me['experiment']})",
            f"{me['first_s']:.2f} s (import {me['import_s']:.2f} s + call "
            f"{me['first_call_s']:.2f} s)",
            "m2e_eval_s",
            me["first_s"],
        ),
        Row(f"{second} ({me['experiment']})", f"{me['second_call_s']:.2f} s"),
    ]


def _m2e_notebook(mn: dict[str, Any]) -> list[Row]:
    (batch, _), (worst, _) = FIGURES["m2e_notebook"]
    runs, failures = mn["runs"], mn["failures"]
    value = "-" if mn["worst_error_ms"] is None else f"{mn['worst_error_ms']:g} ms"
    return [
        Row(
            f"{batch} ({runs} experiments, --jobs {mn['jobs']})",
            f"{mn['seconds']:.1f} s, {runs} runs, failed {failures}",
        ),
        judge(
            worst,
            f"{value} ({mn['worst_experiment']})" if mn["worst_experiment"] else value,
            "m2e_notebook_error_ms",
            mn["worst_error_ms"],
            (f"all {runs} measured", runs > 0 and failures == 0),
        ),
    ]


# Each step's figures and target keys, in the table's order; what a failed step prints
# in their place ("not measured", FAIL).
FIGURES: dict[str, list[tuple[str, list[str]]]] = {
    "fresh_converge": [
        ("fresh converge (container + site.yml, image build)", ["fresh_converge_s"])
    ],
    "rerun": [
        ("idempotent re-run of site.yml (Mitogen, ansible.cfg)", ["rerun_s"]),
        ("idempotent re-run of site.yml, ANSIBLE_STRATEGY=linear (baseline)", []),
    ],
    "spawn_single": [
        ("spawn 1 new user, login -> JupyterLab answers", ["spawn_p50_s", "spawn_p95_s"]),
        ("CPU seconds per spawn (whole machine, median)", ["spawn_cpu_s"]),
    ],
    "server_memory": [("memory of one idle user server (RSS)", ["server_rss_mb"])],
    "spawn_browser": [("login -> JupyterLab rendered in Chromium", ["browser_p50_s"])],
    "spawn_burst": [
        (
            "burst: new users at once, first / p50 / last ready",
            ["burst_first_s", "burst_p50_s", "burst_last_s"],
        ),
    ],
    "spawn_burst_unlimited": [
        ("the same burst with every start at once (no start line: baseline)", []),
    ],
    "cluster_burst": [
        ("burst on a swarm: station + 2 workers on this machine, first / p50 / last", []),
    ],
    "spawn_burst_large": [
        ("burst: new users at once, last ready", ["burst_large_last_s"]),
        ("hub CPU during the burst", []),
        ("hub RSS after the burst", []),
    ],
    "auth": [
        ("nginx auth_request overhead, cache on (ratio)", ["auth_ratio_cached"]),
        ("nginx auth_request overhead, cache off (ratio)", []),
    ],
    "batch": [
        ("papermill run of an empty notebook (median)", ["empty_run_s"]),
        ("kernel start and stop (median)", []),
        ("experiments, run-notebook --jobs N vs papermill CLI loop", ["batch_speedup"]),
        ("experiments, run-notebook --jobs N vs --jobs 1", []),
    ],
    "image": [("notebook image size", ["image_size_gb"])],
    "scrape": [("hub CPU with Prometheus scraping minus without", [])],
    "nist_seed": [
        ("seeding the demo data with NIST's tests, cold (no cache)", ["nist_seed_cold_s"]),
        ("seeding the demo data with NIST's tests, warm (from the cold run's cache)", []),
    ],
    "m2e_eval": [
        ("testbed.qoe.m2e in the notebook image, first call (with NIST's import)", ["m2e_eval_s"]),
        ("testbed.qoe.m2e in the notebook image, second call", []),
    ],
    "m2e_notebook": [
        ("run-notebook --all over 04-mouth-to-ear", []),
        ("worst |m2e_measured_ms - m2e_truth_ms| over the experiments", ["m2e_notebook_error_ms"]),
    ],
}
ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "fresh_converge": _fresh_converge,
    "rerun": _rerun,
    "spawn_single": _spawn_single,
    "server_memory": _server_memory,
    "spawn_browser": _spawn_browser,
    "spawn_burst": _spawn_burst,
    "spawn_burst_unlimited": _spawn_burst_unlimited,
    "spawn_burst_large": _spawn_burst_large,
    "cluster_burst": _cluster_burst,
    "auth": _auth,
    "batch": _batch,
    "image": _image,
    "scrape": _scrape,
    "nist_seed": _nist_seed,
    "m2e_eval": _m2e_eval,
    "m2e_notebook": _m2e_notebook,
}


def rows(res: dict[str, Any]) -> list[Row]:
    """The table's rows, each figure beside its target (``stats.TARGETS``).

    A step that failed (``<step>_error``) gives its figures as "not measured" with
    FAIL; a step that was not run at all (``--reuse``: no fresh converge) is left out.
    """
    out: list[Row] = []
    for key, make in ROWS.items():
        if step := res.get(key):
            out += make(step)
        elif (error := res.get(f"{key}_error")) is not None:
            out += [not_measured(fig, keys, error) for fig, keys in FIGURES[key]]
    return out


def _marks(ax: Any, ready: list[float], color: str) -> None:
    """First, p50 and last ready marked and labelled on a burst's curve."""
    n = len(ready)
    for label, value, dy in (
        ("first", ready[0], 6),
        ("p50", percentile(ready, 50), -10),
        ("last", ready[-1], -10),
    ):
        share = sum(r <= value for r in ready) / n
        ax.plot([value], [share], "o", color=color, ms=5)
        ax.annotate(
            f"{label} {value:.1f} s",
            (value, share),
            textcoords="offset points",
            xytext=(4, dy),
            fontsize=7,
            color=color,
        )


def plot(res: dict[str, Any], path: Path) -> Path | None:
    """Left: cumulative share of users with a ready JupyterLab over time (one at a
    time, in Chromium, each burst), the bursts' first / p50 / last marked. Right: each
    burst user's wait, in the order they were served, against the burst targets."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = {
        "spawn_single": lambda d: f"one at a time (n={len(d['runs'])})",
        "spawn_browser": lambda d: f"one at a time, Chromium rendered (n={len(d['runs'])})",
        "spawn_burst": lambda d: f"burst of {d['users']} at once",
        "spawn_burst_unlimited": lambda d: f"burst of {d['users']}, no start line (baseline)",
        "spawn_burst_large": lambda d: f"burst of {d['users']} at once",
        "cluster_burst": lambda d: f"burst of {d['users']} on a swarm (2 workers, same machine)",
    }
    series = [
        (key, label(res[key]), sorted(r["ready_s"] for r in res[key]["runs"] if r["ok"]))
        for key, label in labels.items()
        if res.get(key) and res[key].get("runs")
    ]
    if not series:
        return None
    fig, (ax, order) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[3, 2])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, label, ready) in enumerate(series):
        color = colors[i % len(colors)]
        if not ready:
            continue
        shares = [(j + 1) / len(ready) for j in range(len(ready))]
        ax.step(ready, shares, where="post", label=label, color=color)
        if key.startswith("spawn_burst"):
            _marks(ax, ready, color)
            order.plot(range(1, len(ready) + 1), ready, ".-", color=color, label=label, ms=4)
    for key, ls, what in (
        ("spawn_p50_s", ":", "one user"),
        ("burst_last_s", "--", "burst"),
        ("burst_large_last_s", "-.", "large burst"),
    ):
        target = TARGETS[key]
        ax.axvline(target.limit, color="grey", ls=ls, lw=1, label=f"target {what} ({target})")
    ax.set_xlabel("seconds from login to a ready JupyterLab")
    ax.set_ylabel("share of users ready")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    for key, ls in (("burst_first_s", ":"), ("burst_p50_s", "--"), ("burst_last_s", "-")):
        t = TARGETS[key]
        order.axhline(t.limit, color="grey", ls=ls, lw=1, label=f"target burst, {t}")
    large = TARGETS["burst_large_last_s"]
    order.axhline(large.limit, color="grey", ls="-.", lw=1, label=f"target large burst, {large}")
    order.set_xlabel("users in the order they were served")
    order.set_ylabel("seconds to a ready JupyterLab")
    order.set_ylim(bottom=0)
    order.grid(alpha=0.3)
    order.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The options and what is wrong with them (empty: nothing)."""
    p = argparse.ArgumentParser(
        prog="python -m testbed_devtools.bench", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--name", default="testbed-hub-bench", help="bench container (default %(default)s)"
    )
    p.add_argument(
        "--samples", type=int, default=5, help="single-user spawns (default %(default)s)"
    )
    p.add_argument(
        "--browser-samples",
        type=int,
        default=5,
        help="single-user spawns in Chromium (default %(default)s)",
    )
    p.add_argument("--burst", type=int, default=20, help="users in the burst (default %(default)s)")
    p.add_argument(
        "--burst-large",
        type=int,
        default=50,
        help="users in the large burst, after every server is stopped (default %(default)s)",
    )
    p.add_argument(
        "--cluster-burst",
        type=int,
        default=20,
        help="users in the burst on a swarm (the Molecule scenario swarm; 0: no cluster "
        "step; default %(default)s)",
    )
    p.add_argument(
        "--cluster-only",
        action="store_true",
        help="only the burst on a swarm (no bench base station)",
    )
    p.add_argument("--experiments", type=int, default=20, help="batch size (default %(default)s)")
    p.add_argument(
        "--reuse", action="store_true", help="keep an existing bench instance (no fresh converge)"
    )
    p.add_argument(
        "--no-spawn-form",
        dest="spawn_form",
        action="store_false",
        help="no resource profiles and no earlier images, so no spawn form before a start "
        "(the demo has two profiles)",
    )
    p.add_argument(
        "--keep", action="store_true", help="leave the bench instance running afterwards"
    )
    p.add_argument("--json", type=Path, default=REPO / "artifacts" / "bench" / "bench.json")
    args = p.parse_args(argv)
    problems = [
        f"--{k.replace('_', '-')} must be at least 1 (got {getattr(args, k)})"
        for k in ("samples", "browser_samples", "burst", "burst_large", "experiments")
        if getattr(args, k) < 1
    ]
    if args.cluster_burst < 0:
        problems.append(
            f"--cluster-burst must be 0 (no cluster step) or more (got {args.cluster_burst})"
        )
    if args.cluster_only and args.cluster_burst < 1:
        problems.append("--cluster-only needs --cluster-burst of at least 1")
    if args.experiments > 24:
        problems.append(f"--experiments {args.experiments}: the simulator seeds 24 experiments")
    return args, problems


def bench_users(args: argparse.Namespace) -> dict[str, list[str]]:
    """The bench's new users by step (each spawns once), and every user the station needs."""
    groups = {
        "single": ("bench", args.samples),
        "browser": ("browser", args.browser_samples),
        "burst": ("burst", args.burst),
        "burst_unlimited": ("free", args.burst),
        "burst_large": ("large", args.burst_large),
        "cluster": ("swarm", args.cluster_burst),
    }
    users = {
        key: [f"{prefix}-{i:02d}@testbed.example" for i in range(1, n + 1)]
        for key, (prefix, n) in groups.items()
    }
    users["all"] = [
        ADMIN,
        "bob@testbed.example",
        *(u for k in groups if k != "cluster" for u in users[k]),
    ]
    return users


def main(argv: list[str] | None = None) -> int:
    args, problems = parse_args(argv)
    if problems:
        print("bench: " + "; ".join(problems), file=sys.stderr)
        return 2

    out_dir = args.json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    users = bench_users(args)
    inventory = write_inventory(
        out_dir / "inventory", args.name, users["all"], spawn_form=args.spawn_form
    )
    inst = Instance(args.name)
    res: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "spawn_form": args.spawn_form,
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
    if not args.cluster_only:
        station_steps(args, users, inventory, inst, res, failed, step, out_dir, clean, extra)
    # After the bench station is gone (unless --keep): the cluster's three engines
    # have the machine to themselves.
    if args.cluster_burst:
        step(
            "cluster_burst",
            f"a swarm (scenario swarm: station + 2 workers), burst of {args.cluster_burst}",
            lambda: cluster_burst(users["cluster"], out_dir),
        )
    res["finished"] = time.strftime("%FT%TZ", time.gmtime())
    res["failed_steps"] = failed
    write_json(args.json, res)
    print()
    print(table(rows(res)))
    print(f"\nraw figures: {args.json}")
    if picture := plot(res, out_dir / "spawn.png"):
        print(f"spawn latency plot: {picture}")
    return 1 if failed else 0


def station_steps(  # noqa: PLR0913 - main's state, handed over whole
    args: argparse.Namespace,
    users: dict[str, list[str]],
    inventory: Path,
    inst: Instance,
    res: dict[str, Any],
    failed: list[str],
    step: Callable[[str, str, Callable[[], Any]], None],
    out_dir: Path,
    clean: Path,
    extra: list[str],
) -> None:
    """Every step on the bench base station (a fresh one unless ``--reuse``), which is
    removed at the end unless ``--keep``."""
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
    step("rerun", "idempotent re-run: site.yml", lambda: rerun(inventory, out_dir))
    used = ["image", "spawn_single", "server_memory", "spawn_browser", "spawn_burst"]
    used += ["spawn_burst_unlimited"]
    used += ["spawn_burst_large", "auth", "batch", "scrape", "nist_seed", "m2e_eval"]
    used += ["m2e_notebook"]
    if "fresh_converge" in failed:
        for key in used:
            failed.append(key)
            res[key + "_error"] = "not run: the fresh converge failed"
    else:
        base_url = f"https://{inst.ip()}"
        step("image", "notebook image size", lambda: image_size(inst))
        step(
            "spawn_single",
            f"spawn latency, {args.samples} users one at a time",
            lambda: spawn_single(base_url, users["single"]),
        )
        step(
            "server_memory",
            f"memory of one idle server ({users['single'][0]})",
            lambda: server_memory(inst, users["single"][0]),
        )
        step(
            "spawn_browser",
            f"login -> JupyterLab rendered in Chromium, {args.browser_samples} users",
            lambda: spawn_browser(base_url, users["browser"]),
        )
        step(
            "spawn_burst",
            f"spawn latency, burst of {args.burst} users",
            lambda: spawn_burst(base_url, users["burst"]),
        )
        step(
            "spawn_burst_unlimited",
            f"every server stopped, the hub without its start line, a burst of {args.burst}",
            lambda: spawn_burst_unlimited(inst, base_url, users["burst_unlimited"]),
        )
        step(
            "spawn_burst_large",
            f"every server stopped, then a burst of {args.burst_large} users",
            lambda: spawn_burst_large(inst, base_url, users["burst_large"]),
        )
        log("stopping every server (the next figures on a quiet station)")
        try:
            res["stopped_after_burst"] = stop_servers(base_url)
        except Exception as exc:  # noqa: BLE001 - the next figures say whether it mattered
            log(f"stopping the servers failed: {exc}")
        step(
            "auth",
            "nginx auth overhead (real hub upstream)",
            lambda: auth_overhead(inst, base_url, ADMIN),
        )
        step(
            "batch",
            f"batch speed-up, {args.experiments} experiments",
            lambda: batch_speedup(inst, args.experiments, os.cpu_count() or 2),
        )
        step(
            "scrape",
            "the hub's CPU with Prometheus scraping it and with Prometheus stopped",
            lambda: scrape_overhead(inst),
        )
        step(
            "nist_seed",
            "seeding NIST's tests cold, then warm, into a temporary folder on the station",
            lambda: nist_seeding(inst),
        )
        step(
            "m2e_eval",
            f"testbed.qoe.m2e({M2E_EXPERIMENT}) in the notebook image",
            lambda: m2e_evaluation(inst),
        )
        step(
            "m2e_notebook",
            "run-notebook --all over 04-mouth-to-ear",
            lambda: m2e_notebook(inst, os.cpu_count() or 2),
        )
    if not args.keep:
        log(f"removing {args.name} (--keep leaves it running)")
        ansible(inventory, clean, out_dir / "clean.log", [])


if __name__ == "__main__":
    sys.exit(main())
