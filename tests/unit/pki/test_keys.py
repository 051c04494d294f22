"""Key files: the CA keys' encrypted PKCS#8 and the leaf keys' plain PKCS#8."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization

from mtls_deploy.pki import keys, profile

# --- CA key encryption ----------------------------------------------------------------------


def test_ca_key_encryption_round_trips_and_needs_the_passphrase():
    key = profile.generate_key("ec")
    pem = keys.encrypted_private_key_pem(key, b"right", rounds=1000)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert keys.load_private_key(pem, b"right").private_numbers() == key.private_numbers()
    with pytest.raises(ValueError):
        keys.load_private_key(pem, b"wrong")
    with pytest.raises(TypeError):
        keys.load_private_key(pem, None)


def test_ca_key_uses_600000_pbkdf2_rounds_by_default():
    assert keys.CA_KEY_KDF_ROUNDS >= 600_000
    pem = keys.encrypted_private_key_pem(profile.generate_key("ec"), b"x")
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert b"\x02\x03\x09\x27\xc0" in der  # INTEGER 600000 in the PBKDF2 parameters


def test_leaf_keys_are_unencrypted_pkcs8_that_load_without_a_passphrase():
    key = profile.generate_key("ec")
    pem = keys.private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(pem, None)
    assert loaded.private_numbers() == key.private_numbers()


def test_the_ca_key_format_is_what_openssl_style_loaders_read_for_rsa_too():
    key = profile.generate_key("rsa")
    pem = keys.encrypted_private_key_pem(key, b"pass", rounds=1000)
    loaded = serialization.load_pem_private_key(pem, b"pass")
    assert loaded.private_numbers() == key.private_numbers()
