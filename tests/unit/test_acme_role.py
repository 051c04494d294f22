"""The acme role (server_cert: acme): its resources, the order's guard, the port-80 server,
certbot's settings, what nginx's site names, and the host tool's ACME error line."""

import importlib.machinery
import importlib.util
import shlex

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.facts import HostFacts
from mtls_deploy.inventory import masked
from mtls_deploy.resources import Absent, Command, File, Packages, Service
from mtls_deploy.role_loader import PACKAGE_ROLES as ROLES_DIR
from mtls_deploy.role_loader import load
from mtls_deploy.shell import render

acme = load("acme").module
nginx = load("nginx").module
tls = load("tls").module
FACTS = HostFacts(
    os_id="debian", os_version="12", packages={"nginx": "1.22.1", "libssl3": "3.0.11"}
)


def as_the_engine_gives(v: dict, role: str = "nginx") -> dict:
    """``v`` over every role's defaults, plus what the roles ``role`` depends on export."""
    from mtls_deploy import role_loader
    from mtls_deploy.inventory import role_defaults

    merged = {k: x for layer in role_defaults() for k, x in layer.values.items()} | v
    roles = role_loader.host_roles({**merged, "roles": [role]})
    return role_loader.with_exports(roles, merged, HostFacts())[role]


def by_path(resources: list) -> dict:
    return {r.path: r for r in resources if isinstance(r, File | Absent)}


def of_type(resources: list, kind) -> list:
    return [r for r in resources if isinstance(r, kind)]


def acme_vars(**overrides) -> dict:
    v = {
        "inventory_hostname": "acme1",
        "server_name": "acme1.lab.test",
        "server_aliases": ["www.acme1.lab.test"],
        "https_listen": "127.0.0.21",
        "https_port": 8501,
        "tls_dir": "/etc/nginx/mtls",
        "backend": "php",
        "server_cert": "acme",
    }
    return as_the_engine_gives({**v, **overrides}, "acme")


