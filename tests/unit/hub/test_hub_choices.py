"""What a researcher chooses at start (issue 16): the environment (image), resource
profile, and named servers; without Docker.

settings.json -> Config (testbed_hub.config) -> TestbedDockerSpawner, as the hub builds
it; the form round trip runs in a real hub (MockHub), where a forged value comes back
as the form with the message and nothing is started.
"""

from __future__ import annotations

import copy
import html
import re
from types import SimpleNamespace

import pytest
import pytest_asyncio
from tornado import web
from traitlets.config import Config

from testbed_hub.config import SettingsError, apply, image_label, validate
from testbed_hub.container import IMAGE_NOTICE_TARGET
from testbed_hub.spawner import TestbedDockerSpawner

from .test_hub_config import FakeProbe, secrets_reader
from .test_hub_config import settings as settings  # noqa: F401,PLC0414 - the fixture

CUR = "testbed-hub/notebook:ba9876543210"
OLD1 = "testbed-hub/notebook:0123456789ab"
OLD2 = "testbed-hub/notebook:00000000aaaa"
IMAGES = [
    {
        "image": CUR,
        "created": "2026-11-28T07:12:03.123456789Z",
        "packages": {"jupyterlab": "4.3.1", "numpy": "2.1.3", "python": "3.11.2", "tqdm": "4"},
    },
    {
        "image": OLD1,
        "created": "2026-10-02T16:40:00Z",
        "packages": {"jupyterlab": "4.2.5", "numpy": "1.26.4", "python": "3.11.2"},
    },
    {"image": OLD2},  # built before the role read versions: the tag alone
]
PROFILES = [
    {"name": "standard", "mem_limit": "2G", "cpu_limit": 1.0, "default": True},
    {"name": "audio", "mem_limit": "4G", "cpu_limit": 2, "description": "long recordings"},
]


@pytest.fixture
def choosing(settings):  # noqa: F811 - the fixture imported above
    s = copy.deepcopy(settings)
    s["spawner"].update(
        image=CUR,
        images=copy.deepcopy(IMAGES),
        profiles=copy.deepcopy(PROFILES),
        max_mem_limit="8G",
        max_cpu_limit=2,
        named_server_limit=2,
        image_notice_file="/etc/jupyterhub/notebook-image-notice.sh",
    )
    return s


def build(settings) -> Config:
    c = Config()
    apply(c, settings, probe=FakeProbe(), read_secret=secrets_reader)
    return c


def spawner(c: Config, server: str = "", user: str = "alice") -> TestbedDockerSpawner:
    s = TestbedDockerSpawner(
        config=c,
        user=SimpleNamespace(name=user, id=1, url=f"/u/{user}/"),
        orm_spawner=SimpleNamespace(name=server, display_name=server, server=None),
        hub=SimpleNamespace(
            public_host="",
            api_url="http://hub:8081/jupyter/hub/api",
            base_url="/jupyter/hub/",
            url="http://hub:8081/jupyter/hub/",
        ),
    )
    s.api_token = "x"
    return s


# --- settings -> config ------------------------------------------------------------


def test_the_images_are_offered_current_first_with_labels(choosing):
    c = build(choosing)
    assert c.DockerSpawner.image == CUR
    assert c.TestbedDockerSpawner.current_image == CUR
    assert c.DockerSpawner.allowed_images == [CUR, OLD1, OLD2]
    labels = c.TestbedDockerSpawner.image_labels
    assert labels[CUR] == (
        "ba9876543210 · built 2026-11-28 · python 3.11.2, jupyterlab 4.3.1, numpy 2.1.3 (current)"
    )
    assert labels[OLD1] == (
        "0123456789ab · built 2026-10-02 · python 3.11.2, jupyterlab 4.2.5, numpy 1.26.4 (earlier)"
    )
    assert labels[OLD2] == "00000000aaaa (earlier)"


def test_one_image_means_no_choice(settings):  # noqa: F811
    c = build(settings)  # no "images": settings of the previous release
    assert c.DockerSpawner.allowed_images == {}
    s = spawner(c)
    assert s.options_form == ""  # JupyterHub starts without a form, as before
    with pytest.raises(web.HTTPError) as err:
        s.options_from_form({"image": [CUR]})
    assert err.value.log_message == (
        f"Image {CUR!r} is not one this hub offers: it starts every server on the current "
        "image (no earlier tags are offered)"
    )


