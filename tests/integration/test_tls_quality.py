"""TLS quality of a provisioned API host, checked from outside with scanners no one on this team
wrote: sslyze against Mozilla's "intermediate" guideline 6.0 (with a client certificate),
sslscan for the CA names the server asks clients for, testssl.sh's full scan (about a minute).

sslyze runs in a venv of its own (.venv-scanners, from requirements-scanners.lock, made by
scripts/setup.sh): it pins an older cryptography than the product. scanners/sslyze_scan.py scans
there and prints a JSON report that the tests below assert on.

The TLS side is nginx's and the same on every backend, so the PHP host is scanned.
"""

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from .conftest import CLIENT, ROOT, SEC_PHP, needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

MOZILLA_INTERMEDIATE_6 = Path(__file__).parent / "fixtures" / "mozilla-intermediate-6.0.json"
SCANNERS_PYTHON = ROOT / ".venv-scanners" / "bin" / "python"
SSLYZE_SCAN = Path(__file__).parent / "scanners" / "sslyze_scan.py"
HOST = SEC_PHP
# testssl.sh findings of severity HIGH or CRITICAL that we accept, and why (docs/security.md).
JUSTIFIED = {
    "cipher_order": "Mozilla 6.0 intermediate sets server_preferred_order false "
    "(ssl_prefer_server_ciphers off): every suite offered is strong, so the client picks, "
    "e.g. ChaCha20 on CPUs without AES instructions",
    "cert_revocation": "the server certificate comes from the private server CA that only "
    "our clients trust (api-ca.crt in their bundle): no public CRL or OCSP responder to name, "
    "and no client that would ask one",
}


