"""The certificate profile, pure: keys, names and ``now`` in; ``cryptography`` objects out.

Nothing here touches the disk or the clock. The store (``store.py``) decides what to sign and
keeps the results; ``keys.py`` encodes key files. Model: the cryptography docs' X.509 tutorial, "Creating a CA hierarchy".
"""

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import BadInput, UserError
from .settings import as_lifetime, backdate
from .subject import validate_ou
from .subject import x509_name as _name

KEY_TYPES = ("ec", "rsa")
RSA_KEY_SIZE = 3072
CA_DAYS = 3650
LEAF_DAYS = 365
CRL_DAYS = 180
CLOCK_SKEW = dt.timedelta(minutes=5)  # the most notBefore is back-dated (``settings.backdate``)
CSR_CURVES = ("secp256r1", "secp384r1")  # the ECDSA curves a consumer's CSR may use
SERIAL_BYTES = 20  # 160 random bits, shifted to 159: positive and below 2**159 in 20 DER octets

CLIENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
CLIENT_NAME_RULE = "1-64 characters from a-z 0-9 . _ -, starting with a letter or digit"
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DNS_NAME = re.compile(
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# The smoke test's own client certificates: ":" is outside CLIENT_NAME, so no client can take
# these names (or their CNs), and ``inv issue-client --name smoke:revoked`` is refused.
SMOKE_REVOKED = "smoke:revoked"
SMOKE_EXPIRED = "smoke:expired"
SMOKE_NAMES = (SMOKE_REVOKED, SMOKE_EXPIRED)

REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
}


@dataclass(frozen=True)
class Revocation:
    """One CRL entry: which serial, when, and why (a key of ``REVOCATION_REASONS``)."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "unspecified"


# --- input checks ---------------------------------------------------------------------------


def validate_client_name(name) -> str:
    """Return ``name`` if it is a safe client name, else raise ``BadInput`` (exit 2).

    A client name becomes a directory, a file name and the certificate CN, so path separators
    and DN syntax are out. Example: ``validate_client_name("bob") == "bob"``.
    """
    if name in SMOKE_NAMES:
        raise BadInput(
            f"{name!r} is reserved for the smoke test's own certificates: choose another name"
        )
    if not isinstance(name, str) or not CLIENT_NAME.fullmatch(name):
        raise BadInput(f"invalid client name {_show(name)}: use {CLIENT_NAME_RULE}")
    return name


def validate_host_name(host) -> str:
    """Return ``host`` if it is a safe inventory host name (a directory under ``servers/``)."""
    if not isinstance(host, str) or not HOST_NAME.fullmatch(host):
        raise BadInput(f"invalid host name {_show(host)}: use 1-64 characters A-Z a-z 0-9 . _ -")
    return host


def validate_revocation_reason(reason: str) -> str:
    """Return ``reason`` if it is one of ``REVOCATION_REASONS``, else raise ``BadInput``."""
    if reason not in REVOCATION_REASONS:
        raise BadInput(
            f"unknown revocation reason {_show(reason)}: use one of {', '.join(REVOCATION_REASONS)}"
        )
    return reason


def validate_key_type(key_type: str) -> str:
    """Return ``key_type`` if it is ``ec`` or ``rsa``, else raise ``BadInput``."""
    if key_type not in KEY_TYPES:
        raise BadInput(f"unknown key type {_show(key_type)}: use ec (P-256) or rsa (3072 bits)")
    return key_type


def parse_names(text: str, source: str = "names file") -> list[str]:
    """Client names from a names file: one a line, blank lines and ``#`` comments skipped.

    Every line is checked before anything is issued; duplicates are kept once, in order.
    Example: ``parse_names("bob\\n# team\\nalice\\n") == ["bob", "alice"]``.
    """
    names, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        try:
            validate_client_name(name)
        except BadInput as error:
            raise BadInput(f"{source} line {number}: {error}") from None
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_email(email: str | None) -> None:
    """Raise ``BadInput`` unless ``email`` is ``None`` or looks like ``bob@example.com``."""
    if email is not None and not EMAIL.fullmatch(email):
        raise BadInput(f"invalid email {_show(email)}: expected something like bob@example.com")


def validate_org(org: str | None) -> None:
    """Raise ``BadInput`` unless ``org`` is ``None`` or 1-64 printable characters."""
    if org is not None and not (0 < len(org) <= 64 and org.isprintable()):
        raise BadInput(f"invalid organisation {_show(org)}: use 1-64 printable characters")


def validate_days(days) -> None:
    """Raise ``BadInput`` unless ``days`` is a whole number of days (at least 1) or a
    ``timedelta`` of at least a second (``settings.as_lifetime``)."""
    as_lifetime(days)


# --- keys and serials -----------------------------------------------------------------------


def generate_key(key_type: str = "ec"):
    """A new private key: ECDSA P-256 (``ec``, default) or RSA 3072 (``rsa``)."""
    if validate_key_type(key_type) == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    return ec.generate_private_key(ec.SECP256R1())


def key_type_of(key) -> str:
    """``ec`` or ``rsa`` for a private or public key."""
    return "rsa" if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) else "ec"


def new_serial(is_taken: Callable[[int], bool] = lambda serial: False, randbytes=None) -> int:
    """A fresh serial: 159 bits from the OS CSPRNG, positive, below 2**159, not ``is_taken``.

    ``randbytes`` defaults to ``os.urandom``. Example: ``new_serial(lambda s: index.has(s))``.
    """
    while True:
        serial = int.from_bytes((randbytes or os.urandom)(SERIAL_BYTES), "big") >> 1
        if serial > 0 and not is_taken(serial):
            return serial


def serial_hex(serial: int) -> str:
    """Upper-case hex with an even number of digits, as ``openssl x509 -serial`` prints it."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of a certificate, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