def test_named_servers_are_allowed_up_to_the_limit(choosing, settings):  # noqa: F811
    c = build(choosing)
    assert c.JupyterHub.allow_named_servers is True
    assert c.JupyterHub.named_server_limit_per_user == 2
    off = build(settings)
    assert off.JupyterHub.allow_named_servers is False


def test_profiles_reach_the_spawner_and_the_default_sets_the_limits(choosing):
    c = build(choosing)
    assert [p["name"] for p in c.TestbedDockerSpawner.profiles] == ["standard", "audio"]
    assert c.TestbedDockerSpawner.profiles[1] == {
        "name": "audio",
        "mem_limit": "4G",
        "cpu_limit": 2.0,
        "default": False,
        "label": "audio (4G memory, 2 CPUs): long recordings",
    }
    assert c.DockerSpawner.mem_limit == "2G" and c.DockerSpawner.cpu_limit == 1.0


def test_the_image_notice_is_mounted_read_only_as_a_login_script(choosing):
    c = build(choosing)
    assert c.DockerSpawner.volumes["/etc/jupyterhub/notebook-image-notice.sh"] == {
        "bind": IMAGE_NOTICE_TARGET,
        "mode": "ro",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"profiles": PROFILES + [dict(PROFILES[1])]},
            "jupyterhub_profiles (spawner.profiles): names must be unique, audio repeated",
        ),
        (
            {"profiles": [dict(PROFILES[0], default=False), PROFILES[1]]},
            "jupyterhub_profiles (spawner.profiles): exactly one profile must have default: true",
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], default=True)]},
            "exactly one profile must have default: true (the form's preselection and an "
            "API start without a profile), got 2",
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], mem_limit="4 gigs")]},
            'jupyterhub_profiles (spawner.profiles) "audio": mem_limit "4 gigs" is not a size',
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], mem_limit="16G")]},
            'jupyterhub_profiles (spawner.profiles) "audio": mem_limit 16G is more than '
            "jupyterhub_profile_ceiling.mem_limit (spawner.max_mem_limit) 8G",
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], cpu_limit=4)]},
            'jupyterhub_profiles (spawner.profiles) "audio": cpu_limit 4 is more than '
            "jupyterhub_profile_ceiling.cpu_limit (spawner.max_cpu_limit) 2",
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], cpu_limit="2")]},
            '"audio": cpu_limit "2" must be a number greater than 0',
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], name="Audio Heavy")]},
            'name "Audio Heavy" must be 1 to 32 lower-case letters',
        ),
        (
            {"profiles": [PROFILES[0], dict(PROFILES[1], memory="4G")]},
            '"audio": unknown keys memory',
        ),
        (
            {"max_mem_limit": "lots"},
            'jupyterhub_profile_ceiling.mem_limit (spawner.max_mem_limit) "lots" is not a size',
        ),
        (
            {"images": [IMAGES[1], IMAGES[0]]},
            "jupyterhub_previous_images (spawner.images) must start with the current image",
        ),
        (
            {"images": [IMAGES[0], IMAGES[1], IMAGES[1]]},
            f'jupyterhub_previous_images (spawner.images)[2].image "{OLD1}" must be a '
            "distinct image reference",
        ),
        (
            {"named_server_limit": 11},
            "jupyterhub_named_server_limit (spawner.named_server_limit) 11 must be 0",
        ),
        (
            {"user_volume_template": "jupyterhub-user-{username}-{servername}"},
            "jupyterhub_user_volume_template (spawner.user_volume_template) "
            '"jupyterhub-user-{username}-{servername}" must not contain {servername}: all of '
            "a user's servers mount the same files",
        ),
        (
            {"image_notice_file": "notice.sh"},
            'spawner.image_notice_file "notice.sh" must be an absolute path',
        ),
    ],
)
def test_bad_choices_name_the_role_variable(choosing, change, message):
    choosing["spawner"].update(copy.deepcopy(change))
    with pytest.raises(SettingsError) as err:
        validate(choosing)
    assert message in str(err.value)