@pytest.fixture(scope="module")
def sec(security_lab):
    """sec-php and sec-py provisioned (shared with test_hardening.py), stopped afterwards."""
    return security_lab


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- sslyze -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sslyze_report(request):
    """One sslyze scan (about a second) with alice's certificate, the server CA as trust store,
    run by scanners/sslyze_scan.py in the scanners' own venv: its JSON report."""
    if not os.path.lexists(SCANNERS_PYTHON):
        pytest.skip(f"{SCANNERS_PYTHON.relative_to(ROOT)} is missing: run scripts/setup.sh")
    sec = request.getfixturevalue("sec")
    host, port = HOST.address.rsplit(":", 1)
    run = subprocess.run(
        [
            str(SCANNERS_PYTHON),
            "-I",
            str(SSLYZE_SCAN),
            "--server-name",
            HOST.server_name,
            "--port",
            port,
            "--ip",
            host,
            "--client-cert",
            str(sec.bundle / f"{CLIENT}.crt"),
            "--client-key",
            str(sec.bundle / f"{CLIENT}.key"),
            "--ca-file",
            str(sec.bundle / "api-ca.crt"),
            "--guideline",
            str(MOZILLA_INTERMEDIATE_6),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert report["scan_status"] == "COMPLETED", report["connectivity_error"]
    return report


def test_sslyze_compliant_with_mozilla_intermediate_6(sslyze_report):
    compliance = sslyze_report["mozilla_compliance"]
    assert compliance["issues"] == {}
    assert compliance["ok"] is True


def test_sslyze_hsts_for_two_years(sslyze_report):
    headers = sslyze_report["http_headers"]
    assert headers["error"] is None, headers["error"]
    hsts = headers["strict_transport_security"]
    assert hsts is not None and hsts["max_age"] >= 63072000


@pytest.mark.parametrize(
    "protocol",
    [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ],
)
def test_sslyze_no_old_protocol(sslyze_report, protocol):
    scanned = sslyze_report["cipher_suites"][protocol]
    assert scanned["error"] is None, scanned["error"]
    assert scanned["tls_version_supported"] is False
    assert scanned["accepted"] == []


def test_sslyze_only_forward_secret_aead_suites(sslyze_report):
    tls12 = sslyze_report["cipher_suites"]["tls_1_2_cipher_suites"]
    tls13 = sslyze_report["cipher_suites"]["tls_1_3_cipher_suites"]
    assert tls12["error"] is None and tls13["error"] is None, (tls12["error"], tls13["error"])
    suites12 = set(tls12["accepted"])
    suites13 = set(tls13["accepted"])
    assert suites12 and suites13
    for name in suites12:
        assert name.startswith("TLS_ECDHE_"), f"{name}: no forward secrecy"
        assert "CBC" not in name and ("_GCM_" in name or "CHACHA20" in name), f"{name}: not AEAD"
    # TLS 1.3 suites are all AEAD with (EC)DHE; only the three Mozilla names may appear.
    assert suites13 <= {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }


def test_sslyze_chain_validates_against_the_server_ca_only(sslyze_report):
    info = sslyze_report["certificate_info"]
    assert info["error"] is None, info["error"]
    (deployment,) = info["deployments"]
    by_store = {p["trust_store"]: p for p in deployment["path_validation"]}
    supplied = by_store.pop("Supplied CA file")
    assert supplied["ok"], supplied["error"]
    assert by_store  # sslyze's public trust stores were tried too
    public = [name for name, p in by_store.items() if p["ok"]]
    assert public == []  # a private CA: no public trust store vouches for it


def test_certificate_has_the_right_san_and_verifies_as_a_server(sslyze_report, sec):
    """Checked again with cryptography's verifier, which is strict about RFC 5280: the chain is
    a server chain for sec-php.lab.test under the server CA, and under the client CA it is not."""
    info = sslyze_report["certificate_info"]
    assert info["error"] is None, info["error"]
    (deployment,) = info["deployments"]
    leaf, *intermediates = [
        x509.load_pem_x509_certificate(pem.encode()) for pem in deployment["received_chain_pem"]
    ]
    name = HOST.server_name
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    now = dt.datetime.now(dt.UTC)

    def verifier(ca: Path):
        store = Store([load_cert(ca)])
        return PolicyBuilder().store(store).time(now).build_server_verifier(x509.DNSName(name))

    verifier(sec.bundle / "api-ca.crt").verify(leaf, intermediates)
    with pytest.raises(VerificationError):
        verifier(sec.pki / "client-ca.crt").verify(leaf, intermediates)


# --- sslscan ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sslscan_output(sec):
    host, port = HOST.address.rsplit(":", 1)
    run = subprocess.run(
        [
            "sslscan",
            "--show-client-cas",
            "--no-colour",
            f"--sni-name={HOST.server_name}",
            f"{host}:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def client_ca_names(sslscan_output: str) -> list[str]:
    """The lines under sslscan's "Acceptable client certificate CA names:"."""
    _, found, rest = sslscan_output.partition("Acceptable client certificate CA names:\n")
    assert found, sslscan_output
    return [line.strip() for line in rest.split("\n\n")[0].splitlines() if line.strip()]


def oneline(name: x509.Name) -> str:
    """OpenSSL's one-line form, as sslscan prints it: ``/CN=.../O=...``."""
    return "".join(f"/{a.rfc4514_attribute_name}={a.value}" for a in name)


def test_sslscan_server_asks_for_the_client_ca_only(sec, sslscan_output):
    client_ca = load_cert(sec.pki / "client-ca.crt")
    server_ca = load_cert(sec.pki / "server-ca.crt")
    asked = client_ca_names(sslscan_output)
    assert asked == [oneline(client_ca.subject)]
    assert oneline(server_ca.subject) not in asked


def test_sslscan_sees_only_tls_1_2_and_1_3(sslscan_output):
    protocols = dict(
        re.findall(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)$", sslscan_output, re.M)
    )
    assert protocols == {
        "SSLv2": "disabled",
        "SSLv3": "disabled",
        "TLSv1.0": "disabled",
        "TLSv1.1": "disabled",
        "TLSv1.2": "enabled",
        "TLSv1.3": "enabled",
    }


# --- testssl.sh -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def testssl_findings(sec, tmp_path_factory):
    """testssl.sh's full scan (about a minute), the server CA added to its trust stores.
    testssl.sh 3.0 sends no client certificate: the handshake completes, and its HTTP checks
    see the site's JSON 400 (which carries HSTS too)."""
    report = tmp_path_factory.mktemp("testssl") / "findings.json"
    host, port = HOST.address.rsplit(":", 1)
    run = subprocess.run(
        [
            "testssl",
            "--quiet",
            "--warnings",
            "off",
            "--color",
            "0",
            "--ip",
            host,
            "--add-ca",
            str(sec.bundle / "api-ca.crt"),
            "--jsonfile",
            str(report),
            f"https://{HOST.server_name}:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.is_file(), run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads(report.read_text())


def test_testssl_no_high_or_critical_finding_but_the_justified_ones(testssl_findings):
    severe = {
        f["id"]: f["finding"] for f in testssl_findings if f["severity"] in ("HIGH", "CRITICAL")
    }
    unjustified = {key: finding for key, finding in severe.items() if key not in JUSTIFIED}
    assert unjustified == {}


def test_testssl_agrees_on_protocols_chain_and_hsts(testssl_findings):
    found = {f["id"]: (f["severity"], f["finding"]) for f in testssl_findings}
    for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert found[protocol][1] == "not offered", protocol
    assert found["cert_chain_of_trust"] == ("OK", "passed.")
    assert found["HSTS_time"][0] == "OK"
    for weak in (
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ):
        assert found[weak][1] == "not offered", weak