# --- certificates ---------------------------------------------------------------------------


def make_ca(
    key,
    common_name: str,
    now: dt.datetime,
    days: int = CA_DAYS,
    org: str | None = None,
    serial: int | None = None,
):
    """A self-signed CA certificate: CA:TRUE pathlen:0, keyCertSign + cRLSign, SKI; 10 years.

    Example: ``make_ca(generate_key(), "Example API client CA", now)``.
    """
    lifetime = as_lifetime(days)
    name, serial = _name(common_name, org), serial or new_serial()
    not_before, not_after = now - backdate(lifetime), now + lifetime
    builder = _builder(name, name, key.public_key(), serial, not_before, not_after)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def issue_client_cert(
    ca_cert,
    ca_key,
    public_key,
    name: str,
    serial: int,
    now: dt.datetime,
    days: int = LEAF_DAYS,
    org: str | None = None,
    email: str | None = None,
    ou: str | None = None,
):
    """A client certificate for ``name`` (CN; O and OU when given), clientAuth, signed by the
    client CA. ``email`` becomes an rfc822Name subjectAltName. Example:
    ``issue_client_cert(ca, ca_key, key.public_key(), "bob", new_serial(), now)``.
    """
    validate_client_name(name)
    validate_org(org)
    validate_email(email)
    validate_ou(ou)
    builder = _leaf_builder(ca_cert, public_key, _name(name, org, ou), serial, now, days)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    if email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def issue_smoke_cert(ca_cert, ca_key, public_key, name: str, serial: int, now: dt.datetime):
    """A client certificate of the usual profile for one of the smoke test's ``SMOKE_NAMES``.

    ``smoke:revoked`` is valid as long as the CA (so a server refuses it for its revocation, not
    its age); ``smoke:expired`` was valid from two days ago to one day ago. Example:
    ``issue_smoke_cert(ca, ca_key, key.public_key(), SMOKE_EXPIRED, serial, now)``.
    """
    if name not in SMOKE_NAMES:
        raise ValueError(f"not one of the smoke test's names: {name!r}")
    if name == SMOKE_EXPIRED:
        not_before, not_after = now - dt.timedelta(days=2), now - dt.timedelta(days=1)
    else:
        not_after = ca_cert.not_valid_after_utc
        not_before = now - backdate(not_after - now)
    builder = _builder(_name(name), ca_cert.subject, public_key, serial, not_before, not_after)
    builder = _leaf_extensions(builder, ca_cert, public_key).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    return builder.sign(ca_key, hashes.SHA256())


def issue_server_cert(
    ca_cert,
    ca_key,
    public_key,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    serial: int,
    now: dt.datetime,
    days: int = LEAF_DAYS,
):
    """A server certificate, serverAuth, with every DNS name and IP address in its SAN.

    The CN is the first DNS name (one of the SAN names); with IP addresses only, the subject is
    empty and the SAN critical, as RFC 5280 asks. Example:
    ``issue_server_cert(ca, ca_key, key.public_key(), ["api1.example.com"], [], serial, now)``.
    """
    dns, ips = server_names(dns_names, ip_addresses)
    subject = _name(dns[0]) if dns else x509.Name([])
    alt_names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ip) for ip in ips]
    builder = _leaf_builder(ca_cert, public_key, subject, serial, now, days)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=not dns)
    return builder.sign(ca_key, hashes.SHA256())


def server_names(dns_names: Iterable[str], ip_addresses: Iterable[str]):
    """The checked, de-duplicated (DNS names, IP addresses) of a server certificate."""
    dns = list(dict.fromkeys(n.lower().rstrip(".") for n in dns_names))
    for n in dns:
        if not DNS_NAME.fullmatch(n) or len(n) > 253:
            raise BadInput(f"invalid DNS name {_show(n)} for a server certificate")
    ips = []
    for text in dict.fromkeys(ip_addresses):
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError:
            raise BadInput(f"invalid IP address {_show(text)} for a server certificate") from None
    if not dns and not ips:
        raise BadInput("a server certificate needs at least one DNS name or IP address")
    return dns, ips