def test_the_example_settings_are_valid(choosing):
    validate(choosing)


def test_a_label_without_a_tag_names_the_reference():
    assert image_label({"image": "registry:5000/nb"}, current=True) == "registry:5000/nb (current)"


# --- the spawner: form, forged values, limits, environment -------------------------


def options(form: str, name: str) -> list[tuple[str, str, bool]]:
    select = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', form, re.S)
    assert select, form
    return [
        (html.unescape(v), html.unescape(text), bool(sel))
        for v, sel, text in re.findall(
            r'<option value="([^"]*)"( selected)?>(.*?)</option>', select.group(1)
        )
    ]


def test_the_form_offers_images_and_profiles_current_and_default_preselected(choosing):
    s = spawner(build(choosing))
    form = s.options_form
    images = options(form, "image")
    assert [v for v, _, _ in images] == [CUR, OLD1, OLD2]
    assert [sel for _, _, sel in images] == [True, False, False]
    assert images[1][1].startswith("0123456789ab · built 2026-10-02 · ")
    profiles = options(form, "profile")
    assert profiles == [
        ("standard", "standard (2G memory, 1 CPU)", True),
        ("audio", "audio (4G memory, 2 CPUs): long recordings", False),
    ]


def test_the_current_image_stays_preselected_after_a_start_on_an_earlier_one(choosing):
    s = spawner(build(choosing))
    s.apply_user_options(s, {"image": OLD1})
    s.image = OLD1  # what DockerSpawner.start does with user_options["image"]
    assert [sel for _, _, sel in options(s.options_form, "image")] == [True, False, False]


def test_form_data_becomes_user_options(choosing):
    s = spawner(build(choosing))
    assert s.options_from_form({"image": [OLD1], "profile": ["audio"]}) == {
        "image": OLD1,
        "profile": "audio",
    }
    assert s.options_from_form({}) == {}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"image": ["evil/miner:latest"]},
            f"Image 'evil/miner:latest' is not one this hub offers; choose one of {CUR}, "
            f"{OLD1}, {OLD2}",
        ),
        (
            {"profile": ["huge"]},
            "Resource profile 'huge' is not one this hub offers; choose one of standard, audio",
        ),
    ],
)
def test_a_forged_form_value_is_refused_with_a_clear_message(choosing, form, message):
    s = spawner(build(choosing))
    with pytest.raises(web.HTTPError) as err:
        s.options_from_form(form)
    assert err.value.status_code == 400
    assert err.value.log_message == message
    # the REST API path (user_options sent as JSON) meets the same check before start
    with pytest.raises(web.HTTPError) as err:
        s.apply_user_options(s, {k: v[0] for k, v in form.items()})
    assert err.value.log_message == message


def test_unknown_user_options_are_refused(choosing):
    s = spawner(build(choosing))
    with pytest.raises(web.HTTPError) as err:
        s.apply_user_options(s, {"mem_limit": "64G"})
    assert "Unknown option(s) mem_limit: only image and profile" in err.value.log_message


def test_the_chosen_profile_sets_the_limits_docker_gets(choosing):
    s = spawner(build(choosing))
    assert s.mem_limit == 2 * 1024**3 and s.cpu_limit == 1.0
    s.apply_user_options(s, {"profile": "audio"})
    assert s.mem_limit == 4 * 1024**3 and s.cpu_limit == 2.0
    assert s.get_env()["TESTBED_PROFILE"] == "audio"
    # the next start without a profile (an API start with {}) is on the default again
    s.apply_user_options(s, {})
    assert s.mem_limit == 2 * 1024**3 and s.cpu_limit == 1.0


