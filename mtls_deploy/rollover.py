"""``inv pki.rollover --ca client|server --start|--finish``: replace a CA with no flag day.

The PKI's half (new CA, phases, a CRL per client CA) is ``pki/rollover.py``; this module pushes
and delivers, in the order that never locks anybody out:

- client CA, start: both CAs and a CRL for each onto every API host (a tagged run: the tls
  role's files tagged ``crl`` and ``client-ca``); only once all trust it, the new CA issues
  (so no certificate of it meets a host that refuses it: ``inv maintain`` may renew a client
  meanwhile); then every client of the old CA re-issued under the new one and delivered, then
  its old certificate revoked (into the old CA's CRL) and the CRL pushed. Finish: refused while a valid certificate of the old CA remains (``--force``);
  the old CA and its CRL leave the hosts.
- a start that stopped half-way (a host down) is taken up again by ``--finish``, which goes
  on from where it stopped and ends the rollover only when nothing needs the old CA.
- server CA, start: every consumer's ``api-ca.crt`` gets the new root (bundles re-delivered);
  only once all hold it, the new CA issues, and the API hosts are provisioned (the tls role's
  prepare renews a certificate "signed by another server CA"). Finish: refused until every API
  host serves a certificate of the new CA (``--force``); then bundles lose the old root.
"""

import sys

from . import report
from .errors import UserError
from .runner import GroupResult, HostResult, run_on_hosts

API_GROUP = "api"
TRUST_TAGS = ("crl", "client-ca")


def start(ca: str) -> GroupResult:
    """``--start``: a new CA of ``ca`` and everything that follows from it (module docstring)."""
    from .clients import open_store
    from .pki.rollover import check_ca

    store = open_store(keep_superseded=True)
    subject = store.start_rollover(check_ca(ca))
    print(f"{ca} CA rollover started: new CA {subject}")
    return _start_client(store) if ca == "client" else _start_server(store)


def finish(ca: str, force: bool = False) -> GroupResult:
    """``--finish``: retire the old CA of ``ca`` once nothing needs it (``force``: now)."""
    from .clients import open_store
    from .pki.rollover import check_ca

    store = open_store(keep_superseded=True)
    if store.rollover_phase(check_ca(ca)) in ("trusting", "consumers", "starting"):
        group = (_start_client if ca == "client" else _start_server)(store)  # go on from there
        if group.failed or store.rollover_phase(ca) not in ("overlap", "servers"):
            return group
    if ca == "server" and not force:
        _refuse_old_server_certificates(store)
    old = store.finish_rollover(ca, force=force)
    print(f"{ca} CA rollover finished: {old} retired")
    return push_trust(store) if ca == "client" else redeliver_bundles(store)


# --- client CA -------------------------------------------------------------------------------


def _start_client(store) -> GroupResult:
    pushed = push_trust(store)
    if pushed.failed:
        print("the new client CA is not on every API host yet: fix them and run "
              "`inv pki.rollover --ca client --finish` to go on")  # fmt: skip
        return pushed
    store.switch_to_new_ca("client")
    print("every API host trusts the new client CA: client certificates now come from it")
    moved = move_clients(store, [c.name for c in store.old_ca_clients()])
    return GroupResult(pushed.results + moved.results)


def move_clients(store, names: list[str]) -> GroupResult:
    """Re-issue ``names`` under the issuing client CA and deliver them; then revoke their old
    certificates as superseded (only those delivered) and push the CRL."""
    from . import clients
    from . import deliver as delivery
    from .api_urls import bundle_apis
    from .pki.bundle import default_dist_dir, write_client_bundle

    movable = [name for name in dict.fromkeys(names) if _key_stored(store, name)]
    api_ca, apis = delivery.bundle_api_ca(store), bundle_apis()
    for name in movable:
        result = store.renew_client(name)
        write_client_bundle(store, name, api_ca=api_ca, apis=apis)
        print(f"{name}: re-issued under the new client CA, serial {result.serial}")
    delivered = delivery.deliver_bundles(store, movable, default_dist_dir())
    delivery.print_deliveries(delivered, default_dist_dir())
    # a bundle no consumer host receives is the operator's to hand over: until they say so
    # (`inv issue-client`), its old certificate stays valid, under the old CA still trusted
    handed = [name for name in movable if name not in delivered.undelivered]
    clients.revoke_superseded(store, handed, delivered)
    for name in delivered.undelivered:
        print(f"{name}: the old certificate stays valid until you hand over dist/{name}/ and "
              f"run `inv issue-client --name {name}`")  # fmt: skip
    return GroupResult(delivered.group.results + push_trust(store).results)


