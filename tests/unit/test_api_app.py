"""The API both backends serve: the Python WSGI app with fake FastCGI environs and its RFC 2253
parser. The PHP front controller giving the same bytes runs on a lab host, where php is:
tests/integration/test_site_in_lab.py."""

import importlib.util
import json
import shutil
import subprocess

import pytest

from mtls_deploy.templating import TEMPLATES_DIR

PHP_FRONT_CONTROLLER = TEMPLATES_DIR / "php" / "index.php"


def load_app():
    spec = importlib.util.spec_from_file_location(
        "api_app", TEMPLATES_DIR / "backend_python" / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_app()

BOB = {
    "VERIFIED": "SUCCESS",
    "DN": "CN=bob,UID=42+OU=a,O=Example\\, Inc.,C=US",
    "ISSUER_DN": "CN=Test Client CA,O=mtls-deploy",
    "SERIAL": "1004",
    "FINGERPRINT": "2d00bb8870477a62d0791ef3c31fece7fdea10a9",
    "NOT_AFTER": "Dec 26 16:33:24 2026 GMT",
}


def environ(path="/whoami", method="GET", **params) -> dict:
    """What uWSGI hands the app for a request nginx passed over FastCGI."""
    return {
        "REQUEST_METHOD": method,
        "DOCUMENT_URI": path,
        "REQUEST_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": None,
        **params,
    }


def call(env: dict) -> tuple[int, dict, bytes]:
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app.application(env, start_response))
    return int(seen["status"].split()[0]), seen["headers"], body


# --- routes ------------------------------------------------------------------------------------


def test_health():
    status, headers, body = call(environ("/health", VERIFIED="NONE"))
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(body))


def test_whoami_verified_client():
    status, headers, body = call(environ(**BOB))
    assert status == 200
    assert json.loads(body) == {
        "verified": "SUCCESS",
        "subject": {"CN": "bob", "UID": "42", "OU": "a", "O": "Example, Inc.", "C": "US"},
        "issuer": {"CN": "Test Client CA", "O": "mtls-deploy"},
        "serial": "1004",
        "fingerprint": "2d00bb8870477a62d0791ef3c31fece7fdea10a9",
        "not_after": "Dec 26 16:33:24 2026 GMT",
    }
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "params",
    [
        {"VERIFIED": "NONE", "DN": ""},
        {},
        {"VERIFIED": "FAILED:certificate revoked", "DN": "CN=carol"},
        {"VERIFIED": "success", "DN": "CN=bob"},
    ],
    ids=["no-certificate", "no-params", "failed", "lowercase"],
)
def test_whoami_without_verified_certificate_is_401(params):
    status, _, body = call(environ(**params))
    assert (status, json.loads(body)) == (401, {"error": "client certificate required"})


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_VERIFIED": "SUCCESS"},
        {"HTTP_X_SSL_CLIENT_VERIFY": "SUCCESS", "HTTP_X_SSL_CLIENT_S_DN": "CN=admin"},
        {"HTTP_VERIFIED": "SUCCESS", "HTTP_DN": "CN=admin"},
        {"HTTP_SSL_CLIENT_VERIFY": "SUCCESS", "HTTP_SERIAL": "01"},
    ],
)
def test_spoofed_headers_stay_anonymous(headers):
    status, _, body = call(environ(VERIFIED="NONE", DN="", **headers))
    assert (status, json.loads(body)) == (401, {"error": "client certificate required"})


def test_headers_never_override_the_certificate():
    _, _, body = call(environ(**BOB, HTTP_DN="CN=admin", HTTP_SERIAL="01"))
    identity = json.loads(body)
    assert identity["subject"]["CN"] == "bob"
    assert identity["serial"] == "1004"


def test_unknown_path_is_404_json():
    status, headers, body = call(environ("/admin", **BOB))
    assert (status, json.loads(body)) == (404, {"error": "not found"})
    assert headers["Content-Type"] == "application/json"


def test_other_methods_are_405_with_allow():
    status, headers, body = call(environ("/whoami", method="DELETE", **BOB))
    assert (status, json.loads(body)) == (405, {"error": "method not allowed"})
    assert headers["Allow"] == "GET, HEAD"


