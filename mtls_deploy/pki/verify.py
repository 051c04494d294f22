"""``inv pki.verify``: does the PKI directory agree with its index, and do its keys open?

Checks: every current index row has its files (the certificate with the row's serial and
fingerprint, its key when the key was made here, the key matching the certificate); every
certificate and key file has a row; the CRL is signed by the client CA, not expired, and lists
exactly the revoked rows; the CA keys open with the CA passphrase and match their certificates.

Example::

    findings = check(PkiStore.open())
    print("\\n".join(f.line() for f in findings))
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import UserError
from . import profile
from .issuance import utcnow
from .messages import display

CA_KINDS = ("client-ca", "server-ca")


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``ok`` or a problem, and what it is about."""

    ok: bool
    text: str

    def line(self) -> str:
        """``ok       index and files agree`` / ``PROBLEM  ...``."""
        return f"{'ok' if self.ok else 'PROBLEM':<8} {self.text}"


def check(store, *, open_keys: bool = True, now: dt.datetime | None = None) -> list[Finding]:
    """Every check of the module docstring, as findings (problems first)."""
    now = now or utcnow()
    rows = store._index.rows()
    found = [*_rows_have_files(store, rows), *_files_have_rows(store, rows)]
    found += _crl(store, rows, now)
    if open_keys:
        found += _ca_keys(store)
    if not [f for f in found if not f.ok]:
        found.insert(0, Finding(True, f"{len(rows)} index rows and their files agree"))
    return sorted(found, key=lambda f: f.ok)


def problems(path: Path) -> list[str]:
    """The problems of the PKI at ``path`` that need no passphrase (a restore checks these)."""
    from .store import PkiStore

    store = PkiStore.open(path)
    try:
        return [f.text for f in check(store, open_keys=False) if not f.ok]
    finally:
        store.close()


def _current_rows(rows) -> list:
    """The newest row of each (kind, name): older ones had their files replaced."""
    latest = {}
    for row in rows:
        latest[(row["kind"], row["name"])] = row
    return list(latest.values())


def _paths(store, row) -> tuple[Path, Path | None]:
    kind, name = row["kind"], row["name"]
    if kind in CA_KINDS:
        return store.path / f"{kind}.crt", None  # its key: ``_ca_keys``
    if kind == "server":
        return store._server_paths(name)
    if kind == "smoke":
        return store._smoke_paths(name.split(":", 1)[1])
    return store._client_paths(name)


def _rows_have_files(store, rows) -> list[Finding]:
    found = []
    for row in _current_rows(rows):
        if row["kind"] == "server" and row["status"] == "replaced":
            continue
        problem = _row_problem(store, row, *_paths(store, row))
        if problem:
            found.append(Finding(False, f"{row['kind']} {row['name']}: {problem}"))
    return found


def _row_problem(store, row, cert_path: Path, key_path: Path | None) -> str | None:
    cert = _load_cert(cert_path)
    if cert is None:
        return f"{display(cert_path)} is missing or not a certificate (serial {row['serial']})"
    if profile.serial_hex(cert.serial_number) != row["serial"]:
        return f"{display(cert_path)} has serial {profile.serial_hex(cert.serial_number)}, the index {row['serial']}"
    if profile.fingerprint(cert) != row["sha256"]:
        return f"{display(cert_path)} is not the certificate the index recorded (fingerprint)"
    if key_path is None or not row["key_stored"]:
        return None
    return _key_problem(key_path, cert)


def _key_problem(key_path: Path, cert: x509.Certificate) -> str | None:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return f"{display(key_path)} is missing or not a readable key"
    if key.public_key() != cert.public_key():
        return f"{display(key_path)} does not match its certificate"
    return None


def _files_have_rows(store, rows) -> list[Finding]:
    serials = {row["serial"] for row in rows}
    found = []
    for folder in ("servers", "clients", "smoke"):
        for path in sorted((store.path / folder).rglob("*.crt")):
            cert = _load_cert(path)
            if cert is None or profile.serial_hex(cert.serial_number) not in serials:
                found.append(Finding(False, f"{display(path)} has no row in the index"))
        for key in sorted((store.path / folder).rglob("*.key")):
            if not key.with_suffix(".crt").exists():
                found.append(Finding(False, f"{display(key)} has no certificate beside it"))
    return found


def _crl(store, rows, now) -> list[Finding]:
    try:
        crl = x509.load_pem_x509_crl((store.path / "crl.pem").read_bytes())
    except (OSError, ValueError):
        return [Finding(False, "crl.pem is missing or not a CRL: run `inv pki.crl`")]
    ca = _load_cert(store.path / "client-ca.crt")
    listed = {profile.serial_hex(entry.serial_number) for entry in crl}
    # the first CRL is the client CA's; during a rollover the old CA's follows it (its own list)
    issuer = ca.subject.rfc4514_string() if ca else None
    revoked = {
        r["serial"] for r in rows if r["status"] == "revoked" and r["kind"] in ("client", "smoke")
        and _issuer(r) in (None, issuer)
    }  # fmt: skip
    found = []
    if ca is None or not crl.is_signature_valid(ca.public_key()):
        found.append(Finding(False, "crl.pem is not signed by the client CA"))
    if crl.next_update_utc <= now:
        found.append(Finding(False, "crl.pem has expired: run `inv pki.crl --push`"))
    if listed != revoked:
        missing, extra = sorted(revoked - listed), sorted(listed - revoked)
        found.append(
            Finding(
                False,
                f"crl.pem lacks {missing or 'none'} and lists {extra or 'none'} unlike the index: run `inv pki.crl`",
            )
        )
    return found or [
        Finding(
            True, f"crl.pem lists the {len(revoked)} revoked certificates, signed by the client CA"
        )
    ]


def _issuer(row) -> str | None:
    """The row's issuing CA (``None`` in an index from before CA rollovers)."""
    return row["ca"] if "ca" in row.keys() else None  # noqa: SIM118 (a sqlite3.Row)


def _ca_keys(store) -> list[Finding]:
    found = []
    for kind in CA_KINDS:
        try:
            key = store._load_ca_key(kind)
        except UserError as error:  # a wrong or missing passphrase is a finding too
            return [Finding(False, str(error))]
        cert = _load_cert(store.path / f"{kind}.crt")
        ok = cert is not None and key.public_key() == cert.public_key()
        found.append(
            Finding(
                ok,
                f"{kind}.key opens with the passphrase"
                + ("" if ok else " but does not match its certificate"),
            )
        )
    return found


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
