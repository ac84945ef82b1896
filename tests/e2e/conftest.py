"""End-to-end tests against a running base station (the demo or a Molecule instance).

Run from outside the base station, as a researcher's machine would:

- ``E2E_INSTANCE``: the base-station container (default: the demo's,
  ``testbed-hub-demo``); used to find its address and, for the checks that need
  to look inside (which ports listen, mounts), through ``docker exec``.
- ``E2E_BASE_URL``: the public origin (default: ``https://<instance address>``,
  i.e. nginx on port 443 of the instance, reached over the Docker network).

Screenshots land in ``artifacts/e2e/``; when a test that uses the browser
fails (in setup or in its body), every open page is saved there as
``FAILED-<test>.png`` with its URL and browser console in ``.console.txt``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from testbed_hub.auth import identity_to_username

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "e2e"
ALICE = "alice@testbed.example"
BOB = "bob@testbed.example"
#: A third testbed user of the demo (not an admin): bob shares his server with her.
CAROL = "carol@testbed.example"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")


def _instance() -> str:
    return os.environ.get("E2E_INSTANCE", "testbed-hub-demo")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def in_instance(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside the base station."""
    return docker("exec", _instance(), "sh", "-c", cmd, check=check)


@pytest.fixture(scope="session")
def instance() -> str:
    name = _instance()
    r = docker("inspect", name, check=False)
    if r.returncode != 0:
        pytest.fail(
            f"base station container {name!r} not found: start the demo (make demo) or set "
            "E2E_INSTANCE to a running base-station container"
        )
    return name


@pytest.fixture(scope="session")
def instance_ip(instance: str) -> str:
    nets = json.loads(
        docker("inspect", instance, "--format", "{{json .NetworkSettings.Networks}}").stdout
    )
    ips = [n["IPAddress"] for n in nets.values() if n.get("IPAddress")]
    assert ips, f"{instance} has no IP address on a Docker network: {nets}"
    return ips[0]


@pytest.fixture(scope="session")
def base_url(instance_ip: str) -> str:
    return os.environ.get("E2E_BASE_URL", f"https://{instance_ip}").rstrip("/")


@pytest.fixture(scope="session")
def alice() -> str:
    return identity_to_username(ALICE)


@pytest.fixture(scope="session")
def bob() -> str:
    return identity_to_username(BOB)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make host` (installs Debian's chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server", "--disable-gpu"],
        )
        yield b
        b.close()


#: Console messages and uncaught errors of every page, by id(page), for failure reports.
CONSOLE: dict[int, list[str]] = {}


def _watch(page) -> None:
    lines = CONSOLE.setdefault(id(page), [])
    page.on("console", lambda msg: lines.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: lines.append(f"[pageerror] {exc}"))


def open_context(browser):
    """A fresh browser profile (own cookies) that accepts the self-signed certificate."""
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(60_000)
    ctx.on("page", _watch)
    return ctx


def save_failure_artifacts(browser, nodeid: str) -> list[Path]:
    """Screenshot, URL and console of every open page, as ``FAILED-<test>[-<n>].*``."""
    from playwright.sync_api import Error as PlaywrightError

    SHOTS.mkdir(parents=True, exist_ok=True)
    stem = "FAILED-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]
    pages = [page for ctx in browser.contexts for page in ctx.pages]
    saved = []
    for i, page in enumerate(pages):
        base = str(SHOTS / (f"{stem}-{i}" if len(pages) > 1 else stem))
        lines = [f"url: {page.url}", *CONSOLE.get(id(page), [])]
        try:
            page.screenshot(path=base + ".png", full_page=True, timeout=15_000)
            saved.append(Path(base + ".png"))
        except PlaywrightError as exc:
            lines.insert(1, f"(no screenshot: {exc})")
        Path(base + ".console.txt").write_text("\n".join(lines) + "\n")
        saved.append(Path(base + ".console.txt"))
    return saved


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure of a browser test, save what its pages showed (see the docstring)."""
    report = yield
    browser = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.failed and report.when in ("setup", "call") and browser is not None:
        saved = save_failure_artifacts(browser, item.nodeid)
        report.sections.append(("browser pages at the failure", "\n".join(map(str, saved))))
    return report


@pytest.fixture
def new_context(browser):
    made = []

    def make():
        made.append(open_context(browser))
        return made[-1]

    yield make
    for ctx in made:
        ctx.close()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
