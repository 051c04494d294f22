"""The PKI as a no-op run reads it: the files nginx gets, and whether the server certificate and
the CRL are still good, answered without cryptography when a full check of the very same bytes
already said so.

Importing ``cryptography.x509`` and checking a server certificate (names, issuing CA,
signature, key, dates) four times a run cost a no-op ``inv provision`` about 40 ms of its
~0.45 s. When ``PkiStore`` finds a certificate up to date, ``QuickStore`` remembers a verdict
keyed by the SHA-256 of everything that check looked at (host, names asked for, certificate,
key, server CA) with the certificate's dates; a CRL's dates are remembered by its bytes. What
depends on the clock is never remembered, only the dates it is computed from, so the answers
are the store's own; any miss asks the store (opened on first use) and fills the memo.

The memo lives beside the fact cache (``~/.cache/mtls-deploy/pki-checked.json``, 0600): dates
and digests, no key and no certificate. Losing it costs one full check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..files import atomic_write
from ..project import project_path
from .settings import PkiSettings, third_left

PKI_DIR_ENV = (
    "MTLS_DEPLOY_PKI_DIR"  # store.default_pki_dir reads the same (a test holds them equal)
)
INDEX, SQLITE_HEADER = "index.sqlite3", b"SQLite format 3\x00"  # as index.py
CLIENT_CA_STEMS = ("client-ca", "client-ca.next", "client-ca.old")  # as rollover.client_ca_kinds
KEEP = 512  # verdicts kept: one per host and one per CRL; an older one only costs a full check


def default_pki_dir() -> Path:
    """``$MTLS_DEPLOY_PKI_DIR``, else ``pki/`` in the project directory (``store.default_pki_dir``)."""
    return Path(os.environ.get(PKI_DIR_ENV) or project_path("pki"))


@dataclass(frozen=True)
class UpToDate:
    """``PkiStore.server_cert``'s answer for a certificate that needs nothing (``ServerCert``)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    changed: bool
    reason: str


