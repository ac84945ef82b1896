"""The MongoDB stand-in, driven by a real pymongo client over TCP."""

from __future__ import annotations

import statistics
import threading
from collections import Counter

import pymongo
import pytest
from pymongo.errors import OperationFailure

from testbed_sim import mongo
from testbed_sim.mongo import MongoStandIn


def test_handshake_and_server_info(client):
    assert client.admin.command("ping")["ok"] == 1.0
    hello = client.admin.command("hello")
    assert hello["maxWireVersion"] == 17
    assert hello["isWritablePrimary"] is True
    assert client.server_info()["version"] == mongo.SERVER_VERSION


def test_list_databases_and_collections(client):
    assert client.list_database_names() == ["testbed"]
    assert client.testbed.list_collection_names() == ["experiments", "ptt_events"]
    assert client.testbed.list_collection_names(filter={"name": "ptt_events"}) == ["ptt_events"]


def test_find_sort_limit_projection(client, seed_data):
    got = list(
        client.testbed.ptt_events.find(
            {"experiment_id": "exp-003"}, {"_id": 0, "seq": 1, "access_delay_ms": 1}
        )
        .sort("access_delay_ms", pymongo.DESCENDING)
        .limit(3)
    )
    events = [e for e in seed_data.ptt_events if e["experiment_id"] == "exp-003"]
    want = sorted(events, key=lambda e: -e["access_delay_ms"])[:3]
    assert got == [{"seq": e["seq"], "access_delay_ms": e["access_delay_ms"]} for e in want]


def test_find_many_batches_uses_get_more(client, seed_data):
    cursor = client.testbed.ptt_events.find({}, {"seq": 1}).sort([("_id", 1)]).batch_size(10)
    first = next(cursor)
    assert cursor.cursor_id not in (None, 0)  # server kept a cursor for the rest
    rest = list(cursor)
    assert cursor.cursor_id == 0  # exhausted
    ids = [first["_id"], *[d["_id"] for d in rest]]
    assert ids == sorted(e["_id"] for e in seed_data.ptt_events)
    assert len(ids) == len(seed_data.ptt_events) > 100


def test_skip_and_filter_with_operators(client, seed_data):
    slow = sorted(
        (e for e in seed_data.ptt_events if e["mouth_to_ear_ms"] > 300),
        key=lambda e: (e["mouth_to_ear_ms"], e["_id"]),
    )
    got = list(
        client.testbed.ptt_events.find({"mouth_to_ear_ms": {"$gt": 300}})
        .sort([("mouth_to_ear_ms", 1), ("_id", 1)])
        .skip(5)
        .limit(20)
    )
    assert [d["_id"] for d in got] == [e["_id"] for e in slow[5:25]]


def test_killed_cursor_is_gone(client):
    cursor = client.testbed.ptt_events.find().batch_size(5)
    next(cursor)
    cid = cursor.cursor_id
    cursor.close()
    with pytest.raises(OperationFailure) as err:
        client.testbed.command("getMore", cid, collection="ptt_events")
    assert err.value.code == mongo.CURSOR_NOT_FOUND


def test_count_documents_and_estimated_count(client, seed_data):
    n_rec = sum(1 for e in seed_data.ptt_events if e["recording"] is not None)
    assert client.testbed.ptt_events.count_documents({"recording": {"$ne": None}}) == n_rec
    assert client.testbed.experiments.count_documents({}) == 24
    assert client.testbed.ptt_events.estimated_document_count() == len(seed_data.ptt_events)
    want = sum(1 for e in seed_data.experiments if e["channel"]["packet_loss_pct"] >= 2)
    assert (
        client.testbed.experiments.count_documents({"channel.packet_loss_pct": {"$gte": 2}}) == want
    )


def test_aggregate_group_average_per_experiment(client, seed_data):
    got = list(
        client.testbed.ptt_events.aggregate(
            [
                {
                    "$group": {
                        "_id": "$experiment_id",
                        "m2e": {"$avg": "$mouth_to_ear_ms"},
                        "n": {"$sum": 1},
                    }
                },
                {"$sort": {"_id": 1}},
            ],
            batchSize=5,
        )
    )
    assert len(got) == 24
    for row in got:
        events = [e for e in seed_data.ptt_events if e["experiment_id"] == row["_id"]]
        assert row["n"] == len(events)
        assert row["m2e"] == pytest.approx(statistics.mean(e["mouth_to_ear_ms"] for e in events))


def test_distinct(client, seed_data):
    talkers = client.testbed.ptt_events.distinct("talker", {"experiment_id": "exp-001"})
    want = {e["talker"] for e in seed_data.ptt_events if e["experiment_id"] == "exp-001"}
    assert sorted(talkers) == sorted(want)
    delays = client.testbed.experiments.distinct("channel.delay_ms")
    assert sorted(delays) == sorted({e["channel"]["delay_ms"] for e in seed_data.experiments})


def test_unknown_command_and_bad_input_raise_operation_failure(client):
    with pytest.raises(OperationFailure) as err:
        client.testbed.command("frobnicate", 1)
    assert err.value.code == mongo.COMMAND_NOT_FOUND
    assert "no such command: 'frobnicate'" in str(err.value)
    with pytest.raises(OperationFailure) as err:
        list(client.testbed.ptt_events.aggregate([{"$bogusStage": {}}]))
    assert err.value.code == mongo.BAD_VALUE


