"""The test certificates of cases 3-5 (mtls_deploy/smoke/certificates.py): the PKI's own, signing
nothing, and a foreign one."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_deploy.pki import profile as pki
from mtls_deploy.smoke.certificates import certificate_files, foreign_certificate
from tests.unit.smoke_world import NOW


def test_the_foreign_certificate_is_not_ours(client_ca):
    ca_cert, _ = client_ca
    files = foreign_certificate(NOW)
    cert = x509.load_pem_x509_certificate(files["foreign.crt"])
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(ca_cert)
    assert serialization.load_pem_private_key(files["foreign.key"], None).public_key() == (
        cert.public_key()
    )


# --- the certificates cases 3-5 present ---------------------------------------------------------


def test_cases_3_and_5_present_the_pki_s_own_certificates_and_sign_nothing(pki_store, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")  # no CA key is opened
    files, created = certificate_files(pki_store, dt.datetime.now(dt.UTC))
    assert not created and sorted(files) == [
        "expired.crt", "expired.key", "foreign.crt", "foreign.key", "revoked.crt", "revoked.key",
    ]  # fmt: skip
    indexed = {r.serial_hex: r for r in pki_store.list()}
    for label in ("revoked", "expired"):
        cert = x509.load_pem_x509_certificate(files[f"{label}.crt"])
        record = indexed[pki.serial_hex(cert.serial_number)]
        assert (record.name, record.kind, record.status) == (f"smoke:{label}", "smoke", label)
        key = serialization.load_pem_private_key(files[f"{label}.key"], None)
        assert key.public_key() == cert.public_key()
    revoked = x509.load_pem_x509_certificate(files["revoked.crt"]).serial_number
    assert pki_store.crl().get_revoked_certificate_by_serial_number(revoked) is not None