class QuickStore:
    """The read side of ``PkiStore`` that the tls role uses, from the files and the memo.

    Example: ``QuickStore(settings=PkiSettings()).crl_next_update()``
    """

    def __init__(self, path=None, *, settings: PkiSettings | None = None):
        self.path = Path(path) if path is not None else default_pki_dir()
        self.settings = settings or PkiSettings()
        if not self._index_readable():
            self.full  # noqa: B018 - the store's own one-line error (no PKI, a broken index)

    @cached_property
    def full(self):
        """The real store, for every miss and every write."""
        from .store import PkiStore

        return PkiStore.open(self.path, settings=self.settings)

    def _index_readable(self) -> bool:
        """What ``PkiStore.open`` checks: an SQLite index with its two tables."""
        path = self.path / INDEX
        try:
            with open(path, "rb") as file:
                if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                    return False
            db = sqlite3.connect(path, timeout=120.0, isolation_level=None)
            try:
                db.execute("SELECT value FROM meta WHERE key = 'key_type'").fetchone()[0]
                db.execute("SELECT count(*) FROM certificates").fetchone()
            finally:
                db.close()
        except (OSError, sqlite3.Error, TypeError):
            return False
        return True

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except OSError:
            return None

    # --- files ---------------------------------------------------------------------------------

    def crl_pem(self) -> bytes:
        """``crl.pem`` (a missing one: the store's error)."""
        found = self._read("crl.pem")
        return self.full.crl_pem() if found is None else found

    def client_ca_pem(self) -> bytes:
        """The trusted client CAs, the issuing one first (``PkiStore.client_ca_pem``)."""
        stems = [
            s for s in CLIENT_CA_STEMS if s == "client-ca" or (self.path / f"{s}.crt").exists()
        ]
        found = [self._read(f"{stem}.crt") for stem in stems]
        return self.full.client_ca_pem() if None in found else b"".join(found)

    # --- the CRL -------------------------------------------------------------------------------

    def crl_this_update(self) -> dt.datetime:
        return self._crl_dates()[0]

    def crl_next_update(self) -> dt.datetime:
        return self._crl_dates()[1]

    def _crl_dates(self) -> tuple[dt.datetime, dt.datetime]:
        pem = self.crl_pem()
        dates = recall(digest("crl", pem))
        if dates is not None:
            return dates
        from cryptography import x509

        try:
            crl = x509.load_pem_x509_crl(pem)  # the first CRL, as the store reads it
        except ValueError:
            return self.full.crl_this_update(), self.full.crl_next_update()  # its error
        remember(digest("crl", pem), crl.last_update_utc, crl.next_update_utc)
        return crl.last_update_utc, crl.next_update_utc

    def refresh_crl(self, **options) -> None:
        self.full.refresh_crl(**options)

    # --- the server certificate ----------------------------------------------------------------

    def server_cert_preview(self, host, dns_names, ip_addresses, now=None) -> tuple[bytes, bytes]:
        """``PkiStore.server_cert_preview``: the stored pair when it is up to date."""
        names = host, list(dns_names), list(ip_addresses)
        before = self._server_files(host)
        known = self._up_to_date(names, before, now)
        if known:
            return known.cert_pem, known.key_pem
        pair = self.full.server_cert_preview(*names, now)
        self._learn(names, before, pair)  # a placeholder (would issue) is never the stored pair
        return pair

    def server_cert(self, host, dns_names, ip_addresses, now=None):
        """``PkiStore.server_cert``: issues (through the store) only when the memo cannot say
        the stored certificate is up to date and the store finds it is not."""
        names = host, list(dns_names), list(ip_addresses)
        before = self._server_files(host)
        known = self._up_to_date(names, before, now)
        if known:
            return known
        result = self.full.server_cert(*names, now)
        if result.reason.startswith("ok"):
            self._learn(names, before, (result.cert_pem, result.key_pem))
        return result

    def _server_files(self, host: str) -> tuple:
        """(certificate, key, server CA) as stored; None for each one missing."""
        if not isinstance(host, str) or "/" in host or host in ("", ".", ".."):
            return None, None, None  # the store refuses such a name itself
        folder = f"servers/{host}/{host}"
        return self._read(f"{folder}.crt"), self._read(f"{folder}.key"), self._read("server-ca.crt")

    def _up_to_date(self, names: tuple, files: tuple, now) -> UpToDate | None:
        """The stored certificate, when a full check of these bytes found it up to date and
        its dates still say so (``policy.server_staleness``: not expired, over a third left)."""
        dates = None if None in files else recall(digest("server", *names, *files))
        now = now or dt.datetime.now(dt.UTC)
        if dates is None or dates[1] <= now or third_left(*dates, now):
            return None
        reason = f"ok: valid until {dates[1]:%Y-%m-%d}, names match"  # as server_staleness
        return UpToDate(files[0], files[1], files[2], False, reason)

    def _learn(self, names: tuple, before: tuple, pair: tuple[bytes, bytes]) -> None:
        """The store found the stored pair up to date: remember it with the certificate's
        dates, unless a file changed while it looked (its verdict would be another's)."""
        if (
            None in before
            or (before[0], before[1]) != pair
            or self._server_files(names[0]) != before
        ):
            return
        from cryptography import x509  # loaded already: the store answered

        cert = x509.load_pem_x509_certificate(pair[0])
        remember(
            digest("server", *names, *before), cert.not_valid_before_utc, cert.not_valid_after_utc
        )


# --- the memo ------------------------------------------------------------------------------------


def memo_file() -> Path:
    """``~/.cache/mtls-deploy/pki-checked.json`` (``$XDG_CACHE_HOME`` honoured)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mtls-deploy" / "pki-checked.json"


def digest(*parts) -> str:
    """SHA-256 over ``parts`` (bytes as they are, the rest as JSON), each length-prefixed."""
    hashed = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part).encode()
        hashed.update(len(data).to_bytes(8, "big") + data)
    return hashed.hexdigest()


def recall(key: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The dates remembered under ``key``, or None."""
    entry = _load().get(key)
    try:
        not_before, not_after = (dt.datetime.fromisoformat(x) for x in entry)
    except (TypeError, ValueError):
        return None
    return (not_before, not_after) if not_after.tzinfo and not_before.tzinfo else None


def remember(key: str, not_before: dt.datetime, not_after: dt.datetime) -> None:
    """Keep ``key``'s dates (the newest ``KEEP`` entries); a memo that cannot be written is
    skipped: it only saves time."""
    memo = _load()
    if key in memo:
        return
    memo[key] = [not_before.isoformat(), not_after.isoformat()]
    path = memo_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(dict(list(memo.items())[-KEEP:]))
        atomic_write(path, text.encode(), 0o600, durable=False)
    except OSError:
        pass


_parsed: tuple = (None, {})  # (file identity, memo) as last read: a run reads it many times


def _load() -> dict:
    global _parsed
    try:
        with open(memo_file(), "rb") as file:
            stat = os.fstat(file.fileno())
            key = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            seen, data = _parsed
            if seen != key:
                data = json.loads(file.read())
                _parsed = (key, data)
    except (OSError, ValueError):
        return {}
    return dict(data) if isinstance(data, dict) else {}
