"""Testbed identifier -> JupyterHub user name: safe and collision-free."""

from __future__ import annotations

import itertools
import random
import re
import string

import pytest
from dockerspawner import DockerSpawner
from jupyterhub.auth import Authenticator

from testbed_hub.auth import (
    SAFE_NAME_RE,
    HeaderAuthenticator,
    docker_escape,
    identity_to_username,
)

DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("ue-01", "ue-01"),
        ("alice", "alice"),
        ("a", "a"),
        ("x" * 40, "x" * 40),
    ],
)
def test_safe_identifiers_are_kept(identity, expected):
    assert identity_to_username(identity) == expected


@pytest.mark.parametrize(
    ("identity", "prefix"),
    [
        ("Alice@Example.org", "alice-example-org"),
        ("alice@example.org", "alice-example-org"),
        ("ALICE", "alice"),
        ("bob_smith", "bob-smith"),
        ("josé", "jos"),
        ("日本", "user"),
        ("@@@", "user"),
        ("-lead", "lead"),
        ("trail-", "trail"),
        ("x" * 41, "x" * 27),
        ("ue-01-0123456789ab", "ue-01-0123456789ab"[:27]),
        ("a b", "a-b"),
        ("../etc/passwd", "etc-passwd"),
    ],
)
def test_unsafe_identifiers_get_prefix_and_hash(identity, prefix):
    name = identity_to_username(identity)
    assert re.fullmatch(re.escape(prefix) + r"-[0-9a-f]{12}", name), name
    assert SAFE_NAME_RE.match(name)
    assert len(name) <= 40


def test_mapping_is_stable():
    assert identity_to_username("Alice@Example.org") == identity_to_username("Alice@Example.org")


def test_case_variants_do_not_collide():
    variants = {"".join(v) for v in itertools.product(*[(c, c.upper()) for c in "alice@x.org"])}
    names = {identity_to_username(v) for v in variants}
    assert len(names) == len(variants) == 2 ** len([c for c in "alice@x.org" if c.isalpha()])


def test_hash_looking_identifier_cannot_take_a_mapped_name():
    mapped = identity_to_username("Alice")  # alice-<hash>
    assert mapped != "alice"
    # someone whose testbed id is literally the mapped name gets a different name
    assert identity_to_username(mapped) != mapped
    assert identity_to_username(mapped) != identity_to_username("Alice")


def test_random_identifiers_map_injectively_to_safe_names():
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + "-_.@+ é"
    ids = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 50))) for _ in range(20000)}
    ids |= {f"ue-{i:02d}" for i in range(100)} | {f"UE-{i:02d}" for i in range(100)}
    names = [identity_to_username(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert SAFE_NAME_RE.match(name), name
        assert DOCKER_NAME.match(f"jupyterhub-user-{name}"), name


@pytest.mark.parametrize("bad", ["", None, 5])
def test_empty_or_non_string_identity_is_rejected(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        identity_to_username(bad)


def test_names_pass_jupyterhub_normalisation_and_validation():
    auth = HeaderAuthenticator()
    for identity in ["Alice@Example.org", "ue-01", "bob_smith", "josé"]:
        name = identity_to_username(identity)
        assert auth.normalize_username(name) == name
        assert auth.validate_username(name)
    # JupyterHub rejects names that could not come from the mapping
    assert not auth.validate_username("Bob_Smith")
    assert not auth.validate_username("a" * 41)


def test_docker_escape_keeps_safe_names_and_escapes_others():
    assert docker_escape("alice-example-org-0123456789ab") == "alice-example-org-0123456789ab"
    assert DockerSpawner._escape("ue-01") == "ue-2d01"  # what we avoid
    assert docker_escape("ue-01") == "ue-01"
    assert docker_escape("Bob_Smith") == DockerSpawner._escape("Bob_Smith")


def test_allow_lists_compare_mapped_names():
    auth = HeaderAuthenticator(allowed_users={identity_to_username("Alice@Example.org")})
    assert auth.check_allowed(identity_to_username("Alice@Example.org"))
    assert not auth.check_allowed(identity_to_username("alice@example.org"))
    assert isinstance(auth, Authenticator)
