"""The PKI on disk, as one facade: CA files, issued keys and certificates, the CRL, the index.

Layout of the PKI directory (tests and other tools rely on it)::

    client-ca.crt  client-ca.key  server-ca.crt  server-ca.key  crl.pem  index.sqlite3
    servers/<host>/<host>.crt  servers/<host>/<host>.key
    clients/<name>/<name>.crt  clients/<name>/<name>.key
    smoke/revoked.crt  smoke/revoked.key  smoke/expired.crt  smoke/expired.key

Every write goes through ``journal.transaction`` (lock, journal, staging: crash-safe). CA keys
are encrypted (``keys.py``) with the passphrase from ``passphrase.py`` and only opened to sign;
nothing outside this package reads them. Clients: ``issuance.py``; the smoke test's own
certificates: ``smoke_certs.py``; when a server certificate is stale: ``policy.py``; a CA
rollover (``client-ca.old.*``, ``server-ca.next.*``, ``server-ca.old.*``): ``rollover.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..errors import BadInput, UserError
from ..files import PRIVATE_FILE_MODE, atomic_write, make_private_dir
from ..project import project_path
from . import index, journal, keys, passphrase, profile
from .issuance import ClientIssuance, cert_pem, read_optional, utcnow
from .messages import display, read_head, storage_error, unreadable
from .policy import server_staleness
from .rollover import CaRollover
from .settings import PkiSettings, as_lifetime, third_left
from .smoke_certs import SmokeCertificates

PKI_DIR_ENV = "MTLS_DEPLOY_PKI_DIR"
CRL = "crl.pem"
RESTORE = "restore it from your backup of the PKI directory"


@dataclass(frozen=True)
class ServerCert:
    """A host's server certificate, key and issuing CA (``chain_pem``), and whether it is new."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    changed: bool
    reason: str


def default_pki_dir() -> Path:
    """``$MTLS_DEPLOY_PKI_DIR``, else ``pki/`` in the project directory (see ``project.py``)."""
    return Path(os.environ.get(PKI_DIR_ENV) or project_path("pki"))


