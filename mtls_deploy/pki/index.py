"""The index: one SQLite row per certificate ever issued, and a few facts about the PKI (meta).

Example::

    index = Index(Path("pki/index.sqlite3"))
    row = index.latest("client", "bob")
    print(row["serial"], row_status(row, now))
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509

from ..files import PRIVATE_FILE_MODE, sync_filesystem
from . import profile
from .subject import ou_in

INDEX = "index.sqlite3"
SQLITE_HEADER = b"SQLite format 3\x00"
EXPIRING_DAYS = 30

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
    key_stored INTEGER NOT NULL DEFAULT 1,  -- 0: signed from a CSR, the key never came here
    ca TEXT  -- the issuing CA's subject (a CA rollover leaves two CAs of a kind for a while)
);
CREATE INDEX certificates_by_name ON certificates (kind, name);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

INSERT = """INSERT INTO certificates
    (serial, name, kind, subject, not_before, not_after, status, sha256, issued_at, key_stored, ca)
    VALUES (:serial, :name, :kind, :subject, :not_before, :not_after, 'valid', :sha256,
            :issued_at, :key_stored, :ca)"""


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
    ou: str | None = None  # the subject's OU (inv issue-client --ou)

    def to_dict(self) -> dict:
        """JSON-ready: datetimes as ISO 8601 text."""
        return {**asdict(self), "not_after": self.not_after.isoformat()}


def row(cert: x509.Certificate, kind: str, name: str, now: dt.datetime) -> dict:
    """The index row (for ``INSERT``) of a certificate just issued."""
    return {
        "serial": profile.serial_hex(cert.serial_number),
        "name": name,
        "kind": kind,
        "subject": cert.subject.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": profile.fingerprint(cert),
        "issued_at": now.isoformat(),
        "key_stored": 1,
        "ca": cert.issuer.rfc4514_string(),
    }


def create(path: Path, rows: list[dict], meta: dict[str, str]) -> None:
    """Write a new index at ``path`` (0600) with ``rows`` and ``meta``, all or nothing."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    conn = sqlite3.connect(temporary, isolation_level=None)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
    finally:
        conn.close()
    os.chmod(temporary, PRIVATE_FILE_MODE)
    os.replace(temporary, path)  # the index appearing marks the PKI complete
    sync_filesystem(path.parent)


def row_status(row: sqlite3.Row, now: dt.datetime, warn_before: dt.timedelta | None = None) -> str:
    """``valid``, ``expiring`` (under ``warn_before`` left, default ``EXPIRING_DAYS``),
    ``expired``, ``revoked`` or ``replaced`` for an index row at ``now``."""
    if row["status"] != "valid":
        return row["status"]
    left = dt.datetime.fromisoformat(row["not_after"]) - now
    if left <= dt.timedelta(0):
        return "expired"
    warn_before = warn_before or dt.timedelta(days=EXPIRING_DAYS)
    return "expiring" if left < warn_before else "valid"


def record(
    row: sqlite3.Row, now: dt.datetime, warn_before: dt.timedelta | None = None
) -> CertRecord:
    """The ``pki.list`` line of an index row (``expiring`` under ``warn_before`` left)."""
    not_after = dt.datetime.fromisoformat(row["not_after"])
    return CertRecord(
        row["name"],
        row["kind"],
        row["serial"],
        not_after,
        (not_after - now).days,
        row_status(row, now, warn_before),
        row["revoked_at"],
        row["revocation_reason"],
        row["sha256"],
        ou_in(row["subject"]),
    )


