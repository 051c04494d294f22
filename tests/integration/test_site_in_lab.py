"""Checks that need nginx or php, run on the lab's toolbox host where they are installed (this
machine, like CI's, may have neither): ``nginx -t`` on the rendered site for each backend and
client_verify mode, and the PHP front controller answering the same bytes as the Python app."""

import datetime
import json
import re

import pytest

from mtls_deploy.facts import HostFacts
from mtls_deploy.role_loader import load
from mtls_deploy.templating import TEMPLATES_DIR
from tests.unit.test_api_app import BOB, app, environ
from tests.unit.test_site_template import host_vars

from .conftest import needs_lab

nginx = load("nginx").module

pytestmark = needs_lab

WORK = "/tmp/mtls-deploy-site-test"  # on the toolbox host
PHP_FRONT_CONTROLLER = TEMPLATES_DIR / "php" / "index.php"


@pytest.fixture(scope="module")
def toolbox_versions(toolbox) -> HostFacts:
    """The toolbox's nginx and OpenSSL versions, as the engine's facts would give them."""

    def version(pattern, text):
        match = re.search(pattern, text)
        return f"{match.group(1)}-1" if match else None

    found = {
        "nginx": version(r"nginx/(\d+\.\d+\.\d+)", toolbox.run(["nginx", "-v"]).stderr),
        "openssl": version(r"OpenSSL (\d+\.\d+\.\d+)", toolbox.run(["openssl", "version"]).stdout),
    }
    return HostFacts(packages={name: v for name, v in found.items() if v})


def throwaway_pki() -> dict[str, bytes]:
    """server.crt/.key, client-ca.crt and crl.pem, as the tls role lays them out."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def certificate(subject, issuer, key, signer, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name("Client CA"))
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "server.crt": certificate("api1.lab.test", "api1.lab.test", server_key, server_key, False)
        .public_bytes(pem),
        "server.key": server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "client-ca.crt": certificate("Client CA", "Client CA", ca_key, ca_key, True).public_bytes(pem),
        "crl.pem": crl.public_bytes(pem),
    }  # fmt: skip


# --- nginx -t on the rendered site ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["php", "python"])
@pytest.mark.parametrize("verify", ["on", "optional"])
def test_nginx_accepts_the_rendered_site(toolbox, toolbox_versions, backend, verify):
    folder = f"{WORK}/{backend}-{verify}"
    v = host_vars(
        tls_dir=folder,
        nginx_log_dir=folder,
        backend=backend,
        client_verify=verify,
        https_port=18443,
    )
    files = {f"{folder}/{name}": content for name, content in throwaway_pki().items()}
    files[f"{folder}/fastcgi_params"] = toolbox.run(
        ["cat", "/etc/nginx/fastcgi_params"]
    ).stdout.encode()
    files[f"{folder}/site.conf"] = nginx.render_site(v, toolbox_versions)
    files[f"{folder}/nginx.conf"] = (
        f"pid {folder}/nginx.pid;\nevents {{}}\nhttp {{\n    include {folder}/site.conf;\n}}\n"
    ).encode()
    test = ["nginx", "-t", "-p", folder, "-c", f"{folder}/nginx.conf", "-e", f"{folder}/error.log"]
    result = toolbox.run(test, files)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr


def test_nginx_refuses_a_broken_site_here_too(toolbox):
    """The check can fail: a site nginx cannot read is refused."""
    folder = f"{WORK}/broken"
    conf = b"events {}\nhttp {\n    server { listen 18443; brokn on; }\n}\n"
    result = toolbox.run(
        ["nginx", "-t", "-c", f"{folder}/nginx.conf"], {f"{folder}/nginx.conf": conf}
    )
    assert result.returncode != 0 and 'unknown directive "brokn"' in result.stderr


# --- the PHP front controller says the same, byte for byte ----------------------------------------

PHP_HARNESS = r"""
define('API_NO_MAIN', true);
require $argv[1];
$out = [];
foreach (json_decode(file_get_contents($argv[2]), true) as $server) {
    [$status, $body, $headers] = handle($server);
    $out[] = [$status, to_json($body), $headers];
}
echo json_encode($out);
"""

PARITY_CASES = [
    environ("/health", VERIFIED="NONE"),
    environ("/whoami", **BOB),
    environ("/whoami", VERIFIED="NONE", DN="", HTTP_VERIFIED="SUCCESS", HTTP_DN="CN=admin"),
    environ("/whoami", VERIFIED="FAILED:certificate revoked", DN="CN=carol"),
    environ("/whoami"),
    environ("/nope", **BOB),
    environ("/whoami", method="POST", **BOB),
    environ("/whoami", VERIFIED="SUCCESS", DN="CN=Jos\\C3\\A9+UID=7,OU=a,OU=b,O=x\\2C y/z"),
    environ("/whoami", VERIFIED="SUCCESS", DN="CN=Jo+UID=7,OU=a,OU=b,O=x y/z,=,k", ISSUER_DN="O=x"),
    environ("/whoami", VERIFIED="SUCCESS", DN='CN=a\\+b\\\\c\\"d,1.2.3=#0401ff', ISSUER_DN=""),
]


def test_php_front_controller_answers_the_same_bytes(toolbox):
    cases = [{k: v for k, v in case.items() if k != "wsgi.input"} for case in PARITY_CASES]
    files = {
        f"{WORK}/index.php": PHP_FRONT_CONTROLLER.read_bytes(),
        f"{WORK}/cases.json": json.dumps(cases).encode(),
    }
    php = ["php", "-d", "display_errors=stderr", "-r", PHP_HARNESS]
    result = toolbox.run([*php, f"{WORK}/index.php", f"{WORK}/cases.json"], files)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    for case, (php_status, php_body, php_headers) in zip(cases, answers, strict=True):
        method, path = case["REQUEST_METHOD"], case["DOCUMENT_URI"]
        status, body, headers = app.route(method, path, app.identity_params(case))
        assert (php_status, php_body) == (status, app.to_json(body).decode()), case
        assert (php_headers or {}) == dict(headers)


def test_php_front_controller_is_valid_php(toolbox):
    path = f"{WORK}/lint/index.php"
    result = toolbox.run(["php", "-l", path], {path: PHP_FRONT_CONTROLLER.read_bytes()})
    assert result.returncode == 0, result.stdout + result.stderr