def test_head_has_headers_but_no_body():
    status, headers, body = call(environ("/health", method="HEAD"))
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


def test_path_from_path_info_when_nginx_gave_no_document_uri():
    env = environ("/ignored")
    del env["DOCUMENT_URI"]
    env["PATH_INFO"] = "/health"
    assert call(env)[0] == 200


def test_environ_strings_are_decoded_as_wsgi_says():
    # PEP 3333: uWSGI hands bytes over as latin-1 text; a raw UTF-8 DN must come out right
    raw_dn = "CN=José,O=Zürich".encode().decode("latin-1")
    _, _, body = call(environ(VERIFIED="SUCCESS", DN=raw_dn))
    assert json.loads(body)["subject"] == {"CN": "José", "O": "Zürich"}


# --- RFC 2253 DNs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dn", "fields"),
    [
        ("CN=bob", {"CN": "bob"}),
        ("", {}),
        ("CN=bob,O=Example\\, Inc.,C=US", {"CN": "bob", "O": "Example, Inc.", "C": "US"}),
        ("CN=bob+UID=42,O=x", {"CN": "bob", "UID": "42", "O": "x"}),
        ("CN=a\\+b,O=x", {"CN": "a+b", "O": "x"}),
        ("CN=back\\\\slash", {"CN": "back\\slash"}),
        ('CN=\\"quoted\\" \\<x\\>\\;', {"CN": '"quoted" <x>;'}),
        ("CN=\\#hash,O=\\ padded\\ ", {"CN": "#hash", "O": " padded "}),
        ("CN=Jos\\C3\\A9,L=Z\\C3\\BCrich", {"CN": "José", "L": "Zürich"}),
        ("CN=\\e2\\82\\ac", {"CN": "€"}),
        ("CN=a=b", {"CN": "a=b"}),
        ("OU=one,OU=two,OU=three,O=x", {"OU": ["one", "two", "three"], "O": "x"}),
        ("1.2.3.4=#04024869,CN=x", {"1.2.3.4": "#04024869", "CN": "x"}),
        ("emailAddress=bob@example.com,CN=bob", {"emailAddress": "bob@example.com", "CN": "bob"}),
        ("CN=trailing\\", {"CN": "trailing\\"}),
        ("CN=bob, O=spaced", {"CN": "bob", "O": "spaced"}),
        ("garbage,CN=bob", {"CN": "bob"}),
    ],
)
def test_parse_rfc2253_dn(dn, fields):
    assert app.parse_dn(dn) == fields


def test_escaped_separators_do_not_split():
    assert app.split_unescaped("CN=a\\,b,O=c", ",") == ["CN=a\\,b", "O=c"]
    assert app.split_unescaped("CN=a\\+b+UID=1", "+") == ["CN=a\\+b", "UID=1"]


@pytest.mark.parametrize(
    "value",
    ["Example, Inc.", "a+b=c", ' "quoted" ', "#leading", "back\\slash", "semi;colon<>", "Zürich €"],
)
def test_round_trip_through_cryptography_rfc4514(value):
    """cryptography writes RFC 4514 names as nginx's OpenSSL does: we read back what it wrote."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, value)]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "bob"),
                    x509.NameAttribute(NameOID.USER_ID, "42"),
                ]
            ),
        ]
    )
    assert app.parse_dn(name.rfc4514_string()) == {"CN": "bob", "UID": "42", "O": value, "C": "US"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed here")
def test_reads_what_openssl_writes_for_nginx(tmp_path):
    """nginx's $ssl_client_s_dn is OpenSSL's RFC 2253 form: bytes above 0x7f as \\XX escapes."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zürich, AG+Co")]
            ),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "José"),
                    x509.NameAttribute(NameOID.USER_ID, "7"),
                ]
            ),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "client.crt"
    pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    printed = (
        subprocess.run(
            ["openssl", "x509", "-in", str(pem), "-noout", "-subject", "-nameopt", "RFC2253"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .removeprefix("subject=")
    )
    assert "\\C3" in printed  # the escapes this test is about
    assert app.parse_dn(printed) == {"CN": "José", "UID": "7", "O": "Zürich, AG+Co", "C": "CH"}
