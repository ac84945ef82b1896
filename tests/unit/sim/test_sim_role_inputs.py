"""Bad input to the testbed_sim role fails early with a message naming the variable.

One ansible-playbook run against localhost in check mode, with every tag except the
role's asserts skipped, so nothing on this machine is touched: each case includes the
role in a block whose rescue records the failure message.
"""

from __future__ import annotations

import pytest

from testbed_devtools.roletest import validation_results

# only the role's validation (its other tags would change the machine)
ONLY = "testbed_sim_validate"

CASES = {
    "ports_equal": ({"testbed_sim_auth_port": 27017}, "testbed_sim_auth_port (27017) and"),
    "experiments_0": ({"testbed_sim_experiments": 0}, "testbed_sim_experiments must be 1-999"),
    "media_relative": (
        {"testbed_sim_media_dir": "srv/wavs"},
        "testbed_sim_media_dir must be an absolute path",
    ),
    "check_path": (
        {"testbed_sim_auth_check_path": "auth/check"},
        "testbed_sim_auth_check_path must be a URL path",
    ),
    "header": ({"testbed_sim_auth_user_header": "X User"}, "testbed_sim_auth_user_header"),
    "users_dup": (
        {"testbed_sim_auth_users": [{"name": "a"}, {"name": "a"}]},
        "testbed_sim_auth_users must list at least one user",
    ),
    "users_empty_pw": (
        {"testbed_sim_auth_users": [{"name": "a", "password": ""}]},
        "a password, when given, must not be empty",
    ),
    "next_param": (
        {"testbed_sim_auth_next_param": "next url"},
        'testbed_sim_auth_next_param ("next url") letters, digits',
    ),
    "mongo_every_interface": (
        {"testbed_sim_mongo_addresses": ["127.0.0.1", "0.0.0.0"]},
        "testbed_sim_mongo_addresses must list IPv4 addresses to listen on",
    ),
    "mongo_address_name": (
        {"testbed_sim_mongo_addresses": ["localhost"]},
        "testbed_sim_mongo_addresses must list IPv4 addresses",
    ),
    "state_choice": ({"testbed_sim_service_state": "running"}, "testbed_sim_service_state"),
    "user_key_typo": ({"testbed_sim_auth_users": [{"nam": "alice"}]}, "nam"),
    "nist_access_negative": (
        {"testbed_sim_nist_access_experiments": -1},
        "testbed_sim_nist_access_experiments must be an integer from 0 to 999",
    ),
    "nist_access_text": (
        {"testbed_sim_nist_access_experiments": "four"},
        "testbed_sim_nist_access_experiments",
    ),
    "nist_cache_relative": (
        {"testbed_sim_nist_cache_dir": "cache/nist"},
        'testbed_sim_nist_cache_dir "" or an absolute path other than "/", got "cache/nist"',
    ),
    "nist_numpy_2": (
        {"testbed_sim_nist_requirements": ["numpy==2.1.0", "setuptools==79.0.1"]},
        "numpy below 2 (NIST's logging calls np.set_string_function, gone in NumPy 2)",
    ),
    "nist_setuptools_80": (
        {"testbed_sim_nist_requirements": ["numpy==1.26.4", "setuptools==80.9.0"]},
        '"setuptools==80.9.0"',
    ),
    "nist_numpy_unpinned": (
        {"testbed_sim_nist_requirements": ["numpy<2", "setuptools==79.0.1"]},
        "testbed_sim_nist_requirements a list that pins numpy and setuptools",
    ),
    "nist_without_qoesim": (
        {"testbed_sim_nist_requirements": ["numpy==1.26.4", "setuptools==79.0.1"]},
        "so testbed_sim_nist_requirements must be a list that pins mcvqoe-base, "
        "mcvqoe-mouth2ear and setuptools below 80 (==; NIST's packages import "
        'pkg_resources), got ["numpy==1.26.4", "setuptools==79.0.1"]',
    ),
    "recording_setuptools_80": (
        {
            "testbed_sim_nist_enabled": False,
            "testbed_sim_recording_requirements": [
                "setuptools==80.9.0",
                "mcvqoe-base==1.3.2",
                "mcvqoe-mouth2ear==2.1.3",
            ],
        },
        "so testbed_sim_recording_requirements must be a list that pins mcvqoe-base",
    ),
    "recording_string": (
        {"testbed_sim_nist_enabled": False, "testbed_sim_recording_requirements": "mcvqoe-base"},
        "testbed_sim_recording_requirements must be a list that pins mcvqoe-base, "
        "mcvqoe-mouth2ear and setuptools below 80 (==; NIST's packages import "
        'pkg_resources), got "mcvqoe-base"',
    ),
    "defaults": ({}, None),
    "defaults_without_nist": ({"testbed_sim_nist_enabled": False}, None),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return validation_results(
        "testbed_sim",
        CASES,
        tmp_path_factory.mktemp("role-inputs"),
        "--tags",
        ONLY,
        # required; the validation does not read it (playbooks/artifacts.yml builds it)
        play_vars={"testbed_sim_wheel": "/nonexistent/testbed_sim-0.2.0-py3-none-any.whl"},
    )


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_fails_with_message(results, case):
    message = CASES[case][1]
    got = " ".join(results[case].split())
    assert got != "ok"
    assert message in got, got


def test_defaults_pass_the_checks(results):
    assert results["defaults"] == "ok"
    assert results["defaults_without_nist"] == "ok"
