"""The notebook_image role on the base-station instance: the built image."""

import json
import re
from pathlib import Path

import pytest

MAX_SIZE = 1_000_000_000  # bytes, uncompressed (issue 15: at most 1.0 GB with NIST's evaluation)


#: Figures for the report (image size, one M2E evaluation's seconds), written to
#: artifacts/molecule/notebook-image-figures.json: pytest's record_property does not reach
#: the xunit2 JUnit report, and the verifier runs without -s.
FIGURES: dict = {}
FIGURES_FILE = (
    Path(__file__).resolve().parents[3] / "artifacts/molecule/notebook-image-figures.json"
)


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield FIGURES
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=1) + "\n")


@pytest.fixture(scope="module")
def ref(host):
    return host.file("/root/notebook_image_ref").content_string.strip()


def run(host, ref, command, user=None):
    opts = f"--user {user} " if user else ""
    return host.run(f"docker run --rm {opts}--entrypoint '' {ref} {command}")


def test_tag_is_the_content_hash(host, ref):
    name, tag = ref.rsplit(":", 1)
    assert name == "testbed-hub/notebook"
    assert re.fullmatch(r"[0-9a-f]{12}", tag), tag
    labels = json.loads(
        host.check_output(f"docker image inspect {ref} --format '{{{{json .Config.Labels}}}}'")
    )
    assert labels["org.testbed-hub.content-hash"] == tag


ARCHIVE_DIR = "/var/cache/testbed-notebook-images"  # notebook_image_archive_dir (Molecule)

MANIFEST = """
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    print(json.dumps(json.load(tar.extractfile("manifest.json"))))
"""


def test_built_image_saved_once_by_its_tag(host, ref):
    """notebook_image_archive_dir holds this image once, under its content-hash tag, and
    no half-written archive. (The folder is the host's cache shared by every scenario and
    checkout: an older release's archive, the upgrade scenario's, may be there too.)"""
    name, tag = ref.rsplit(":", 1)
    archive = f"{ARCHIVE_DIR}/{name.replace('/', '_')}-{tag}.tar"
    listing = host.check_output(f"ls -A {ARCHIVE_DIR}").split()
    assert [f for f in listing if tag in f] == [archive.rsplit("/", 1)[1]], listing
    assert not [f for f in listing if f.endswith(".partial")], listing
    manifest = json.loads(host.check_output(f"python3 -c '{MANIFEST}' {archive}"))
    assert [m["RepoTags"] for m in manifest] == [[ref]]
    image_id = host.check_output(f"docker image inspect {ref} --format '{{{{.Id}}}}'")
    assert image_id.removeprefix("sha256:") in manifest[0]["Config"], (image_id, manifest)


def test_image_size_within_budget(host, ref):
    size = int(host.check_output(f"docker image inspect {ref} --format '{{{{.Size}}}}'"))
    FIGURES["image_size_bytes"] = size
    print(f"notebook image {ref}: {size / 1e6:.0f} MB uncompressed")
    assert 0 < size <= MAX_SIZE, f"{size / 1e6:.0f} MB > {MAX_SIZE / 1e6:.0f} MB"


