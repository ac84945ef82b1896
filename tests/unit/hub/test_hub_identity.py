"""One identity, one user (issue 13, item 3): normalisation and the migration of old names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from jupyterhub import orm
from tornado.httputil import HTTPHeaders

from testbed_hub import migrate
from testbed_hub.auth import (
    HeaderAuthenticator,
    identity_to_username,
    normalize_identity,
    repair_header_text,
    username_for,
)

from .test_hub_config import settings  # noqa: F401 - the config tests' full settings

ALICE = "alice@testbed.example"
JOSE = "jos\u00e9@testbed.example"  # precomposed é


def header_as_tornado_reads_it(value: bytes) -> str:
    """The str tornado makes of a raw header line (it decodes header bytes as Latin-1)."""
    return HTTPHeaders.parse((b"X-Authorized-User: " + value).decode("latin-1"))[
        "X-Authorized-User"
    ]


@pytest.mark.parametrize(
    ("raw", "fold", "expected"),
    [
        ("Alice@Testbed.Example", True, ALICE),
        ("  ALICE@testbed.example\t", True, ALICE),
        ("Alice@Testbed.Example", False, "Alice@Testbed.Example"),
        ("jose\u0301@testbed.example", True, JOSE),  # NFD -> NFC
        ("JOSE\u0301@testbed.example", True, JOSE),
        ("UE-01", True, "ue-01"),
        ("stra\u00dfe@x.org", True, "stra\u00dfe@x.org"),  # lower(), not casefold(): ß stays
        ("\u210c@x.org", True, "\u210c@x.org"),  # NFC, not NFKC: ℌ is not H
    ],
)
def test_normalize_identity(raw, fold, expected):
    assert normalize_identity(raw, fold_case=fold) == expected


def test_utf8_header_bytes_are_decoded_as_utf8():
    sent = header_as_tornado_reads_it("Jos\u00e9@Testbed.Example".encode())
    assert sent == "Jos\u00c3\u00a9@Testbed.Example"  # what tornado hands the hub
    assert normalize_identity(sent, fold_case=True, header=True) == JOSE
    nfd = header_as_tornado_reads_it("jose\u0301@testbed.example".encode())
    assert normalize_identity(nfd, fold_case=True, header=True) == JOSE
    # a real Latin-1 header (0xE9 is not UTF-8) and plain ASCII are kept
    latin1 = header_as_tornado_reads_it("jos\u00e9@testbed.example".encode("latin-1"))
    assert normalize_identity(latin1, fold_case=True, header=True) == JOSE
    assert repair_header_text("ue-01") == "ue-01"
    # inventory text is never re-decoded: a list entry is text already
    assert normalize_identity("jos\u00c3\u00a9", fold_case=False) == "jos\u00c3\u00a9"


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_identity_is_refused(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        normalize_identity(bad, fold_case=True)


def test_header_and_list_spellings_give_one_user_name():
    auth = HeaderAuthenticator()
    name = username_for(ALICE, fold_case=True)
    for spelling in ("Alice@testbed.example", "ALICE@TESTBED.EXAMPLE", " alice@testbed.example"):
        assert username_for(spelling, fold_case=True) == name
        assert auth.username_for(spelling) == name
    assert auth.username_for(header_as_tornado_reads_it(JOSE.encode())) == username_for(
        JOSE, fold_case=True
    )
    keep = HeaderAuthenticator(identity_case="keep")
    assert keep.username_for("Alice@testbed.example") != keep.username_for(ALICE)


# -- migration ---------------------------------------------------------------


class FakeVolumes:
    """Docker volumes as folders (the local driver's layout)."""

    def __init__(self, root: Path):
        self.root = root
        self.removed: list[str] = []

    def path(self, name):
        p = self.root / name / "_data"
        return p if p.is_dir() else None

    def create(self, name):
        p = self.root / name / "_data"
        p.mkdir(parents=True)
        return p

    def remove_container(self, name):
        self.removed.append(name)


def fill(volume: Path, n: int, tag: str) -> dict[str, str]:
    (volume / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (volume / ("sub/deeper" if i % 2 else "sub") / f"f{i}-{tag}.txt").write_bytes(
            os.urandom(100 + i)
        )
    (volume / "notes \u00e9.ipynb").write_text(json.dumps({"tag": tag}))
    (volume / "link").symlink_to("sub")
    return migrate.manifest(volume)


@pytest.fixture
def station(tmp_path, settings):  # noqa: F811 - the imported fixture
    data = tmp_path / "data"
    data.mkdir()
    settings["hub"]["data_dir"] = str(data)
    settings["auth"]["allowed_users"] = ["Bob@Testbed.example"]
    settings["auth"]["admin_users"] = []
    db = orm.new_session_factory(f"sqlite:///{data / 'jupyterhub.sqlite'}")()
    return settings, db, FakeVolumes(tmp_path / "volumes")


def add_user(db, name, identity=None):
    u = orm.User(name=name, user_info={"testbed_id": identity} if identity else None)
    db.add(u)
    db.commit()
    return u


def test_old_users_are_moved_with_their_files(station):
    cfg, db, volumes = station
    old_alice = identity_to_username("Alice@Testbed.example")  # logged in, mixed case
    mojibake = "jos\u00c3\u00a9@testbed.example"  # logged in with UTF-8 bytes, old code
    old_jose = identity_to_username(mojibake)
    old_bob = identity_to_username("Bob@Testbed.example")  # in the list, never logged in
    add_user(db, old_alice, "Alice@Testbed.example")
    add_user(db, old_jose, mojibake)
    add_user(db, old_bob)
    add_user(db, "ue-01", "ue-01")  # unaffected
    before = {
        old_alice: fill(volumes.create(f"jupyterhub-user-{old_alice}"), 7, "a"),
        old_jose: fill(volumes.create(f"jupyterhub-user-{old_jose}"), 3, "j"),
    }
    plan = migrate.plan(cfg, db, volumes)
    assert plan["conflicts"] == []
    moves = {c["old"]: c["new"] for c in plan["changes"]}
    assert moves == {
        old_alice: identity_to_username(ALICE),
        old_jose: identity_to_username(JOSE),
        old_bob: identity_to_username("bob@testbed.example"),
    }
    records = migrate.apply(cfg, db, volumes)
    assert sorted(r["files"] for r in records) == [0, 5, 9]
    for old, files in before.items():
        new = moves[old]
        assert migrate.manifest(volumes.path(f"jupyterhub-user-{new}")) == files
        assert migrate.manifest(volumes.path(f"jupyterhub-user-{old}")) == files  # old kept
        assert orm.User.find(db, old) is None and orm.User.find(db, new) is not None
    assert orm.User.find(db, "ue-01") is not None
    assert orm.User.find(db, identity_to_username(JOSE)).user_info == {"testbed_id": JOSE}
    assert f"jupyter-{old_alice}" in volumes.removed
    # idempotent: the second run finds nothing
    assert migrate.plan(cfg, db, volumes)["changes"] == []
    assert migrate.apply(cfg, db, volumes) == []


def test_new_volume_with_files_is_refused_then_merged_on_request(station):
    cfg, db, volumes = station
    old = identity_to_username("Alice@Testbed.example")
    new = identity_to_username(ALICE)
    add_user(db, old, "Alice@Testbed.example")
    add_user(db, new, ALICE)  # logged in lower-case too: two users, two volumes
    old_files = fill(volumes.create(f"jupyterhub-user-{old}"), 4, "old")
    new_files = fill(volumes.create(f"jupyterhub-user-{new}"), 2, "new")
    plan = migrate.plan(cfg, db, volumes)
    assert plan["conflicts"] == [
        {
            "new": new,
            "new_volume": f"jupyterhub-user-{new}",
            "new_files": 4,
            "old": [{"name": old, "files": 6}],
        }
    ]
    assert f"{old} (6 files) -> {new}" in plan["message"]
    assert "jupyterhub_identity_merge=true" in plan["message"]
    with pytest.raises(migrate.MigrationError, match="Nothing was changed"):
        migrate.apply(cfg, db, volumes)
    assert orm.User.find(db, old) is not None
    assert migrate.manifest(volumes.path(f"jupyterhub-user-{new}")) == new_files
    # --merge: into migrated-from-<old>/, nothing overwritten, the old hub user deleted
    migrate.apply(cfg, db, volumes, merge=True)
    merged = migrate.manifest(volumes.path(f"jupyterhub-user-{new}"))
    assert {k: v for k, v in merged.items() if not k.startswith("migrated-from-")} == new_files
    prefix = f"migrated-from-{old}/"
    assert {k[len(prefix) :]: v for k, v in merged.items() if k.startswith(prefix)} == old_files
    assert orm.User.find(db, old) is None
    assert migrate.plan(cfg, db, volumes, merge=True)["changes"] == []


def test_keep_case_moves_nothing(station):
    cfg, db, volumes = station
    cfg["auth"]["identity_case"] = "keep"
    old = identity_to_username("Alice@Testbed.example")
    add_user(db, old, "Alice@Testbed.example")
    fill(volumes.create(f"jupyterhub-user-{old}"), 2, "a")
    assert migrate.plan(cfg, db, volumes)["changes"] == []


def test_cli_plan_reads_settings_from_stdin(station, monkeypatch, capsys):
    import io

    cfg, _db, _volumes = station
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(cfg)))
    monkeypatch.setattr(migrate, "DockerVolumes", lambda: FakeVolumes(Path("/nonexistent")))
    assert migrate.main(["plan", "--settings", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"changes": [], "conflicts": [], "message": ""}
    cfg["auth"]["identity_case"] = "upper"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(cfg)))
    assert migrate.main(["plan", "--settings", "-"]) == 2
    assert "jupyterhub_identity_case" in capsys.readouterr().err