def tool():
    """The host tool, loaded from its file (it has no .py suffix)."""
    path = str(ROLES_DIR / "acme" / "mtls-deploy-acme")
    loader = importlib.machinery.SourceFileLoader("mtls_deploy_acme_tool", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# --- which resources ----------------------------------------------------------------------------


def test_with_another_server_cert_the_role_only_takes_its_things_away():
    found = acme.resources(acme_vars(server_cert="private"), FACTS)
    assert [type(r) for r in found] == [Absent, Absent, Service]
    assert by_path(found)["/etc/nginx/conf.d/api-http.conf"].validate == "nginx"
    assert found[2] == Service("certbot.timer", running=False, enabled=False)
    assert acme.exports(acme_vars(server_cert="files"), FACTS) == {}


def test_with_acme_certbot_the_order_and_the_timer():
    found = acme.resources(acme_vars(), FACTS)
    assert of_type(found, Packages) == [Packages(("certbot",))]
    assert Service("certbot.timer") in found
    files = by_path(found)
    assert files["/usr/local/sbin/mtls-deploy-acme"].mode == 0o755
    assert files["/etc/letsencrypt/renewal-hooks/deploy/mtls-deploy-nginx"].mode == 0o755
    assert files["/etc/mtls-deploy/acme/api.ini"].mode == 0o600
    assert isinstance(
        files["/etc/nginx/sites-enabled/default"], Absent
    )  # *:80, before nginx starts


def test_the_port_80_server_comes_before_the_order_and_the_order_is_guarded():
    found = acme.resources(acme_vars(), FACTS)
    paths = [getattr(r, "path", None) for r in found]
    (order,) = of_type(found, Command)
    assert paths.index("/etc/nginx/conf.d/api-http.conf") < found.index(order)
    assert render(order.command) == shlex.join(
        ["/usr/local/sbin/mtls-deploy-acme", "order", "api", "/etc/mtls-deploy/acme/api.ini",
         "127.0.0.21", "80", "acme1.lab.test", "www.acme1.lab.test"]
    )  # fmt: skip
    assert order.unless == (
        ("/usr/local/sbin/mtls-deploy-acme", "check", "api", acme.LETSENCRYPT,
         "acme1.lab.test", "www.acme1.lab.test"),
    )  # fmt: skip


def test_the_lineage_is_named_after_the_api_so_new_names_expand_it():
    old, new = acme_vars(), acme_vars(server_name="new.lab.test", server_aliases=[])
    assert acme.order(old).command[0][2] == acme.order(new).command[0][2] == "api"
    assert acme.order(new).unless[0][4:] == ("new.lab.test",)


@pytest.mark.parametrize(
    "overrides, wanted",
    [
        ({}, "https://acme-v02.api.letsencrypt.org/directory"),
        ({"acme_staging": True}, "https://acme-staging-v02.api.letsencrypt.org/directory"),
        ({"acme_directory": "https://ca.test:9000/acme/dir"}, "https://ca.test:9000/acme/dir"),
        ({"acme_directory": "https://ca.test/dir", "acme_staging": True}, "https://ca.test/dir"),
    ],
    ids=["letsencrypt", "staging", "directory", "directory-wins"],
)
def test_the_directory(overrides, wanted):
    v = acme_vars(**overrides)
    assert acme.directory(v) == wanted
    assert f"server = {wanted}\n" in acme.render_cli_ini(v).decode()


def test_certbot_settings_webroot_account_and_no_prompt():
    ini = acme.render_cli_ini(acme_vars(acme_email="ops@example.test")).decode()
    for line in ["authenticator = webroot", "webroot-path = /var/lib/mtls-deploy/acme-webroot",
                 "email = ops@example.test", "agree-tos = True", "non-interactive = True",
                 "keep-until-expiring = True", "expand = True"]:  # fmt: skip
        assert line in ini.splitlines()
    assert "eab" not in ini
    bare = acme.render_cli_ini(acme_vars()).decode()
    assert "register-unsafely-without-email = True" in bare.splitlines()


def test_eab_goes_into_the_settings_which_become_secret():
    v = acme_vars(acme_eab_kid="kid-1", acme_eab_hmac_key="c2VjcmV0")
    ini = acme.render_cli_ini(v).decode().splitlines()
    assert "eab-kid = kid-1" in ini and "eab-hmac-key = c2VjcmV0" in ini
    assert by_path(acme.resources(v, FACTS))["/etc/mtls-deploy/acme/api.ini"].secret
    assert not by_path(acme.resources(acme_vars(), FACTS))["/etc/mtls-deploy/acme/api.ini"].secret
    assert "c2VjcmV0" not in repr(acme.order(v))  # never on a command line


def test_the_eab_key_is_masked_by_inv_inventory():
    assert masked("acme_eab_hmac_key", "c2VjcmV0") == "********"


@pytest.mark.parametrize("given", [{"acme_eab_kid": "kid-1"}, {"acme_eab_hmac_key": "c2VjcmV0"}])
def test_half_an_eab_is_one_line(given):
    with pytest.raises(BadInput, match=r"acme_eab_kid and acme_eab_hmac_key together"):
        acme.resources(acme_vars(**given), FACTS)


def test_a_private_acme_ca_bundle_is_trusted_by_certbot_and_its_timer(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    files = by_path(acme.resources(acme_vars(acme_ca_bundle=str(bundle)), FACTS))
    assert files["/etc/mtls-deploy/acme/ca-bundle.pem"].content == bundle.read_bytes()
    drop_in = files["/etc/systemd/system/certbot.service.d/mtls-deploy-ca.conf"]
    assert b"Environment=REQUESTS_CA_BUNDLE=/etc/mtls-deploy/acme/ca-bundle.pem" in drop_in.content
    assert drop_in.notify == ("daemon-reload",)
    plain = by_path(acme.resources(acme_vars(), FACTS))
    assert isinstance(plain["/etc/mtls-deploy/acme/ca-bundle.pem"], Absent)


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_an_unusable_ca_bundle_is_one_line(tmp_path, content):
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(UserError, match=r"^acme1: .*acme_ca_bundle"):
        acme.resources(acme_vars(acme_ca_bundle=str(bundle)), FACTS)


# --- the port-80 server and the site ---------------------------------------------------------


def test_the_port_80_server_serves_challenges_and_redirects_the_rest():
    conf = acme.render_http_server(acme_vars()).decode()
    assert "    listen 127.0.0.21:80;" in conf.splitlines()
    assert "    server_name acme1.lab.test www.acme1.lab.test;" in conf.splitlines()
    assert "location ^~ /.well-known/acme-challenge/ {" in conf
    assert "        root /var/lib/mtls-deploy/acme-webroot;" in conf.splitlines()
    assert "return 301 https://acme1.lab.test:8501$request_uri;" in conf
    assert "ssl_" not in conf  # no client certificate on port 80


@pytest.mark.parametrize(
    "listen, port, https_port, expected_listen, suffix",
    [("*", 80, 443, "*:80", ""), ("::1", 8080, 443, "[::1]:8080", "")],
)
def test_the_port_80_server_follows_https_listen(listen, port, https_port, expected_listen, suffix):
    v = acme_vars(https_listen=listen, http_port=port, https_port=https_port)
    conf = acme.render_http_server(v).decode()
    assert f"    listen {expected_listen};" in conf.splitlines()
    assert "return 301 https://acme1.lab.test$request_uri;" in conf


def test_the_site_names_the_lineage_and_keeps_the_client_side():
    site = nginx.render_site(as_the_engine_gives(acme_vars()), FACTS).decode()
    assert "    ssl_certificate /etc/letsencrypt/live/api/fullchain.pem;" in site.splitlines()
    assert "    ssl_certificate_key /etc/letsencrypt/live/api/privkey.pem;" in site.splitlines()
    assert "    ssl_client_certificate /etc/nginx/mtls/client-ca.crt;" in site.splitlines()
    assert "    ssl_crl /etc/nginx/mtls/crl.pem;" in site.splitlines()
    assert "    ssl_verify_client on;" in site.splitlines()


def test_tls_writes_no_server_certificate_and_issues_none_with_acme(monkeypatch):
    class Store:
        def client_ca_pem(self):
            return b"client-ca"

        def crl_pem(self):
            return b"crl"

    monkeypatch.setattr(tls, "_store", lambda v=None: Store())
    paths = set(by_path(tls.resources(acme_vars(), FACTS)))
    assert "/etc/nginx/mtls/server.crt" not in paths and "/etc/nginx/mtls/client-ca.crt" in paths


# --- the host tool: the ACME error in one line ------------------------------------------------

CHALLENGE_FAILED = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for nowhere.lab.test

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:
  Domain: nowhere.lab.test
  Type:   dns
  Detail: DNS problem: NXDOMAIN looking up A for nowhere.lab.test - check that a DNS record exists for this domain

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.

Some challenges have failed.
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details.
"""
RATE_LIMITED = """\
Saving debug log to /var/log/letsencrypt/letsencrypt.log
An unexpected error occurred:
Error creating new order :: too many certificates (5) already issued for this exact set of domains in the last 168h0m0s
"""
RATE_LIMITED_LOG = """\
2026-11-30 06:01:02,003:DEBUG:acme.client:Received response:
{
  "type": "urn:ietf:params:acme:error:rateLimited",
  "detail": "Error creating new order :: too many certificates (5) already issued",
  "status": 429
}
"""


def test_a_failed_challenge_is_its_type_and_detail():
    assert tool().acme_error(CHALLENGE_FAILED) == (
        "urn:ietf:params:acme:error:dns: DNS problem: NXDOMAIN looking up A for "
        "nowhere.lab.test - check that a DNS record exists for this domain"
    )


def test_a_refused_order_is_found_in_the_log():
    assert tool().acme_error(RATE_LIMITED, RATE_LIMITED_LOG) == (
        "urn:ietf:params:acme:error:rateLimited: Error creating new order :: too many "
        "certificates (5) already issued"
    )


def test_an_error_inline_keeps_its_detail():
    line = "urn:ietf:params:acme:error:malformed :: The request message was malformed"
    assert tool().acme_error(line) == (
        "urn:ietf:params:acme:error:malformed: The request message was malformed"
    )


def test_no_acme_error_is_certbots_last_word_not_its_logs():
    text = "Saving debug log to x\nThe requested webroot plugin does not appear to be installed\n"
    log = "2026-11-30 06:01:41,068:ERROR:certbot._internal.log:ValueError: whatever\n"
    said = tool().acme_error(text, log)
    assert said == "The requested webroot plugin does not appear to be installed"


def _lineage(root, names: list[str], server: str) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (root / "live" / "api").mkdir(parents=True)
    (root / "live" / "api" / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "renewal").mkdir()
    (root / "renewal" / "api.conf").write_text(
        f"version = 2.1.0\narchive_dir = {root}/archive/api\n\n[renewalparams]\n"
        f"authenticator = webroot\nserver = {server}\n"
    )


def test_the_guard_passes_only_for_the_same_directory_and_exactly_the_names(tmp_path):
    host = tool()
    host.LETSENCRYPT = str(tmp_path)
    _lineage(tmp_path, ["a.test", "b.test"], "https://ca.test/dir")
    assert host.lineage_matches("api", "https://ca.test/dir", ["b.test", "a.test"])
    assert not host.lineage_matches("api", "https://ca.test/dir", ["a.test"])
    assert not host.lineage_matches("api", "https://ca.test/dir", ["a.test", "b.test", "c.test"])
    assert not host.lineage_matches("api", "https://other.test/dir", ["a.test", "b.test"])
    assert not host.lineage_matches("other", "https://ca.test/dir", ["a.test", "b.test"])
    assert host.lineage_server("api") == "https://ca.test/dir"
    assert host.lineage_server("other") is None


def test_the_role_installs_the_tool_as_it_is_in_the_role():
    files = by_path(acme.resources(acme_vars(), FACTS))
    source = (ROLES_DIR / "acme" / "mtls-deploy-acme").read_bytes()
    assert files["/usr/local/sbin/mtls-deploy-acme"].content == source
    assert source.startswith(b"#!/usr/bin/python3\n")  # Debian's, which certbot brings


@pytest.mark.parametrize(
    "name, value",
    [
        ("acme_directory", "http://acme.example.test/dir"),  # the directory is HTTPS
        ("acme_directory", "https://ca.test/dir\nserver = https://evil.test/"),
        ("acme_email", "ops@example.test\neab-kid = x"),
        ("acme_eab_kid", "kid 1"),
        ("acme_eab_hmac_key", "key\nserver = x"),
    ],
)
def test_the_schema_refuses_what_could_rewrite_certbots_settings(name, value):
    from mtls_deploy import schema

    with pytest.raises(ValueError, match=r"is not "):
        schema.check_value(value, schema.role_schema("acme")[name])


def test_the_schema_takes_real_directories():
    from mtls_deploy import schema

    spec = schema.role_schema("acme")["acme_directory"]
    for url in [acme.LETSENCRYPT, acme.LETSENCRYPT_STAGING, "https://127.0.0.1:14000/dir",
                "https://vault.example.test:8200/v1/pki/acme/directory"]:  # fmt: skip
        assert schema.check_value(url, spec) == url


def test_http_port_and_https_port_the_same_is_one_line():
    with pytest.raises(BadInput, match=r"^acme1: http_port 8501 is https_port too; "):
        acme.resources(acme_vars(http_port=8501), FACTS)
