"""HeaderAuthenticator options: traitlets with help, validation with actionable errors."""

from __future__ import annotations

import pytest
from jupyterhub.auth import Authenticator
from traitlets import TraitError

from testbed_hub.auth import HeaderAuthenticator


def test_every_own_option_is_configurable_and_documented():
    own = set(HeaderAuthenticator.class_traits(config=True)) - set(
        Authenticator.class_traits(config=True)
    )
    assert own == {
        "user_header",
        "secret_header",
        "secret_file",
        "min_secret_length",
        "external_login_url",
        "external_login_next_param",
        "logout_redirect_url",
        "logout_next_param",
        "max_login_redirects",
        "login_guard_seconds",
        "check_header_on_refresh",
        "identity_case",
        "logged_out_path",
        "known_identities",
    }
    for name in own:
        assert HeaderAuthenticator.class_traits()[name].help.strip(), name


def test_defaults_match_the_architecture_contract():
    a = HeaderAuthenticator()
    assert a.user_header == "X-Authorized-User"
    assert a.secret_header == "X-Testbed-Hub-Secret"
    assert a.secret_file == "/etc/jupyterhub/secrets/proxy-auth-secret"
    assert a.auth_refresh_age == 1
    assert a.auto_login is True


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("user_header", "X Authorized User", "not an HTTP header name"),
        ("secret_header", "", "not an HTTP header name"),
        ("secret_file", "secrets/proxy-auth-secret", "must be an absolute path"),
        ("min_secret_length", 8, "16 or more"),
        ("external_login_url", "auth/login", "must be a path starting with '/'"),
        ("logout_redirect_url", "javascript:alert(1)", "must be a path starting with '/'"),
        ("max_login_redirects", 0, "must be 1 or more"),
        ("identity_case", "lower", "fold"),
    ],
)
def test_bad_options_raise_actionable_errors(option, value, message):
    with pytest.raises((ValueError, TraitError), match=message) as err:
        HeaderAuthenticator(**{option: value})
    assert option in str(err.value)


def test_empty_logout_url_falls_back_to_hub_logout():
    assert HeaderAuthenticator(logout_redirect_url="").logout_redirect_url == ""


def test_external_urls_keep_existing_query():
    a = HeaderAuthenticator(external_login_url="https://sso.example/login?realm=lmr")
    assert a.external_login("https://bs/jupyter/hub/login?next=%2Fx") == (
        "https://sso.example/login?realm=lmr&next=https%3A%2F%2Fbs%2Fjupyter%2Fhub%2Flogin"
        "%3Fnext%3D%252Fx"
    )
    b = HeaderAuthenticator(external_login_url="/oauth2/start", external_login_next_param="rd")
    assert b.external_login("https://bs/x") == "/oauth2/start?rd=https%3A%2F%2Fbs%2Fx"


class _Req:
    def __init__(self, headers):
        self.headers = headers
        self.remote_ip = "172.30.0.5"
        self.uri = "/jupyter/hub/login"


def test_identity_from_request_rules(tmp_path):
    f = tmp_path / "s"
    f.write_text("s" * 40 + "\n")
    a = HeaderAuthenticator(secret_file=str(f))
    good = {"X-Testbed-Hub-Secret": "s" * 40}
    assert a.identity_from_request(_Req({**good, "X-Authorized-User": " ue-01 "})) == "ue-01"
    assert a.identity_from_request(_Req({**good, "X-Authorized-User": "   "})) is None
    assert a.identity_from_request(_Req(good)) is None
    assert a.identity_from_request(_Req({"X-Authorized-User": "ue-01"})) is None
    bad = {"X-Testbed-Hub-Secret": "s" * 39 + "t", "X-Authorized-User": "ue-01"}
    assert a.identity_from_request(_Req(bad)) is None


def test_too_short_secret_file_disables_login(tmp_path):
    f = tmp_path / "s"
    f.write_text("short")
    a = HeaderAuthenticator(secret_file=str(f))
    req = _Req({"X-Testbed-Hub-Secret": "short", "X-Authorized-User": "ue-01"})
    assert a.identity_from_request(req) is None
