"""Role station_share without a station or workers: bad variables are refused
naming the variable and what to do (check mode, input checks only; the Molecule
scenario swarm runs the role itself; nothing touched)."""

from __future__ import annotations

import pytest

from testbed_devtools.roletest import assert_refused, validation_report

ADDR = {"station_share_address": "192.0.2.10"}
SPEC_TASK = (
    "Validating arguments against arg spec 'main' - "
    "Serve the base station's volumes and recordings to the swarm's workers"
)

CASES = {
    "defaults": ({**ADDR}, None),
    "other_port_and_dirs": (
        {**ADDR, "station_share_port": 2222, "station_share_root": "/srv/share"},
        None,
    ),
    "station_not_in_play": (
        {**ADDR, "station_share_station": "station9"},
        'the station "station9" is not a host of this play',
    ),
    "port_range": ({**ADDR, "station_share_port": 0}, "station_share_port from 1 to 65535"),
    "port_type": ({**ADDR, "station_share_port": "ssh"}, "station_share_port"),
    "user_root": ({**ADDR, "station_share_user": "root"}, "other than root"),
    "user_name": ({**ADDR, "station_share_user": "Share User"}, "lower-case account name"),
    "uid_zero": ({**ADDR, "station_share_uid": 0}, "not 0"),
    "relative_root": (
        {**ADDR, "station_share_root": "srv/share"},
        "station_share_root must be an absolute folder",
    ),
    "top_folder": ({**ADDR, "station_share_mount_dir": "/srv"}, "not the top folder itself"),
    "root_inside_volumes": (
        {**ADDR, "station_share_root": "/var/lib/docker/volumes/share"},
        "must not lie inside station_share_volumes_dir",
    ),
    # the notebook image the workers load through the share
    "worker_image": (
        {
            **ADDR,
            "station_share_images_dir": "/var/lib/testbed-share/images",
            "station_share_worker_images": [
                {"ref": "testbed-hub/notebook:0123456789ab", "file": "nb-0123456789ab.tar"}
            ],
        },
        None,
    ),
    "image_without_dir": (
        {
            **ADDR,
            "station_share_worker_images": [{"ref": "testbed-hub/notebook:1", "file": "nb-1.tar"}],
        },
        "needs station_share_images_dir",
    ),
    "image_file_path": (
        {
            **ADDR,
            "station_share_images_dir": "/var/lib/testbed-share/images",
            "station_share_worker_images": [
                {"ref": "testbed-hub/notebook:1", "file": "../../etc/shadow.tar"}
            ],
        },
        "a file name ending in .tar",
    ),
    "image_without_tag": (
        {
            **ADDR,
            "station_share_images_dir": "/var/lib/testbed-share/images",
            "station_share_worker_images": [{"ref": "testbed-hub/notebook", "file": "nb.tar"}],
        },
        "a ref name:tag",
    ),
    "images_top_folder": (
        {**ADDR, "station_share_images_dir": "/var"},
        "station_share_images_dir must be an absolute folder",
    ),
}
# Refused by the argument specs (their task), not by a later assert.
BY_SPEC = {"port_type"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    outcomes, tasks, _ = validation_report(
        "station_share",
        CASES,
        tmp_path_factory.mktemp("station-share-inputs"),
        "--tags",
        "station_share_validate",
        play_vars={"station_share_station": "localhost"},
    )
    return outcomes, tasks


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1]])
def test_bad_input_is_refused_naming_the_variable(results, case):
    outcomes, tasks = results
    assert_refused(
        outcomes[case], tasks[case], CASES[case][1], spec_task=SPEC_TASK, by_spec=case in BY_SPEC
    )


@pytest.mark.parametrize("case", [c for c in CASES if not CASES[c][1]])
def test_good_input_passes(results, case):
    assert results[0][case] == "ok"