@pytest.mark.asyncio
async def test_the_limits_reach_dockers_host_config(choosing, monkeypatch):
    """DockerSpawner.create_object turns mem_limit/cpu_limit into HostConfig (Memory,
    CpuQuota/CpuPeriod); docker-py's create_host_config is the one Docker gets."""
    import docker

    s = spawner(build(choosing))
    s.apply_user_options(s, {"profile": "audio"})
    created = {}

    async def fake_docker(method, *args, **kwargs):
        created[method] = kwargs
        return {"Id": "c0ffee"}

    async def get_command():
        return ["python3", "-s", "-m", "jupyterhub.singleuser"]

    monkeypatch.setattr(s, "docker", fake_docker)
    monkeypatch.setattr(s, "get_command", get_command)
    monkeypatch.setattr(
        TestbedDockerSpawner,
        "client",
        docker.APIClient(base_url="tcp://127.0.0.1:1", version="1.41"),
    )
    await s.create_object()
    host = created["create_container"]["host_config"]
    assert host["Memory"] == 4 * 1024**3
    assert host["CpuQuota"] == 200_000 and host["CpuPeriod"] == 100_000
    # extra_host_config wins over DockerSpawner's auto_remove=self.remove
    assert s.remove is True and "AutoRemove" not in host  # Docker's default: off


def test_the_container_knows_its_image(choosing):
    s = spawner(build(choosing))
    env = s.get_env()
    assert env["TESTBED_IMAGE"] == CUR and env["TESTBED_IMAGE_OUTDATED"] == "0"
    s.apply_user_options(s, {"image": OLD1})
    s.image = OLD1  # DockerSpawner.start: the image of user_options
    env = s.get_env()
    assert env["TESTBED_IMAGE"] == OLD1
    assert env["TESTBED_IMAGE_CURRENT"] == CUR
    assert env["TESTBED_IMAGE_OUTDATED"] == "1"
    assert env["TESTBED_IMAGE_LABEL"].startswith("0123456789ab · built 2026-10-02")


@pytest.mark.asyncio
async def test_dockerspawner_starts_the_chosen_image_and_records_it(choosing, monkeypatch):
    """DockerSpawner.start resolves user_options['image'] through allowed_images;
    started_image then says "earlier", which the home page reports."""
    from dockerspawner import DockerSpawner

    s = spawner(build(choosing))
    s.user_options = {"image": OLD1}
    s.apply_user_options(s, s.user_options)
    seen = {}

    async def upstream_start(self):
        # the first lines of DockerSpawner.start (dockerspawner 14.0.0)
        self.image = await self.check_allowed(self.user_options["image"])
        seen["image"] = self.image
        return "127.0.0.1", 1

    async def no_wait(*a, **k):
        return True

    monkeypatch.setattr(DockerSpawner, "start", upstream_start)
    monkeypatch.setattr("testbed_hub.spawner.wait_for_port", no_wait)
    await s.start()
    assert seen["image"] == OLD1
    assert s.started_image == OLD1 and s.outdated_image


# --- named servers: the same files, different containers ---------------------------


def test_named_servers_share_the_users_volume_and_get_their_own_containers(choosing):
    c = build(choosing)
    default, batch, live = spawner(c), spawner(c, "batch"), spawner(c, "Live")
    names = {default.object_name, batch.object_name, live.object_name}
    assert names == {"jupyter-alice", "jupyter-alice--batch", "jupyter-alice--live"}
    volume = {"bind": "/home/jovyan/nist", "mode": "rw"}
    for s in (default, batch, live):
        assert s.volume_binds["jupyterhub-user-alice"] == volume
        assert s.volume_binds["jupyterhub-shared"]["bind"] == "/home/jovyan/nist/share"
    # another user's servers have another volume
    assert "jupyterhub-user-bob" in spawner(c, "batch", user="bob").volume_binds


# --- in a real hub: the spawn form and a forged POST --------------------------------


@pytest_asyncio.fixture
async def choosing_hub(make_hub, hub_config, choosing):
    c = build(choosing)
    hc = hub_config.copy()
    hc.JupyterHub.spawner_class = TestbedDockerSpawner
    hc.JupyterHub.allow_named_servers = c.JupyterHub.allow_named_servers
    hc.JupyterHub.named_server_limit_per_user = c.JupyterHub.named_server_limit_per_user
    hc.DockerSpawner.image = CUR
    hc.DockerSpawner.volumes = c.DockerSpawner.volumes
    hc.DockerSpawner.escape = c.DockerSpawner.escape
    hc.DockerSpawner.allowed_images = c.DockerSpawner.allowed_images
    hc.TestbedDockerSpawner.current_image = CUR
    hc.TestbedDockerSpawner.image_labels = c.TestbedDockerSpawner.image_labels
    hc.TestbedDockerSpawner.profiles = c.TestbedDockerSpawner.profiles
    return await make_hub(hc)


