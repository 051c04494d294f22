"""The nginx site template: every directive the mTLS site needs, for each nginx/OpenSSL version
and client_verify mode. ``nginx -t`` on the result runs on a lab host, where nginx is:
tests/integration/test_site_in_lab.py."""

import json
import re

import pytest

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.role_loader import load
from mtls_deploy.templating import TEMPLATES_DIR, render

nginx = load("nginx").module


def versions(nginx=None, openssl=None) -> HostFacts:
    """Facts of a host with these nginx and OpenSSL versions installed (tuples)."""
    packages = {"nginx": nginx, "libssl3": openssl}
    return HostFacts(packages={k: ".".join(map(str, x)) + "-1" for k, x in packages.items() if x})


OLD = versions(nginx=(1, 22, 1), openssl=(3, 0, 19))  # Debian 12
NEW = versions(nginx=(1, 27, 4), openssl=(3, 5, 1))
UNKNOWN = HostFacts()

SIX_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def host_vars(**overrides) -> dict:
    v = {
        "inventory_hostname": "api1",
        "server_name": "api1.lab.test",
        "server_aliases": ["api.lab.test"],
        "https_listen": "127.0.0.1",
        "https_port": 8441,
        "tls_dir": "/etc/nginx/mtls",
        "backend": "php",
        "client_verify": "on",
    }
    return as_the_engine_gives({**v, **overrides})


def as_the_engine_gives(v: dict, role: str = "nginx") -> dict:
    """``v`` as the engine hands it to ``role``: over every role's defaults (applied once, by
    the inventory), plus what the roles it depends on export to it."""
    from mtls_deploy import role_loader
    from mtls_deploy.inventory import role_defaults

    merged = {k: x for layer in role_defaults() for k, x in layer.values.items()} | v
    roles = role_loader.host_roles({**merged, "roles": [role]})
    return role_loader.with_exports(roles, merged, HostFacts())[role]


def site(facts=OLD, **overrides) -> str:
    return nginx.render_site(host_vars(**overrides), facts).decode()


def directives(text: str) -> list[str]:
    """Each directive on one line, comments dropped, whitespace collapsed."""
    lines = (re.sub(r"\s+", " ", line.split("#", 1)[0]).strip() for line in text.splitlines())
    return [line for line in lines if line]


# --- what every site has ------------------------------------------------------------------------


@pytest.mark.parametrize("verify", ["on", "optional"])
@pytest.mark.parametrize("facts", [OLD, NEW, UNKNOWN], ids=["nginx1.22", "nginx1.27", "unknown"])
@pytest.mark.parametrize(
    "directive",
    [
        "server_name api1.lab.test api.lab.test;",
        "ssl_certificate /etc/nginx/mtls/server.crt;",
        "ssl_certificate_key /etc/nginx/mtls/server.key;",
        "ssl_client_certificate /etc/nginx/mtls/client-ca.crt;",
        "ssl_verify_depth 2;",
        "ssl_crl /etc/nginx/mtls/crl.pem;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        f"ssl_ciphers {SIX_SUITES};",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_cache shared:MozSSL:10m;",
        "ssl_session_timeout 1d;",
        'add_header Strict-Transport-Security "max-age=63072000" always;',
        "server_tokens off;",
        "fastcgi_pass unix:/run/php/api-php.sock;",
        "include fastcgi_params;",
        "fastcgi_param SCRIPT_FILENAME /srv/api-php/index.php;",
        "fastcgi_param VERIFIED $ssl_client_verify;",
        "fastcgi_param DN $ssl_client_s_dn;",
        "fastcgi_param ISSUER_DN $ssl_client_i_dn;",
        "fastcgi_param SERIAL $ssl_client_serial;",
        "fastcgi_param FINGERPRINT $ssl_client_fingerprint;",
        "fastcgi_param NOT_AFTER $ssl_client_v_end;",
        "error_page 495 = @mtls_certificate_rejected;",
        "error_page 496 = @mtls_certificate_missing;",
        "error_page 497 = @mtls_plain_http;",
        "access_log /var/log/nginx/api.access.log mtls_api;",
        "error_log /var/log/nginx/api.error.log;",
    ],
)
def test_site_has_directive(directive, facts, verify):
    assert directive in directives(site(facts, client_verify=verify))


@pytest.mark.parametrize("verify", ["on", "optional"])
def test_client_verify_mode(verify):
    assert f"ssl_verify_client {verify};" in directives(site(client_verify=verify))


def test_yaml_boolean_on_means_on():
    """Normalised in one place, the schema: the role reads "on"."""
    from mtls_deploy import schema

    spec = schema.role_schema("nginx")["client_verify"]
    assert schema.check_value(True, spec) == "on"
    assert "ssl_verify_client on;" in directives(site(client_verify=schema.check_value(True, spec)))


@pytest.mark.parametrize("bad", ["off", "optional_no_ca", False])
def test_other_verify_modes_are_refused(bad):
    from mtls_deploy import schema

    with pytest.raises(ValueError, match="must be one of on, optional"):
        schema.check_value(bad, schema.role_schema("nginx")["client_verify"])


