"""The login service stand-in over real HTTP (tornado's test server)."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from tornado.testing import AsyncHTTPTestCase

from testbed_sim import auth

SECRET = b"k" * 40
HOST = "bs.example:8443"


def settings(**overrides):
    cfg = {
        "users": [{"name": "alice@testbed.example", "password": "wonder"}, "bob@testbed.example"],
        **overrides,
    }
    return auth.Settings.from_mapping(cfg, secret=SECRET)


class AuthCase(AsyncHTTPTestCase):
    cfg: dict = {}

    def get_app(self):
        self.settings = settings(**self.cfg)
        return auth.make_app(self.settings)

    def req(self, method, path, body=None, cookie=None, headers=None):
        h = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST}
        h.update(headers or {})
        if cookie:
            h["Cookie"] = f"{self.settings.cookie_name}={cookie}"
        return self.fetch(
            path,
            method=method,
            body=urlencode(body) if body is not None else None,
            headers=h,
            follow_redirects=False,
            raise_error=False,
        )

    def login(self, user, password="", nxt=None):
        body = {"username": user, "password": password}
        if nxt is not None:
            body[self.settings.next_param] = nxt
        return self.req("POST", self.settings.login_path, body)

    @staticmethod
    def session_cookie(resp, name="testbed_session"):
        jar = SimpleCookie()
        for line in resp.headers.get_list("Set-Cookie"):
            jar.load(line)
        return jar[name] if name in jar else None


class TestAuthService(AuthCase):
    def test_check_without_cookie_is_401_not_redirect(self):
        resp = self.req("GET", "/auth/check")
        assert resp.code == 401
        assert "Location" not in resp.headers
        assert "X-Authorized-User" not in resp.headers

    def test_good_login_sets_cookie_redirects_and_check_gives_header(self):
        nxt = f"https://{HOST}/jupyter/hub/?a=1&b=2"
        resp = self.login("alice@testbed.example", "wonder", nxt)
        assert resp.code == 302
        assert resp.headers["Location"] == nxt
        morsel = self.session_cookie(resp)
        assert morsel is not None
        assert morsel["httponly"] is True
        assert morsel["secure"] is True  # X-Forwarded-Proto: https
        assert morsel["samesite"] == "Lax"
        assert int(morsel["max-age"]) == 8 * 3600
        check = self.req("GET", "/auth/check", cookie=morsel.value)
        assert check.code == 200
        assert check.headers["X-Authorized-User"] == "alice@testbed.example"

    def test_user_without_password_logs_in_with_name_only(self):
        resp = self.login("bob@testbed.example", "", "/jupyter/")
        assert resp.code == 302
        assert resp.headers["Location"] == "/jupyter/"
        check = self.req("GET", "/auth/check", cookie=self.session_cookie(resp).value)
        assert check.headers["X-Authorized-User"] == "bob@testbed.example"

    def test_wrong_password_and_unknown_user_are_401_without_cookie(self):
        for user, pw in (("alice@testbed.example", "nope"), ("mallory@evil.example", "")):
            resp = self.login(user, pw, f"https://{HOST}/jupyter/")
            assert resp.code == 401
            assert self.session_cookie(resp) is None
            assert b"Unknown user or wrong password." in resp.body

    def test_tampered_and_garbage_cookies_are_rejected(self):
        good = self.session_cookie(self.login("bob@testbed.example")).value
        payload, sig = good.split(".")
        forged_payload = auth._b64(auth._unb64(payload).replace(b"bob", b"alice"))
        forged_sig = auth.sign_session(b"x" * 40, "alice@testbed.example", 3600).split(".")[1]
        for bad in (
            f"{forged_payload}.{sig}",
            f"{payload}.{forged_sig}",
            f"{payload}.",
            "garbage",
            good + "x",
            auth.sign_session(b"y" * 40, "alice@testbed.example", 3600),
        ):
            assert self.req("GET", "/auth/check", cookie=bad).code == 401, bad

    def test_expired_cookie_is_rejected(self):
        expired = auth.sign_session(SECRET, "alice@testbed.example", 60, now=time.time() - 61)
        assert self.req("GET", "/auth/check", cookie=expired).code == 401
        fresh = auth.sign_session(SECRET, "alice@testbed.example", 60, now=time.time() - 50)
        assert self.req("GET", "/auth/check", cookie=fresh).code == 200

    def test_cookie_for_user_removed_from_config_is_rejected(self):
        cookie = auth.sign_session(SECRET, "carol@testbed.example", 600)
        assert self.req("GET", "/auth/check", cookie=cookie).code == 401

    def test_open_redirects_are_refused(self):
        evil = [
            "https://evil.example/",
            "//evil.example/jupyter/",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:\\\\evil.example",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,hi",
            f"http://{HOST}/jupyter/",  # scheme differs from the browser's (https)
            "https://bs.example:9999/jupyter/",  # other port
            f"https://{HOST}@evil.example/",
            "https://evil.example#@bs.example:8443",
            " https://evil.example/",
            "/jupyter/\n/evil",
            "https:evil.example",
            "jupyter/",
        ]
        for target in evil:
            resp = self.login("bob@testbed.example", "", target)
            assert resp.code == 302, target
            assert resp.headers["Location"] == "/", target

    def test_same_origin_variants_are_accepted(self):
        for target in (
            f"https://{HOST}/jupyter/user/bob/lab?x=1",
            "https://BS.example:8443/jupyter/",
            "/jupyter/hub/home",
        ):
            resp = self.login("bob@testbed.example", "", target)
            assert resp.headers["Location"] == target

    def test_logout_clears_cookie_and_redirects_same_origin_only(self):
        resp = self.req("GET", f"/auth/logout?next=https://{HOST}/")
        assert resp.code == 302
        assert resp.headers["Location"] == f"https://{HOST}/"
        morsel = self.session_cookie(resp)
        assert morsel.value == ""
        assert morsel["expires"]
        resp = self.req("GET", "/auth/logout?next=https://evil.example/")
        assert resp.headers["Location"] == "/auth/login"

    def test_login_page_escapes_next_and_logged_in_user_is_sent_on(self):
        resp = self.req("GET", '/auth/login?next="><script>x</script>')
        assert resp.code == 200
        assert b"<script>x</script>" not in resp.body
        assert b"&quot;&gt;&lt;script&gt;" in resp.body
        cookie = self.session_cookie(self.login("bob@testbed.example")).value
        again = self.req("GET", "/auth/login?next=/jupyter/", cookie=cookie)
        assert again.code == 302
        assert again.headers["Location"] == "/jupyter/"

    def test_unescaped_next_from_nginx_keeps_its_whole_query(self):
        # nginx: return 302 /auth/login?next=$scheme://$http_host$request_uri (no escaping)
        target = f"https://{HOST}/jupyter/hub/login?next=%2Fjupyter%2Fhub%2F&x=1"
        page = self.req("GET", f"/auth/login?next={target}")
        assert f'value="{target.replace("&", "&amp;")}"'.encode() in page.body
        cookie = self.session_cookie(self.login("bob@testbed.example")).value
        again = self.req("GET", f"/auth/login?next={target}", cookie=cookie)
        assert again.headers["Location"] == target
        evil = "https://evil.example/?a=1&b=2"
        again = self.req("GET", f"/auth/login?next={evil}", cookie=cookie)
        assert again.code == 200  # refused: no redirect, the form is shown

    def test_home_page_links_to_jupyter(self):
        resp = self.req("GET", "/")
        assert resp.code == 200
        assert b'href="/jupyter/"' in resp.body
        assert b"/auth/login?next=/jupyter/" in resp.body
        assert self.req("GET", "/nothing-here").code == 404


class TestWithoutForwardedHeaders(AuthCase):
    cfg = {"trust_forwarded_headers": False}

    def test_uses_host_and_connection_scheme(self):
        # X-Forwarded-* ignored: the connection is plain http to Host bs.example:8443.
        resp = self.login("bob@testbed.example", "", f"https://{HOST}/jupyter/")
        assert resp.headers["Location"] == "/"
        resp = self.login("bob@testbed.example", "", f"http://{HOST}/jupyter/")
        assert resp.headers["Location"] == f"http://{HOST}/jupyter/"
        assert self.session_cookie(resp)["secure"] == ""


class TestOauth2ProxyStyle(AuthCase):
    cfg = {
        "check_path": "/oauth2/auth",
        "login_path": "/oauth2/start",
        "logout_path": "/oauth2/sign_out",
        "user_header": "X-Auth-Request-User",
        "next_param": "rd",
        "cookie_name": "_oauth2_proxy",
    }

    def test_configured_names_are_used(self):
        resp = self.login("bob@testbed.example", "", f"https://{HOST}/jupyter/")
        assert resp.headers["Location"] == f"https://{HOST}/jupyter/"
        cookie = self.session_cookie(resp, "_oauth2_proxy").value
        check = self.req("GET", "/oauth2/auth", cookie=cookie)
        assert check.code == 200
        assert check.headers["X-Auth-Request-User"] == "bob@testbed.example"
        assert self.req("GET", "/auth/check", cookie=cookie).code == 404


class TestPaddedCheck(AuthCase):
    """check_padding_bytes: a large auth answer, as from a login service that sends
    many groups and a big token (the reverse proxy's tests need one)."""

    cfg = {"check_padding_bytes": 32 * 1024}

    def test_allowed_check_carries_the_padding_refusal_does_not(self):
        cookie = self.session_cookie(self.login("bob@testbed.example")).value
        check = self.req("GET", "/auth/check", cookie=cookie)
        assert check.code == 200
        assert check.headers["X-Authorized-User"] == "bob@testbed.example"
        block = sum(len(k) + len(v) + 4 for k, v in check.headers.get_all())
        assert block >= 32 * 1024, block
        assert len(check.headers.get_list("X-Testbed-Sim-Group")) > 100
        refused = self.req("GET", "/auth/check")
        assert refused.code == 401 and "X-Testbed-Sim-Token" not in refused.headers


class TestUnpaddedByDefault(AuthCase):
    def test_check_has_no_padding(self):
        cookie = self.session_cookie(self.login("bob@testbed.example")).value
        check = self.req("GET", "/auth/check", cookie=cookie)
        assert check.code == 200
        assert not [k for k, _ in check.headers.get_all() if k.startswith("X-Testbed-Sim-")]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"users": ["a"], "check_padding_bytes": -1},
            "'check_padding_bytes' must be an integer from 0 to 1048576",
        ),
        ({"users": []}, "'users' must be a non-empty list"),
        ({"users": [{"password": "x"}]}, "users[0] needs a non-empty string 'name'"),
        ({"users": ["a", "a"]}, "duplicate names"),
        ({"users": ["a"], "port": 70000}, "'port' must be an integer from 1 to 65535"),
        ({"users": ["a"], "check_path": "auth/check"}, "'check_path' must be an absolute path"),
        ({"users": ["a"], "user_header": "X User"}, "'user_header' must be an HTTP header name"),
        ({"users": ["a"], "colour": 1}, "unknown config keys ['colour']"),
        ({"users": ["a"], "cookie_secure": "yes"}, "'cookie_secure' must be true or false"),
    ],
)
def test_bad_settings_are_refused(cfg, message):
    with pytest.raises(ValueError) as err:
        auth.Settings.from_mapping(cfg, secret=SECRET)
    assert message in str(err.value)


def test_short_or_missing_secret_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 32 bytes"):
        auth.Settings.from_mapping({"users": ["a"]}, secret=b"short")
    with pytest.raises(ValueError, match="'cookie_secret_file' is required"):
        auth.Settings.from_mapping({"users": ["a"]})
    with pytest.raises(ValueError, match="cannot read cookie_secret_file"):
        auth.Settings.from_mapping({"users": ["a"], "cookie_secret_file": str(tmp_path / "no")})


def test_cli_check_config(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text(auth.generate_secret())
    cfg = tmp_path / "auth.json"
    cfg.write_text(f'{{"users": ["a", "b"], "cookie_secret_file": "{secret}", "port": 9000}}')
    assert auth.main(["--config", str(cfg), "--check-config"]) == 0
    assert "ok (2 users)" in capsys.readouterr().out
    cfg.write_text('{"users": "alice"}')
    assert auth.main(["--config", str(cfg), "--check-config"]) == 2
    assert "'users' must be a non-empty list" in capsys.readouterr().err
