"""``inv maintain``: do what ``due.decide`` says, in an order that never locks anyone out.

1. The CRL is re-signed on the control machine when due.
2. Client certificates due are renewed (same O, email, lifetime), their new bundles delivered
   to the consumers the inventory names, and only then the old certificates revoked as
   superseded: a client whose delivery failed keeps a valid certificate.
3. Every API host, in parallel: the tls role's prepare step (it renews the server certificate
   of our CA at two thirds of its life), then a run restricted to the resources tagged ``crl``
   and ``server-cert`` (the CRL file, the server certificate and key; nginx -t, reload): not a
   whole provision. A host that is down fails alone; the others proceed.
4. Another CA's server certificates (``server_cert: acme``, ``files``) are read on their hosts
   (``inv status``'s script, one round trip) and reported with their time left: never renewed
   here (certbot.timer renews an ACME one on the host).

Nothing here asks for input: the CA passphrase comes from ``MTLS_DEPLOY_CA_PASSPHRASE_FILE``
(or ``MTLS_DEPLOY_CA_PASSPHRASE``), and only when something must be signed.
"""

import datetime as dt
from pathlib import Path

from cryptography import x509

from ..errors import UserError
from ..runner import GroupResult, HostResult, run_on_hosts
from .due import RENEW, WARN, Due, PkiDates, Span, decide
from .recap import CHANGED, CRITICAL, OK, WARNING, Action, host_action

API_GROUP = "api"
PUSH_TAGS = ("crl", "server-cert")
PRIVATE = "private"


def maintain(loaded, store, now: dt.datetime | None = None) -> list[Action]:
    """One maintenance pass over the PKI and every API and consumer host; the recap's actions.
    Example: ``maintain(inventory.load(), clients.open_store(keep_superseded=True))``."""
    now = now or dt.datetime.now(dt.UTC)
    api_hosts = loaded.select([], API_GROUP) if loaded.groups.get(API_GROUP) else []
    public = {h.name: _kind(h) for h in api_hosts if _kind(h) != PRIVATE}
    served, unread = served_spans([h for h in api_hosts if h.name in public])
    dues = decide(pki_dates(store, api_hosts, served), store.settings, now)
    actions = [refresh_crl(store, d) for d in dues if d.kind == "crl"]
    actions += renew_clients(store, loaded, [d for d in dues if d.kind == "client"])
    actions += push_to_hosts(api_hosts)
    actions += [reported(d, public.get(d.name)) for d in dues if d.kind in ("foreign", "ca")]
    return actions + unread


# --- the dates ------------------------------------------------------------------------------


def pki_dates(store, api_hosts: list, served: dict[str, Span] | None = None) -> PkiDates:
    """The dates ``decide`` needs, read from the PKI; ``served``: the ``acme`` and ``files``
    hosts' certificates as read from the hosts (``served_spans``)."""
    servers = {h.name: _server_span(store, h.name) for h in api_hosts if _kind(h) == PRIVATE}
    return PkiDates(
        crl=_crl_span(store),
        servers={name: span for name, span in servers.items() if span},
        clients=client_spans(store),
        cas=ca_spans(store),
        foreign=dict(served or {}),
    )


def _kind(host) -> str:
    return host.vars.get("server_cert") or PRIVATE


def served_spans(hosts: list) -> tuple[dict[str, Span], list[Action]]:
    """The dates of the certificate each host's site serves (another CA's: acme, files), read
    on the host in parallel (``inv status``'s script, one round trip each); a host that could
    not be read is a critical line instead."""
    spans, failed = {}, []
    for result in run_on_hosts(hosts, _read_served).results:
        if result.error:
            text = f"cannot read it on the host: {result.error.removeprefix(result.host + ': ')}"
            failed.append(Action(f"server certificate of {result.host}", CRITICAL, text))
        else:
            spans[result.host] = result.data["span"]
    return spans, failed


