"""The PKI on disk: CA files, issued keys and certificates, the CRL, and the SQLite index.

Layout of the PKI directory (tests and other tools rely on it)::

    client-ca.crt  client-ca.key  server-ca.crt  server-ca.key  crl.pem  index.sqlite3
    servers/<host>/<host>.crt  servers/<host>/<host>.key
    clients/<name>/<name>.crt  clients/<name>/<name>.key
    smoke/revoked.crt  smoke/revoked.key  smoke/expired.crt  smoke/expired.key

Writers take an exclusive lock (``.lock``), so parallel runs never share a serial or lose a row.
A write stages new keys and certificates beside their final names, records them in a journal
(``.pending.json``), commits the index, then renames them into place. A run killed anywhere is
finished or undone by the next writer, so every index row has its files and no file has a
serial the index does not know. CA keys are encrypted with the passphrase from
``MTLS_DEPLOY_CA_PASSPHRASE`` (or a terminal prompt) and are only opened to sign.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import errno
import fcntl
import getpass
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from . import pki
from .errors import BadInput, UserError
from .files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    atomic_write,
    make_private_dir,
    sync_filesystem,
    write_new_file,
)
from .project import project_path

PKI_DIR_ENV = "MTLS_DEPLOY_PKI_DIR"
PASSPHRASE_ENV = "MTLS_DEPLOY_CA_PASSPHRASE"
INDEX = "index.sqlite3"
CRL = "crl.pem"
JOURNAL = ".pending.json"
LOCK = ".lock"
EXPIRING_DAYS = 30
# The smoke test's certificates: smoke/<label>.crt and .key, index name pki.SMOKE_NAMES.
SMOKE_LABELS = {"revoked": pki.SMOKE_REVOKED, "expired": pki.SMOKE_EXPIRED}
RESTORE = "restore it from your backup of the PKI directory"
SERVER_RENEW_DAYS = 30
CHUNK = 200  # clients per transaction in bulk issuance: one commit and two syncs per chunk
SQLITE_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE certificates (
    id INTEGER PRIMARY KEY,
    serial TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('client-ca', 'server-ca', 'server', 'client', 'smoke')),
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'revoked', 'replaced')),
    revoked_at TEXT,
    revocation_reason TEXT,
    sha256 TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    key_stored INTEGER NOT NULL DEFAULT 1  -- 0: signed from a CSR, the key never came here
);
CREATE INDEX certificates_by_name ON certificates (kind, name);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class IssueResult:
    """What ``issue_client`` did for one name: ``changed`` and why (``reason``)."""

    name: str
    serial: str
    changed: bool
    reason: str
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class ServerCert:
    """A host's server certificate, key and issuing CA (``chain_pem``), and whether it is new."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    changed: bool
    reason: str


@dataclass(frozen=True)
class CertRecord:
    """One row of ``pki.list``: status is valid, expiring, expired, revoked (or replaced)."""

    name: str
    kind: str
    serial_hex: str
    not_after: dt.datetime
    days_left: int
    status: str
    revoked_at: str | None = None
    revocation_reason: str | None = None
    sha256: str = ""

    def to_dict(self) -> dict:
        """JSON-ready: datetimes as ISO 8601 text."""
        return {**asdict(self), "not_after": self.not_after.isoformat()}


@dataclass(frozen=True)
class ClientMaterial:
    """A client's current certificate and key as stored (``key_pem`` is ``None`` for a client
    whose key was made on its consumer from a CSR), with its index row's facts."""

    name: str
    serial: str
    status: str
    not_after: dt.datetime
    cert_path: Path
    key_path: Path
    cert_pem: bytes
    key_pem: bytes | None = field(repr=False)


@dataclass(frozen=True)
class SmokeCertificate:
    """One of the smoke test's own client certificates (``pki.SMOKE_NAMES``), as stored in
    ``smoke/``: ``label`` is ``revoked`` (listed in the CRL) or ``expired``; never valid."""

    label: str
    serial: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)


@dataclass
class _Plan:
    name: str
    issue: bool
    reason: str
    previous: sqlite3.Row | None = None
    supersede: bool = False
    days: int = pki.LEAF_DAYS
    org: str | None = None
    email: str | None = None
    public_key: object = None  # from a CSR: sign this key instead of making one


def default_pki_dir() -> Path:
    """``$MTLS_DEPLOY_PKI_DIR``, else ``pki/`` in the project directory (see ``project.py``)."""
    return Path(os.environ.get(PKI_DIR_ENV) or project_path("pki"))


