"""CA rollover with overlap, for both CAs: the PKI's half (files, index, CRLs, phases); pushing and
delivering is ``mtls_deploy/rollover.py``'s.

The phase is read from the files, so there is no second record to disagree with them::

    client CA:  client-ca.next.{crt,key}  the new client CA, trusted (with a CRL) but not
                issuing yet: the API hosts first (phase ``trusting``)
                client-ca.old.{crt,key}   the previous client CA, trusted until --finish
                (phase ``overlap``: client-ca.{crt,key} is the new CA, which issues)
    server CA:  server-ca.next.{crt,key}  the new server CA, not issuing yet: consumers first
                (phase ``consumers``: their api-ca.crt gets both roots)
                server-ca.old.{crt,key}   the previous server CA, after the switch
                (phase ``servers``: server certificates now come from the new CA)

``--finish`` moves the old CA's files to ``retired/`` (kept, encrypted, for the record). Each file
step is idempotent, so a run killed half-way is completed by the next ``start_rollover``.
``CaRollover`` is mixed into ``store.PkiStore``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..errors import BadInput, UserError
from ..files import PRIVATE_FILE_MODE, atomic_write, make_private_dir, sync_filesystem
from . import index, keys, profile
from .issuance import cert_pem, utcnow
from .settings import as_lifetime

CAS = ("client", "server")
RETIRED = "retired"
WAITS = {
    "trusting": "every API host to trust the new client CA "
    "(`inv pki.rollover --ca client --finish` pushes it again, then switches)",
    "overlap": "`inv pki.rollover --ca client --finish`: no valid certificate of the old client "
    "CA is left",
    "consumers": "every consumer's api-ca.crt to hold the new server root "
    "(`inv pki.rollover --ca server --finish` delivers it again, then switches)",
    "servers": "`inv pki.rollover --ca server --finish` once every API host serves a "
    "certificate of the new server CA",
}


@dataclass(frozen=True)
class OldClient:
    """A client certificate of the old client CA still valid (neither revoked nor expired)."""

    name: str
    serial: str


def check_ca(ca: str) -> str:
    """``client`` or ``server``, else ``BadInput``."""
    if ca not in CAS:
        raise BadInput(f"--ca {ca!r} is not a CA of the PKI: give --ca client or --ca server")
    return ca


def ca_name(pki_name: str, kind: str, generation: int) -> str:
    """``Example API client CA`` for the first CA of a kind, ``Example API client CA 2`` after
    a rollover: each CA its own subject (CRLs and the index's ``ca`` column tell CAs apart by it)."""
    label = "client CA" if kind == "client-ca" else "server CA"
    return f"{pki_name} {label}" + (f" {generation}" if generation > 1 else "")


class CaRollover:
    """The store's rollover methods (mixed into ``PkiStore``)."""

    def rollover_phase(self, ca: str) -> str | None:
        """``trusting`` or ``overlap`` (client), ``consumers`` or ``servers`` (server),
        ``starting`` (a switch was interrupted: ``switch_to_new_ca`` completes it), or
        ``None``: no rollover."""
        kind = f"{check_ca(ca)}-ca"
        new, old = self._exists(f"{kind}.next.crt"), self._exists(f"{kind}.old.crt")
        if new and old:
            return "starting"
        if old:
            return "overlap" if ca == "client" else "servers"
        if new:
            return "trusting" if ca == "client" else "consumers"
        return None

    def rollover_waits_for(self, ca: str) -> str | None:
        """What the rollover of ``ca`` waits for, in words (``None``: no rollover)."""
        phase = self.rollover_phase(ca)
        if phase is None:
            return None
        old = self.old_ca_clients() if phase == "overlap" else []
        if old:
            names = ", ".join(client.name for client in old)
            return f"the old client CA's valid certificates to be renewed ({len(old)}): {names}"
        return WAITS.get(phase, f"`inv pki.rollover --ca {ca} --finish` to complete its switch")

    def client_ca_kinds(self) -> list[str]:
        """The trusted client CAs' file stems, the issuing one first."""
        stems = ("client-ca.next", "client-ca.old")
        return ["client-ca", *(stem for stem in stems if self._exists(f"{stem}.crt"))]

    def trusted_server_cas_pem(self) -> bytes:
        """What a consumer's ``api-ca.crt`` holds: the server CA, and during a rollover the other
        one (the next before the switch, the old after it)."""
        stems = ["server-ca", "server-ca.next", "server-ca.old"]
        return b"".join(self._read_file(f"{s}.crt", "") for s in stems if self._exists(f"{s}.crt"))

    def start_rollover(self, ca: str, *, now: dt.datetime | None = None) -> str:
        """Make a new CA of ``ca`` beside the old one, trusted but not issuing until
        ``switch_to_new_ca`` (client: once the API hosts trust it; its CRL joins the CRL file
        now. Server: once the consumers hold its root). Returns its subject.

        ``BadInput`` if a rollover of ``ca`` is in progress.
        """
        if self.rollover_phase(ca) is not None:
            raise BadInput(
                f"a {ca} CA rollover is already in progress: "
                f"finish it with `inv pki.rollover --ca {ca} --finish`"
            )
        now = now or utcnow()
        self._load_ca_key(f"{ca}-ca")  # the passphrase, checked before anything is written
        with self._transaction() as tx:
            self._make_next_ca(f"{ca}-ca", now)
            if ca == "client":
                self._write_crl(tx, now)  # one CRL per trusted client CA
        return self._ca_cert(f"{ca}-ca.next").subject.rfc4514_string()

    def switch_to_new_ca(self, ca: str, *, now: dt.datetime | None = None) -> bool:
        """``trusting`` -> ``overlap`` (client), ``consumers`` -> ``servers`` (server): the new
        CA issues from now on, the old one stays trusted. Call it once the hosts trust the new
        one. Client: the smoke test's certificates are made again under the new CA. Whether
        anything changed."""
        if self.rollover_phase(ca) not in ("trusting", "consumers", "starting"):
            return False
        now = now or utcnow()
        self._load_ca_key(f"{ca}-ca")
        with self._transaction() as tx:
            self._swap_in(f"{ca}-ca")
            if ca == "client":
                self._write_crl(tx, now)  # the new CA's CRL first: the one ``crl()`` reads
        if ca == "client":
            self._issue_smoke_certificates(now)  # the old ones are of the old CA
        return True

    def old_ca_clients(self, *, now: dt.datetime | None = None) -> list[OldClient]:
        """Valid client certificates (not revoked, not expired) of the old client CA."""
        if not self._exists("client-ca.old.crt"):
            return []
        old = self._ca_cert("client-ca.old").subject.rfc4514_string()
        rows = self._index.valid_clients_of(old, now or utcnow())
        return [OldClient(row["name"], row["serial"]) for row in rows]

    def finish_rollover(self, ca: str, *, force: bool = False, now=None) -> str:
        """Retire the old CA of ``ca`` (its files to ``retired/``); returns its subject.

        Client: refused while a client certificate of the old CA is valid, unless ``force``;
        the CRL file is re-signed with the new CA's CRL only. Server: only in phase
        ``servers`` (the caller checks that the API hosts serve the new CA's certificates).
        """
        phase, now = self.rollover_phase(ca), now or utcnow()
        if phase is None:
            raise BadInput(
                f"no {ca} CA rollover in progress: start one with `inv pki.rollover --ca {ca} --start`"
            )
        if phase not in ("overlap", "servers"):
            raise UserError(f"the {ca} CA rollover waits for {self.rollover_waits_for(ca)} first")
        if ca == "client" and not force:
            self._refuse_old_clients(now)
        old = self._ca_cert(f"{ca}-ca.old").subject.rfc4514_string()
        if ca == "client":
            self._signer("client-ca", now)  # the passphrase, before anything moves
        with self._transaction() as tx:
            self._retire(f"{ca}-ca.old", now)
            if ca == "client":
                self._write_crl(tx, now)
        return old

    def _refuse_old_clients(self, now) -> None:
        found = self.old_ca_clients(now=now)
        if found:
            listed = ", ".join(f"{c.name} (serial {c.serial})" for c in found)
            raise UserError(
                f"the old client CA still has valid client certificates: {listed}; renew them "
                "(`inv renew-client --name NAME`) or revoke them, or finish with --force"
            )

    # --- files ---------------------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def _make_next_ca(self, kind: str, now) -> None:
        """``<kind>.next.{crt,key}``: a new CA, its key encrypted like the others, and its row."""
        generation = sum(r["kind"] == kind for r in self._index.rows()) + 1
        pki_name, key_type = self._index.meta("name"), self._index.meta("key_type")
        key = profile.generate_key(key_type)
        lifetime = as_lifetime(self.settings.ca_lifetime)
        subject = ca_name(pki_name, kind, generation)
        cert = profile.make_ca(key, subject, now, lifetime, org=pki_name)
        key_pem = keys.encrypted_private_key_pem(key, self._passphrase)
        atomic_write(self.path / f"{kind}.next.key", key_pem, PRIVATE_FILE_MODE)
        atomic_write(self.path / f"{kind}.next.crt", cert_pem(cert))
        self._index.insert([index.row(cert, kind, kind, now)])

    def _swap_in(self, kind: str) -> None:
        """``<kind>`` -> ``<kind>.old``, ``<kind>.next`` -> ``<kind>``; each step idempotent
        (a hard link keeps the old CA until the new one has replaced it)."""
        for ext in ("key", "crt"):
            current, old = self.path / f"{kind}.{ext}", self.path / f"{kind}.old.{ext}"
            if not old.exists():
                os.link(current, old)
        for ext in ("key", "crt"):
            new = self.path / f"{kind}.next.{ext}"
            if new.exists():
                os.replace(new, self.path / f"{kind}.{ext}")
        sync_filesystem(self.path)
        self._signers.clear()  # the cached signer is the old CA's

    def _retire(self, stem: str, now) -> None:
        """Move ``<stem>.{crt,key}`` to ``retired/<kind>-<date>.{crt,key}``."""
        folder = self.path / RETIRED
        make_private_dir(folder)
        kind = stem.removesuffix(".old")
        label = f"{kind}-until-{now:%Y%m%dT%H%M%S}"
        for ext in ("key", "crt"):
            source = self.path / f"{stem}.{ext}"
            if source.exists():
                os.replace(source, folder / f"{label}.{ext}")
        sync_filesystem(self.path)
        self._signers.clear()


def subjects(pem: bytes) -> list[str]:
    """The subjects of the certificates in ``pem``, in order."""
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem)]


def retired_files(root: Path) -> list[Path]:
    """The retired CAs' files, oldest first."""
    folder = root / RETIRED
    return sorted(folder.iterdir()) if folder.is_dir() else []
