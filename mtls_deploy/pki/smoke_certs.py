"""The smoke test's own client certificates (``profile.SMOKE_NAMES``), kept in ``smoke/``.

``init`` makes them: signed by the client CA, recorded in the index (kind ``smoke``), keys 0600;
the revoked one is listed in the CRL. ``SmokeCertificates`` is that half of ``store.PkiStore``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from . import keys, profile
from .index import row
from .issuance import cert_pem, files_as_indexed, utcnow
from .journal import StagedFiles

# label -> index name; files smoke/<label>.crt and smoke/<label>.key
SMOKE_LABELS = {"revoked": profile.SMOKE_REVOKED, "expired": profile.SMOKE_EXPIRED}


@dataclass(frozen=True)
class SmokeCertificate:
    """One of the smoke test's own client certificates (``profile.SMOKE_NAMES``), as stored in
    ``smoke/``: ``label`` is ``revoked`` (listed in the CRL) or ``expired``; never valid."""

    label: str
    serial: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)


class SmokeCertificates:
    """The store's smoke-certificate methods (mixed into ``PkiStore``)."""

    def smoke_certificates(
        self, *, now: dt.datetime | None = None
    ) -> tuple[dict[str, SmokeCertificate], bool]:
        """The smoke test's client certificates, ``{"revoked": ..., "expired": ...}``, and
        whether the CRL changed (the revoked one was made just now: the hosts' CRL lags).

        A PKI from before them gets them here on first use, which needs the CA passphrase and
        changes the CRL. Example: ``store.smoke_certificates()[0]["revoked"].serial``.
        """
        crl_changed = False
        if self._missing_smoke():
            with self._transaction():  # a killed run may only have to be finished
                pass
            crl_changed = bool(self._missing_smoke()) and self._issue_smoke_certificates(now)
        return {label: self._smoke_certificate(label) for label in SMOKE_LABELS}, crl_changed

    def _issue_smoke_certificates(self, now: dt.datetime | None) -> bool:
        """Make the missing ones; whether the CRL changed (a new revoked one)."""
        now = now or utcnow()
        ca_cert, ca_key = self._signer("client-ca", now)
        with self._transaction() as tx:
            missing = self._missing_smoke()  # another run may have made them meanwhile
            if not missing:
                return False
            self._index.allow_smoke_kind()
            serials = dict(zip(missing, self._pick_serials(len(missing)), strict=True))
            tx.journal([self._smoke_files(label, serial) for label, serial in serials.items()])
            signed = {label: self._sign_smoke(label, serial, ca_cert, ca_key, now)
                      for label, serial in serials.items()}  # fmt: skip
            tx.stage([(files, cert_pem(cert), keys.private_key_pem(key))
                      for files, cert, key in signed.values()])  # fmt: skip
            self._index.insert([row(cert, "smoke", SMOKE_LABELS[label], now)
                                for label, (_, cert, _) in signed.items()])  # fmt: skip
            if "revoked" in serials:
                self._index.mark_revoked(profile.serial_hex(serials["revoked"]), "unspecified", now)
                self._write_crl(tx, now)
        return "revoked" in serials

    def _sign_smoke(self, label: str, serial: int, ca_cert, ca_key, now) -> tuple:
        """(staged files, certificate, new key) for one of the smoke test's certificates."""
        key = profile.generate_key(self._index.meta("key_type"))
        name = SMOKE_LABELS[label]
        cert = profile.issue_smoke_cert(ca_cert, ca_key, key.public_key(), name, serial, now)
        return self._smoke_files(label, serial), cert, key

    def _missing_smoke(self) -> list[str]:
        """Labels whose latest index row is missing or whose files do not hold its serial."""
        return [label for label in SMOKE_LABELS if self._smoke_stored(label) is None]

    def _smoke_stored(self, label: str) -> tuple[str, bytes, bytes] | None:
        """(serial, certificate, key) as the index and ``smoke/`` agree on them, else ``None``."""
        latest = self._index.latest("smoke", SMOKE_LABELS[label])
        if latest is None or not self._of_client_ca(latest):
            return None
        cert, key = files_as_indexed(latest, *self._smoke_paths(label))
        return (latest["serial"], cert, key) if cert else None

    def _of_client_ca(self, latest) -> bool:
        """Whether a row is of the issuing client CA (after a rollover's start it is not: the
        smoke test's certificates are made again under the new CA)."""
        if "ca" not in latest.keys() or latest["ca"] is None:  # noqa: SIM118 (a sqlite3.Row)
            return True  # an index from before CA rollovers: one client CA
        return latest["ca"] == self._ca_cert("client-ca").subject.rfc4514_string()

    def _smoke_certificate(self, label: str) -> SmokeCertificate:
        return SmokeCertificate(label, *self._smoke_stored(label))

    def _smoke_paths(self, label: str) -> tuple[Path, Path]:
        return self.path / "smoke" / f"{label}.crt", self.path / "smoke" / f"{label}.key"

    def _smoke_files(self, label: str, serial: int) -> StagedFiles:
        return StagedFiles(profile.serial_hex(serial), *self._smoke_paths(label))
