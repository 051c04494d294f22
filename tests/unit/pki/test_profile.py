"""The certificate profile (issue 3), line by line, on pure functions: no disk, fixed clock."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import profile

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
BAD_NAMES = {
    "dot-dot-slash": "../etc",
    "slash": "a/b",
    "space": "bob smith",
    "comma": "bob,o=x",
    "equals": "cn=bob",
    "plus": "bob+x",
    "double-quote": 'bob"',
    "single-quote": "bob'",
    "newline": "bob\nalice",
    "trailing-newline": "bob\n",
    "non-ascii": "bøb",
    "upper-case": "Bob",
    "leading-dot": ".bob",
    "leading-dash": "-bob",
    "empty": "",
    "65-chars": "a" * 65,
    "nul": "bob\x00",
    "not-a-string": None,
}


@pytest.fixture(scope="module", params=["ec", "rsa"])
def pki_ca(request):
    """(key type, CA key, CA certificate) for each key type; RSA keys made once per module."""
    key = profile.generate_key(request.param)
    return request.param, key, profile.make_ca(key, "Test client CA", NOW, org="Test")


@pytest.fixture(scope="module")
def pki_leaf_keys():
    """One leaf key per type, reused: RSA 3072 generation is slow."""
    return {"ec": profile.generate_key("ec"), "rsa": profile.generate_key("rsa")}


def ext(cert, kind):
    return cert.extensions.get_extension_for_class(kind)


def client(pki_ca, pki_leaf_keys, **kwargs):
    key_type, ca_key, ca = pki_ca
    key = pki_leaf_keys[key_type]
    return profile.issue_client_cert(
        ca, ca_key, key.public_key(), "bob", profile.new_serial(), NOW, **kwargs
    )


def server(
    pki_ca, pki_leaf_keys, dns=("api1.example.test", "api.example.test"), ips=("192.0.2.10",)
):
    key_type, ca_key, ca = pki_ca
    key = pki_leaf_keys[key_type]
    return profile.issue_server_cert(
        ca, ca_key, key.public_key(), dns, ips, profile.new_serial(), NOW
    )


# --- keys -----------------------------------------------------------------------------------


def test_default_key_is_p256_and_rsa_is_3072(pki_leaf_keys):
    assert isinstance(pki_leaf_keys["ec"], ec.EllipticCurvePrivateKey)
    assert pki_leaf_keys["ec"].curve.name == "secp256r1"
    assert isinstance(pki_leaf_keys["rsa"], rsa.RSAPrivateKey)
    assert pki_leaf_keys["rsa"].key_size == 3072


def test_unknown_key_type_is_bad_input():
    with pytest.raises(BadInput, match="ec .* or rsa"):
        profile.generate_key("dsa")


# --- CA profile -----------------------------------------------------------------------------


def test_ca_basic_constraints_ca_true_pathlen_0_critical(pki_ca):
    bc = ext(pki_ca[2], x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0


def test_ca_key_usage_cert_sign_and_crl_sign_only_critical(pki_ca):
    ku = ext(pki_ca[2], x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature and not ku.value.key_encipherment


def test_ca_subject_key_identifier_is_from_its_key(pki_ca):
    _, key, ca = pki_ca
    expected = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert ext(ca, x509.SubjectKeyIdentifier).value == expected


def test_ca_lasts_ten_years_back_dated_five_minutes(pki_ca):
    ca = pki_ca[2]
    assert ca.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert ca.not_valid_after_utc == NOW + dt.timedelta(days=3650)


def test_ca_is_self_signed_with_sha256(pki_ca):
    ca = pki_ca[2]
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)


# --- client profile -------------------------------------------------------------------------


def test_leaf_basic_constraints_ca_false_critical(pki_ca, pki_leaf_keys):
    bc = ext(client(pki_ca, pki_leaf_keys), x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None


def test_leaf_key_usage_digital_signature_plus_encipherment_for_rsa(pki_ca, pki_leaf_keys):
    ku = ext(client(pki_ca, pki_leaf_keys), x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert ku.value.key_encipherment is (pki_ca[0] == "rsa")
    assert not ku.value.key_cert_sign and not ku.value.crl_sign


def test_client_extended_key_usage_is_client_auth_only(pki_ca, pki_leaf_keys):
    eku = ext(client(pki_ca, pki_leaf_keys), x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_ski_is_its_key_and_aki_is_the_ca_ski(pki_ca, pki_leaf_keys):
    cert = client(pki_ca, pki_leaf_keys)
    key = pki_leaf_keys[pki_ca[0]]
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()
    )
    ca_ski = ext(pki_ca[2], x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski


def test_leaf_back_dated_five_minutes_and_365_days_by_default(pki_ca, pki_leaf_keys):
    cert = client(pki_ca, pki_leaf_keys)
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert client(pki_ca, pki_leaf_keys, days=30).not_valid_after_utc == NOW + dt.timedelta(days=30)


def test_leaf_is_signed_by_the_ca_with_sha256(pki_ca, pki_leaf_keys):
    cert = client(pki_ca, pki_leaf_keys)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    cert.verify_directly_issued_by(pki_ca[2])


def test_client_subject_is_cn_and_optional_org(pki_ca, pki_leaf_keys):
    assert client(pki_ca, pki_leaf_keys).subject.rfc4514_string() == "CN=bob"
    assert client(pki_ca, pki_leaf_keys, org="ACME").subject.rfc4514_string() == "O=ACME,CN=bob"


def test_client_san_only_with_an_email(pki_ca, pki_leaf_keys):
    with pytest.raises(x509.ExtensionNotFound):
        ext(client(pki_ca, pki_leaf_keys), x509.SubjectAlternativeName)
    san = ext(client(pki_ca, pki_leaf_keys, email="bob@example.test"), x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.RFC822Name) == ["bob@example.test"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"email": "not an email"}, "invalid email"),
        ({"org": "x" * 65}, "organisation"),
        ({"days": 0}, "days"),
    ],
)
def test_client_bad_attributes_are_bad_input(pki_ca, pki_leaf_keys, kwargs, message):
    with pytest.raises(BadInput, match=message):
        client(pki_ca, pki_leaf_keys, **kwargs)


def test_leaf_never_outlives_its_ca(pki_leaf_keys):
    ca_key = pki_leaf_keys["ec"]
    ca = profile.make_ca(ca_key, "Short CA", NOW, days=10)
    cert = profile.issue_client_cert(ca, ca_key, ca_key.public_key(), "bob", 7, NOW, days=365)
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


def test_expired_ca_refuses_and_says_how_long_ago(pki_leaf_keys):
    key = pki_leaf_keys["ec"]
    ca = profile.make_ca(key, "Old CA", NOW - dt.timedelta(days=13), days=10)
    with pytest.raises(UserError, match=r"expired 3 days ago \(2026-02-26 12:00 UTC\)"):
        profile.issue_client_cert(ca, key, key.public_key(), "bob", 7, NOW)
    with pytest.raises(UserError, match="expired 3 days ago"):
        profile.sign_crl(ca, key, [], 2, NOW)


# --- server profile -------------------------------------------------------------------------


def test_server_eku_is_server_auth_and_san_holds_every_name(pki_ca, pki_leaf_keys):
    cert = server(pki_ca, pki_leaf_keys)
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["api1.example.test", "api.example.test"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]


def test_server_cn_is_one_of_its_san_names(pki_ca, pki_leaf_keys):
    cert = server(pki_ca, pki_leaf_keys)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn in profile.san_names(cert)[0]


def test_server_with_only_ip_addresses_has_empty_subject_and_critical_san(pki_ca, pki_leaf_keys):
    cert = server(pki_ca, pki_leaf_keys, dns=(), ips=("127.0.0.1", "::1"))
    assert len(cert.subject) == 0
    assert ext(cert, x509.SubjectAlternativeName).critical
    assert profile.san_names(cert) == (set(), {"127.0.0.1", "::1"})


@pytest.mark.parametrize(
    ("dns", "ips"), [(["bad name"], []), (["-x.example"], []), ([], ["300.1.1.1"]), ([], [])]
)
def test_server_bad_names_are_bad_input(dns, ips):
    with pytest.raises(BadInput):
        profile.server_names(dns, ips)


# --- verification with cryptography's verifier ----------------------------------------------


def client_verifier(ca, san_optional=True):
    builder = PolicyBuilder().store(Store([ca])).time(NOW)
    if san_optional:  # issue 3: a client's subjectAltName is optional (email only)
        ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
        )
        builder = builder.extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee
        )
    return builder.build_client_verifier()


def test_client_chain_verifies_as_a_client(pki_ca, pki_leaf_keys):
    cert = client(pki_ca, pki_leaf_keys)
    verified = client_verifier(pki_ca[2]).verify(cert, [])
    assert verified.chain[-1] == pki_ca[2]
    with_email = client(pki_ca, pki_leaf_keys, email="bob@example.test")
    assert client_verifier(pki_ca[2], san_optional=False).verify(with_email, []).subjects


def test_server_chain_verifies_for_its_dns_name_and_ip(pki_ca, pki_leaf_keys):
    cert = server(pki_ca, pki_leaf_keys)
    builder = PolicyBuilder().store(Store([pki_ca[2]])).time(NOW)
    builder.build_server_verifier(x509.DNSName("api.example.test")).verify(cert, [])
    import ipaddress

    builder.build_server_verifier(x509.IPAddress(ipaddress.ip_address("192.0.2.10"))).verify(
        cert, []
    )
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("other.example.test")).verify(cert, [])


def test_server_certificate_is_not_a_client_certificate(pki_ca, pki_leaf_keys):
    with pytest.raises(VerificationError):
        client_verifier(pki_ca[2]).verify(server(pki_ca, pki_leaf_keys), [])


def test_client_of_another_ca_does_not_verify(pki_ca, pki_leaf_keys):
    other_key = profile.generate_key("ec")
    other = profile.make_ca(other_key, "Other CA", NOW)
    stranger = profile.issue_client_cert(other, other_key, other_key.public_key(), "bob", 9, NOW)
    with pytest.raises(VerificationError):
        client_verifier(pki_ca[2]).verify(stranger, [])


# --- serials --------------------------------------------------------------------------------


def test_serial_takes_159_bits_from_the_csprng_positive_below_2_159():
    asked = []

    def all_ones(n):
        asked.append(n)
        return b"\xff" * n

    assert profile.new_serial(randbytes=all_ones) == 2**159 - 1
    assert asked == [20] and asked[0] * 8 - 1 >= 128


def test_serial_zero_and_taken_serials_are_drawn_again():
    draws = iter([b"\x00" * 20, (84 << 1).to_bytes(20, "big"), (42 << 1).to_bytes(20, "big")])
    assert profile.new_serial(lambda s: s == 84, randbytes=lambda n: next(draws)) == 42


def test_real_serials_are_distinct_large_and_in_range():
    serials = [profile.new_serial() for _ in range(500)]
    assert len(set(serials)) == 500
    assert all(0 < s < 2**159 for s in serials)
    assert max(s.bit_length() for s in serials) >= 155  # drawn from the full range, not small


def test_serial_hex_has_even_digits_like_openssl():
    assert profile.serial_hex(0xABC) == "0ABC"
    assert profile.serial_hex(0x1ABC) == "1ABC"


# --- CRL ------------------------------------------------------------------------------------


def test_crl_is_v2_signed_numbered_with_reasons(pki_ca):
    _, key, ca = pki_ca
    revoked = [
        profile.Revocation(0x1234, NOW - dt.timedelta(days=1), "key_compromise"),
        profile.Revocation(0x5678, NOW, "unspecified"),
    ]
    crl = profile.sign_crl(ca, key, revoked, 7, NOW)
    assert crl.is_signature_valid(ca.public_key())
    assert crl.issuer == ca.subject and isinstance(crl.signature_hash_algorithm, hashes.SHA256)
    assert profile.crl_number(crl) == 7
    assert crl.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier
    ).value.key_identifier == (ext(ca, x509.SubjectKeyIdentifier).value.digest)
    assert crl.last_update_utc == NOW - dt.timedelta(minutes=5)
    assert crl.next_update_utc == NOW + dt.timedelta(days=180)
    compromised = crl.get_revoked_certificate_by_serial_number(0x1234)
    assert compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    assert (
        len(crl.get_revoked_certificate_by_serial_number(0x5678).extensions) == 0
    )  # RFC 5280 5.3.1
    der = crl.public_bytes(serialization.Encoding.DER)
    assert der[der.index(b"\x02\x01") : der.index(b"\x02\x01") + 3] == b"\x02\x01\x01"  # version v2


def test_crl_next_update_is_configurable(pki_ca):
    crl = profile.sign_crl(pki_ca[2], pki_ca[1], [], 1, NOW, days=7)
    assert crl.next_update_utc == NOW + dt.timedelta(days=7)


def test_unknown_revocation_reason_is_bad_input():
    with pytest.raises(BadInput, match="key_compromise"):
        profile.validate_revocation_reason("stolen")


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_client_names_are_bad_input(name):
    with pytest.raises(BadInput, match="invalid client name") as raised:
        profile.validate_client_name(name)
    assert raised.value.exit_code == 2
    assert "\n" not in str(raised.value)  # one line, even for a name with a newline


@pytest.mark.parametrize("name", ["bob", "a", "0", "svc-1.prod_x", "a" * 64])
def test_good_client_names(name):
    assert profile.validate_client_name(name) == name


def test_parse_names_skips_blanks_and_comments_and_keeps_first_of_duplicates():
    assert profile.parse_names("bob\n\n# team b\n  alice  \r\nbob\n") == ["bob", "alice"]


def test_parse_names_names_the_bad_line():
    with pytest.raises(BadInput, match=r"consumers.txt line 3: invalid client name 'Bad Name'"):
        profile.parse_names("bob\nalice\nBad Name\n", "consumers.txt")


# --- CSR ------------------------------------------------------------------------------------


def csr_for(key, *attributes):
    subject = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def test_check_csr_accepts_exactly_cn_name_with_an_allowed_key(pki_leaf_keys):
    key = pki_leaf_keys["ec"]
    assert profile.check_csr(csr_for(key, (NameOID.COMMON_NAME, "bob")), "bob") == key.public_key()
    rsa_key = pki_leaf_keys["rsa"]
    assert (
        profile.check_csr(csr_for(rsa_key, (NameOID.COMMON_NAME, "bob")), "bob")
        == rsa_key.public_key()
    )


@pytest.mark.parametrize(
    "attributes",
    [
        [(NameOID.COMMON_NAME, "alice")],
        [(NameOID.COMMON_NAME, "bob"), (NameOID.ORGANIZATION_NAME, "x")],
        [(NameOID.ORGANIZATION_NAME, "bob")],
        [],
    ],
    ids=["other-cn", "extra-attribute", "no-cn", "empty"],
)
def test_check_csr_rejects_a_subject_that_is_not_exactly_cn_name(pki_leaf_keys, attributes):
    with pytest.raises(BadInput, match="must be exactly CN=bob"):
        profile.check_csr(csr_for(pki_leaf_keys["ec"], *attributes), "bob")


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: ec.generate_private_key(ec.SECP224R1()),
    ],
    ids=["rsa-2048", "p-224"],
)
def test_check_csr_rejects_weak_keys(make_key):
    with pytest.raises(BadInput, match="key is not allowed"):
        profile.check_csr(csr_for(make_key(), (NameOID.COMMON_NAME, "bob")), "bob")


def test_check_csr_rejects_a_bad_signature(pki_leaf_keys):
    der = bytearray(
        csr_for(pki_leaf_keys["ec"], (NameOID.COMMON_NAME, "bob")).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-1] ^= 0x01  # last byte of the signature's s value
    with pytest.raises(BadInput, match="signature does not verify"):
        profile.check_csr(x509.load_der_x509_csr(bytes(der)), "bob")
