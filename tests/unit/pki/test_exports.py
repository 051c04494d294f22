"""A CSR made elsewhere signed to files, and a stored client as a .p12 (pki/exports.py)."""

import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import exports


def csr_pem(key, cn="bob", damage=False) -> bytes:
    """A PEM CSR for CN=``cn`` signed by ``key``; ``damage`` flips a bit of its signature."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    if not damage:
        return csr.public_bytes(serialization.Encoding.PEM)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def write_csr(tmp_path, pem: bytes):
    path = tmp_path / "request.csr"
    path.write_bytes(pem)
    return path


def test_a_good_csr_is_signed_recorded_and_written_with_its_chain(pki_store, tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    out = tmp_path / "out"
    done = exports.sign_csr_file(pki_store, "bob", write_csr(tmp_path, csr_pem(key)), out)
    cert = x509.load_pem_x509_certificate((out / "bob.crt").read_bytes())
    assert cert.public_key() == key.public_key() and cert.subject.rfc4514_string() == "CN=bob"
    chain = x509.load_pem_x509_certificates((out / "bob-chain.crt").read_bytes())
    assert [c.subject for c in chain] == [cert.subject, chain[1].subject]
    assert (out / "api-ca.crt").read_bytes() == pki_store.server_ca_pem()
    assert done.serial == pki_store.client_material("bob").serial and not done.crl_changed
    assert not (pki_store.path / "clients" / "bob" / "bob.key").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: csr_pem(ec.generate_private_key(ec.SECP256R1()), damage=True),
         "the CSR's signature does not verify"),
        (lambda: csr_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
         "the CSR's key is not allowed: use ECDSA P-256/P-384 or RSA with at least 3072 bits"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP224R1())), "the CSR's key is not allowed"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP256R1()), cn="alice"),
         "the CSR's subject is 'CN=alice': it must be exactly CN=bob"),
        (lambda: b"not a csr", "the CSR for bob is not a PEM certificate request"),
    ],
    ids=["bad-signature", "rsa-2048", "p-224", "other-name", "not-pem"],
)  # fmt: skip
def test_a_bad_csr_is_one_line_and_nothing_is_written(pki_store, tmp_path, make, message):
    rows = len(pki_store.list(include_replaced=True))
    with pytest.raises(BadInput, match=f"^{message}"):
        exports.sign_csr_file(pki_store, "bob", write_csr(tmp_path, make()), tmp_path / "out")
    assert len(pki_store.list(include_replaced=True)) == rows
    assert not (tmp_path / "out").exists() and not (pki_store.path / "clients").exists()


def test_a_name_with_a_valid_certificate_needs_reissue(pki_store, tmp_path):
    pki_store.issue_client("bob")
    path = write_csr(tmp_path, csr_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(UserError, match=r"bob already holds a valid certificate .*--reissue"):
        exports.sign_csr_file(pki_store, "bob", path, tmp_path / "out")
    done = exports.sign_csr_file(pki_store, "bob", path, tmp_path / "out", reissue=True)
    assert done.crl_changed and "revoked as superseded" in done.reason


def test_export_p12_from_the_stored_key(pki_store, tmp_path):
    pki_store.issue_client("bob")
    p12, password = exports.export_p12(pki_store, "bob", tmp_path / "p12", legacy=True)
    assert stat.S_IMODE(os.stat(p12).st_mode) == stat.S_IMODE(os.stat(password).st_mode) == 0o600
    loaded = pkcs12.load_pkcs12(p12.read_bytes(), password.read_text().strip().encode())
    assert loaded.cert.certificate.subject.rfc4514_string() == "CN=bob"
    assert loaded.key.public_key() == loaded.cert.certificate.public_key()


def test_export_p12_fails_clearly_for_a_csr_client_and_an_unknown_name(pki_store, tmp_path):
    path = write_csr(tmp_path, csr_pem(ec.generate_private_key(ec.SECP256R1())))
    exports.sign_csr_file(pki_store, "bob", path, tmp_path / "out")
    with pytest.raises(UserError, match=r"^bob's key was made on its consumer host \(--csr\)"):
        exports.export_p12(pki_store, "bob", tmp_path / "p12")
    with pytest.raises(UserError, match=r"^no client named 'bobb' in the index; did you mean bob"):
        exports.export_p12(pki_store, "bobb", tmp_path / "p12")
    assert not (tmp_path / "p12").exists()
