"""``run_status``: the PKI and the inventory in, every host read in parallel, a ``StatusReport``
out (rows, exit code, the ``--json`` document)."""

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from ..deliver import client_names
from ..errors import UserError
from .gather import certificates, crl_facts, read_hosts, select_hosts
from .judge import (
    api_host_checks,
    ca_checks,
    cert_facts,
    client_checks,
    consumer_checks,
    fingerprint,
    rollover_checks,
)
from .verdicts import Check, exit_code, worst

FORMAT = 1


@dataclass(frozen=True)
class Thresholds:
    """When a date becomes a warning, and when maintain renews a client (both timedeltas)."""

    warn_before: dt.timedelta = dt.timedelta(days=30)
    client_renew_before: dt.timedelta = dt.timedelta(days=30)


@dataclass(frozen=True)
class StatusReport:
    """Every row of ``inv status``, when it was read, and the thresholds used."""

    checks: list[Check]
    now: dt.datetime
    thresholds: Thresholds

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warning, 2 critical (3, unknown, never gets this far: see tasks.py)."""
        return exit_code(self.checks)

    def as_json(self) -> dict:
        """The stable ``--json`` document (described in ``mtls_deploy/status/__init__.py``)."""
        return {
            "format": FORMAT,
            "generated_at": self.now.isoformat(),
            "status": worst(c.status for c in self.checks),
            "exit_code": self.exit_code,
            "warn_before_seconds": int(self.thresholds.warn_before.total_seconds()),
            "client_renew_before_seconds": int(self.thresholds.client_renew_before.total_seconds()),
            "checks": [c.to_dict(self.now) for c in self.checks],
        }


def thresholds(loaded) -> Thresholds:
    """``warn_before`` and ``client_renew_before`` from the PKI settings (``group_vars/all``)."""
    from ..pki.settings import PkiSettings

    values = next(iter(loaded.hosts.values())).vars if loaded.hosts else {}
    settings = PkiSettings.from_values(values)
    return Thresholds(settings.warn_before, settings.client_renew_before)


def pki_snapshot(store) -> dict:
    """What the hosts are compared with: the PKI's CAs, CRL, server and client certificates."""
    client_ca = certificates(store.client_ca_pem())
    server_ca = certificates(store.server_ca_pem())
    return {
        "client_ca": [fingerprint(c) for c in client_ca],
        "server_ca": fingerprint(server_ca[0]),
        "crl": crl_facts(store.crl_pem()),
        "servers": latest(store, "server", lambda r: {"serial": r.serial_hex}),
        "clients": latest(store, "client", lambda r: client_facts(store, r)),
        "cas": [ca_facts(c) for c in client_ca + server_ca],
        "rollover": {
            ca: store.rollover_waits_for(ca)
            for ca in ("client", "server")
            if store.rollover_phase(ca)
        },  # fmt: skip
    }


def api_trust_fingerprints(loaded, store) -> list[str] | None:
    """The roots the consumers' ``api-ca.crt`` must hold (``deliver.api_trust``), as
    fingerprints; None when every API's server certificate is from a public CA."""
    from ..deliver import api_trust

    roots = api_trust(loaded, store.server_ca_pem())
    return None if roots is None else [fingerprint(c) for c in certificates(roots)]


def latest(store, kind: str, describe) -> dict:
    """{name: describe(record)} of the newest index row of each ``kind`` name."""
    found = {}
    for record in store.list():
        if record.kind == kind and record.status != "replaced":
            found[record.name] = record  # the index lists oldest first per name
    return {name: describe(record) for name, record in found.items()}


def client_facts(store, record) -> dict:
    """A client's row of the index, with its certificate's start when its files are there."""
    facts = {"serial": record.serial_hex, "status": record.status, "sha256": record.sha256,
             "not_after": record.not_after, "not_before": None}  # fmt: skip
    if record.status == "revoked":
        return facts
    try:
        material = store.client_material(record.name)
    except UserError:  # its files are gone: the row still says when it ends
        return facts
    if material is not None and material.serial == record.serial_hex:
        cert = x509.load_pem_x509_certificate(material.cert_pem)
        facts["not_before"] = cert.not_valid_before_utc
    return facts


def ca_facts(cert: x509.Certificate) -> dict:
    """A CA as the rows show it: its common name, dates."""
    facts = cert_facts(cert)
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return {**facts, "name": names[0].value if names else facts["subject"]}


def consumers_of(consumers: list) -> dict[str, list[str]]:
    """{client name: consumer hosts holding its bundle}."""
    where: dict[str, list[str]] = {}
    for host in consumers:
        for name in client_names(host):
            where.setdefault(name, []).append(host.name)
    return where


def run_status(names: list[str], marks: Thresholds | None = None, loaded=None, store=None,
               now=None) -> StatusReport:  # fmt: skip
    """``inv status``: read the PKI and every selected host (default: all), judge each fact.

    Example: ``run_status(["api1"]).exit_code``
    """
    loaded = loaded or _load_inventory()
    api_hosts, consumers = select_hosts(loaded, names)  # a wrong name before a missing PKI
    store = store or _open_store()
    marks = marks or thresholds(loaded)
    now = now or dt.datetime.now(dt.UTC)
    pki = {**pki_snapshot(store), "api_trust": api_trust_fingerprints(loaded, store)}
    readings = read_hosts(api_hosts, consumers)
    checks = [c for h in api_hosts for c in api_host_checks(h.name, readings[h.name], pki, now,
                                                              marks.warn_before)]  # fmt: skip
    checks += [c for h in consumers for c in consumer_checks(h.name, readings[h.name], pki)]
    where = consumers_of(consumers)
    clients = (
        pki["clients"]
        if not names
        else {n: pki["clients"][n] for n in where if n in pki["clients"]}
    )
    checks += client_checks({**pki, "clients": clients}, readings, where, now, marks.warn_before,
                            marks.client_renew_before)  # fmt: skip
    checks += ca_checks(pki, now, marks.warn_before) + rollover_checks(pki)
    return StatusReport(checks, now, marks)


def _load_inventory():
    from .. import inventory

    return inventory.load()


def _open_store():
    from ..pki.store import PkiStore

    return PkiStore.open()
