"""Bad input to the reverse_proxy role fails in assert.yml with a message naming the
variable, before anything changes. (README table, defaults and argument specs are kept
in sync by testbed_devtools.role_docs, tests/unit/devtools/test_role_docs.py.)

One ansible-playbook run on localhost (connection local) includes the role's
``assert`` tasks once per case inside block/rescue and records the failure
message; argument-spec cases go through ``validate_argument_spec`` with the
role's own spec. The assert tasks only read (stat/slurp of the secret file, the
control node's certificate files), so nothing on this machine changes. Needs
Ansible (the project's .venv), no Docker.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "reverse_proxy"
SECRET = "0123456789abcdef" * 4


def _pem_pair(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key, written with cryptography."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / f"{name}.crt", tmp / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


def _cases(tmp: Path) -> dict[str, tuple[dict, str | None]]:
    crt_a, key_a = _pem_pair(tmp, "a")
    _, key_b = _pem_pair(tmp, "b")
    short = tmp / "short-secret"
    short.write_text("abc\n")
    good = tmp / "good-secret"
    good.write_text(SECRET + "\n")
    return {
        "defaults": ({}, None),
        "secret-from-file": (
            {"reverse_proxy_hub_secret": "", "reverse_proxy_hub_secret_file": str(good)},
            None,
        ),
        "operator-pair": (
            {
                "reverse_proxy_tls_certificate_src": str(crt_a),
                "reverse_proxy_tls_key_src": str(key_a),
            },
            None,
        ),
        "oauth2-proxy": (
            {
                "reverse_proxy_auth_url": "http://127.0.0.1:4180/oauth2/auth",
                "reverse_proxy_auth_user_header": "X-Auth-Request-User",
                "reverse_proxy_login_url": "/oauth2/start",
                "reverse_proxy_login_redirect_param": "rd",
                "reverse_proxy_auth_cache_cookie": "_oauth2_proxy",
            },
            None,
        ),
        "hub-path-without-slash": (
            {"reverse_proxy_hub_path": "/jupyter"},
            "reverse_proxy_hub_path",
        ),
        "upstream-with-path": (
            {"reverse_proxy_hub_upstream": "http://127.0.0.1:8000/hub"},
            'reverse_proxy_hub_upstream "http://127.0.0.1:8000/hub"',
        ),
        "web-ui-not-a-url": (
            {"reverse_proxy_web_ui_upstream": "127.0.0.1:9000"},
            "reverse_proxy_web_ui_upstream",
        ),
        "auth-url-without-path": (
            {"reverse_proxy_auth_url": "http://127.0.0.1:9000"},
            "reverse_proxy_auth_url",
        ),
        "login-url-with-quote": (
            {"reverse_proxy_login_url": '/auth/login"x'},
            "reverse_proxy_login_url",
        ),
        "header-with-underscore": (
            {"reverse_proxy_hub_user_header": "X_Authorized_User"},
            'header name "X_Authorized_User"',
        ),
        "same-ports": (
            {"reverse_proxy_http_port": 443},
            "ports must be 1-65535 and distinct",
        ),
        "bad-body-size": (
            {"reverse_proxy_client_max_body_size": "lots"},
            "reverse_proxy_client_max_body_size",
        ),
        "cache-cookie-with-dash": (
            {"reverse_proxy_auth_cache_cookie": "my-session"},
            'reverse_proxy_auth_cache_cookie "my-session"',
        ),
        "certificate-without-key": (
            {"reverse_proxy_tls_certificate_src": str(crt_a)},
            "give the TLS certificate and key together",
        ),
        "audit-socket": ({"reverse_proxy_audit_socket": "/run/testbed-audit/nginx.sock"}, None),
        # nginx would split the syslog parameters at the comma
        "audit-socket-with-comma": (
            {"reverse_proxy_audit_socket": "/run/a,b/nginx.sock"},
            'reverse_proxy_audit_socket "/run/a,b/nginx.sock" must be an absolute path',
        ),
        "audit-socket-relative": (
            {"reverse_proxy_audit_socket": "nginx.sock"},
            'reverse_proxy_audit_socket "nginx.sock" must be an absolute path',
        ),
        "file-and-text": (
            {
                "reverse_proxy_tls_certificate_src": str(crt_a),
                "reverse_proxy_tls_key_src": str(key_a),
                "reverse_proxy_tls_certificate": crt_a.read_text(),
                "reverse_proxy_tls_key": key_a.read_text(),
            },
            "not both ways",
        ),
        "missing-files": (
            {
                "reverse_proxy_tls_certificate_src": str(tmp / "nope.crt"),
                "reverse_proxy_tls_key_src": str(tmp / "nope.key"),
            },
            "must be readable files on the control node",
        ),
        "key-of-another-certificate": (
            {
                "reverse_proxy_tls_certificate_src": str(crt_a),
                "reverse_proxy_tls_key_src": str(key_b),
            },
            "is not the key of the certificate",
        ),
        "certificate-not-pem": (
            {
                "reverse_proxy_tls_certificate": "not a certificate",
                "reverse_proxy_tls_key": key_a.read_text(),
            },
            "(reverse_proxy_tls_certificate) is not a PEM certificate",
        ),
        "secret-file-missing": (
            {"reverse_proxy_hub_secret": "", "reverse_proxy_hub_secret_file": str(tmp / "none")},
            "Run the jupyterhub role first",
        ),
        "secret-too-short": (
            {"reverse_proxy_hub_secret": "", "reverse_proxy_hub_secret_file": str(short)},
            "at least 32 characters",
        ),
        "bad-selfsigned-name": (
            {"reverse_proxy_tls_selfsigned_names": ["basestation.example"]},
            "reverse_proxy_tls_selfsigned_names",
        ),
        "header-value-with-quote": (
            {"reverse_proxy_security_headers": {"X-Test": 'a"b'}},
            'reverse_proxy_security_headers["X-Test"]',
        ),
        "header-value-with-backslash": (
            {"reverse_proxy_security_headers": {"X-Test": "a\\b"}},
            'reverse_proxy_security_headers["X-Test"]',
        ),
        "auth-url-with-single-quote": (
            {"reverse_proxy_auth_url": "http://127.0.0.1:9000/auth/check'x"},
            "reverse_proxy_auth_url",
        ),
        "login-url-with-fragment": (
            {"reverse_proxy_login_url": "https://testbed.example/auth/login#x"},
            "reverse_proxy_login_url",
        ),
        "absolute-login-url": (
            {"reverse_proxy_login_url": "https://testbed.example:8443/auth/login"},
            None,
        ),
        "ipv6-listen-and-upstream": (
            {
                "reverse_proxy_listen_addresses": ["0.0.0.0", "[::]"],
                "reverse_proxy_hub_upstream": "http://[::1]:8000",
            },
            None,
        ),
        "listen-on-a-name": (
            {"reverse_proxy_listen_addresses": ["localhost"]},
            "reverse_proxy_listen_addresses",
        ),
        "cache-too-long": (
            {"reverse_proxy_auth_cache_seconds": 86400},
            "reverse_proxy_auth_cache_seconds 0-3600",
        ),
        "auth-buffer-in-bytes": ({"reverse_proxy_auth_header_buffer_size": 131072}, None),
        "auth-buffer-not-a-size": (
            {"reverse_proxy_auth_header_buffer_size": "64 kB"},
            "reverse_proxy_auth_header_buffer_size must be an nginx size from 4k to 1m",
        ),
        "auth-buffer-too-small": (
            {"reverse_proxy_auth_header_buffer_size": "1k"},
            "got 1k",
        ),
        "auth-buffer-too-large": (
            {"reverse_proxy_auth_header_buffer_size": "2m"},
            "reverse_proxy_auth_header_buffer_size",
        ),
        "auth-buffer-in-gigabytes": (
            {"reverse_proxy_auth_header_buffer_size": "1g"},
            "reverse_proxy_auth_header_buffer_size",
        ),
    }


# The failure message; a failed loop keeps its items' messages in results.
FAILURE = (
    "((ansible_failed_result.results | default([]) | selectattr('failed', 'defined')"
    " | selectattr('failed') | map(attribute='msg') | join(' | '))"
    " or ansible_failed_result.msg | default('?'))"
)

SPEC_CASES = {
    "port-not-an-int": ({"reverse_proxy_http_port": "eighty"}, "reverse_proxy_http_port"),
    "method-not-a-choice": ({"reverse_proxy_auth_method": "PUT"}, "reverse_proxy_auth_method"),
    "protocol-not-a-choice": (
        {"reverse_proxy_tls_protocols": ["TLSv1.1"]},
        "reverse_proxy_tls_protocols",
    ),
    "api-tokens-not-a-bool": (
        {"reverse_proxy_api_tokens_enabled": "sometimes"},
        "reverse_proxy_api_tokens_enabled",
    ),
}


def _record(key: str, expr: str) -> str:
    """Jinja that adds ``key: <expr>`` to the results fact."""
    return "{{ results | combine({'" + key + "': " + expr + "}) }}"


def _playbook(cases: dict, out: Path) -> list:
    tasks: list = [{"name": "Start", "ansible.builtin.set_fact": {"results": {}}}]
    for name, (extra, _) in cases.items():
        case_vars = {"reverse_proxy_hub_secret": SECRET, **extra}
        tasks.append(
            {
                "name": f"Case {name}",
                "block": [
                    {
                        "name": f"Assert {name}",
                        "ansible.builtin.include_role": {
                            "name": "reverse_proxy",
                            "tasks_from": "assert",
                        },
                        "vars": case_vars,
                    },
                    {
                        "name": f"Passed {name}",
                        "ansible.builtin.set_fact": {"results": _record(name, "None")},
                    },
                ],
                "rescue": [
                    {
                        "name": f"Failed {name}",
                        "ansible.builtin.set_fact": {"results": _record(name, FAILURE)},
                    }
                ],
            }
        )
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    for name, (extra, _) in SPEC_CASES.items():
        tasks.append(
            {
                "name": f"Spec case {name}",
                "block": [
                    {
                        "name": f"Validate {name}",
                        "ansible.builtin.validate_argument_spec": {
                            "argument_spec": options,
                            "provided_arguments": extra,
                        },
                    },
                    {
                        "name": f"Passed {name}",
                        "ansible.builtin.set_fact": {"results": _record(f"spec:{name}", "None")},
                    },
                ],
                "rescue": [
                    {
                        "name": f"Failed {name}",
                        "ansible.builtin.set_fact": {"results": _record(f"spec:{name}", FAILURE)},
                    }
                ],
            }
        )
    tasks.append(
        {
            "name": "Write results",
            "ansible.builtin.copy": {
                "content": "{{ results | to_json }}",
                "dest": str(out),
                "mode": "0600",
            },
        }
    )
    return [{"name": "Role inputs", "hosts": "localhost", "gather_facts": True, "tasks": tasks}]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists():
        found = shutil.which("ansible-playbook")
        if not found:
            pytest.skip("ansible-playbook is not installed (make venv)")
        playbook_bin = Path(found)
    tmp = tmp_path_factory.mktemp("role-inputs")
    cases = _cases(tmp)
    out = tmp / "results.json"
    pb = tmp / "playbook.yml"
    pb.write_text(yaml.safe_dump(_playbook(cases, out), sort_keys=False))
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    proc = subprocess.run(
        [
            str(playbook_bin),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(pb),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=600,
    )
    if not out.exists():
        pytest.fail(f"the playbook did not finish:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return cases, json.loads(out.read_text())


def _expectations():
    names = [
        "defaults",
        "secret-from-file",
        "operator-pair",
        "oauth2-proxy",
        "hub-path-without-slash",
        "upstream-with-path",
        "web-ui-not-a-url",
        "auth-url-without-path",
        "login-url-with-quote",
        "header-with-underscore",
        "same-ports",
        "bad-body-size",
        "cache-cookie-with-dash",
        "certificate-without-key",
        "file-and-text",
        "missing-files",
        "key-of-another-certificate",
        "certificate-not-pem",
        "secret-file-missing",
        "secret-too-short",
        "bad-selfsigned-name",
        "header-value-with-quote",
        "header-value-with-backslash",
        "auth-url-with-single-quote",
        "login-url-with-fragment",
        "absolute-login-url",
        "ipv6-listen-and-upstream",
        "listen-on-a-name",
        "cache-too-long",
        "auth-buffer-in-bytes",
        "auth-buffer-not-a-size",
        "auth-buffer-too-small",
        "auth-buffer-too-large",
        "auth-buffer-in-gigabytes",
        "audit-socket",
        "audit-socket-with-comma",
        "audit-socket-relative",
    ]
    return names


@pytest.mark.parametrize("name", _expectations())
def test_assert_case(outcome, name):
    cases, results = outcome
    assert name in cases, f"case {name} is not defined"
    expected = cases[name][1]
    got = results[name]
    if expected is None:
        assert got is None, f"{name}: valid input was refused: {got}"
    else:
        assert got is not None, f"{name}: bad input was accepted"
        assert expected in got, f"{name}: message does not name the problem: {got}"
        assert got.startswith("role reverse_proxy:"), got


@pytest.mark.parametrize("name", sorted(SPEC_CASES))
def test_argument_spec_case(outcome, name):
    _, results = outcome
    got = results[f"spec:{name}"]
    assert got is not None, f"{name}: the argument spec accepted bad input"
    assert SPEC_CASES[name][1] in got, got
