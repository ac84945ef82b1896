"""The testbed simulator deployed by its role on the base-station instance."""

from __future__ import annotations

import json
import shlex
import struct

import bson
import pytest

from testbed_sim import nist_seed, seed

VENV = "/opt/testbed-sim"
MEDIA = "/srv/lmr/wavs"
AUTH = "http://127.0.0.1:9000"
IMAGE = "testbed-hub/debian:bookworm"
EXPECTED = seed.generate(seed.DEFAULT_SEED, seed.DEFAULT_EXPERIMENTS)


def journal(host, unit):
    return host.run(f"journalctl -u {unit} --no-pager -n 40").stdout


@pytest.mark.parametrize("unit", ["testbed-sim-auth", "testbed-sim-mongo"])
def test_service_running_and_enabled(host, unit):
    svc = host.service(unit)
    assert svc.is_running, journal(host, unit)
    assert svc.is_enabled


def jupyter_gateway(host):
    """The jupyter network's gateway (converge.yml creates the network, as site.yml does)."""
    return json.loads(host.check_output("docker network inspect jupyter"))[0]["IPAM"]["Config"][0][
        "Gateway"
    ]


def test_listening(host):
    assert host.socket("tcp://127.0.0.1:9000").is_listening, journal(host, "testbed-sim-auth")
    assert host.socket("tcp://127.0.0.1:27017").is_listening, journal(host, "testbed-sim-mongo")
    gw = jupyter_gateway(host)
    assert host.socket(f"tcp://{gw}:27017").is_listening, journal(host, "testbed-sim-mongo")


def test_database_listens_on_loopback_and_the_gateway_only(host):
    """Not every interface: the notebooks' firewall can describe the one path to it."""
    mine = [
        s
        for s in host.socket.get_listening_sockets()
        if s.startswith("tcp://") and s.endswith(":27017")
    ]
    assert sorted(mine) == sorted(["tcp://127.0.0.1:27017", f"tcp://{jupyter_gateway(host)}:27017"])


def test_services_run_unprivileged(host):
    for unit in ("testbed-sim-auth", "testbed-sim-mongo"):
        pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
        assert host.check_output(f"ps -o user= -p {pid}") == "testbed-sim"


def test_secret_and_config_files(host):
    secret = host.file("/etc/testbed-sim/cookie-secret")
    assert secret.mode == 0o600
    assert secret.user == "testbed-sim"
    assert len(host.check_output("cat /etc/testbed-sim/cookie-secret")) == 64
    cfg = host.file("/etc/testbed-sim/auth.json")
    assert cfg.mode == 0o640 and cfg.group == "testbed-sim"
    data = json.loads(cfg.content_string)
    assert data["port"] == 9000
    assert data["trust_forwarded_headers"] is True
    assert [u["name"] for u in data["users"]] == ["alice@testbed.example", "bob@testbed.example"]
    mongo = json.loads(host.file("/etc/testbed-sim/mongo.json").content_string)
    assert mongo == {
        "host": ["127.0.0.1", jupyter_gateway(host)],
        "port": 27017,
        "database": "testbed",
        "seed": seed.DEFAULT_SEED,
        "experiments": 24,
        "users": [],
        "nist_media_dir": MEDIA,
    }


def test_simulator_venv_holds_only_the_simulator(host):
    """The simulator's virtualenv has testbed-sim and none of the other distributions."""
    freeze = host.check_output("/opt/testbed-sim/bin/python -m pip list --format=freeze")
    names = sorted(
        line.split("==")[0].replace("_", "-")
        for line in freeze.splitlines()
        if line.lower().startswith("testbed")
    )
    assert names == ["testbed-sim"]
    marker = host.file("/opt/testbed-sim/.installed-wheel.sha256").content_string.strip()
    wheel = host.check_output("ls /opt/testbed-sim/wheels")
    assert wheel.startswith("testbed_sim-") and len(marker) == 64