def test_runs_as_jovyan_in_the_notebook_dir(host, ref):
    out = run(host, ref, "sh -c 'id -u; id -un; pwd; stat -c %u:%n share media'")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == ["1000", "jovyan", "/home/jovyan/nist", "1000:share", "1000:media"]
    config = json.loads(
        host.check_output(f"docker image inspect {ref} --format '{{{{json .Config}}}}'")
    )
    assert config["User"] == "jovyan"
    # the server ignores the user's own packages (python -s); kernels and terminals do not
    assert config["Cmd"] == ["python3", "-s", "-m", "jupyterhub.singleuser"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["TESTBED_MEDIA_DIR"] == "/home/jovyan/nist/media"


def test_scientific_stack_imports(host, ref):
    out = run(
        host,
        ref,
        "python -c 'import testbed, testbed.data, testbed.batch, pandas, scipy, matplotlib, "
        "soundfile, pymongo, papermill, ipywidgets; print(soundfile.__libsndfile_version__)'",
    )
    assert out.rc == 0, out.stderr
    assert re.match(r"1\.\d", out.stdout.strip())


# A pure-Python wheel written by hand (no index is reachable from the instance).
WHEEL_SCRIPT = r"""
import base64, hashlib, sys, zipfile
name, version, value = "tbdemo_pkg", "1.0", sys.argv[2]
files = {
    f"{name}/__init__.py": f"VALUE = {value}\n",
    f"{name}-{version}.dist-info/METADATA":
        f"Metadata-Version: 2.1\nName: tbdemo-pkg\nVersion: {version}\n",
    f"{name}-{version}.dist-info/WHEEL":
        "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = f"{name}-{version}.dist-info/RECORD"
lines = []
for path, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    lines.append(f"{path},sha256={digest},{len(data)}")
lines.append(f"{record},,")
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
    z.writestr(record, "\n".join(lines) + "\n")
"""


def test_pip_installs_for_the_user_into_the_notebook_directory(host, ref):
    """`pip install` in a terminal needs no flag and lands on the user's volume;
    python sees the package, the server's own python -s does not."""
    # a login shell, as a JupyterLab terminal starts it; the script comes on stdin
    script = (
        f"cat > /tmp/mkwheel.py <<'PY'{WHEEL_SCRIPT}PY\n"
        "python3 /tmp/mkwheel.py /tmp/tbdemo_pkg-1.0-py3-none-any.whl 42\n"
        "pip install --no-index /tmp/tbdemo_pkg-1.0-py3-none-any.whl >&2\n"
        "python -c 'import tbdemo_pkg as m; print(m.VALUE, m.__file__)'\n"
        "python -s -c 'import tbdemo_pkg' 2>/dev/null && echo visible-to-server "
        "|| echo hidden-from-server\n"
    )
    out = host.run(f"docker run -i --rm --entrypoint '' {ref} bash -l <<'SH'\n{script}SH")
    assert out.rc == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    value, path = lines[-2].split()
    assert value == "42"
    assert path.startswith("/home/jovyan/nist/.local/lib/python3"), path
    assert lines[-1] == "hidden-from-server"
    env = dict(e.split("=", 1) for e in run(host, ref, "env").stdout.split())
    for key in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR", "HISTFILE"):
        assert env[key].startswith("/home/jovyan/nist/."), (key, env[key])


def test_single_user_server_matches_the_hub(host, ref):
    out = run(host, ref, "jupyterhub-singleuser --help")
    assert out.rc == 0, out.stderr
    assert "--log-level" in out.stdout
    ext = run(
        host, ref, "python -c 'from jupyterhub.singleuser.extension import JupyterHubSingleUser'"
    )
    assert ext.rc == 0, ext.stderr
    assert (
        run(
            host, ref, "python -c 'import jupyterhub; print(jupyterhub.__version__)'"
        ).stdout.strip()
        == "6.1.1"
    )
    assert run(host, ref, "jupyter lab --version").stdout.strip().startswith("4.")


def test_run_notebook_help(host, ref):
    out = run(host, ref, "run-notebook --help")
    assert out.rc == 0, out.stderr
    assert "--experiment" in out.stdout and "--jobs" in out.stdout


def test_the_memory_indicator_loads_without_its_own_collector(host, ref):
    """jupyter-resource-usage (JupyterLab's status-bar memory use) is a loaded server
    extension and a JupyterLab extension; its per-second Prometheus collector is off
    (nothing scrapes user servers: their containers' figures come from the engine)."""
    out = run(host, ref, "jupyter server extension list")
    text = out.stdout + out.stderr
    assert re.search(r"jupyter_resource_usage \S+ .*OK", text), text
    lab = run(host, ref, "jupyter labextension list")
    listed = lab.stdout + lab.stderr  # jupyter colours "enabled" and "OK"
    assert re.search(r"@jupyter-server/resource-usage \S+ .*enabled.*OK", listed), listed
    cfg = json.loads(
        run(host, ref, "cat /opt/notebook/etc/jupyter/jupyter_server_config.json").stdout
    )
    assert cfg["ResourceUseDisplay"] == {"enable_prometheus_metrics": False}, cfg


def test_jupyter_scheduler_loads_with_jupyterlab_4(host, ref):
    out = run(host, ref, "jupyter server extension list")
    text = out.stdout + out.stderr
    assert re.search(r"jupyter_scheduler \S+ .*OK", text), text
    cfg = json.loads(
        run(host, ref, "cat /opt/notebook/etc/jupyter/jupyter_server_config.json").stdout
    )
    assert cfg["SchedulerApp"]["db_url"] == "sqlite:////home/jovyan/nist/.jupyter-scheduler.sqlite"
    # jobs run through testbed.scheduler (parameters as run-notebook -p reads them), which
    # imports in the image and delivers a job's files to the folder the panel links to
    manager = cfg["BaseScheduler"]["execution_manager_class"]
    assert manager == "testbed.scheduler.TestbedExecutionManager"
    probe = run(
        host,
        ref,
        "python -c 'import testbed.scheduler as s; "
        "print(s.TestbedExecutionManager.__mro__[1].__name__, s.output_directory())'",
    )
    assert probe.rc == 0, probe.stderr
    assert probe.stdout.split() == [
        "DefaultExecutionManager",
        cfg["BaseScheduler"]["output_directory"],
    ]


def test_extra_ca_in_trust_store(host, ref):
    pem = host.file(
        "/var/lib/testbed-hub/notebook-image/certs/extra-ca-0.crt"
    ).content_string.strip()
    bundle = run(host, ref, "cat /etc/ssl/certs/ca-certificates.crt").stdout
    assert pem.splitlines()[1] in bundle


PAPERMILL_SCRIPT = """
import nbformat as f, papermill as pm, testbed
cells = [
    f.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
    f.v4.new_code_cell("from testbed import record; record('y', x * 21)"),
]
nb = f.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "py"}
f.write(nb, "/tmp/in.ipynb")
pm.execute_notebook("/tmp/in.ipynb", "/tmp/out.ipynb", parameters={"x": 2}, progress_bar=False)
print(testbed.read_records("/tmp/out.ipynb"))
"""


def test_papermill_executes_a_notebook_with_a_record(host, ref):
    out = host.run(
        f"docker run --rm -i --entrypoint '' {ref} python - <<'EOF'{PAPERMILL_SCRIPT}EOF"
    )
    assert out.rc == 0, out.stderr
    assert out.stdout.strip().endswith("{'y': 42}")


def test_build_context_is_managed(host):
    dockerfile = host.file("/var/lib/testbed-hub/notebook-image/Dockerfile")
    assert dockerfile.mode == 0o644
    assert dockerfile.content_string.startswith("#")
    assert "Ansible managed" in dockerfile.content_string
    wheels = host.check_output("ls /var/lib/testbed-hub/notebook-image/wheels").split()
    assert len(wheels) == 1 and wheels[0].endswith(".whl")


SCHEDULER_PROBE = """
import json, time, urllib.request
url = "http://127.0.0.1:8888/scheduler/runtime_environments"
req = urllib.request.Request(url, headers={"Authorization": "token verify-token"})
for _ in range(60):
    try:
        print(json.dumps(json.load(urllib.request.urlopen(req, timeout=2))))
        break
    except OSError:
        time.sleep(1)
"""


def test_jupyter_scheduler_serves_its_api_in_jupyterlab(host, ref):
    name = "tb-notebook-image-verify"
    host.run(f"docker rm -f {name}")
    started = host.run(
        f"docker run -d --name {name} {ref} jupyter lab --no-browser --ip=127.0.0.1 "
        "--port=8888 --IdentityProvider.token=verify-token"
    )
    assert started.rc == 0, started.stderr
    try:
        out = host.run(f"docker exec -i {name} python - <<'EOF'{SCHEDULER_PROBE}EOF")
        logs = host.run(f"docker logs {name}").stderr[-3000:]
        assert out.rc == 0 and out.stdout.strip(), logs
        environments = json.loads(out.stdout)
        formats = [f["name"] for f in environments[0]["output_formats"]]
        assert formats == ["ipynb", "html"], environments
        # the scheduler's database lives in the notebook directory (the user's volume)
        ls = host.run(f"docker exec {name} ls -a /home/jovyan/nist")
        assert ".jupyter-scheduler.sqlite" in ls.stdout.split(), logs
        # server extensions: the scheduler loaded, jupyter-lsp not (notebook_image_lsp_enabled)
        logs = host.run(f"docker logs {name}").stderr
        assert "jupyter_scheduler | extension was successfully loaded" in logs, logs[-3000:]
        # long work keeps the server from the idle culler (testbed.activity)
        assert "testbed.activity | extension was successfully loaded" in logs, logs[-3000:]
        assert "jupyter_lsp | extension was successfully loaded" not in logs, logs[-3000:]
    finally:
        host.run(f"docker rm -f {name}")


FOREIGN_MODULES = ("testbed_hub", "testbed_sim", "testbed_devtools", "testbed_proxy")
FOREIGN_SCRIPTS = (
    "testbed-jupyterhub",
    "testbed-sim-auth",
    "testbed-sim-mongo",
    "testbed-sim-seed",
    "testbed-proxy-bench",
)


def test_image_holds_nothing_foreign(host, ref):
    """Only the notebook distribution: no hub plugin, simulator or developer tooling."""
    modules = " ".join(("testbed",) + FOREIGN_MODULES)
    scripts = " ".join(("run-notebook",) + FOREIGN_SCRIPTS)
    probe = (
        f'for m in {modules}; do python3 -c "import $m" 2>/dev/null && echo $m; done; '
        f"for s in {scripts}; do command -v $s >/dev/null && echo $s; done; true"
    )
    out = run(host, ref, f"sh -c '{probe}'")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == ["testbed", "run-notebook"]
    dists = run(host, ref, "pip list --format=freeze").stdout
    names = re.findall(r"^(testbed[-_][a-z_-]+)==", dists, re.M)
    assert [n.replace("_", "-") for n in names] == ["testbed-notebook"], names


def test_terminal_login_shell_finds_the_notebook_tools(host, ref):
    """JupyterLab's terminal is a login shell: /etc/profile must not hide the tools."""
    out = run(host, ref, "bash -lc 'command -v python pip jupyter run-notebook'", user="1000")
    assert out.rc == 0, out.stdout + out.stderr
    assert out.stdout.split() == [
        "/opt/notebook/bin/python",
        "/opt/notebook/bin/pip",
        "/opt/notebook/bin/jupyter",
        "/opt/notebook/bin/run-notebook",
    ]


NIST_VERSIONS = {"mcvqoe-base": "1.3.2", "mcvqoe-mouth2ear": "2.1.3", "mcvqoe-accesstime": "2.2.3"}
NIST_PROBE = """
import importlib.metadata as md, json, numpy
from testbed import qoe
found = qoe.versions()  # imports NIST's evaluation modules, or says what is missing
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
others = {n: version(n) for n in ["sounddevice", "pyserial", "setuptools", "plotly"]}
print(json.dumps({"numpy": numpy.__version__, **found, **others}))
"""


def test_nist_evaluation_packages_import_with_numpy_2(host, ref):
    """NIST's evaluation packages, pinned, import with the image's NumPy 2; what only a
    measurement uses (hardware I/O, ABC-MRT16) is not there (notebook_image_mcvqoe_intelligibility
    is false in this scenario)."""
    out = host.run(f"docker run --rm -i --entrypoint '' {ref} python - <<'EOF'{NIST_PROBE}EOF")
    assert out.rc == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert {k: found[k] for k in NIST_VERSIONS} == NIST_VERSIONS
    assert int(found["numpy"].split(".")[0]) == 2, found["numpy"]
    assert int(found["setuptools"].split(".")[0]) < 80, found["setuptools"]  # pkg_resources
    left_out = ("mcvqoe-intelligibility", "abcmrt16", "sounddevice", "pyserial")
    assert {k: found[k] for k in left_out} == dict.fromkeys(left_out), found


# NIST outputs of two seeded experiments (tests/nist/data, written by testbed_sim.nist),
# evaluated inside the image by testbed.qoe as a notebook would, against the documents'
# truth values. The files go in as a base64 tarball on the script's stdin.
QOE_SCRIPT = """
import base64, io, json, pathlib, sys, tarfile, time
root = pathlib.Path("/tmp/nist")
with tarfile.open(fileobj=io.BytesIO(base64.b64decode(sys.stdin.readline()))) as tar:
    tar.extractall(root)
docs = json.loads((root / "documents.json").read_text())
from testbed import qoe
qoe.data.experiment = lambda exp_id: dict(docs[exp_id])
qoe.data.media_dir = lambda: root / "media"
qoe.data.experiment_ids = lambda query: sorted(docs)
start = time.perf_counter()
trials, summary = qoe.m2e("exp-001")
first = time.perf_counter() - start
start = time.perf_counter()
qoe.m2e("exp-002")
again = time.perf_counter() - start
access = qoe.access_delay("exp-002").summary.iloc[0]
row = summary.iloc[0]
print(json.dumps({"n_trials": len(trials), "m2e_mean_ms": row["m2e_mean_ms"],
                  "m2e_truth_ms": row["m2e_truth_ms"], "first_s": first, "again_s": again,
                  "access_error_ms": access["access_error_ms"],
                  "resolution_s": access["resolution_s"]}))
"""


def _nist_fixture_b64():
    import base64
    import io
    import tarfile
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "tests" / "nist" / "data"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(data / "documents.json", arcname="documents.json")
        tar.add(data / "media", arcname="media")
    return base64.b64encode(buf.getvalue()).decode()


def test_qoe_evaluates_a_seeded_m2e_test_within_1_ms(host, ref):
    script = QOE_SCRIPT.replace("'", "'\\''")
    out = host.run(
        f"echo {_nist_fixture_b64()} | docker run --rm -i --entrypoint '' {ref} "
        f"python -c '{script}'"
    )
    assert out.rc == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n_trials"] == 8
    assert abs(got["m2e_mean_ms"] - got["m2e_truth_ms"]) <= 1.0, got
    assert abs(got["access_error_ms"]) <= got["resolution_s"] * 1000, got
    # a benchmark figure (target <= 2 s), not an assertion: the first includes NIST's import
    FIGURES["m2e_evaluation_first_s"] = got["first_s"]  # with NIST's import
    FIGURES["m2e_evaluation_again_s"] = got["again_s"]
    print(
        f"testbed.qoe.m2e in the image: {got['first_s']:.2f} s first, {got['again_s']:.2f} s next"
    )