def _read_served(host) -> HostResult:
    from ..status.gather import read_served_certificate

    pem = read_served_certificate(host)
    try:
        return HostResult(host.name, data={"span": _cert_span(pem or b"")})
    except ValueError:
        return HostResult(host.name, error="missing or not a PEM certificate")


def _crl_span(store) -> Span | None:
    try:
        crl = store.crl()
    except (UserError, ValueError):
        return None
    return Span(crl.last_update_utc, crl.next_update_utc)


def _cert_span(pem: bytes) -> Span:
    cert = x509.load_pem_x509_certificate(pem)
    return Span(cert.not_valid_before_utc, cert.not_valid_after_utc)


def _server_span(store, host: str) -> Span | None:
    path = Path(store.path) / "servers" / host / f"{host}.crt"
    return _cert_span(path.read_bytes()) if path.is_file() else None  # none: prepare issues it


def client_spans(store) -> dict[str, Span]:
    """The latest certificate of each client that is not revoked (an expired one too)."""
    latest = {}
    for record in store.list():
        if record.kind == "client":
            latest[record.name] = record  # oldest first per name
    return {
        name: Span(record.not_after, record.not_after)  # only the end matters for clients
        for name, record in latest.items()
        if record.status in ("valid", "expiring", "expired")
    }


def ca_spans(store) -> dict[str, Span]:
    """Each CA certificate in the client and server CA files (two during a rollover)."""
    found = {}
    for kind, pem in (("client", store.client_ca_pem()), ("server", store.server_ca_pem())):
        for number, cert in enumerate(x509.load_pem_x509_certificates(pem)):
            label = f"{kind} CA" + (f" #{number + 1}" if number else "")
            found[label] = Span(cert.not_valid_before_utc, cert.not_valid_after_utc)
    return found


# --- the actions ----------------------------------------------------------------------------


def refresh_crl(store, due: Due) -> Action:
    """Re-sign crl.pem when due (the hosts get it in ``push_to_hosts``)."""
    if due.what != RENEW:
        return Action("crl.pem", OK, f"valid, {due.why}")
    store.refresh_crl()
    return Action("crl.pem", CHANGED, f"re-signed ({due.why}); pushed to the API hosts below")


RENEWED_BY = {
    "acme": "acme: certbot.timer renews it on the host",
    "files": "files: replace server_cert_files and provision",
}


def reported(due: Due, kind: str | None = None) -> Action:
    """A CA or another CA's server certificate (``kind``: acme, files): a line with its time
    left, a warning near its end, no change."""
    subject = f"{'server certificate of ' if due.kind == 'foreign' else ''}{due.name}"
    why = f"{due.why} ({RENEWED_BY[kind]})" if kind in RENEWED_BY else due.why
    return Action(subject, WARNING if due.what == WARN else OK, why)


def push_to_hosts(api_hosts: list) -> list[Action]:
    """Every API host in parallel: renew its server certificate when due, push it and the CRL."""
    return [host_action(result) for result in run_on_hosts(api_hosts, maintain_host).results]


def maintain_host(host) -> HostResult:
    """The tls role's prepare step (renew the server certificate when due, re-sign the CRL when
    due), then the tagged run that writes what changed and reloads nginx."""
    from .. import role_loader
    from ..provision import PrepareContext, RunOptions, prepare, provision_host

    roles = role_loader.host_roles(host.vars)
    prepared = prepare(roles, host.vars, PrepareContext(host.name, False))
    pushed = provision_host(host, RunOptions(tags=PUSH_TAGS))
    return HostResult(host.name, prepared + pushed.steps, pushed.error, pushed.data)


# --- clients --------------------------------------------------------------------------------