def san_names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """The (DNS names, IP addresses as text) in a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def _leaf_builder(
    ca_cert, public_key, subject: x509.Name, serial: int, now: dt.datetime, days: int
):
    lifetime = as_lifetime(days)
    check_ca_usable(ca_cert, now)
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    not_before = now - backdate(lifetime)
    builder = _builder(subject, ca_cert.subject, public_key, serial, not_before, not_after)
    return _leaf_extensions(builder, ca_cert, public_key)


def _leaf_extensions(builder, ca_cert, public_key):
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(encipherment=key_type_of(public_key) == "rsa"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )


def _builder(subject, issuer, public_key, serial, not_before, not_after):
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def key_usage(cert_sign=False, encipherment=False) -> x509.KeyUsage:
    """keyCertSign + cRLSign for a CA; digitalSignature (+ keyEncipherment for RSA) for a leaf."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def check_ca_usable(ca_cert: x509.Certificate, now: dt.datetime) -> None:
    """Raise ``UserError`` if the CA cannot sign at ``now``, saying how long ago it expired."""
    label = ca_cert.subject.rfc4514_string()
    if now > ca_cert.not_valid_after_utc:
        ago = human_duration(now - ca_cert.not_valid_after_utc)
        raise UserError(
            f"the CA {label} expired {ago} ago ({ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC) "
            "and refuses to sign: create a new PKI with `inv pki.init` in an empty directory"
        )
    if now < ca_cert.not_valid_before_utc:
        raise UserError(
            f"the CA {label} is not valid before {ca_cert.not_valid_before_utc}: check the clock"
        )


def check_days_fit_ca(ca_cert: x509.Certificate, now: dt.datetime, days: int) -> None:
    """Refuse (``BadInput``) a ``days`` validity that ends after the CA does, rather than cut the
    certificate short without a word; the line gives the CA's end and the largest ``--days``.
    Example: with 100 days left, ``check_days_fit_ca(ca, now, 365)`` says "use --days 99 or fewer".
    """
    check_ca_usable(ca_cert, now)
    ca_end = ca_cert.not_valid_after_utc
    if now + as_lifetime(days) <= ca_end:
        return
    fits = (ca_end - now).days
    fix = (
        f"use --days {fits} or fewer"
        if fits >= 1
        else "less than a day is left: the PKI needs new CAs (`inv pki.init` in an empty directory)"
    )
    given = f"--days {days}" if isinstance(days, int) else f"a lifetime of {days}"
    raise BadInput(
        f"{given} would end after the CA {ca_cert.subject.rfc4514_string()} "
        f"({ca_end:%Y-%m-%d %H:%M} UTC): {fix}"
    )


def human_duration(delta: dt.timedelta) -> str:
    """``timedelta(days=3, hours=2)`` -> ``"3 days"``; the largest whole unit, for messages."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


# --- CRL and CSR ----------------------------------------------------------------------------


def sign_crl(
    ca_cert,
    ca_key,
    revoked: Iterable[Revocation],
    number: int,
    now: dt.datetime,
    days: int = CRL_DAYS,
) -> x509.CertificateRevocationList:
    """A v2 CRL from the client CA: CRL number ``number``, AKI, one entry per revocation.

    thisUpdate is back-dated 5 minutes for clock skew; nextUpdate is ``days`` after ``now``. The
    reason code is recorded except for ``unspecified`` (RFC 5280 5.3.1: omit it rather than use 0).
    """
    lifetime = as_lifetime(days)
    check_ca_usable(ca_cert, now)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - backdate(lifetime))
        .next_update(now + lifetime)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(_revoked_certificate(entry))
    return builder.sign(ca_key, hashes.SHA256())


def _revoked_certificate(entry: Revocation) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(entry.serial)
    builder = builder.revocation_date(entry.revoked_at)
    if entry.reason != "unspecified":
        builder = builder.add_extension(
            x509.CRLReason(REVOCATION_REASONS[entry.reason]), critical=False
        )
    return builder.build()


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL number extension of ``crl``."""
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def check_csr(csr: x509.CertificateSigningRequest, expected_name: str):
    """Return the CSR's public key if it is fit for client ``expected_name``, else ``BadInput``.

    Fit means: the signature verifies, the subject is exactly ``CN=<expected_name>``, and the key
    is ECDSA P-256/P-384 or RSA of at least 3072 bits. Extensions the CSR asks for are ignored:
    the profile decides them.
    """
    validate_client_name(expected_name)
    if not csr.is_signature_valid:
        raise BadInput("the CSR's signature does not verify: regenerate it with its own key")
    attributes = list(csr.subject)
    if (
        len(attributes) != 1
        or attributes[0].oid != NameOID.COMMON_NAME
        or attributes[0].value != expected_name
    ):
        raise BadInput(
            f"the CSR's subject is {csr.subject.rfc4514_string()!r}: "
            f"it must be exactly CN={expected_name}"
        )
    return _check_public_key(csr.public_key())


def _check_public_key(public_key):
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in CSR_CURVES:
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= RSA_KEY_SIZE:
        return public_key
    raise BadInput(
        "the CSR's key is not allowed: use ECDSA P-256/P-384 or RSA with at least 3072 bits"
    )
