"""An OU in the client's subject (``inv issue-client --ou ops``), so that ``mtls_routes`` can
allow a group: issued, kept on renewal, signed into a CSR's certificate, shown by pki.list, and
a bad value refused in one line before anything is issued."""

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from mtls_deploy.errors import BadInput
from mtls_deploy.pki import subject


def certificate(store, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (store.path / "clients" / name / f"{name}.crt").read_bytes()
    )


def rfc2253(cert: x509.Certificate) -> str:
    """The subject as nginx's $ssl_client_s_dn shows it (OpenSSL's RFC 2253 form)."""
    return cert.subject.rfc4514_string()


def test_issue_puts_the_ou_in_the_subject(pki_store):
    pki_store.issue_client("carol", ou="ops")
    assert rfc2253(certificate(pki_store, "carol")) == "OU=ops,CN=carol"


def test_a_subject_without_an_ou_is_what_it_was():
    """No OU: CN then O, as before (renewals of existing clients keep their subject)."""
    name = subject.x509_name("bob", "Example, Inc.")
    assert [a.oid for a in name] == [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME]
    assert name.rfc4514_string() == "O=Example\\, Inc.,CN=bob"


def test_renewal_keeps_the_ou_and_the_organisation(pki_store):
    pki_store.issue_client("carol", org="Example", ou="ops")
    before = certificate(pki_store, "carol")
    pki_store.renew_client("carol")
    after = certificate(pki_store, "carol")
    assert after.serial_number != before.serial_number
    assert rfc2253(after) == rfc2253(before) == "OU=ops,O=Example,CN=carol"


def test_a_csr_s_certificate_gets_the_ou_too(pki_store):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dave")]))
        .sign(key, hashes.SHA256())
    )
    pki_store.sign_client_csr("dave", csr.public_bytes(Encoding.PEM), ou="ops")
    assert rfc2253(certificate(pki_store, "dave")) == "OU=ops,CN=dave"


@pytest.mark.parametrize(
    "bad", ["", "ops,CN=alice", "ops+CN=alice", "-ops", " ops", "#ops", "o" * 65, "ops\n", "é"]
)
def test_a_bad_ou_is_refused_in_one_line_and_nothing_is_issued(pki_store, bad):
    with pytest.raises(BadInput, match=r"^invalid organisational unit .*: use 1-64 characters"):
        list(pki_store.issue_clients(["carol"], ou=bad))
    assert pki_store.client_status("carol") is None


def test_the_command_line_refuses_a_bad_ou_with_exit_2(pki_store, inv):
    code, out, err = inv("issue-client", "--name", "carol", "--ou", "ops,CN=x", "--no-deliver")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: invalid organisational unit 'ops,CN=x': use 1-64 characters from "
        "A-Z a-z 0-9 . _ -, starting with a letter or digit"
    ]
    assert pki_store.client_status("carol") is None


def test_issue_client_ou_and_pki_list_shows_it(pki_store, inv, monkeypatch, tmp_path):
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(tmp_path))
    code, out, err = inv("issue-client", "--name", "carol", "--ou", "ops", "--no-deliver")
    assert code == 0, err
    assert rfc2253(certificate(pki_store, "carol")) == "OU=ops,CN=carol"
    inv("issue-client", "--name", "bob", "--no-deliver")
    code, out, _ = inv("pki.list")
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["carol"].endswith("valid  ou=ops") and "ou=" not in rows["bob"]
    code, out, _ = inv("pki.list", "--json")
    found = {c["name"]: c["ou"] for c in json.loads(out)["certificates"] if c["kind"] == "client"}
    assert found == {"bob": None, "carol": "ops"}