def renew_clients(store, loaded, dues: list[Due]) -> list[Action]:
    """Renew the clients due, deliver their bundles (and those a previous run could not
    deliver), then revoke the old certificates of those every consumer confirmed: a client
    whose delivery failed keeps a valid certificate, and the next run tries again."""
    from .. import deliver

    targets = {d.name: [h.name for h in deliver.consumer_hosts(loaded, d.name)] for d in dues}
    due = [d for d in dues if d.what == RENEW and targets[d.name]]
    actions = [_no_consumer(d) for d in dues if d.what == RENEW and not targets[d.name]]
    renewed = {d.name: _renew_one(store, d) for d in due}
    actions += [outcome for outcome in renewed.values() if isinstance(outcome, Action)]
    pending = {
        d.name: _pending(store, d) for d in dues if d.name not in renewed and targets[d.name]
    }
    renewed.update({name: found for name, found in pending.items() if found})
    actions += [Action(f"client {d.name}", OK, d.why) for d in dues if d.name not in renewed
                and d.what != RENEW]  # fmt: skip
    ready = [name for name, outcome in renewed.items() if not isinstance(outcome, Action)]
    return actions + _deliver_and_revoke(store, loaded, ready, renewed, targets)


def _pending(store, due: Due):
    """A renewal an earlier run could not deliver: its old serial still valid (or None)."""
    old = store.superseded_serials(due.name)
    current = store.client_material(due.name)
    if not old or current is None:
        return None
    return (", ".join(old), current.serial, f"renewed earlier, {due.why}")


def _no_consumer(due: Due) -> Action:
    return Action(f"client {due.name}", WARNING,
                  f"due ({due.why}) but no consumer host receives it: renew it by hand "
                  f"(`inv renew-client --name {due.name}`) and hand over the new bundle")  # fmt: skip


def _renew_one(store, due: Due):
    """(old serial, new serial, why), or a warning ``Action`` (a key made on the consumer)."""
    from .. import deliver
    from ..api_urls import bundle_apis
    from ..pki.bundle import write_client_bundle

    before = store.client_material(due.name)
    try:
        result = store.renew_client(due.name)
        write_client_bundle(
            store, due.name, api_ca=deliver.bundle_api_ca(store), apis=bundle_apis()
        )
    except UserError as error:
        return Action(f"client {due.name}", WARNING, f"due ({due.why}) but not renewed: {error}")
    return (before.serial if before else "?", result.serial, due.why)


def _deliver_and_revoke(store, loaded, names, renewed, targets) -> list[Action]:
    """Deliver ``names``' new bundles, revoke the predecessors every consumer confirmed."""
    from .. import deliver
    from ..pki.bundle import default_dist_dir

    if not names:
        return []
    report = deliver.deliver_bundles(store, names, default_dist_dir(), loaded=loaded)
    revoked = store.revoke_superseded([n for n in names if n in report.confirmed()])
    actions = [
        _client_action(name, renewed[name], targets[name], revoked.get(name),
                       _failure(name, targets[name], report.group))
        for name in names
    ]  # fmt: skip
    return actions + [host_action(r) for r in report.group.results if r.error]


def _failure(name: str, hosts: list[str], group: GroupResult) -> str | None:
    """Why ``name``'s bundle did not reach one of ``hosts`` (None: it reached them all)."""
    for result in group.results:
        if result.host not in hosts:
            continue
        if result.error:
            return f"{result.host}: {result.error.removeprefix(result.host + ': ')}"
        for step in result.steps:
            if step.name == name and step.status in ("failed", "skipped"):
                return f"{result.host}: {step.reason}"
    return None


def _client_action(name, renewal, hosts, revoked, failure) -> Action:
    old, new, why = renewal
    if revoked:
        text = (f"renewed ({why}), serial {old} -> {new}, delivered to {', '.join(hosts)}; "
                f"previous serial {', '.join(revoked)} revoked")  # fmt: skip
        return Action(f"client {name}", CHANGED, text)
    failure = failure or "a consumer host did not confirm it"
    text = (f"renewed, serial {old} -> {new}, NOT delivered ({failure}); "
            f"serial {old} stays valid until a run delivers the new bundle")  # fmt: skip
    return Action(f"client {name}", CRITICAL, text)