def test_insert_for_seeding_then_query(mongo_server, client):
    coll = client.scratch.notes
    result = coll.insert_many([{"_id": i, "v": i * i} for i in range(150)])
    assert len(result.inserted_ids) == 150
    assert coll.count_documents({"v": {"$gte": 100}}) == 140
    assert "scratch" in client.list_database_names()
    coll.drop()
    assert "notes" not in client.scratch.list_collection_names()


def test_twenty_concurrent_clients(mongo_server, seed_data):
    results: list[int] = []
    errors: list[BaseException] = []

    def notebook() -> None:
        try:
            c = pymongo.MongoClient(mongo_server.uri, serverSelectionTimeoutMS=10000)
            for _ in range(5):
                results.append(len(list(c.testbed.ptt_events.find().batch_size(40))))
            c.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=notebook) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert Counter(results) == {len(seed_data.ptt_events): 100}


@pytest.fixture(scope="module")
def scram_server():
    srv = MongoStandIn(host="127.0.0.1", port=0, experiments=20, users={"reader": "s3cret,=x"})
    srv.start()
    yield srv
    srv.stop()


class TestScramAuthentication:
    @pytest.fixture()
    def server(self, scram_server):
        return scram_server

    def test_right_password_reads(self, server):
        c = pymongo.MongoClient(server.uri, username="reader", password="s3cret,=x")
        assert c.testbed.experiments.count_documents({}) == 20
        c.close()

    @pytest.mark.parametrize(("user", "password"), [("reader", "wrong"), ("nobody", "s3cret,=x")])
    def test_wrong_credentials_fail(self, server, user, password):
        c = pymongo.MongoClient(server.uri, username=user, password=password)
        with pytest.raises(OperationFailure) as err:
            c.testbed.experiments.find_one()
        assert err.value.code == mongo.AUTHENTICATION_FAILED
        c.close()

    def test_no_credentials_is_unauthorized(self, server):
        c = pymongo.MongoClient(server.uri)
        assert c.admin.command("ping")["ok"] == 1.0
        with pytest.raises(OperationFailure) as err:
            c.testbed.experiments.find_one()
        assert err.value.code == mongo.UNAUTHORIZED
        c.close()

    def test_sha1_is_refused_clearly(self, server):
        c = pymongo.MongoClient(
            server.uri, username="reader", password="s3cret,=x", authMechanism="SCRAM-SHA-1"
        )
        with pytest.raises(OperationFailure, match="use SCRAM-SHA-256"):
            c.testbed.experiments.find_one()
        c.close()


def test_credentials_against_server_without_users(client, mongo_server):
    c = pymongo.MongoClient(
        mongo_server.uri, username="x", password="y", authMechanism="SCRAM-SHA-256"
    )
    with pytest.raises(OperationFailure, match="no users configured"):
        c.testbed.experiments.find_one()
    c.close()


def test_cli_rejects_bad_config(tmp_path, capsys):
    cfg = tmp_path / "mongo.json"
    cfg.write_text('{"port": 27017, "colour": "blue"}')
    assert mongo.main(["--config", str(cfg)]) == 2
    assert "unknown keys ['colour']" in capsys.readouterr().err
    cfg.write_text("{not json")
    assert mongo.main(["--config", str(cfg)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    cfg.write_text('{"users": [{"name": "a"}]}')
    assert mongo.main(["--config", str(cfg)]) == 2
    assert "non-empty 'name' and 'password'" in capsys.readouterr().err


def test_cli_check_config(tmp_path, capsys):
    cfg = tmp_path / "mongo.json"
    cfg.write_text(
        '{"host": "127.0.0.1", "port": 27017, "users": [{"name": "r", "password": "p"}]}'
    )
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 0
    assert "ok (1 users)" in capsys.readouterr().out
    cfg.write_text('{"port": "27017"}')
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 2
    assert "port must be an integer from 1 to 65535" in capsys.readouterr().err
    cfg.write_text('{"experiments": 0}')
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 2
    assert "experiments must be an integer" in capsys.readouterr().err


def test_listens_on_each_given_address_and_nowhere_else():
    """The base station's stand-in: loopback and the jupyter gateway, one port, one data
    set; not every interface (127.0.0.2 stands in for the gateway here)."""
    import socket

    with MongoStandIn(host=["127.0.0.1", "127.0.0.2"], port=0, experiments=2) as srv:
        bound = {s._address for s in srv.servers}
        assert bound == {("127.0.0.1", srv.port), ("127.0.0.2", srv.port)}
        for address in ("127.0.0.1", "127.0.0.2"):
            c = pymongo.MongoClient(address, srv.port, serverSelectionTimeoutMS=5000)
            try:
                assert c.testbed.experiments.count_documents({}) == 2
            finally:
                c.close()
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.3", srv.port)) != 0


def test_cli_host_list_and_bad_host(tmp_path, capsys):
    cfg = tmp_path / "mongo.json"
    cfg.write_text('{"host": ["127.0.0.1", "172.19.0.1"], "port": 27017}')
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 0
    capsys.readouterr()
    cfg.write_text('{"host": []}')
    assert mongo.main(["--config", str(cfg), "--check-config"]) == 2
    assert "host must be an address or a non-empty list" in capsys.readouterr().err
