"""Key files: unencrypted PKCS#8 for the leaf keys, encrypted PKCS#8 for the CA keys.

Example::

    pem = encrypted_private_key_pem(key, b"passphrase")
    key = load_private_key(pem, b"passphrase")
"""

import base64
import os

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

CA_KEY_KDF_ROUNDS = 600_000  # PBKDF2-HMAC-SHA256, OWASP 2023; cryptography's default is 2048


def private_key_pem(key) -> bytes:
    """An unencrypted PKCS#8 PEM (the leaf keys nginx and curl read)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def encrypted_private_key_pem(key, passphrase: bytes, rounds: int | None = None) -> bytes:
    """PKCS#8 ``ENCRYPTED PRIVATE KEY``: PBES2, PBKDF2-HMAC-SHA256 ``rounds``, AES-256-CBC.

    cryptography's ``BestAvailableEncryption`` uses 2048 PBKDF2 rounds, cheap to brute-force for
    a human passphrase; this is the same format (openssl and ``load_pem_private_key`` read it)
    with a real work factor (``rounds`` defaults to ``CA_KEY_KDF_ROUNDS``).
    """
    rounds = rounds or CA_KEY_KDF_ROUNDS
    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, rounds).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(_pkcs8_der(key)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(plain) + encryptor.finalize()
    der = _der_sequence(_pbes2_algorithm(salt, rounds, iv), _der(0x04, encrypted))
    return _pem("ENCRYPTED PRIVATE KEY", der)


def load_private_key(pem: bytes, passphrase: bytes | None):
    """Load a PEM private key: ``ValueError`` on a wrong passphrase, ``TypeError`` on none."""
    return serialization.load_pem_private_key(pem, passphrase)


def _pkcs8_der(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")
_DER_NULL = bytes.fromhex("0500")


def _pbes2_algorithm(salt: bytes, rounds: int, iv: bytes) -> bytes:
    prf = _der_sequence(_OID_HMAC_SHA256, _DER_NULL)
    kdf_params = _der_sequence(_der(0x04, salt), _der_integer(rounds), _der_integer(32), prf)
    kdf = _der_sequence(_OID_PBKDF2, kdf_params)
    cipher = _der_sequence(_OID_AES256_CBC, _der(0x04, iv))
    return _der_sequence(_OID_PBES2, _der_sequence(kdf, cipher))


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_sequence(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _der_integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )
