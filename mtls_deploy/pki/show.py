"""``inv pki.show --name bob``: one certificate in full, as the PKI holds it.

A client name, a server's host name, ``client-ca``/``server-ca`` or a smoke name (``smoke:revoked``)
is looked up in the index, newest first; the file is read and described: subject, issuer,
serial, dates, time left, SAN, EKU, key type, fingerprint, status and where its key lives.

Example: ``describe(PkiStore.open(), "bob")["days_left"]``.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import UserError
from . import profile
from .index import row_status
from .issuance import utcnow
from .messages import display
from .verify import _paths

KINDS = ("client", "server", "client-ca", "server-ca", "smoke")


def find_row(store, name: str):
    """The newest index row named ``name`` of the first kind that has one, else one line (with
    close client names)."""
    for kind in KINDS:
        row = store._index.latest(kind, name)
        if row is not None:
            return row
    if name and all(c.isalnum() or c in "._-" for c in name):
        raise store._unknown_client(name)
    raise UserError(f"no certificate named {name!r} in the index: `inv pki.list` shows them all")


def describe(store, name: str, now: dt.datetime | None = None) -> dict:
    """The facts of ``name``'s current certificate, ready for text or JSON."""
    now = now or utcnow()
    row = find_row(store, name)
    cert_path, key_path = _paths(store, row)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        raise UserError(
            f"{display(cert_path)} is missing or unreadable: run `inv pki.verify`"
        ) from None
    return {
        "name": row["name"],
        "kind": row["kind"],
        **certificate_facts(cert, now),
        "status": row_status(row, now, store.settings.warn_before),
        "revoked_at": row["revoked_at"],
        "revocation_reason": row["revocation_reason"],
        "certificate_file": str(cert_path),
        "key": _key_place(row, key_path),
    }


def certificate_facts(cert: x509.Certificate, now: dt.datetime) -> dict:
    """Subject, issuer, serial, dates, time left, SAN, EKU, key and fingerprint of ``cert``."""
    left = cert.not_valid_after_utc - now
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": profile.serial_hex(cert.serial_number),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": left.days,
        "time_left": profile.human_duration(left) if left.total_seconds() > 0 else "expired",
        "san": _san(cert),
        "eku": _eku(cert),
        "key_type": key_description(cert.public_key()),
        "sha256": profile.fingerprint(cert),
    }


def key_description(public_key) -> str:
    """``ec P-256``, ``ec P-384``, ``rsa 3072``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"ec {curves.get(public_key.curve.name, public_key.curve.name)}"
    return type(public_key).__name__


def _san(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        f"{type(n).__name__.removesuffix('Name').replace('IPAddress', 'IP')}:{n.value}" for n in san
    ]


def _eku(cert: x509.Certificate) -> list[str]:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    names = {
        ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
        ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    }
    return [names.get(usage, usage.dotted_string) for usage in usages]


def _key_place(row, key_path) -> str:
    if row["kind"] in ("client-ca", "server-ca"):
        return f"{row['kind']}.key, encrypted with the CA passphrase"
    if not row["key_stored"]:
        return "made on its consumer host from a CSR: never stored here"
    return str(key_path)


def lines(facts: dict, delivered: list[str] | None = None) -> list[str]:
    """``facts`` as aligned ``label  value`` lines for the terminal."""
    shown = {**facts, "san": ", ".join(facts["san"]) or "-", "eku": ", ".join(facts["eku"]) or "-"}
    shown["days_left"] = f"{facts['days_left']} ({facts['time_left']})"
    del shown["time_left"]
    if delivered is not None:
        shown["delivered_to"] = ", ".join(delivered) or "no consumer host in the inventory"
    return [f"{key:<18} {value}" for key, value in shown.items() if value is not None]