async def logged_in(app, make_client, identity):
    client = make_client(app)
    r = await client.get("login", identity=identity)
    assert r.status_code == 302, r.text[:300]
    return client


@pytest.mark.asyncio
async def test_the_spawn_page_shows_the_choices(choosing_hub, make_client):
    client = await logged_in(choosing_hub, make_client, "ue-01")
    r = await client.get("spawn/ue-01/batch", identity="ue-01")
    assert r.status_code == 200, r.text[:300]
    assert [v for v, _, _ in options(r.text, "image")] == [CUR, OLD1, OLD2]
    assert [v for v, _, _ in options(r.text, "profile")] == ["standard", "audio"]


@pytest.mark.asyncio
async def test_a_forged_post_gets_the_form_back_with_the_message(choosing_hub, make_client):
    client = await logged_in(choosing_hub, make_client, "ue-01")
    page = await client.get("spawn/ue-01", identity="ue-01")
    xsrf = re.search(r'xsrf_token: "([^"]+)"', page.text).group(1)
    r = await client.session.post(
        client.base + "spawn/ue-01",
        data={"_xsrf": xsrf, "image": CUR, "profile": "huge"},
        headers=client.headers("ue-01"),
        allow_redirects=False,
    )
    assert r.status_code == 400
    text = html.unescape(r.text)
    assert "Resource profile 'huge' is not one this hub offers" in text
    assert 'name="profile"' in r.text  # the form again
    assert not choosing_hub.users["ue-01"].spawner.active  # nothing started


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"profile": "huge"}, "Resource profile 'huge' is not one this hub offers"),
        ({"image": "evil/miner:latest"}, "Image 'evil/miner:latest' is not one this hub offers"),
        ({"mem_limit": "64G"}, "Unknown option(s) mem_limit: only image and profile"),
    ],
)
async def test_a_forged_api_start_is_refused_before_the_spawner_starts(
    choosing_hub, options, message, monkeypatch
):
    """POST /users/:name/servers/:server with user_options as JSON: JupyterHub runs
    apply_user_options before Spawner.start, and relays its HTTP 400."""
    import json

    from jupyterhub.tests.utils import add_user, api_request, auth_header

    started = []

    async def start(self):  # never reached: no Docker in unit tests
        started.append(self)
        raise AssertionError("start() must not run")

    monkeypatch.setattr(TestbedDockerSpawner, "start", start)
    add_user(choosing_hub.db, choosing_hub, name="ue-03")
    r = await api_request(
        choosing_hub,
        "users",
        "ue-03",
        "servers",
        "batch",
        method="post",
        data=json.dumps(options),
        headers=auth_header(choosing_hub.db, "ops-admin"),
        bypass_proxy=True,
    )
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    assert started == []
    # JupyterHub stored the options as the server's defaults before the refusal; the
    # refusal forgot them, so a start without options does not send them again
    orm_spawner = choosing_hub.users["ue-03"].orm_user.orm_spawners["batch"]
    choosing_hub.db.refresh(orm_spawner)
    assert orm_spawner.user_options == {}


@pytest.mark.asyncio
async def test_a_users_named_servers_in_the_hub_share_the_volume(choosing_hub):
    """The hub's own spawner objects (names from its database), not stand-ins."""
    from jupyterhub.tests.utils import add_user

    add_user(choosing_hub.db, choosing_hub, name="ue-04")
    user = choosing_hub.users["ue-04"]
    spawners = [user.get_or_create_spawner(name, name) for name in ("", "batch", "live")]
    assert [s.object_name for s in spawners] == [
        "jupyter-ue-04",
        "jupyter-ue-04--batch",
        "jupyter-ue-04--live",
    ]
    assert {s.name for s in spawners} == {"", "batch", "live"}
    assert all(isinstance(s, TestbedDockerSpawner) for s in spawners)
    volume = {"bind": "/home/jovyan/nist", "mode": "rw"}
    assert all(s.volume_binds["jupyterhub-user-ue-04"] == volume for s in spawners)
