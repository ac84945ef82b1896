"""The hub's metrics service for Prometheus: one service, one role with read:metrics
only, its token from the file the jupyterhub role writes; none when the file is not
given. Builds a traitlets Config (no hub, no Docker)."""

from __future__ import annotations

import pytest
from jupyterhub.scopes import scope_definitions
from traitlets.config import Config

from testbed_hub.config import METRICS_SCOPES, SettingsError, apply, metrics_service, validate

from .test_hub_config import FakeProbe
from .test_hub_config import settings as settings  # noqa: F401 - the fixture

TOKEN_FILE = "/etc/jupyterhub/secrets/metrics-token"
SECRETS = {
    "/var/lib/jupyterhub/proxy-auth-token": "tok" * 16,
    TOKEN_FILE: "m" * 64,
}


def build(settings):
    c = Config()
    apply(c, settings, probe=FakeProbe(), read_secret=lambda path, what: SECRETS[path])
    return c


def test_prometheus_service_reads_metrics_and_nothing_else(settings):  # noqa: F811
    settings["hub"]["metrics_token_file"] = TOKEN_FILE
    c = build(settings)
    assert c.JupyterHub.services[-1] == {"name": "prometheus", "api_token": "m" * 64}
    assert c.JupyterHub.load_roles[-1] == {
        "name": "metrics-reader",
        "scopes": ["read:metrics"],
        "services": ["prometheus"],
    }
    assert c.JupyterHub.authenticate_prometheus is True
    # the culler's service and role are still there, the admin role first
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler", "prometheus"]
    assert [r["name"] for r in c.JupyterHub.load_roles] == [
        "admin",
        "idle-culler",
        "metrics-reader",
    ]


def test_the_scope_is_jupyterhubs_and_grants_nothing_more():
    assert METRICS_SCOPES == ["read:metrics"]
    assert "read:metrics" in scope_definitions
    # read:metrics implies no other scope
    assert not scope_definitions["read:metrics"].get("subscopes")


def test_with_the_culler_off_the_metrics_service_stays(settings):  # noqa: F811
    settings["hub"]["metrics_token_file"] = TOKEN_FILE
    settings["culler"]["enabled"] = False
    c = build(settings)
    assert [s["name"] for s in c.JupyterHub.services] == ["prometheus"]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["admin", "metrics-reader"]


@pytest.mark.parametrize("value", [None, ""])
def test_no_token_file_no_service(settings, value):  # noqa: F811
    if value is not None:
        settings["hub"]["metrics_token_file"] = value
    c = build(settings)
    assert "prometheus" not in [s["name"] for s in c.JupyterHub.services]
    assert "metrics-reader" not in [r["name"] for r in c.JupyterHub.load_roles]
    assert metrics_service(settings["hub"]) == ([], [])


def test_a_relative_token_file_is_refused_naming_the_variable(settings):  # noqa: F811
    settings["hub"]["metrics_token_file"] = "secrets/metrics-token"
    with pytest.raises(SettingsError) as err:
        validate(settings)
    assert (
        'jupyterhub_metrics_service_enabled (hub.metrics_token_file) "secrets/metrics-token" '
        "must be an absolute path"
    ) in str(err.value)


def test_an_empty_token_file_is_an_error_that_names_it(settings, tmp_path):  # noqa: F811
    empty = tmp_path / "metrics-token"
    empty.write_text("\n")
    settings["hub"]["metrics_token_file"] = str(empty)
    with pytest.raises(SettingsError, match="metrics service token file .* is empty"):
        metrics_service(settings["hub"])