def test_no_ocsp_stapling_and_no_plain_http_listener():
    text = site()
    assert "ssl_stapling" not in text
    assert "listen 80" not in text and "0.0.0.0" not in text
    assert [d for d in directives(text) if d.startswith("listen ")] == [
        "listen 127.0.0.1:8441 ssl http2;"
    ]


def test_only_forward_secret_aead_suites():
    ciphers = next(d for d in directives(site()) if d.startswith("ssl_ciphers "))
    suites = ciphers.removeprefix("ssl_ciphers ").rstrip(";").split(":")
    assert len(suites) == 6
    assert all(s.startswith("ECDHE-") and ("GCM" in s or "CHACHA20" in s) for s in suites)


# --- what depends on the versions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "listen", "http2_on"),
    [
        ((1, 22, 1), "listen 127.0.0.1:8441 ssl http2;", False),
        ((1, 25, 0), "listen 127.0.0.1:8441 ssl http2;", False),
        ((1, 25, 1), "listen 127.0.0.1:8441 ssl;", True),
        ((1, 27, 4), "listen 127.0.0.1:8441 ssl;", True),
        (None, "listen 127.0.0.1:8441 ssl http2;", False),
    ],
)
def test_http2_syntax_follows_nginx_version(version, listen, http2_on):
    lines = directives(site(versions(nginx=version)))
    assert listen in lines
    assert ("http2 on;" in lines) is http2_on


@pytest.mark.parametrize(
    ("version", "tickets_off"),
    [
        ((1, 22, 1), True),
        ((1, 23, 1), True),
        ((1, 23, 2), False),
        ((1, 27, 4), False),
        (None, True),
    ],
)
def test_session_tickets_off_before_1_23_2(version, tickets_off):
    lines = directives(site(versions(nginx=version)))
    assert ("ssl_session_tickets off;" in lines) is tickets_off


@pytest.mark.parametrize(
    ("version", "curves"),
    [
        ((3, 0, 19), "X25519:prime256v1:secp384r1"),
        ((3, 4, 1), "X25519:prime256v1:secp384r1"),
        ((3, 5, 0), "X25519MLKEM768:X25519:prime256v1:secp384r1"),
        (None, "X25519:prime256v1:secp384r1"),
    ],
)
def test_curves_follow_openssl_version(version, curves):
    assert f"ssl_ecdh_curve {curves};" in directives(site(versions(openssl=version)))


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("*", "*:443"), ("192.0.2.10", "192.0.2.10:443"), ("::", "[::]:443"), ("::1", "[::1]:443")],
)
def test_listen_address_forms(listen, expected):
    lines = directives(site(https_listen=listen, https_port=443))
    assert f"listen {expected} ssl http2;" in lines


def test_aliases_are_optional_and_not_repeated():
    lines = directives(site(server_aliases=["api1.lab.test", "b.lab.test"]))
    assert "server_name api1.lab.test b.lab.test;" in lines
    assert "server_name api1.lab.test;" in directives(site(server_aliases=[]))


def test_python_backend_socket_and_front_controller():
    lines = directives(site(backend="python"))
    assert "fastcgi_param SCRIPT_FILENAME /srv/api-python/app.py;" in lines


def test_python_backend_requests_go_once_more_when_a_reload_closed_the_connection():
    """uWSGI's graceful reload can close a connection unanswered: the socket is listed twice,
    so nginx may send the request once more (never a POST: nginx's rule for non-idempotent)."""
    text = site(backend="python")
    upstream = re.search(r"upstream mtls_api_fastcgi \{([^}]*)\}", text)
    assert upstream, "no upstream for the python backend"
    assert directives(upstream.group(1)) == ["server unix:/run/api-python.sock max_fails=0;"] * 2
    lines = directives(text)
    assert "fastcgi_pass mtls_api_fastcgi;" in lines
    assert {"fastcgi_next_upstream error;", "fastcgi_next_upstream_tries 2;"} <= set(lines)
    assert not any("non_idempotent" in line for line in lines)


def test_php_backend_passes_straight_to_its_socket():
    """PHP-FPM finishes every request it accepted on a reload: one socket, no second try."""
    text = site(backend="php")
    assert "upstream " not in text and "fastcgi_next_upstream" not in text
    assert any(line.startswith("fastcgi_pass unix:") for line in directives(text))


# --- error pages: JSON that says why --------------------------------------------------------------


def error_bodies(text: str) -> dict[str, tuple[str, str]]:
    """{named location: (status, body)} for each ``location @x { ... return CODE '...'; }``."""
    found = re.findall(r"location (@\w+) \{[^}]*?return (\d{3}) '([^']*)';", text, re.S)
    return {name: (status, body) for name, status, body in found}