class PkiStore(ClientIssuance, SmokeCertificates, CaRollover):
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
        settings: PkiSettings | None = None,
        lock_timeout: float = 120.0,
        keep_superseded: bool = False,
    ):
        self.path = Path(path) if path is not None else default_pki_dir()
        # lifetimes and thresholds (the caller reads them from the inventory: clients.py)
        self.settings = settings or PkiSettings()
        self.lock_timeout = lock_timeout
        # True: a reissue leaves the predecessor valid until ``revoke_superseded`` (called once
        # the new certificate is delivered), so a failed delivery never locks a client out
        self.keep_superseded = keep_superseded
        self._passphrase = passphrase
        self._index = index.Index(self.path / index.INDEX, lock_timeout)
        self._signers: dict[str, tuple] = {}

    @classmethod
    def open(cls, path=None, **options) -> PkiStore:
        """The existing PKI at ``path`` (default ``default_pki_dir()``); ``UserError`` if none."""
        store = cls(path, **options)
        store._check_index()
        return store

    def _check_index(self) -> None:
        """One clear line for a PKI directory we cannot read and for an index that is not one."""
        path = self.path / index.INDEX
        header = read_head(path, len(index.SQLITE_HEADER))
        if header is None:
            raise UserError(f"no PKI in {display(self.path)}/: run `inv pki.init` first")
        try:
            self._index.check(header)
        except (sqlite3.Error, TypeError) as error:
            self.close()
            raise UserError(
                f"{display(path)} is not a readable PKI index ({error}): restore it from your "
                f"backup of {display(self.path)}/"
            ) from None

    def close(self) -> None:
        """Close the index connection (optional; garbage collection does it too)."""
        self._index.close()

    # --- creating ------------------------------------------------------------------------

    def init(
        self,
        name: str = "Example API",
        key_type: str = "ec",
        *,
        ca_days: int | dt.timedelta | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Create the client CA, the server CA, the index, the smoke test's own certificates
        (``smoke_certificates``) and a CRL that lists only its revoked one; refuse if any exist.

        Example: ``PkiStore(Path("pki")).init(name="Example API", key_type="ec")``.
        """
        profile.validate_key_type(key_type)
        if not (0 < len(name) <= 50 and name.isprintable()):
            raise BadInput(f"invalid PKI name {name!r}: use 1-50 printable characters")
        if self.path.exists() and any(self.path.iterdir()):
            raise UserError(
                f"{display(self.path)}/ is not empty: refusing to overwrite an existing PKI "
                "(if an earlier pki.init was interrupted, remove the directory and run it again)"
            )
        ca_lifetime = as_lifetime(self.settings.ca_lifetime if ca_days is None else ca_days)
        secret = self._passphrase or passphrase.ca_passphrase(confirm=True)
        make_private_dir(self.path)
        try:
            self._create(name, key_type, ca_lifetime, now or utcnow(), secret)
        except BaseException as error:
            self.close()
            self._empty_directory()  # it was empty before: leave no half-made PKI behind
            if isinstance(error, OSError | sqlite3.Error):
                raise storage_error(error, self.path, committed=False) from error
            raise

    def _create(self, name, key_type, ca_days, now, secret: bytes) -> None:
        rows = [
            self._create_ca(kind, name, key_type, ca_days, now, secret)
            for kind in ("client-ca", "server-ca")
        ]
        crl = self._initial_crl(secret, now)
        meta = {"name": name, "key_type": key_type, "crl_number": str(profile.crl_number(crl))}
        index.create(self.path / index.INDEX, rows, meta)
        self._passphrase = secret
        self._issue_smoke_certificates(now)

    def _empty_directory(self) -> None:
        for child in self.path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def _create_ca(self, kind, name, key_type, days, now, secret: bytes) -> dict:
        key = profile.generate_key(key_type)
        label = "client CA" if kind == "client-ca" else "server CA"
        cert = profile.make_ca(key, f"{name} {label}", now, days, org=name)
        key_pem = keys.encrypted_private_key_pem(key, secret)
        atomic_write(self.path / f"{kind}.key", key_pem, PRIVATE_FILE_MODE)
        atomic_write(self.path / f"{kind}.crt", cert_pem(cert))
        return index.row(cert, kind, kind, now)

    def _initial_crl(self, secret: bytes, now) -> x509.CertificateRevocationList:
        ca_cert = x509.load_pem_x509_certificate((self.path / "client-ca.crt").read_bytes())
        ca_key = keys.load_private_key((self.path / "client-ca.key").read_bytes(), secret)
        crl = profile.sign_crl(ca_cert, ca_key, [], 1, now, self.settings.crl_lifetime)
        atomic_write(self.path / CRL, _crl_pem(crl))
        return crl

    # --- the CRL ---------------------------------------------------------------------------

    def refresh_crl(self, *, days: int | None = None, now: dt.datetime | None = None) -> None:
        """Re-sign ``crl.pem`` with a fresh thisUpdate and nextUpdate (``days``, default the
        settings' ``crl_lifetime``). ``crl.pem`` may be missing or broken: it is signed again
        from the index."""
        days = self.settings.crl_lifetime if days is None else days
        profile.validate_days(days)  # 0 is refused, not taken for the default
        now = now or utcnow()
        self._signer("client-ca", now)
        with self._transaction() as tx:
            self._write_crl(tx, now, days)

    def stale_crl_pem(self, *, now: dt.datetime | None = None) -> bytes:
        """A CRL of the client CA that ran out a day ago (valid from two days ago to one), for
        fault tests; written and recorded nowhere. Needs the CA passphrase.

        Built here rather than by ``profile.sign_crl``, which refuses dates before the CA's birth.
        """
        now = now or utcnow()
        ca_cert, ca_key = self._signer("client-ca", now)
        past = now - dt.timedelta(days=2)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(past)
            .next_update(past + dt.timedelta(days=1))
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        return _crl_pem(builder.sign(ca_key, hashes.SHA256()))

    def _write_crl(self, tx: journal.Transaction, now, days: int | None = None) -> None:
        """Sign and write ``crl.pem`` before the commit, so a failure errs on the revoked side.
        During a client CA rollover it holds a CRL per trusted client CA, the issuing one first
        (nginx refuses the clients of a trusted CA it has no CRL for)."""
        number = max(int(self._index.meta("crl_number")), self._file_crl_number()) + 1
        days = self.settings.crl_lifetime if days is None else days
        pems = []
        for kind in self.client_ca_kinds():
            ca_cert, ca_key = self._signer(kind, now)
            revoked = self._index.revocations(ca_cert.subject.rfc4514_string())
            pems.append(_crl_pem(profile.sign_crl(ca_cert, ca_key, revoked, number, now, days)))
        atomic_write(self.path / CRL, b"".join(pems))
        self._index.set_meta("crl_number", str(number))

    def crl_due(self, now: dt.datetime | None = None) -> bool:
        """Whether ``crl.pem`` has less than a third of its life left (to the second): time to
        re-sign it and push it. A missing or unreadable CRL is due too."""
        try:
            crl = x509.load_pem_x509_crl((self.path / CRL).read_bytes())
        except (OSError, ValueError):
            return True
        return third_left(crl.last_update_utc, crl.next_update_utc, now or utcnow())

    def _file_crl_number(self) -> int:
        try:
            return profile.crl_number(x509.load_pem_x509_crl((self.path / CRL).read_bytes()))
        except (OSError, ValueError, x509.ExtensionNotFound):
            return 0  # missing or broken: the number recorded in the index carries on

    # --- servers ---------------------------------------------------------------------------

    def server_cert(
        self,
        host: str,
        dns_names: Iterable[str],
        ip_addresses: Iterable[str],
        now: dt.datetime | None = None,
    ) -> ServerCert:
        """The server certificate for ``host``, issued only when ``policy.server_staleness``
        says so (names differ, under 30 days left, another server CA signed it, ...).

        An up-to-date certificate is returned without opening the CA key (no passphrase needed).
        Example: ``store.server_cert("api1", ["api1.example.com"], ["192.0.2.10"])``.
        """
        profile.validate_host_name(host)
        dns, ips = profile.server_names(dns_names, ip_addresses)
        now = now or utcnow()
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
        profile.validate_host_name(host)
        dns, ips = profile.server_names(dns_names, ip_addresses)
        current = self._current_server(host, dns, ips, now or utcnow())
        if current.reason.startswith("ok"):
            return current.cert_pem, current.key_pem
        note = f"(check mode: a new server certificate would be issued: {current.reason})\n"
        return note.encode(), b"(check mode: a new key would be generated)\n"

    def _current_server(self, host, dns, ips, now) -> ServerCert:
        cert_path, key_path = self._server_paths(host)
        cert, key, chain = read_optional(cert_path), read_optional(key_path), self.server_ca_pem()
        if cert is None or key is None:
            return ServerCert(b"", b"", chain, False, "no certificate yet")
        parsed = x509.load_pem_x509_certificate(cert)
        reason = server_staleness(parsed, key, dns, ips, now, self._ca_cert("server-ca"))
        return ServerCert(cert, key, chain, False, reason)

    def _issue_server(self, tx: journal.Transaction, host, dns, ips, now) -> None:
        ca_cert, ca_key = self._signer("server-ca", now)
        serial = profile.new_serial(self._index.serial_taken)
        files = journal.StagedFiles(profile.serial_hex(serial), *self._server_paths(host))
        tx.journal([files])
        key = profile.generate_key(self._index.meta("key_type"))
        lifetime = self.settings.server_lifetime
        cert = profile.issue_server_cert(
            ca_cert, ca_key, key.public_key(), dns, ips, serial, now, lifetime
        )
        tx.stage([(files, cert_pem(cert), keys.private_key_pem(key))])
        self._index.mark_servers_replaced(host)
        self._index.insert([index.row(cert, "server", host, now)])

    def _server_paths(self, host: str) -> tuple[Path, Path]:
        folder = self.path / "servers" / host
        return folder / f"{host}.crt", folder / f"{host}.key"

    # --- reading ---------------------------------------------------------------------------

    def list(self, include_replaced: bool = False) -> list[index.CertRecord]:
        """Every certificate in the index (CAs, servers, clients), oldest first per name."""
        now, warn = utcnow(), self.settings.warn_before
        records = [index.record(row, now, warn) for row in self._index.rows()]
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
                f"{display(self.path / CRL)} is not a PEM CRL: run `inv pki.crl` to sign it again"
            ) from None

    def crl_next_update(self) -> dt.datetime:
        """When ``crl.pem`` expires (nginx then rejects every client)."""
        return self.crl().next_update_utc

    def crl_this_update(self) -> dt.datetime:
        """When ``crl.pem`` was signed (back-dated: ``settings.backdate``)."""
        return self.crl().last_update_utc

    def client_ca_pem(self) -> bytes:
        """The trusted client CAs (nginx ``ssl_client_certificate``): the client CA, and during
        a rollover the old one after it."""
        return b"".join(self._read_file(f"{kind}.crt", RESTORE) for kind in self.client_ca_kinds())

    def server_ca_pem(self) -> bytes:
        """The server CA certificate (clients verify the API with it)."""
        return self._read_file("server-ca.crt", RESTORE)

    def _read_file(self, name: str, fix: str) -> bytes:
        """A file of the PKI directory; a missing or unreadable one is one line with ``fix``."""
        path = self.path / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{display(path)} is missing: {fix}") from None
        except OSError as error:
            raise unreadable(path, error) from None

    # --- signing and writing ---------------------------------------------------------------

    def _ca_cert(self, kind: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self._read_file(f"{kind}.crt", RESTORE))

    def _signer(self, kind: str, now) -> tuple:
        """(CA certificate, CA key) for ``kind``; checks expiry, asks for the passphrase once."""
        if kind not in self._signers:
            ca_cert = self._ca_cert(kind)
            profile.check_ca_usable(ca_cert, now)
            self._signers[kind] = (ca_cert, self._load_ca_key(kind))
        profile.check_ca_usable(self._signers[kind][0], now)
        return self._signers[kind]

    def _load_ca_key(self, kind: str):
        path = self.path / f"{kind}.key"
        self._passphrase = self._passphrase or passphrase.ca_passphrase()
        try:
            return keys.load_private_key(path.read_bytes(), self._passphrase)
        except (ValueError, TypeError):
            raise UserError(
                f"wrong CA passphrase: {display(path)} does not open with it "
                f"(check {passphrase.PASSPHRASE_ENV} or {passphrase.PASSPHRASE_FILE_ENV})"
            ) from None

    def _pick_serials(self, count: int) -> list[int]:
        """``count`` fresh serials, each checked against the index and the others."""
        chosen: set[int] = set()
        for _ in range(count):
            chosen.add(profile.new_serial(lambda s: s in chosen or self._index.serial_taken(s)))
        return list(chosen)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[journal.Transaction]:
        """One writer at a time: see ``journal.transaction``."""
        db, recorded = self._index.db, self._index.has_serial
        with journal.transaction(self.path, db, recorded, self.lock_timeout) as tx:
            self._index.add_ca_column()  # an index from before CA rollovers
            yield tx


def _crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)
