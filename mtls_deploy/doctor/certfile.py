"""``inv doctor --cert FILE [--key KEY]``: the certificate file itself, checked as nginx would
(which CA signed it, its dates, its extendedKeyUsage, the PKI's CRL) and whether the key is its
own. Pure but for reading the two files."""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import BadInput
from .causes import Cause, cause_for_code


@dataclass(frozen=True)
class Finding:
    """One line of the file's check: ok or not, what was seen, and the cause when not."""

    ok: bool
    text: str
    cause: Cause | None = None


def read_certificate(path: str) -> x509.Certificate:
    """The first certificate in ``path`` (PEM or DER); one line (exit 2) when it is none."""
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise BadInput(
            f"{path} holds no certificate (PEM or DER): give the client's .crt"
        ) from None


def read_key(path: str):
    """The private key in ``path`` (PEM, unencrypted, as the bundles have it)."""
    data = _read(path, "key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise BadInput(
            f"{path} holds no unencrypted PEM private key: give the client's .key"
        ) from None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read the {what} {path}: {error.strerror}") from None


def common_name(cert: x509.Certificate) -> str:
    """The certificate's CN (the client's name in this PKI), or ``?``."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "?"


def chain_finding(cert, client_cas: list, server_ca) -> Finding:
    """Which CA signed it: the client CA (ok), the server CA, itself, or another one."""
    for ca in client_cas:
        if _signed_by(cert, ca):
            return Finding(True, f"signed by the PKI's client CA ({common_name(ca)})")
    if cert.issuer == cert.subject and _signed_by(cert, cert):
        return Finding(False, "self-signed", cause_for_code(18))
    if server_ca is not None and _signed_by(cert, server_ca):
        return Finding(False, "signed by the server CA, not the client CA", cause_for_code(26))
    issuer = cert.issuer.rfc4514_string()
    return Finding(False, f"signed by another CA ({issuer})", cause_for_code(20))


def _signed_by(cert, ca) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # InvalidSignature, wrong key type
        return False
    return True


def dates_finding(cert, now: dt.datetime) -> Finding:
    """Valid now, not yet valid (9) or expired (10)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return Finding(False, f"not valid before {start:%Y-%m-%d %H:%M} UTC", cause_for_code(9))
    if now >= end:
        return Finding(False, f"expired {end:%Y-%m-%d %H:%M} UTC", cause_for_code(10))
    return Finding(True, f"valid {start:%Y-%m-%d} to {end:%Y-%m-%d %H:%M} UTC")


def purpose_finding(cert) -> Finding:
    """extendedKeyUsage: clientAuth must be there when the extension is."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return Finding(True, "no extendedKeyUsage (any purpose)")
    if ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        return Finding(True, "extendedKeyUsage clientAuth")
    return Finding(False, "no extendedKeyUsage clientAuth", cause_for_code(26))


def revocation_finding(cert, crl: x509.CertificateRevocationList) -> Finding:
    """Listed in the PKI's CRL (23) or not (only meaningful for the client CA's certificates)."""
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return Finding(True, "not revoked (the PKI's CRL)")
    return Finding(
        False, f"revoked {entry.revocation_date_utc:%Y-%m-%d %H:%M} UTC", cause_for_code(23)
    )


def key_finding(cert, key) -> Finding:
    """Whether the private key is the certificate's."""
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, raw)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, raw)
    if ours == theirs:
        return Finding(True, "the key is the certificate's")
    cause = Cause(0, (), "the key is not the certificate's: the TLS handshake fails before "
                  "any verify", "inv issue-client --name {name} --reissue")  # fmt: skip
    return Finding(False, "the key does NOT match the certificate", cause)


def check_file(cert, key, pki: dict, now: dt.datetime) -> list[Finding]:
    """Every finding on the file; ``pki``: client_cas, server_ca, crl."""
    chain = chain_finding(cert, pki["client_cas"], pki["server_ca"])
    found = [chain, dates_finding(cert, now), purpose_finding(cert)]
    if chain.ok:
        found.append(revocation_finding(cert, pki["crl"]))
    if key is not None:
        found.append(key_finding(cert, key))
    return found