class Index:
    """The index file, opened on first use; transactions are the caller's (``journal``)."""

    def __init__(self, path: Path, timeout: float = 120.0):
        self.path, self.timeout = path, timeout
        self._conn: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (autocommit: ``BEGIN`` and ``COMMIT`` are explicit)."""
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
        return self._conn

    def close(self) -> None:
        """Close the connection (it reopens on the next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def check(self, header: bytes) -> None:
        """``sqlite3.DatabaseError`` (or ``TypeError``) unless the file that begins with ``header``
        is a readable PKI index."""
        if header != SQLITE_HEADER:
            raise sqlite3.DatabaseError("file is not a database")
        self.meta("key_type")
        self.db.execute("SELECT count(*) FROM certificates").fetchone()

    def meta(self, key: str) -> str:
        """A value of the ``meta`` table (``name``, ``key_type``, ``crl_number``)."""
        return self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def set_meta(self, key: str, value: str) -> None:
        """Change a value of the ``meta`` table."""
        self.db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

    def insert(self, rows: list[dict]) -> None:
        """Add rows made by ``row``."""
        self.db.executemany(INSERT, rows)

    def rows(self) -> list[sqlite3.Row]:
        """Every row, by kind, name and age."""
        return self.db.execute("SELECT * FROM certificates ORDER BY kind, name, id").fetchall()

    def latest(self, kind: str, name: str) -> sqlite3.Row | None:
        """The newest row of ``kind`` and ``name``, or ``None``."""
        query = "SELECT * FROM certificates WHERE kind = ? AND name = ? ORDER BY id DESC LIMIT 1"
        return self.db.execute(query, (kind, name)).fetchone()

    def has_serial(self, serial: str) -> bool:
        """Whether a row holds ``serial`` (upper-case hex, as ``profile.serial_hex``)."""
        query = "SELECT 1 FROM certificates WHERE serial = ?"
        return self.db.execute(query, (serial,)).fetchone() is not None

    def serial_taken(self, serial: int) -> bool:
        """Whether the integer ``serial`` is already used."""
        return self.has_serial(profile.serial_hex(serial))

    def client_names(self) -> list[str]:
        """Every client name the index knows."""
        query = "SELECT DISTINCT name FROM certificates WHERE kind = 'client'"
        return [r[0] for r in self.db.execute(query)]

    def superseded_serials(self, name: str) -> list[str]:
        """Serials of ``name``'s certificates still valid though a newer one was issued."""
        query = (
            "SELECT serial FROM certificates WHERE kind = 'client' AND name = ? AND status = "
            "'valid' AND id < (SELECT MAX(id) FROM certificates WHERE kind = 'client' AND name = ?)"
        )
        return [row[0] for row in self.db.execute(query, (name, name))]

    def mark_revoked(self, serial: str, reason: str, now: dt.datetime) -> None:
        """Record ``serial`` as revoked at ``now`` for ``reason``."""
        query = (
            "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? "
            "WHERE serial = ?"
        )
        self.db.execute(query, (now.isoformat(), reason, serial))

    def mark_servers_replaced(self, host: str) -> None:
        """``host``'s valid server certificates become ``replaced`` (a new one follows)."""
        self.db.execute(
            "UPDATE certificates SET status = 'replaced' "
            "WHERE kind = 'server' AND name = ? AND status = 'valid'",
            (host,),
        )

    def revocations(self, ca: str | None = None) -> list[profile.Revocation]:
        """The CRL's entries: every revoked client (and smoke) certificate (of the CA whose
        subject is ``ca``: a CRL per client CA during a rollover)."""
        query = (
            "SELECT serial, revoked_at, revocation_reason FROM certificates "
            "WHERE kind IN ('client', 'smoke') AND status = 'revoked'"
        )
        found = self.db.execute(query + " AND ca = ?", (ca,)) if ca else self.db.execute(query)
        return [
            profile.Revocation(int(serial, 16), dt.datetime.fromisoformat(at), reason)
            for serial, at, reason in found
        ]

    def has_ca_column(self) -> bool:
        """Whether the index records each certificate's issuing CA (column ``ca``)."""
        columns = self.db.execute("PRAGMA table_info(certificates)").fetchall()
        return any(column[1] == "ca" for column in columns)

    def add_ca_column(self) -> None:
        """An index made before CA rollovers has no column ``ca``: add it, in this transaction,
        and fill it: until a rollover every certificate of a kind has the one CA of that kind."""
        if self.has_ca_column():
            return
        self.db.execute("ALTER TABLE certificates ADD COLUMN ca TEXT")
        self.db.execute("UPDATE certificates SET ca = subject WHERE kind LIKE '%-ca'")
        for kinds, ca_kind in (("'client', 'smoke'", "client-ca"), ("'server'", "server-ca")):
            self.db.execute(
                f"UPDATE certificates SET ca = (SELECT subject FROM certificates WHERE kind = ? "
                f"ORDER BY id LIMIT 1) WHERE kind IN ({kinds})",
                (ca_kind,),
            )

    def valid_clients_of(self, ca: str, now: dt.datetime) -> list[sqlite3.Row]:
        """Client rows of the CA ``ca`` (subject) neither revoked, replaced nor expired."""
        if not self.has_ca_column():
            return []
        query = (
            "SELECT * FROM certificates WHERE kind = 'client' AND status = 'valid' AND ca = ? "
            "AND not_after > ? ORDER BY name"
        )
        return self.db.execute(query, (ca, now.isoformat())).fetchall()

    def allow_smoke_kind(self) -> None:
        """An index made before the smoke test's certificates refuses kind 'smoke' (its CHECK):
        rebuild the table under the current constraint, rows unchanged, in this transaction."""
        query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'certificates'"
        (sql,) = self.db.execute(query).fetchone()
        if "'smoke'" in sql:
            return
        new = sql.replace("certificates", "certificates_new", 1)
        self.db.execute(new.replace("'client')", "'client', 'smoke')", 1))
        self.db.execute("INSERT INTO certificates_new SELECT * FROM certificates")
        self.db.execute("DROP TABLE certificates")
        self.db.execute("ALTER TABLE certificates_new RENAME TO certificates")
        self.db.execute("CREATE INDEX certificates_by_name ON certificates (kind, name)")