def ca_passphrase(confirm: bool = False) -> bytes:
    """The CA passphrase: ``$MTLS_DEPLOY_CA_PASSPHRASE``, else a terminal prompt, else an error."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None and _stdin_is_tty():
        value = _prompt("CA passphrase: ")
        if confirm and _prompt("CA passphrase again: ") != value:
            raise BadInput("the two passphrases differ: run the command again")
    if value is None:
        raise UserError(
            f"the CA key is encrypted: set {PASSPHRASE_ENV} or run on a terminal to be asked"
        )
    if not value:
        raise BadInput(f"empty CA passphrase: set {PASSPHRASE_ENV} to a non-empty passphrase")
    return value.encode()


def _prompt(text: str) -> str:
    try:
        return getpass.getpass(text)
    except EOFError:  # Ctrl-D at the prompt
        raise UserError(
            f"no CA passphrase given (end of input): run the command again and type it, "
            f"or set {PASSPHRASE_ENV}"
        ) from None


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


class PkiStore:
    """The PKI directory and its index. ``PkiStore.open()`` for an existing one.

    Example::

        store = PkiStore.open()
        result = store.issue_client("bob")
        print(result.reason, result.cert_path)
    """

    def __init__(
        self,
        path=None,
        *,
        passphrase: bytes | None = None,
        crl_days: int = pki.CRL_DAYS,
        lock_timeout: float = 120.0,
        keep_superseded: bool = False,
    ):
        self.path = Path(path) if path is not None else default_pki_dir()
        self.crl_days = crl_days
        self.lock_timeout = lock_timeout
        # True: a reissue leaves the predecessor valid until ``revoke_superseded`` (called once
        # the new certificate is delivered), so a failed delivery never locks a client out
        self.keep_superseded = keep_superseded
        self._passphrase = passphrase
        self._conn: sqlite3.Connection | None = None
        self._signers: dict[str, tuple] = {}

    @classmethod
    def open(cls, path=None, **options) -> PkiStore:
        """The existing PKI at ``path`` (default ``default_pki_dir()``); ``UserError`` if none."""
        store = cls(path, **options)
        store._check_index()
        return store

    def _check_index(self) -> None:
        """One clear line for a PKI directory we cannot read and for an index that is not one."""
        path = self.path / INDEX
        header = _read_head(path, len(SQLITE_HEADER))
        if header is None:
            raise UserError(f"no PKI in {_display(self.path)}/: run `inv pki.init` first")
        try:
            if header != SQLITE_HEADER:
                raise sqlite3.DatabaseError("file is not a database")
            self._meta("key_type")
            self._db.execute("SELECT count(*) FROM certificates").fetchone()
        except (sqlite3.Error, TypeError) as error:
            self.close()
            raise UserError(
                f"{_display(path)} is not a readable PKI index ({error}): restore it from your "
                f"backup of {_display(self.path)}/"
            ) from None

    # --- creating ------------------------------------------------------------------------

    def init(
        self,
        name: str = "Example API",
        key_type: str = "ec",
        *,
        ca_days: int = pki.CA_DAYS,
        now: dt.datetime | None = None,
    ) -> None:
        """Create the client CA, the server CA, the index, the smoke test's own certificates
        (``smoke_certificates``) and a CRL that lists only its revoked one; refuse if any exist.

        Example: ``PkiStore(Path("pki")).init(name="Example API", key_type="ec")``.
        """
        pki.validate_key_type(key_type)
        if not (0 < len(name) <= 50 and name.isprintable()):
            raise BadInput(f"invalid PKI name {name!r}: use 1-50 printable characters")
        if self.path.exists() and any(self.path.iterdir()):
            raise UserError(
                f"{_display(self.path)}/ is not empty: refusing to overwrite an existing PKI "
                "(if an earlier pki.init was interrupted, remove the directory and run it again)"
            )
        passphrase = self._passphrase or ca_passphrase(confirm=True)
        now = now or _utcnow()
        make_private_dir(self.path)
        try:
            rows = [
                self._create_ca(kind, name, key_type, ca_days, now, passphrase)
                for kind in ("client-ca", "server-ca")
            ]
            crl = self._initial_crl(passphrase, now)
            meta = {"name": name, "key_type": key_type, "crl_number": str(pki.crl_number(crl))}
            self._create_index(rows, meta)
            self._passphrase = passphrase
            self._issue_smoke_certificates(now)
        except BaseException as error:
            self.close()
            self._empty_directory()  # it was empty before: leave no half-made PKI behind
            if isinstance(error, OSError | sqlite3.Error):
                raise _storage_error(error, self.path, committed=False) from error
            raise

    def _empty_directory(self) -> None:
        for child in self.path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def _create_ca(self, kind, name, key_type, days, now, passphrase) -> dict:
        key = pki.generate_key(key_type)
        label = "client CA" if kind == "client-ca" else "server CA"
        cert = pki.make_ca(key, f"{name} {label}", now, days, org=name)
        atomic_write(
            self.path / f"{kind}.key",
            pki.encrypted_private_key_pem(key, passphrase),
            PRIVATE_FILE_MODE,
        )
        atomic_write(self.path / f"{kind}.crt", _cert_pem(cert))
        return _row(cert, kind, kind, now)

    def _initial_crl(self, passphrase: bytes, now) -> x509.CertificateRevocationList:
        ca_cert = x509.load_pem_x509_certificate((self.path / "client-ca.crt").read_bytes())
        ca_key = pki.load_private_key((self.path / "client-ca.key").read_bytes(), passphrase)
        crl = pki.sign_crl(ca_cert, ca_key, [], 1, now, self.crl_days)
        atomic_write(self.path / CRL, crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def _create_index(self, rows: list[dict], meta: dict[str, str]) -> None:
        temporary = self.path / f".{INDEX}.tmp"
        temporary.unlink(missing_ok=True)
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            conn.executemany(_INSERT, rows)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.chmod(temporary, PRIVATE_FILE_MODE)
        os.replace(temporary, self.path / INDEX)  # the index appearing marks the PKI complete
        sync_filesystem(self.path)

    # --- clients ---------------------------------------------------------------------------

    def issue_client(
        self,
        name: str,
        days: int = pki.LEAF_DAYS,
        org: str | None = None,
        email: str | None = None,
        reissue: bool = False,
        *,
        now: dt.datetime | None = None,
    ) -> IssueResult:
        """Issue a key and certificate for client ``name`` unless it already has a valid one.

        With ``reissue=True`` a valid certificate is replaced and revoked as superseded.
        Example: ``store.issue_client("bob", days=90).changed``.
        """
        return next(self.issue_clients([name], days, org, email, reissue, now=now))

    def issue_clients(
        self,
        names: Iterable[str],
        days: int = pki.LEAF_DAYS,
        org: str | None = None,
        email: str | None = None,
        reissue: bool = False,
        *,
        now: dt.datetime | None = None,
        chunk: int | None = None,
    ) -> Iterator[IssueResult]:
        """Bulk ``issue_client``: every name and option checked on the call, before anything is
        issued; then one transaction per ``chunk`` names (default ``CHUNK``), each result
        yielded once its chunk is committed.
        """
        names = [pki.validate_client_name(name) for name in names]
        pki.validate_org(org)
        pki.validate_email(email)
        self.check_client_days(days, now)
        return self._issue_in_chunks(names, days, org, email, reissue, now, chunk or CHUNK)

    def check_client_days(self, days: int, now: dt.datetime | None = None) -> None:
        """``BadInput`` unless ``days`` is at least 1 and ends before the client CA does."""
        pki.validate_days(days)
        pki.check_days_fit_ca(self._ca_cert("client-ca"), now or _utcnow(), days)

    def _issue_in_chunks(self, names, days, org, email, reissue, now, chunk):
        for start in range(0, len(names), chunk):
            wanted = {
                name: _Plan(name, False, "", days=days, org=org, email=email)
                for name in names[start : start + chunk]
            }
            yield from self._issue_chunk(wanted, reissue, now)

    def sign_client_csr(
        self,
        name: str,
        csr_pem: bytes,
        days: int = pki.LEAF_DAYS,
        org: str | None = None,
        email: str | None = None,
        reissue: bool = False,
        *,
        now: dt.datetime | None = None,
    ) -> IssueResult:
        """Sign a CSR made on the consumer for client ``name``: its key never comes here.

        The CSR must be exactly ``CN=<name>`` with an allowed key (``pki.check_csr``), else
        ``BadInput`` and nothing written. Otherwise like ``issue_client``: a valid certificate is
        kept unless ``reissue``; ``clients/<name>/`` then holds the certificate only.
        """
        pki.validate_client_name(name)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise BadInput(f"the CSR for {name} is not a PEM certificate request") from None
        public_key = pki.check_csr(csr, name)
        pki.validate_org(org)
        pki.validate_email(email)
        self.check_client_days(days, now)
        plan = _Plan(name, False, "", days=days, org=org, email=email, public_key=public_key)
        return next(self._issue_chunk({name: plan}, reissue, now))

    def renew_client(self, name: str, *, now: dt.datetime | None = None) -> IssueResult:
        """A new key and certificate for ``name`` (same organisation, email and lifetime).

        The old certificate is revoked as superseded and the CRL regenerated.
        """
        previous = self._latest("client", pki.validate_client_name(name))
        if previous is None:
            raise self._unknown_client(name)
        if not previous["key_stored"]:
            raise UserError(
                f"{name}'s key was made on its consumer host: renew it there with "
                f"`inv issue-client --name {name} --csr --reissue`"
            )
        old = x509.load_pem_x509_certificate(self._client_paths(name)[0].read_bytes())
        wanted = {
            name: _Plan(name, False, "", days=_lifetime_days(old), org=_org(old), email=_email(old))
        }
        return next(self._issue_chunk(wanted, True, now))

    def revoke_superseded(self, names: Iterable[str], *, now: dt.datetime | None = None) -> dict:
        """Revoke as superseded every still valid certificate of ``names`` but the latest (left
        valid by ``keep_superseded`` until its successor was delivered) and re-sign the CRL;
        returns ``{name: [serial, ...]}`` of what it revoked (``{}``: nothing to do)."""
        now = now or _utcnow()
        pending = [name for name in names if self.superseded_serials(name)]
        if not pending:
            return {}
        self._signer("client-ca", now)
        with self._transaction() as tx:
            found = {name: self.superseded_serials(name) for name in pending}
            self._supersede([serial for serials in found.values() for serial in serials], tx, now)
        return {name: serials for name, serials in found.items() if serials}

    def superseded_serials(self, name: str) -> list[str]:
        """Serials of ``name``'s certificates still valid though a newer one was issued."""
        query = (
            "SELECT serial FROM certificates WHERE kind = 'client' AND name = ? AND status = "
            "'valid' AND id < (SELECT MAX(id) FROM certificates WHERE kind = 'client' AND name = ?)"
        )
        return [row[0] for row in self._db.execute(query, (name, name))]

    def _issue_chunk(self, wanted: dict[str, _Plan], reissue: bool, now) -> Iterator[IssueResult]:
        now = now or _utcnow()
        if any(self._plan(p, reissue, now).issue for p in wanted.values()):
            self._signer("client-ca", now)  # passphrase and expiry checked before taking the lock
        with self._transaction() as tx:
            plans = [self._plan(p, reissue, now) for p in wanted.values()]
            serials = self._issue_planned(tx, [p for p in plans if p.issue], now)
        for plan in plans:
            yield self._result(plan, serials.get(plan.name))

    def _plan(self, plan: _Plan, reissue: bool, now) -> _Plan:
        row = self._latest("client", plan.name)
        plan.previous, plan.supersede = row, False
        status = _row_status(row, now) if row else None
        if status is None:
            plan.issue, plan.reason = True, "issued: new client"
        elif status in ("revoked", "expired"):
            plan.issue, plan.reason = True, f"issued: previous certificate {status}"
        elif reissue and self.keep_superseded:
            plan.issue = True
            plan.reason = f"reissued: previous serial {row['serial']} stays valid until delivery"
        elif reissue:
            plan.issue, plan.supersede = True, True
            plan.reason = f"reissued: previous serial {row['serial']} revoked as superseded"
        else:
            plan.issue, plan.reason = False, _unchanged_reason(row, now)
        return plan

    def _issue_planned(self, tx: _Transaction, plans: list[_Plan], now) -> dict[str, str]:
        if not plans:
            return {}
        ca_cert, ca_key = self._signer("client-ca", now)
        serials = self._pick_serials(len(plans))
        pairs = list(zip(plans, serials, strict=True))
        tx.journal([self._client_files(p.name, s, p.public_key is None) for p, s in pairs])
        key_type, rows, staged = self._meta("key_type"), [], []
        for plan, serial in pairs:
            key, cert = self._sign_client(plan, serial, key_type, ca_cert, ca_key, now)
            staged.append((self._client_files(plan.name, serial, key is not None), cert, key))
            rows.append({**_row(cert, "client", plan.name, now), "key_stored": int(bool(key))})
        tx.stage(staged)
        self._db.executemany(_INSERT, rows)
        self._supersede([p.previous["serial"] for p in plans if p.supersede], tx, now)
        return {p.name: pki.serial_hex(s) for p, s in zip(plans, serials, strict=True)}

    @staticmethod
    def _sign_client(plan: _Plan, serial: int, key_type: str, ca_cert, ca_key, now) -> tuple:
        """(new key or ``None`` for a CSR, certificate) for one planned client."""
        key = None if plan.public_key else pki.generate_key(key_type)
        public_key = plan.public_key or key.public_key()
        cert = pki.issue_client_cert(
            ca_cert, ca_key, public_key, plan.name, serial, now, plan.days, plan.org, plan.email
        )
        return key, cert

    def _pick_serials(self, count: int) -> list[int]:
        """``count`` fresh serials, each checked against the index and the others."""
        chosen: set[int] = set()
        for _ in range(count):
            chosen.add(pki.new_serial(lambda s: s in chosen or self._serial_taken(s)))
        return list(chosen)

    def _supersede(self, serials: list[str], tx: _Transaction, now) -> None:
        for serial in serials:
            self._mark_revoked(serial, "superseded", now)
        if serials:
            self._write_crl(tx, now)

    def _result(self, plan: _Plan, serial: str | None) -> IssueResult:
        cert_path, key_path = self._client_paths(plan.name)
        serial = serial or (plan.previous["serial"] if plan.previous else "")
        return IssueResult(plan.name, serial, plan.issue, plan.reason, cert_path, key_path)

    def revoke_client(
        self, name: str, reason: str = "unspecified", *, now: dt.datetime | None = None
    ) -> str:
        """Revoke ``name``'s current certificate and regenerate ``crl.pem``; returns its serial.

        Revoking an already revoked client changes nothing. Example:
        ``store.revoke_client("bob", reason="key_compromise")``.
        """
        pki.validate_client_name(name)
        pki.validate_revocation_reason(reason)
        now = now or _utcnow()
        if self._latest("client", name) is None:
            raise self._unknown_client(name)
        self._signer("client-ca", now)
        with self._transaction() as tx:
            row = self._latest("client", name)
            if row["status"] != "revoked":
                self._mark_revoked(row["serial"], reason, now)
                self._write_crl(tx, now)
        return row["serial"]

    def refresh_crl(self, *, days: int | None = None, now: dt.datetime | None = None) -> None:
        """Re-sign ``crl.pem`` with a fresh thisUpdate and nextUpdate (``days``, default 180).

        ``crl.pem`` may be missing or broken: it is signed again from the index."""
        days = self.crl_days if days is None else days
        pki.validate_days(days)  # 0 is refused, not taken for the default
        now = now or _utcnow()
        self._signer("client-ca", now)
        with self._transaction() as tx:
            self._write_crl(tx, now, days)

    def client_status(self, name: str) -> str | None:
        """``valid``, ``revoked`` or ``expired`` for ``name``'s latest certificate, or ``None``."""
        row = self._latest("client", pki.validate_client_name(name))
        if row is None:
            return None
        status = _row_status(row, _utcnow())
        return "valid" if status == "expiring" else status

    def client_material(self, name: str) -> ClientMaterial | None:
        """``name``'s current certificate and key from ``clients/<name>/``, or ``None``."""
        row = self._latest("client", pki.validate_client_name(name))
        if row is None:
            return None
        cert_path, key_path = self._client_paths(name)
        cert_pem, key_pem = _files_as_indexed(row, cert_path, key_path)
        if cert_pem is None:
            with self._transaction():  # a run was killed between commit and rename: finish it
                pass
            cert_pem, key_pem = _files_as_indexed(row, cert_path, key_path)
        if cert_pem is None:
            raise UserError(
                f"{_display(cert_path.parent)}/ does not hold serial {row['serial']} "
                "recorded in the index: "
                f"run `inv renew-client --name {name}`"
            )
        not_after = dt.datetime.fromisoformat(row["not_after"])
        status = _row_status(row, _utcnow())
        return ClientMaterial(
            name, row["serial"], status, not_after, cert_path, key_path, cert_pem, key_pem
        )

    # --- servers ---------------------------------------------------------------------------

    def server_cert(
        self,
        host: str,
        dns_names: Iterable[str],
        ip_addresses: Iterable[str],
        now: dt.datetime | None = None,
    ) -> ServerCert:
        """The server certificate for ``host``, issued only when missing, when its names differ,
        when less than 30 days are left, or when another server CA signed it.

        An up-to-date certificate is returned without opening the CA key (no passphrase needed).
        Example: ``store.server_cert("api1", ["api1.example.com"], ["192.0.2.10"])``.
        """
        pki.validate_host_name(host)
        dns, ips = pki.server_names(dns_names, ip_addresses)
        now = now or _utcnow()
        current = self._current_server(host, dns, ips, now)
        if current.reason.startswith("ok"):
            return current
        self._signer("server-ca", now)
        with self._transaction() as tx:
            current = self._current_server(host, dns, ips, now)  # another run may have done it
            if current.reason.startswith("ok"):
                return current
            self._issue_server(tx, host, dns, ips, now)
        cert = self._current_server(host, dns, ips, now)
        return ServerCert(
            cert.cert_pem, cert.key_pem, cert.chain_pem, True, f"issued: {current.reason}"
        )

    def server_cert_preview(
        self,
        host: str,
        dns_names: Iterable[str],
        ip_addresses: Iterable[str],
        now: dt.datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """What ``server_cert`` would return as (certificate, key), issuing nothing.

        For check mode: the stored pair when it is up to date, else placeholders naming the reason
        (so a diff shows the change) — no CA key, no passphrase, no write.
        """
        pki.validate_host_name(host)
        dns, ips = pki.server_names(dns_names, ip_addresses)
        current = self._current_server(host, dns, ips, now or _utcnow())
        if current.reason.startswith("ok"):
            return current.cert_pem, current.key_pem
        note = (
            f"(check mode: a new server certificate would be issued: {current.reason})\n".encode()
        )
        return note, b"(check mode: a new key would be generated)\n"

    def _current_server(self, host, dns, ips, now) -> ServerCert:
        cert_path, key_path = self._server_paths(host)
        cert_pem, key_pem, chain = _read(cert_path), _read(key_path), self.server_ca_pem()
        if cert_pem is None or key_pem is None:
            return ServerCert(b"", b"", chain, False, "no certificate yet")
        cert = x509.load_pem_x509_certificate(cert_pem)
        reason = _server_staleness(cert, key_pem, dns, ips, now, self._ca_cert("server-ca"))
        return ServerCert(cert_pem, key_pem, chain, False, reason)

    def _issue_server(self, tx: _Transaction, host, dns, ips, now) -> None:
        ca_cert, ca_key = self._signer("server-ca", now)
        serial = pki.new_serial(self._serial_taken)
        files = self._server_files(host, serial)
        tx.journal([files])
        key = pki.generate_key(self._meta("key_type"))
        cert = pki.issue_server_cert(ca_cert, ca_key, key.public_key(), dns, ips, serial, now)
        tx.stage([(files, cert, key)])
        self._db.execute(
            "UPDATE certificates SET status = 'replaced' "
            "WHERE kind = 'server' AND name = ? AND status = 'valid'",
            (host,),
        )
        self._db.execute(_INSERT, _row(cert, "server", host, now))

    # --- reading ---------------------------------------------------------------------------

    def list(self, include_replaced: bool = False) -> list[CertRecord]:
        """Every certificate in the index (CAs, servers, clients), oldest first per name."""
        now = _utcnow()
        rows = self._db.execute("SELECT * FROM certificates ORDER BY kind, name, id").fetchall()
        records = [_record(row, now) for row in rows]
        return [r for r in records if include_replaced or r.status != "replaced"]

    def crl_pem(self) -> bytes:
        """The client CA's current CRL (``crl.pem``); ``UserError`` saying how to remake it."""
        return self._read_file(CRL, "run `inv pki.crl` to sign it again, then `inv pki.crl --push`")

    def crl(self) -> x509.CertificateRevocationList:
        """The client CA's current CRL, parsed."""
        try:
            return x509.load_pem_x509_crl(self.crl_pem())
        except ValueError:
            raise UserError(
                f"{_display(self.path / CRL)} is not a PEM CRL: run `inv pki.crl` to sign it again"
            ) from None

    def crl_next_update(self) -> dt.datetime:
        """When ``crl.pem`` expires (nginx then rejects every client)."""
        return self.crl().next_update_utc

    def crl_this_update(self) -> dt.datetime:
        """When ``crl.pem`` was signed (back-dated 5 minutes)."""
        return self.crl().last_update_utc

    def client_ca_pem(self) -> bytes:
        """The client CA certificate (nginx ``ssl_client_certificate``)."""
        return self._read_file("client-ca.crt", RESTORE)

    def server_ca_pem(self) -> bytes:
        """The server CA certificate (clients verify the API with it)."""
        return self._read_file("server-ca.crt", RESTORE)

    def _read_file(self, name: str, fix: str) -> bytes:
        """A file of the PKI directory; a missing or unreadable one is one line with ``fix``."""
        path = self.path / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{_display(path)} is missing: {fix}") from None
        except OSError as error:
            raise _unreadable(path, error) from None

    # --- the smoke test's own certificates (pki.SMOKE_NAMES) -------------------------------

    def smoke_certificates(
        self, *, now: dt.datetime | None = None
    ) -> tuple[dict[str, SmokeCertificate], bool]:
        """The smoke test's client certificates, ``{"revoked": ..., "expired": ...}``, and
        whether the CRL changed (the revoked one was made just now: the hosts' CRL lags).

        ``init`` makes them: signed by the client CA, recorded in the index (kind ``smoke``,
        unique serials), keys 0600 in ``smoke/``; the revoked one is in the CRL. A PKI from before
        them gets them here on first use, which needs the CA passphrase and changes the CRL.
        Example: ``store.smoke_certificates()[0]["revoked"].serial``.
        """
        crl_changed = False
        if self._missing_smoke():
            with self._transaction():  # a killed run may only have to be finished
                pass
            crl_changed = bool(self._missing_smoke()) and self._issue_smoke_certificates(now)
        return {label: self._smoke_certificate(label) for label in SMOKE_LABELS}, crl_changed

    def _issue_smoke_certificates(self, now: dt.datetime | None) -> bool:
        """Make the missing ones; whether the CRL changed (a new revoked one)."""
        now = now or _utcnow()
        ca_cert, ca_key = self._signer("client-ca", now)
        with self._transaction() as tx:
            missing = self._missing_smoke()  # another run may have made them meanwhile
            if not missing:
                return False
            self._allow_smoke_kind()
            serials = dict(zip(missing, self._pick_serials(len(missing)), strict=True))
            tx.journal([self._smoke_files(label, serial) for label, serial in serials.items()])
            signed = {label: self._sign_smoke(label, serial, ca_cert, ca_key, now)
                      for label, serial in serials.items()}  # fmt: skip
            tx.stage(list(signed.values()))
            rows = [_row(cert, "smoke", SMOKE_LABELS[label], now)
                    for label, (_, cert, _) in signed.items()]  # fmt: skip
            self._db.executemany(_INSERT, rows)
            if "revoked" in serials:
                self._mark_revoked(pki.serial_hex(serials["revoked"]), "unspecified", now)
                self._write_crl(tx, now)
        return "revoked" in serials

    def _sign_smoke(self, label: str, serial: int, ca_cert, ca_key, now) -> tuple:
        """(staged files, certificate, new key) for one of the smoke test's certificates."""
        key = pki.generate_key(self._meta("key_type"))
        name = SMOKE_LABELS[label]
        cert = pki.issue_smoke_cert(ca_cert, ca_key, key.public_key(), name, serial, now)
        return self._smoke_files(label, serial), cert, key

    def _missing_smoke(self) -> list[str]:
        """Labels whose latest index row is missing or whose files do not hold its serial."""
        return [label for label in SMOKE_LABELS if self._smoke_stored(label) is None]

    def _smoke_stored(self, label: str) -> tuple[str, bytes, bytes] | None:
        """(serial, certificate, key) as the index and ``smoke/`` agree on them, else ``None``."""
        row = self._latest("smoke", SMOKE_LABELS[label])
        if row is None:
            return None
        cert_pem, key_pem = _files_as_indexed(row, *self._smoke_paths(label))
        return (row["serial"], cert_pem, key_pem) if cert_pem else None

    def _smoke_certificate(self, label: str) -> SmokeCertificate:
        return SmokeCertificate(label, *self._smoke_stored(label))

    def _smoke_paths(self, label: str) -> tuple[Path, Path]:
        return self.path / "smoke" / f"{label}.crt", self.path / "smoke" / f"{label}.key"

    def _smoke_files(self, label: str, serial: int) -> _StagedFiles:
        return _StagedFiles(pki.serial_hex(serial), *self._smoke_paths(label))

    def _allow_smoke_kind(self) -> None:
        """An index made before the smoke test's certificates refuses kind 'smoke' (its CHECK):
        rebuild the table under the current constraint, rows unchanged, in this transaction."""
        query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'certificates'"
        (sql,) = self._db.execute(query).fetchone()
        if "'smoke'" in sql:
            return
        new = sql.replace("certificates", "certificates_new", 1)
        self._db.execute(new.replace("'client')", "'client', 'smoke')", 1))
        self._db.execute("INSERT INTO certificates_new SELECT * FROM certificates")
        self._db.execute("DROP TABLE certificates")
        self._db.execute("ALTER TABLE certificates_new RENAME TO certificates")
        self._db.execute("CREATE INDEX certificates_by_name ON certificates (kind, name)")

    # --- internals -------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(
                self.path / INDEX, timeout=self.lock_timeout, isolation_level=None
            )
            self._conn.row_factory = sqlite3.Row
        return self._conn

    def close(self) -> None:
        """Close the index connection (optional; garbage collection does it too)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _meta(self, key: str) -> str:
        return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def _latest(self, kind: str, name: str) -> sqlite3.Row | None:
        query = "SELECT * FROM certificates WHERE kind = ? AND name = ? ORDER BY id DESC LIMIT 1"
        return self._db.execute(query, (kind, name)).fetchone()

    def _serial_taken(self, serial: int) -> bool:
        query = "SELECT 1 FROM certificates WHERE serial = ?"
        return self._db.execute(query, (pki.serial_hex(serial),)).fetchone() is not None

    def _ca_cert(self, kind: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self._read_file(f"{kind}.crt", RESTORE))

    def _signer(self, kind: str, now) -> tuple:
        """(CA certificate, CA key) for ``kind``; checks expiry, asks for the passphrase once."""
        if kind not in self._signers:
            ca_cert = self._ca_cert(kind)
            pki.check_ca_usable(ca_cert, now)
            self._signers[kind] = (ca_cert, self._load_ca_key(kind))
        pki.check_ca_usable(self._signers[kind][0], now)
        return self._signers[kind]

    def _load_ca_key(self, kind: str):
        path = self.path / f"{kind}.key"
        self._passphrase = self._passphrase or ca_passphrase()
        try:
            return pki.load_private_key(path.read_bytes(), self._passphrase)
        except (ValueError, TypeError):
            raise UserError(
                f"wrong CA passphrase: {_display(path)} does not open with it "
                f"(check {PASSPHRASE_ENV})"
            ) from None

    def _client_paths(self, name: str) -> tuple[Path, Path]:
        folder = self.path / "clients" / name
        return folder / f"{name}.crt", folder / f"{name}.key"

    def _server_paths(self, host: str) -> tuple[Path, Path]:
        folder = self.path / "servers" / host
        return folder / f"{host}.crt", folder / f"{host}.key"

    def _client_files(self, name: str, serial: int, with_key: bool = True) -> _StagedFiles:
        return _StagedFiles(pki.serial_hex(serial), *self._client_paths(name), with_key)

    def _server_files(self, host: str, serial: int) -> _StagedFiles:
        return _StagedFiles(pki.serial_hex(serial), *self._server_paths(host))

    def _unknown_client(self, name: str) -> UserError:
        names = [
            r[0]
            for r in self._db.execute(
                "SELECT DISTINCT name FROM certificates WHERE kind = 'client'"
            )
        ]
        close = difflib.get_close_matches(name, names, n=3)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else "; `inv pki.list` shows every client"
        )
        return UserError(f"no client named {name!r} in the index{hint}")

    def _mark_revoked(self, serial: str, reason: str, now) -> None:
        query = (
            "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? "
            "WHERE serial = ?"
        )
        self._db.execute(query, (now.isoformat(), reason, serial))

    def _write_crl(self, tx: _Transaction, now, days: int | None = None) -> None:
        """Sign and write ``crl.pem`` before the commit, so a failure errs on the revoked side."""
        ca_cert, ca_key = self._signer("client-ca", now)
        number = max(int(self._meta("crl_number")), self._file_crl_number()) + 1
        days = self.crl_days if days is None else days
        crl = pki.sign_crl(ca_cert, ca_key, self._revocations(), number, now, days)
        atomic_write(self.path / CRL, crl.public_bytes(serialization.Encoding.PEM))
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'crl_number'", (str(number),))

    def _file_crl_number(self) -> int:
        try:
            return pki.crl_number(x509.load_pem_x509_crl((self.path / CRL).read_bytes()))
        except (OSError, ValueError, x509.ExtensionNotFound):
            return 0  # missing or broken: the number recorded in the index carries on

    def _revocations(self) -> list[pki.Revocation]:
        query = (
            "SELECT serial, revoked_at, revocation_reason FROM certificates "
            "WHERE kind IN ('client', 'smoke') AND status = 'revoked'"
        )
        return [
            pki.Revocation(int(serial, 16), dt.datetime.fromisoformat(at), reason)
            for serial, at, reason in self._db.execute(query)
        ]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        """One writer at a time: file lock, recovery of a killed run, index transaction."""
        with self._lock():
            tx = _Transaction(self.path, self._db)
            try:
                tx.recover()
                self._db.execute("BEGIN IMMEDIATE")
                yield tx
                tx.commit()
            except BaseException as error:
                tx.abandon()
                if isinstance(error, OSError | sqlite3.Error):
                    raise _storage_error(error, self.path, tx.committed) from error
                raise

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        except OSError as error:
            raise _unreadable(self.path / LOCK, error, "write") from None
        try:
            _acquire(fd, self.lock_timeout, self.path)
            yield
        finally:
            os.close(fd)  # closing releases the lock; so does the process dying


def _acquire(fd: int, timeout: float, path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise UserError(
                    f"another run has held {_display(path / LOCK)} for {timeout:.0f} s: "
                    "wait for it, then retry"
                ) from None
            time.sleep(0.005)


class _StagedFiles:
    """A certificate (and its key, unless a CSR brought only the public key) staged as
    ``.<final>.<serial>.staged`` until the index commits."""

    def __init__(self, serial: str, cert: Path, key: Path, with_key: bool = True):
        self.serial, self.cert, self.key, self.with_key = serial, cert, key, with_key
        folder = str(cert.parent)
        self.staged_cert = f"{folder}/.{cert.name}.{serial}.staged"
        self.staged_key = f"{folder}/.{key.name}.{serial}.staged"

    def pairs(self) -> list[tuple[str, Path]]:
        """(staged, final) for the certificate and, if stored here, the key."""
        pairs = [(self.staged_cert, self.cert)]
        return [*pairs, (self.staged_key, self.key)] if self.with_key else pairs

    def to_journal(self) -> dict:
        """This entry as a line of the journal."""
        return {
            "serial": self.serial,
            "cert": str(self.cert),
            "key": str(self.key),
            "with_key": self.with_key,
        }

    @classmethod
    def from_journal(cls, entry: dict) -> _StagedFiles:
        """An entry read back from the journal."""
        return cls(entry["serial"], Path(entry["cert"]), Path(entry["key"]), entry["with_key"])


class _Transaction:
    """Journal + staged files around one index transaction (see the module docstring)."""

    def __init__(self, root: Path, db: sqlite3.Connection):
        self.root, self.db = root, db
        self.entries: list[_StagedFiles] = []
        self.committed = False

    def journal(self, entries: list[_StagedFiles]) -> None:
        """Record what is about to be staged, durably, before staging it."""
        self.entries.extend(entries)
        document = [entry.to_journal() for entry in self.entries]
        atomic_write(self.root / JOURNAL, json.dumps(document), PRIVATE_FILE_MODE)

    def stage(self, items: list[tuple[_StagedFiles, x509.Certificate, object]]) -> None:
        """Write certificates and keys (0600) under their staged names.

        A ``None`` key (signed from a CSR) stages the certificate alone."""
        writes = []
        for files, cert, key in items:
            if key is not None:
                writes.append((files.staged_key, pki.private_key_pem(key), PRIVATE_FILE_MODE))
            writes.append((files.staged_cert, _cert_pem(cert), PUBLIC_FILE_MODE))
        for folder in {files.cert.parent for files, _, _ in items}:
            make_private_dir(folder)
        for path, data, mode in writes:
            write_new_file(path, data, mode)

    def commit(self) -> None:
        """Sync the staged files, commit the index, rename them into place, drop the journal."""
        if self.entries:
            sync_filesystem(self.root)
        self.db.execute("COMMIT")
        self.committed = True
        self._publish(self.entries)

    def abandon(self) -> None:
        """After a failure: roll the index back and delete staged files (or finish if committed)."""
        with contextlib.suppress(sqlite3.Error):
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        with contextlib.suppress(OSError):
            if self.committed:
                self._publish(self.entries)
            else:
                self._discard(self.entries)

    def recover(self) -> None:
        """Finish (committed serials) or undo (the rest) what a killed run left behind."""
        for leftover in self.root.glob(".*.tmp"):  # an atomic_write cut short
            leftover.unlink(missing_ok=True)
        path = self.root / JOURNAL
        if not path.exists():
            return
        entries = [_StagedFiles.from_journal(entry) for entry in json.loads(path.read_text())]
        known = {e.serial for e in entries if self._in_index(e.serial)}
        self._discard([e for e in entries if e.serial not in known], keep_journal=True)
        self._publish([e for e in entries if e.serial in known], always_sync=True)

    def _in_index(self, serial: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM certificates WHERE serial = ?", (serial,)).fetchone()
            is not None
        )

    def _publish(self, entries: list[_StagedFiles], always_sync: bool = False) -> None:
        for entry in entries:
            for staged, final in entry.pairs():
                with contextlib.suppress(FileNotFoundError):  # already renamed by an earlier try
                    os.replace(staged, final)
            if not entry.with_key:  # signed from a CSR: a key kept from an earlier issue is stale
                entry.key.unlink(missing_ok=True)
        if entries or always_sync:
            sync_filesystem(self.root)
        (self.root / JOURNAL).unlink(missing_ok=True)

    def _discard(self, entries: list[_StagedFiles], keep_journal: bool = False) -> None:
        for entry in entries:
            for staged in (entry.staged_cert, entry.staged_key):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staged)
            with contextlib.suppress(OSError):  # a new client's folder, now empty
                entry.cert.parent.rmdir()
        if not keep_journal:
            (self.root / JOURNAL).unlink(missing_ok=True)


def _unreadable(path: Path, error: OSError, verb: str = "read") -> UserError:
    """``cannot read pki/index.sqlite3: Permission denied; ...`` with the usual fix."""
    return UserError(f"cannot {verb} {_display(path)}: {error.strerror}; {_own_it(path.parent)}")


def _own_it(folder: Path) -> str:
    return (
        "the PKI directory must be yours: fix its owner or mode "
        f"(for example `sudo chown -R $USER {_display(folder)}`)"
    )


def _read_head(path: Path, size: int) -> bytes | None:
    """The first ``size`` bytes of ``path``, ``None`` if it does not exist; ``UserError`` if it
    cannot be read (a PKI directory of another user, mode 0700)."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as error:
        raise _unreadable(path, error) from None