def curl(host, args):
    return host.run(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' {args}")


def test_auth_check_without_cookie_is_401(host):
    out = curl(host, f"{AUTH}/auth/check")
    assert out.stdout == "401 ", out.stderr


def test_login_flow_with_cookie_jar(host):
    jar = "/tmp/testbed-sim-jar"  # noqa: S108 - inside the instance
    host.run(f"rm -f {jar}")
    nxt = "http://127.0.0.1:9000/jupyter/hub/"
    out = curl(
        host,
        f"-c {jar} --data-urlencode username=alice@testbed.example "
        f"--data-urlencode password=wonderland --data-urlencode next={nxt} {AUTH}/auth/login",
    )
    assert out.stdout == f"302 {nxt}"
    check = host.run(f"curl -sS -D - -o /dev/null -b {jar} {AUTH}/auth/check")
    lines = check.stdout.lower().splitlines()
    assert lines[0].startswith("http/1.1 200")
    assert "x-authorized-user: alice@testbed.example" in [x.strip() for x in lines]
    out = curl(host, f"-b {jar} -c {jar} '{AUTH}/auth/logout?next=/'")
    assert out.stdout.startswith("302")
    assert curl(host, f"-b {jar} {AUTH}/auth/check").stdout == "401 "


def test_wrong_password_and_open_redirect(host):
    out = curl(
        host,
        "--data-urlencode username=alice@testbed.example --data-urlencode password=nope "
        f"{AUTH}/auth/login",
    )
    assert out.stdout == "401 "
    out = curl(
        host,
        "--data-urlencode username=bob@testbed.example "
        f"--data-urlencode next=https://evil.example/ {AUTH}/auth/login",
    )
    assert out.stdout == f"302 {AUTH}/"


PYMONGO_SCRIPT = """
import json, pymongo
c = pymongo.MongoClient("mongodb://127.0.0.1:27017/", serverSelectionTimeoutMS=10000)
db = c.testbed
print(json.dumps({
    "collections": sorted(db.list_collection_names()),
    "experiments": db.experiments.count_documents({}),
    "ids": [d["_id"] for d in db.experiments.find({}, {"_id": 1}).sort("_id", 1)],
    "events": len(list(db.ptt_events.find({}, {"_id": 1}).batch_size(25))),
    "recordings": sorted(r for e in db.experiments.find() for r in e["recordings"]),
    "per_exp": {d["_id"]: d["n"] for d in db.ptt_events.aggregate(
        [{"$group": {"_id": "$experiment_id", "n": {"$sum": 1}}}])},
}))
"""


@pytest.fixture(scope="module")
def db_view(host):
    out = host.run(f"{VENV}/bin/python -c {shlex.quote(PYMONGO_SCRIPT)}")
    assert out.rc == 0, out.stderr + journal(host, "testbed-sim-mongo")
    return json.loads(out.stdout)


def test_pymongo_reads_seed_experiments(db_view):
    assert db_view["collections"] == ["experiments", "ptt_events"]
    assert db_view["experiments"] == 24
    assert db_view["ids"] == [f"exp-{i:03d}" for i in range(1, 25)]
    assert db_view["events"] == len(EXPECTED.ptt_events)
    assert db_view["recordings"] == sorted(e["recording"] for e in EXPECTED.recordings())
    want = {}
    for e in EXPECTED.ptt_events:
        want[e["experiment_id"]] = want.get(e["experiment_id"], 0) + 1
    assert db_view["per_exp"] == want


def test_wav_files_match_database(host, db_view):
    # NIST's received audio below <exp>/nist/ is the NIST test's, not a PTT recording
    on_disk = host.check_output(
        f"cd {MEDIA} && find . -path './*/nist' -prune -o -name '*.wav' -print "
        "| sed 's|^./||' | sort"
    )
    assert on_disk.splitlines() == db_view["recordings"]
    dirs = host.check_output(f"find {MEDIA} -mindepth 1 -maxdepth 1 -type d -printf '%f\\n' | sort")
    assert dirs.splitlines() == db_view["ids"]
    # recordings of QoEsim (format 2) for the seed they were made with; nothing of an
    # earlier format or another seed to move aside here
    assert json.loads(host.file(f"{MEDIA}/.testbed-sim-recordings.json").content_string) == {
        "format": 2,
        "seed": seed.DEFAULT_SEED,
    }
    assert not host.file(f"{MEDIA}/.previous-recordings").exists


def test_wav_format_and_readable_by_uid_1000(host):
    event = EXPECTED.recordings()[0]
    path = f"{MEDIA}/{event['recording']}"
    script = (
        "import wave,sys; w=wave.open(sys.argv[1]); "
        "print(w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes())"
    )
    out = host.check_output(
        f"setpriv --reuid 1000 --regid 1000 --clear-groups python3 -c {shlex.quote(script)} {path}"
    )
    assert out.split() == ["1", "2", "8000", str(round(event["duration_s"] * 8000))]


def op_msg(doc: dict, request_id: int = 1) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body


def test_container_on_jupyter_network_reaches_mongo_via_the_gateway(host):
    # converge.yml applies the docker role first: no engine here is a failure
    info = host.run("docker info")
    assert info.rc == 0, (
        f"the docker role converged on this instance but `docker info` fails: {info.stderr}\n"
        + journal(host, "docker")
    )
    gw = jupyter_gateway(host)
    msg = op_msg({"find": "experiments", "$db": "testbed", "batchSize": 100})
    escaped = "".join(f"\\x{b:02x}" for b in msg)
    script = (
        "exec 3<>/dev/tcp/host.docker.internal/27017 && "
        f"printf '{escaped}' >&3 && "
        "len=$(head -c 4 <&3 | od -An -tu4 | tr -d ' ') && "
        "head -c $((len - 4)) <&3 | od -An -v -tx1"
    )
    out = host.run(
        f"docker run --rm --network jupyter --add-host host.docker.internal:{gw} "
        f"{IMAGE} timeout 20 bash -c {shlex.quote(script)}"
    )
    assert out.rc == 0, out.stderr
    reply = bytes.fromhex("".join(out.stdout.split()))
    _req, _resp_to, opcode = struct.unpack("<iii", reply[:12])
    assert opcode == 2013
    doc = bson.decode(reply[17:])
    assert doc["ok"] == 1.0
    batch = doc["cursor"]["firstBatch"]
    assert [d["_id"] for d in batch] == [e["_id"] for e in EXPECTED.experiments]
    assert batch[3]["channel"] == EXPECTED.experiments[3]["channel"]


NIST_SCRIPT = """
import json, pymongo
c = pymongo.MongoClient("mongodb://127.0.0.1:27017/", serverSelectionTimeoutMS=10000)
print(json.dumps({d["_id"]: d.get("nist") for d in c.testbed.experiments.find()}))
"""


@pytest.fixture(scope="module")
def nist_docs(host):
    out = host.run(f"{VENV}/bin/python -c {shlex.quote(NIST_SCRIPT)}")
    assert out.rc == 0, out.stderr + journal(host, "testbed-sim-mongo")
    return json.loads(out.stdout)


def test_stand_in_serves_each_experiments_nist_tests(host, nist_docs):
    """Issue 15: every experiment has NIST's M2E test, 4 an access-time test (the
    role's defaults), as nist.json beside them and as the document's nist key."""
    assert sorted(nist_docs) == [e["_id"] for e in EXPECTED.experiments]
    plan = {t.experiment_id: t for t in nist_seed.plan(EXPECTED, seed.DEFAULT_SEED, 4)}
    for exp_id, doc in nist_docs.items():
        assert doc is not None, exp_id
        stored = json.loads(host.file(f"{MEDIA}/{exp_id}/nist/nist.json").content_string)
        assert doc == stored
        assert doc["m2e"]["injected_m2e_latency_s"] == plan[exp_id].m2e_latency_s
        csv = host.file(f"{MEDIA}/{doc['m2e']['csv']}")
        assert csv.is_file and csv.mode == 0o644
        # NIST's CSV: a header row and one row per trial
        rows = csv.content_string.strip().splitlines()
        assert len(rows) == 1 + doc["m2e"]["trials"], rows[:2]
        wavs = host.check_output(f"ls {MEDIA}/{doc['m2e']['wav_dir']}").split()
        assert len(wavs) == doc["m2e"]["trials"] and all(w.startswith("Rx") for w in wavs)
    with_access = sorted(k for k, d in nist_docs.items() if "access_time" in d)
    assert with_access == sorted(k for k, t in plan.items() if t.access_delay_s is not None)
    assert len(with_access) == 4
    for exp_id in with_access:
        acc = nist_docs[exp_id]["access_time"]
        assert acc["injected_access_delay_s"] == plan[exp_id].access_delay_s
        assert host.file(f"{MEDIA}/{acc['csvs'][0]}").is_file


def test_nist_measurement_runs_in_the_simulators_venv(host):
    """NumPy below 2 and NIST's pinned packages, importable there (not in the image)."""
    script = (
        "import numpy, importlib.metadata as m, mcvqoe.simulation, mcvqoe.mouth2ear, "
        "mcvqoe.accesstime; print(numpy.__version__, *(m.version(n) for n in "
        "('mcvqoe-base', 'mcvqoe-mouth2ear', 'mcvqoe-accesstime', 'abcmrt16')))"
    )
    out = host.run(f"{VENV}/bin/python -W ignore -c {shlex.quote(script)}")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == ["1.26.4", "1.3.2", "2.1.3", "2.2.3", "1.0.1"]


def test_nist_tests_cached_by_content_hash(host, nist_docs):
    """converge sets testbed_sim_nist_cache_dir (.config/molecule/config.yml)."""
    cached = host.check_output("ls /var/cache/testbed-nist").split()
    for doc in nist_docs.values():
        assert f"{doc['cache_key']}.tar" in cached
