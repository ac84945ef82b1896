"""Role jupyterhub, tasks/images.yml: which images the spawn form offers, and their labels.

One ansible-playbook run on localhost per case, with a stand-in ``docker`` first on
PATH that answers ``image ls``, ``image inspect`` and ``run`` as an engine with the
given tags would (no Docker needed); the fact the tasks set (``spawner.images`` of
settings.json) is then checked by the hub's own validator and turned into the form's
labels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testbed_hub.config import image_label

ROOT = Path(__file__).resolve().parents[3]
REPO = "testbed-hub/notebook"
CUR = f"{REPO}:ba9876543210"
CREATED = {
    "ba9876543210": "2026-11-28T07:12:03.1Z",
    "0123456789ab": "2026-10-02T16:40:00Z",
    "00000000aaaa": "2026-09-01T10:00:00Z",
    "000000000001": "2026-08-01T10:00:00Z",
}
VERSIONS = {
    "ba9876543210": {"python": "3.11.2", "jupyterlab": "4.3.1", "numpy": "2.1.3"},
    "0123456789ab": {"python": "3.11.2", "jupyterlab": "4.2.5", "numpy": "1.26.4"},
}

#: The stand-in: tags newest first (as `docker image ls` lists them), inspect, run.
FAKE_DOCKER = r"""#!PYTHON
import json, sys
created, versions, tags = json.loads(open(sys.argv[0] + ".json").read())
args = sys.argv[1:]
if args[:2] == ["image", "ls"]:
    print("\n".join(tags))
elif args[:2] == ["image", "inspect"]:
    print(json.dumps([{"RepoTags": [r], "Created": created[r.rsplit(":", 1)[1]]}
                      for r in args[2:]]))
elif args[0] == "run":
    tag = args[args.index("--entrypoint") + 2].rsplit(":", 1)[1]
    if tag not in versions:
        sys.exit("python3: not found")  # an image that cannot tell
    print(json.dumps(versions[tag]))
else:
    sys.exit(f"unexpected docker {args}")
"""

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{root}/roles/jupyterhub/vars/main.yml]
  tasks:
    - ansible.builtin.include_tasks: {root}/roles/jupyterhub/tasks/images.yml
    - ansible.builtin.copy:
        content: "{{{{ __jupyterhub_notebook_images | to_json }}}}"
        dest: {out}
"""


def offered(tmp_path, tags, previous=2, current=CUR):
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True)
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER.replace("PYTHON", sys.executable))
    docker.chmod(0o755)
    (bindir / "docker.json").write_text(json.dumps([CREATED, VERSIONS, tags]))
    out = tmp_path / "images.json"
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(root=ROOT, out=out))
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    extra = {
        "jupyterhub_notebook_image": current,
        "jupyterhub_previous_images": previous,
        "ansible_python_interpreter": sys.executable,
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            str(play),
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return json.loads(out.read_text())


def test_the_current_image_first_then_the_newest_earlier_tags(tmp_path):
    # the current tag is not the newest listed: a re-run of an earlier release set
    tags = ["0123456789ab", "ba9876543210", "<none>", "00000000aaaa", "000000000001"]
    images = offered(tmp_path, tags, previous=2)
    assert [i["image"] for i in images] == [
        CUR,
        f"{REPO}:0123456789ab",
        f"{REPO}:00000000aaaa",
    ]
    assert images[0] == {
        "image": CUR,
        "created": "2026-11-28T07:12:03.1Z",
        "packages": VERSIONS["ba9876543210"],
    }
    # an image that could not tell its versions: offered with its tag and date
    assert images[2] == {
        "image": f"{REPO}:00000000aaaa",
        "created": "2026-09-01T10:00:00Z",
        "packages": {},
    }
    labels = [image_label(i, current=i["image"] == CUR) for i in images]
    assert labels == [
        "ba9876543210 · built 2026-11-28 · python 3.11.2, jupyterlab 4.3.1, numpy 2.1.3 (current)",
        "0123456789ab · built 2026-10-02 · python 3.11.2, jupyterlab 4.2.5, numpy 1.26.4 (earlier)",
        "00000000aaaa · built 2026-09-01 (earlier)",
    ]


def test_no_earlier_tag_or_none_wanted_means_no_choice(tmp_path):
    assert offered(tmp_path / "a", ["ba9876543210"]) == []
    assert offered(tmp_path / "b", ["ba9876543210", "0123456789ab"], previous=0) == []


def test_a_current_image_not_on_the_station_offers_nothing(tmp_path):
    """Check mode on a new station: the image is not built yet."""
    assert offered(tmp_path, ["0123456789ab"]) == []


def test_tags_of_one_image_come_in_a_stable_order(tmp_path):
    """Two tags of one image share its date; settings.json must not change between
    runs (a change restarts the hub), whatever order `docker image ls` gives."""
    CREATED["0000000000e1"] = CREATED["0123456789ab"]
    try:
        one = offered(tmp_path / "a", ["ba9876543210", "0123456789ab", "0000000000e1"])
        two = offered(tmp_path / "b", ["ba9876543210", "0000000000e1", "0123456789ab"])
    finally:
        del CREATED["0000000000e1"]
    assert one == two
    assert [i["image"] for i in one] == [CUR, f"{REPO}:0000000000e1", f"{REPO}:0123456789ab"]


def test_a_reference_by_digest_offers_nothing(tmp_path):
    digest = f"{REPO}@sha256:" + "a" * 64
    assert offered(tmp_path, ["ba9876543210", "0123456789ab"], current=digest) == []