def _key_stored(store, name: str) -> bool:
    material = store.client_material(name)
    if material is not None and material.key_pem is None:
        print(f"{name}: its key was made on its consumer: re-issue it there with "
              f"`inv issue-client --name {name} --csr --reissue`")  # fmt: skip
        return False
    return material is not None


def push_trust(store, stream=None) -> GroupResult:
    """The trusted client CAs and their CRLs (the tls role's files tagged ``crl`` and
    ``client-ca``) to every API host in parallel, nginx checked and reloaded; the recap."""
    from .provision import RunOptions, provision_host
    from .rollout import with_provision_hint

    work = lambda host: with_provision_hint(provision_host(host, RunOptions(tags=TRUST_TAGS)))  # noqa: E731
    return _on_api_hosts(work, stream)


def _on_api_hosts(work, stream=None) -> GroupResult:
    from . import inventory

    stream = stream or sys.stdout
    hosts = inventory.load().select([], API_GROUP)
    printer = lambda result: report.print_host(result, stream=stream)  # noqa: E731
    group = run_on_hosts(hosts, work, on_result=printer)
    report.print_recap(group, stream)
    return group


# --- server CA -------------------------------------------------------------------------------


def _start_server(store) -> GroupResult:
    delivered = redeliver_bundles(store)
    if delivered.failed:
        print("the new server root is not on every consumer yet: fix them and run "
              "`inv pki.rollover --ca server --finish` to go on")  # fmt: skip
        return delivered
    store.switch_to_new_ca("server")
    print("every consumer trusts the new server CA: server certificates now come from it")
    from .provision import provision_host

    return GroupResult(delivered.results + _on_api_hosts(provision_host).results)


def redeliver_bundles(store) -> GroupResult:
    """Every client's bundle, rewritten with the API roots of now (``api-ca.crt``: both server
    CAs during a rollover) where it differs, and delivered to its consumers."""
    from . import deliver as delivery
    from .api_urls import bundle_apis
    from .pki.bundle import bundle_is_current, default_dist_dir, write_client_bundle

    api_ca, apis = delivery.bundle_api_ca(store), bundle_apis()
    known = dict.fromkeys(record.name for record in store.list() if record.kind == "client")
    names = [name for name in known if _deliverable(store, name)]
    for name in names:
        if not bundle_is_current(store, name, api_ca=api_ca):
            write_client_bundle(store, name, api_ca=api_ca, apis=apis)
    delivered = delivery.deliver_bundles(store, names, default_dist_dir())
    delivery.print_deliveries(delivered, default_dist_dir())
    return delivered.group


def _deliverable(store, name: str) -> bool:
    """A client whose current certificate is valid and whose key is stored here."""
    material = store.client_material(name)
    return material is not None and material.key_pem is not None and material.status in (
        "valid", "expiring")  # fmt: skip


def _refuse_old_server_certificates(store) -> None:
    """``UserError`` naming the API hosts that do not serve a certificate of the issuing server
    CA (read on the host, as nginx has it), unless all do."""
    from cryptography import x509

    group = run_on_hosts(_api_hosts(), served_issuer)
    new = x509.load_pem_x509_certificate(store.server_ca_pem()).subject.rfc4514_string()
    behind = [f"{r.host} ({r.error or r.data['issuer']})" for r in group.results
              if r.error or r.data["issuer"] != new]  # fmt: skip
    if behind:
        raise UserError(
            f"not every API host serves a certificate of the new server CA yet: "
            f"{', '.join(behind)}; run `inv provision`, or finish with --force"
        )


def _api_hosts() -> list:
    from . import inventory

    loaded = inventory.load()
    return [h for h in loaded.select([], API_GROUP) if h.vars.get("server_cert", "private") ==
            "private"]  # fmt: skip


def served_issuer(host) -> HostResult:
    """The issuer of the server certificate nginx has on ``host`` (``data['issuer']``)."""
    from cryptography import x509

    from .connection import Remote, SshTarget
    from .status.gather import api_script, parse_output, tls_paths

    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        output = remote.run_script(api_script(tls_paths(host.vars)), sudo=True, timeout=60)
    pem = parse_output(output.stdout)[0].get("server-cert")
    issuer = x509.load_pem_x509_certificate(pem).issuer.rfc4514_string() if pem else "none"
    return HostResult(host.name, data={"issuer": issuer})
