"""Client certificates: issue (in bulk, in chunks), sign a consumer's CSR, renew, revoke, read.

``ClientIssuance`` is the client half of ``store.PkiStore`` (which supplies the index, the
signer, the transaction and the paths); call it through the store.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import BadInput, UserError
from . import keys, profile
from .index import row, row_status
from .journal import StagedFiles, Transaction
from .messages import display
from .policy import unchanged_reason
from .settings import signed_lifetime
from .subject import ou_of, validate_ou

CHUNK = 200  # clients per transaction in bulk issuance: one commit and two syncs per chunk


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


@dataclass
class _Plan:
    name: str
    issue: bool
    reason: str
    previous: object = None  # the latest index row, if any
    supersede: bool = False
    days: int | dt.timedelta = profile.LEAF_DAYS
    org: str | None = None
    email: str | None = None
    public_key: object = None  # from a CSR: sign this key instead of making one
    ou: str | None = None


def utcnow() -> dt.datetime:
    """Now, in UTC (the store's clock)."""
    return dt.datetime.now(dt.UTC)


class ClientIssuance:
    """The store's client methods (mixed into ``PkiStore``)."""

    def issue_client(
        self,
        name: str,
        days: int | dt.timedelta | None = None,
        org: str | None = None,
        email: str | None = None,
        reissue: bool = False,
        *,
        now: dt.datetime | None = None,
        ou: str | None = None,
    ) -> IssueResult:
        """Issue a key and certificate for client ``name`` unless it already has a valid one.

        With ``reissue=True`` a valid certificate is replaced and revoked as superseded.
        Example: ``store.issue_client("bob", days=90).changed``.
        """
        return next(self.issue_clients([name], days, org, email, reissue, now=now, ou=ou))

    def issue_clients(
        self,
        names: Iterable[str],
        days: int | dt.timedelta | None = None,
        org: str | None = None,
        email: str | None = None,
        reissue: bool = False,
        *,
        now: dt.datetime | None = None,
        chunk: int | None = None,
        ou: str | None = None,
    ) -> Iterator[IssueResult]:
        """Bulk ``issue_client``: every name and option checked on the call, before anything is
        issued; then one transaction per ``chunk`` names (default ``CHUNK``), each result
        yielded once its chunk is committed. ``days`` (or a ``timedelta``) overrides the
        settings' ``client_lifetime``; ``ou`` puts an OU in the subject.
        """
        days = self.settings.client_lifetime if days is None else days
        names = [profile.validate_client_name(name) for name in names]
        profile.validate_org(org)
        profile.validate_email(email)
        validate_ou(ou)
        self.check_client_days(days, now)
        subject = {"org": org, "email": email, "ou": ou}
        return self._issue_in_chunks(names, days, subject, reissue, now, chunk or CHUNK)

    def check_client_days(
        self, days: int | dt.timedelta | None, now: dt.datetime | None = None
    ) -> None:
        """``BadInput`` unless ``days`` (``None``: ``client_lifetime``) is at least 1 and ends
        before the client CA does."""
        days = self.settings.client_lifetime if days is None else days
        profile.validate_days(days)
        profile.check_days_fit_ca(self._ca_cert("client-ca"), now or utcnow(), days)

    def _issue_in_chunks(self, names, days, subject, reissue, now, chunk):
        for start in range(0, len(names), chunk):
            wanted = {
                name: _Plan(name, False, "", days=days, **subject)
                for name in names[start : start + chunk]
            }
            yield from self._issue_chunk(wanted, reissue, now)

    def sign_client_csr(
        self,
        name: str,
        csr_pem: bytes,
        days: int | dt.timedelta | None = None,
        org: str | None = None,
        email: str | None = None,
        reissue: bool = False,
        *,
        now: dt.datetime | None = None,
        ou: str | None = None,
    ) -> IssueResult:
        """Sign a CSR made on the consumer for client ``name``: its key never comes here.

        The CSR must be exactly ``CN=<name>`` with an allowed key (``profile.check_csr``), else
        ``BadInput`` and nothing written. Otherwise like ``issue_client``: a valid certificate is
        kept unless ``reissue``; ``clients/<name>/`` then holds the certificate only.
        """
        profile.validate_client_name(name)
        days = self.settings.client_lifetime if days is None else days
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise BadInput(f"the CSR for {name} is not a PEM certificate request") from None
        public_key = profile.check_csr(csr, name)
        profile.validate_org(org)
        profile.validate_email(email)
        validate_ou(ou)
        self.check_client_days(days, now)
        subject = {"org": org, "email": email, "ou": ou}
        plan = _Plan(name, False, "", days=days, public_key=public_key, **subject)
        return next(self._issue_chunk({name: plan}, reissue, now))

    def renew_client(self, name: str, *, now: dt.datetime | None = None) -> IssueResult:
        """A new key and certificate for ``name`` (same organisation, OU, email and lifetime).

        The old certificate is revoked as superseded and the CRL regenerated.
        """
        previous = self._index.latest("client", profile.validate_client_name(name))
        if previous is None:
            raise self._unknown_client(name)
        if not previous["key_stored"]:
            raise UserError(
                f"{name}'s key was made on its consumer host: renew it there with "
                f"`inv issue-client --name {name} --csr --reissue`"
            )
        old = x509.load_pem_x509_certificate(self._client_paths(name)[0].read_bytes())
        lifetime = signed_lifetime(old.not_valid_before_utc, old.not_valid_after_utc)
        subject = {"org": _org(old), "email": _email(old), "ou": ou_of(old.subject)}
        plan = _Plan(name, False, "", days=lifetime, **subject)
        return next(self._issue_chunk({name: plan}, True, now))

    def revoke_superseded(self, names: Iterable[str], *, now: dt.datetime | None = None) -> dict:
        """Revoke as superseded every still valid certificate of ``names`` but the latest (left
        valid by ``keep_superseded`` until its successor was delivered) and re-sign the CRL;
        returns ``{name: [serial, ...]}`` of what it revoked (``{}``: nothing to do)."""
        now = now or utcnow()
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
        return self._index.superseded_serials(name)

    def revoke_client(
        self, name: str, reason: str = "unspecified", *, now: dt.datetime | None = None
    ) -> str:
        """Revoke ``name``'s current certificate and regenerate ``crl.pem``; returns its serial.

        Revoking an already revoked client changes nothing. Example:
        ``store.revoke_client("bob", reason="key_compromise")``.
        """
        profile.validate_client_name(name)
        profile.validate_revocation_reason(reason)
        now = now or utcnow()
        if self._index.latest("client", name) is None:
            raise self._unknown_client(name)
        self._signer("client-ca", now)
        with self._transaction() as tx:
            latest = self._index.latest("client", name)
            if latest["status"] != "revoked":
                self._index.mark_revoked(latest["serial"], reason, now)
                self._write_crl(tx, now)
        return latest["serial"]

    def revoke_clients(
        self, names: Iterable[str], reason: str = "unspecified", *, now: dt.datetime | None = None
    ) -> dict[str, str | None]:
        """Revoke many clients in one transaction and one CRL re-sign: ``{name: serial}``, with
        ``None`` for a name already revoked. Every name is checked first: an unknown one is
        one line and nothing is revoked."""
        names = [profile.validate_client_name(name) for name in names]
        profile.validate_revocation_reason(reason)
        now = now or utcnow()
        for name in names:
            if self._index.latest("client", name) is None:
                raise self._unknown_client(name)
        self._signer("client-ca", now)
        with self._transaction() as tx:
            latest = {name: self._index.latest("client", name) for name in names}
            pending = {n: r["serial"] for n, r in latest.items() if r["status"] != "revoked"}
            for serial in pending.values():
                self._index.mark_revoked(serial, reason, now)
            if pending:
                self._write_crl(tx, now)
        return {name: pending.get(name) for name in names}

    def client_status(self, name: str) -> str | None:
        """``valid``, ``revoked`` or ``expired`` for ``name``'s latest certificate, or ``None``."""
        latest = self._index.latest("client", profile.validate_client_name(name))
        if latest is None:
            return None
        status = row_status(latest, utcnow())
        return "valid" if status == "expiring" else status

    def client_material(self, name: str) -> ClientMaterial | None:
        """``name``'s current certificate and key from ``clients/<name>/``, or ``None``."""
        latest = self._index.latest("client", profile.validate_client_name(name))
        if latest is None:
            return None
        cert_path, key_path = self._client_paths(name)
        cert_pem, key_pem = files_as_indexed(latest, cert_path, key_path)
        if cert_pem is None:
            with self._transaction():  # a run was killed between commit and rename: finish it
                pass
            cert_pem, key_pem = files_as_indexed(latest, cert_path, key_path)
        if cert_pem is None:
            raise UserError(
                f"{display(cert_path.parent)}/ does not hold serial {latest['serial']} "
                f"recorded in the index: run `inv renew-client --name {name}`"
            )
        not_after = dt.datetime.fromisoformat(latest["not_after"])
        status = row_status(latest, utcnow(), self.settings.warn_before)
        return ClientMaterial(
            name, latest["serial"], status, not_after, cert_path, key_path, cert_pem, key_pem
        )

    def _issue_chunk(self, wanted: dict[str, _Plan], reissue: bool, now) -> Iterator[IssueResult]:
        now = now or utcnow()
        if any(self._plan(p, reissue, now).issue for p in wanted.values()):
            self._signer("client-ca", now)  # passphrase and expiry checked before taking the lock
        with self._transaction() as tx:
            plans = [self._plan(p, reissue, now) for p in wanted.values()]
            serials = self._issue_planned(tx, [p for p in plans if p.issue], now)
        for plan in plans:
            yield self._result(plan, serials.get(plan.name))

    def _plan(self, plan: _Plan, reissue: bool, now) -> _Plan:
        latest = self._index.latest("client", plan.name)
        plan.previous, plan.supersede = latest, False
        status = row_status(latest, now) if latest else None
        if status is None:
            plan.issue, plan.reason = True, "issued: new client"
        elif status in ("revoked", "expired"):
            plan.issue, plan.reason = True, f"issued: previous certificate {status}"
        elif reissue and self.keep_superseded:
            plan.issue = True
            plan.reason = f"reissued: previous serial {latest['serial']} stays valid until delivery"
        elif reissue:
            plan.issue, plan.supersede = True, True
            plan.reason = f"reissued: previous serial {latest['serial']} revoked as superseded"
        else:
            plan.issue = False
            plan.reason = unchanged_reason(latest, now, self.settings.warn_before)
        return plan

    def _issue_planned(self, tx: Transaction, plans: list[_Plan], now) -> dict[str, str]:
        if not plans:
            return {}
        ca_cert, ca_key = self._signer("client-ca", now)
        pairs = list(zip(plans, self._pick_serials(len(plans)), strict=True))
        tx.journal([self._client_files(p.name, s, p.public_key is None) for p, s in pairs])
        key_type, rows, staged = self._index.meta("key_type"), [], []
        for plan, serial in pairs:
            key, cert = _sign_client(plan, serial, key_type, ca_cert, ca_key, now)
            files = self._client_files(plan.name, serial, key is not None)
            staged.append((files, cert_pem(cert), keys.private_key_pem(key) if key else None))
            rows.append({**row(cert, "client", plan.name, now), "key_stored": int(bool(key))})
        tx.stage(staged)
        self._index.insert(rows)
        self._supersede([p.previous["serial"] for p in plans if p.supersede], tx, now)
        return {p.name: profile.serial_hex(s) for p, s in pairs}

    def _supersede(self, serials: list[str], tx: Transaction, now) -> None:
        for serial in serials:
            self._index.mark_revoked(serial, "superseded", now)
        if serials:
            self._write_crl(tx, now)

    def _result(self, plan: _Plan, serial: str | None) -> IssueResult:
        cert_path, key_path = self._client_paths(plan.name)
        serial = serial or (plan.previous["serial"] if plan.previous else "")
        return IssueResult(plan.name, serial, plan.issue, plan.reason, cert_path, key_path)

    def _client_paths(self, name: str) -> tuple[Path, Path]:
        folder = self.path / "clients" / name
        return folder / f"{name}.crt", folder / f"{name}.key"

    def _client_files(self, name: str, serial: int, with_key: bool = True) -> StagedFiles:
        return StagedFiles(profile.serial_hex(serial), *self._client_paths(name), with_key)

    def _unknown_client(self, name: str) -> UserError:
        close = difflib.get_close_matches(name, self._index.client_names(), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else "; `inv pki.list` shows every client"
        )
        return UserError(f"no client named {name!r} in the index{hint}")


def _sign_client(plan: _Plan, serial: int, key_type: str, ca_cert, ca_key, now) -> tuple:
    """(new key or ``None`` for a CSR, certificate) for one planned client."""
    key = None if plan.public_key else profile.generate_key(key_type)
    public_key = plan.public_key or key.public_key()
    extras = (plan.days, plan.org, plan.email, plan.ou)
    cert = profile.issue_client_cert(ca_cert, ca_key, public_key, plan.name, serial, now, *extras)
    return key, cert


def cert_pem(cert: x509.Certificate) -> bytes:
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def read_optional(path: Path) -> bytes | None:
    """The bytes of ``path``, or ``None`` if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def files_as_indexed(latest, cert_path: Path, key_path: Path) -> tuple:
    """(certificate, key) if the files match the index row ``latest`` (key ``None`` for a CSR
    client), else ``(None, None)``."""
    cert = read_optional(cert_path)
    key = read_optional(key_path) if latest["key_stored"] else None
    if cert is None or not _is_cert_with_serial(cert, latest["serial"]):
        return None, None
    if latest["key_stored"] and key is None:
        return None, None
    return cert, key


def _is_cert_with_serial(pem: bytes, serial: str) -> bool:
    try:
        return profile.serial_hex(x509.load_pem_x509_certificate(pem).serial_number) == serial
    except ValueError:
        return False


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