def test_certificate_errors_answer_json_with_status_400():
    bodies = error_bodies(site())
    for location in ("@mtls_certificate_rejected", "@mtls_certificate_missing", "@mtls_plain_http"):
        status, body = bodies[location]
        assert status == "400"
        # nginx fills the variables in with OpenSSL's reason and our hint: plain text
        filled = re.sub(r"\$mtls_api_\w+", "certificate revoked", body).replace("\\n", "")
        document = json.loads(filled)
        assert document["error"] and document["hint"]


def test_rejected_certificate_body_carries_reason_and_hint():
    status, body = error_bodies(site())["@mtls_certificate_rejected"]
    assert '"reason":"$mtls_api_reason"' in body
    assert '"hint":"$mtls_api_hint"' in body


def hint_for(text: str, verify: str) -> str:
    """What nginx's ``map $ssl_client_verify $mtls_api_hint`` gives for ``verify``: an exact
    key first, else the first regex that matches, else the default."""
    body = re.search(r"map \$ssl_client_verify \$mtls_api_hint \{(.*?)\n\}", text, re.S).group(1)
    entries = re.findall(r'^\s*("[^"]*"|\S+)\s+"([^"]*)";', body, re.M)
    keys = [(key.strip('"'), value) for key, value in entries]
    exact = {k: value for k, value in keys if not k.startswith("~")}
    if verify in exact:
        return exact[verify]
    regexes = [(k[1:], value) for k, value in keys if k.startswith("~")]
    return next((value for k, value in regexes if re.search(k, verify)), exact["default"])


@pytest.mark.parametrize(
    ("verify", "hint"),
    [
        ("FAILED:certificate revoked", "was revoked"),
        ("FAILED:certificate has expired", "certificate has expired"),
        ("FAILED:CRL has expired", "revocation list has expired"),
        ("FAILED:certificate is not yet valid", "not valid yet"),
        ("FAILED:unable to verify the first certificate", "not issued by this API's client CA"),
        ("FAILED:unable to get local issuer certificate", "not issued by this API's client CA"),
        ("FAILED:self-signed certificate", "not issued by this API's client CA"),
        ("FAILED:unsuitable certificate purpose", "client authentication"),
        ("NONE", "send your client certificate"),
        ("FAILED:something new", "the certificate and key the API operator gave you"),
    ],
)
def test_each_failure_gets_a_hint_that_fits(verify, hint):
    assert hint in hint_for(site(), verify)


def test_map_variables_are_named_after_the_api():
    text = site(api_name="shop-api")
    assert "$mtls_shop_api_reason" in text and "log_format mtls_shop_api " in text
    assert "access_log /var/log/nginx/shop-api.access.log mtls_shop_api;" in directives(text)


@pytest.mark.parametrize("name", ["../etc", "a b", "", "x;y"])
def test_api_name_must_be_a_plain_word(name):
    with pytest.raises(BadInput, match="api_name"):
        site(api_name=name)


# --- logs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "$ssl_client_cert",
        "$ssl_client_raw_cert",
        "$ssl_session_id",
        "$http_authorization",
        "$http_cookie",
        "$ssl_early_data",
        "$request_body",
    ],
)
def test_log_format_has_no_key_material(secret):
    log_format = re.search(r"log_format .*?;", site(), re.S).group(0)
    assert secret not in log_format


# --- blocks: extend without forking -------------------------------------------------------------------


def test_blocks_extend_the_site(tmp_path):
    (tmp_path / "nginx").symlink_to(TEMPLATES_DIR / "nginx")
    (tmp_path / "custom.conf.j2").write_text(
        '{% extends "nginx/site.conf.j2" %}\n'
        "{% block server_extra %}    limit_req zone=api;\n{% endblock %}\n"
        "{% block fastcgi_extra %}        fastcgi_param TENANT acme;\n{% endblock %}\n"
    )
    context = nginx.site_context(host_vars(), OLD)
    lines = directives(render("custom.conf.j2", templates_dir=tmp_path, **context).decode())
    assert "limit_req zone=api;" in lines
    assert "fastcgi_param TENANT acme;" in lines
    assert "ssl_verify_client on;" in lines


def test_missing_server_name_is_one_clear_error():
    with pytest.raises(BadInput, match="server_name is not set"):
        site(server_name="")


def test_nginx_site_template_can_be_a_file_of_ones_own(tmp_path):
    own = tmp_path / "api.conf.j2"
    own.write_text(
        '{% extends "nginx/site.conf.j2" %}\n'
        "{% block http_extra %}\n"
        "limit_req_zone $ssl_client_serial zone=per_client:1m rate=10r/s;\n"
        "{% endblock %}\n"
        "{% block server_extra %}\n    limit_req zone=per_client burst=20;\n{% endblock %}\n"
    )
    lines = directives(site(nginx_site_template=str(own)))
    assert "limit_req_zone $ssl_client_serial zone=per_client:1m rate=10r/s;" in lines
    assert "limit_req zone=per_client burst=20;" in lines
    assert "ssl_client_certificate /etc/nginx/mtls/client-ca.crt;" in lines