def _storage_error(error: Exception, root: Path, committed: bool) -> UserError:
    outcome = (
        "recorded in the index; the next run finishes the files"
        if committed
        else "nothing was recorded in the index"
    )
    if getattr(error, "errno", None) == errno.ENOSPC or "disk is full" in str(error):
        where = (
            _display(Path(error.filename))
            if getattr(error, "filename", None)
            else f"{_display(root)}/"
        )
        return UserError(f"disk full writing {where}: {outcome}; free some space and re-run")
    if getattr(error, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"{error.strerror}; {outcome}"
        return UserError(f"cannot write in {_display(root)}/: {reason}; {_own_it(root)}")
    return UserError(f"could not update the PKI in {_display(root)}/: {error}; {outcome}")


_INSERT = """INSERT INTO certificates
    (serial, name, kind, subject, not_before, not_after, status, sha256, issued_at, key_stored)
    VALUES (:serial, :name, :kind, :subject, :not_before, :not_after, 'valid', :sha256,
            :issued_at, :key_stored)"""


def _row(cert: x509.Certificate, kind: str, name: str, now) -> dict:
    return {
        "serial": pki.serial_hex(cert.serial_number),
        "name": name,
        "kind": kind,
        "subject": cert.subject.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": pki.fingerprint(cert),
        "issued_at": now.isoformat(),
        "key_stored": 1,
    }


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _files_as_indexed(row: sqlite3.Row, cert_path: Path, key_path: Path) -> tuple:
    """(certificate, key) if the files match the index ``row`` (key ``None`` for a CSR client),
    else ``(None, None)``."""
    cert_pem = _read(cert_path)
    key_pem = _read(key_path) if row["key_stored"] else None
    if cert_pem is None or not _is_cert_with_serial(cert_pem, row["serial"]):
        return None, None
    if row["key_stored"] and key_pem is None:
        return None, None
    return cert_pem, key_pem


def _is_cert_with_serial(pem: bytes, serial: str) -> bool:
    try:
        return pki.serial_hex(x509.load_pem_x509_certificate(pem).serial_number) == serial
    except ValueError:
        return False


def _row_status(row: sqlite3.Row, now) -> str:
    if row["status"] != "valid":
        return row["status"]
    left = dt.datetime.fromisoformat(row["not_after"]) - now
    if left <= dt.timedelta(0):
        return "expired"
    return "expiring" if left < dt.timedelta(days=EXPIRING_DAYS) else "valid"


def _record(row: sqlite3.Row, now) -> CertRecord:
    not_after = dt.datetime.fromisoformat(row["not_after"])
    return CertRecord(
        row["name"],
        row["kind"],
        row["serial"],
        not_after,
        (not_after - now).days,
        _row_status(row, now),
        row["revoked_at"],
        row["revocation_reason"],
        row["sha256"],
    )


def _unchanged_reason(row: sqlite3.Row, now) -> str:
    not_after = dt.datetime.fromisoformat(row["not_after"])
    reason = f"unchanged: valid certificate (serial {row['serial']}) until {not_after:%Y-%m-%d}"
    if _row_status(row, now) == "expiring":
        days = (not_after - now).days
        reason += f"; expires in {days} days: run `inv renew-client --name {row['name']}`"
    return reason + " (--reissue to replace it)"


def _server_staleness(cert, key_pem: bytes, dns, ips, now, ca_cert) -> str:
    """Why a stored server certificate must be reissued, or ``ok: ...`` if it is fine."""
    have_dns, have_ips = pki.san_names(cert)
    want_ips = {str(ip) for ip in ips}
    if (have_dns, have_ips) != (set(dns), want_ips):
        added = sorted((set(dns) | want_ips) - (have_dns | have_ips))
        removed = sorted((have_dns | have_ips) - (set(dns) | want_ips))
        return f"names changed (added {added or 'none'}, removed {removed or 'none'})"
    if cert.issuer != ca_cert.subject or not _signed_by(cert, ca_cert):
        return "signed by another server CA"
    if serialization.load_pem_private_key(key_pem, None).public_key() != cert.public_key():
        return "key and certificate do not match"
    left = cert.not_valid_after_utc - now
    if left < dt.timedelta(days=SERVER_RENEW_DAYS):
        return f"{max(left.days, 0)} days left (< {SERVER_RENEW_DAYS})"
    return f"ok: valid until {cert.not_valid_after_utc:%Y-%m-%d}, names match"


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _lifetime_days(cert: x509.Certificate) -> int:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc - pki.CLOCK_SKEW
    return max(1, round(lifetime.total_seconds() / 86400))


def _org(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)
    return values[0].value if values else None


def _email(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    emails = san.get_values_for_type(x509.RFC822Name)
    return emails[0] if emails else None
