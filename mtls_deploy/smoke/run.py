"""``run_smoke``: the inventory and the PKI as the smoke test's targets, then plan, run, judge."""

import datetime as dt
import time

from cryptography import x509

from ..deliver import CONSUMERS, bundle_dir, client_names, server_trust, session_path
from ..errors import UserError
from .cases import ApiTarget, Client, ConsumerHost, plan_cases
from .certificates import certificate_files
from .remote import run_scripts
from .report import SmokeReport
from .verdicts import collapse_unreachable, settle_cases

CRL_PUSH_NOTE = (
    "made the smoke test's own revoked and expired certificates (in the index, kind smoke); the "
    "API hosts' CRL does not list the revoked one yet: run `inv pki.crl --push`, then the smoke "
    "test again"
)


def api_target(host, ca_file: str | None = "server-ca.crt") -> ApiTarget:
    """An inventory host of group api as an ``ApiTarget``; ``ca_file`` names the CA file curl
    verifies it with (None: the system store)."""
    from ..role_loader import exports_for

    v = host.vars
    for name in ("server_name", "https_port"):
        if not v.get(name):
            raise UserError(f"{host.name}: {name} is not set: the smoke test needs it")
    verify = v.get("client_verify") or "on"  # the schema turned a bare YAML `on` into "on"
    return ApiTarget(host.name, v["server_name"], int(v["https_port"]), str(v.get("https_listen") or "*"),
                     str(v.get("ansible_host") or host.name), verify,
                     exports_for(v, "tls")["tls_crl"], ca_file)  # fmt: skip


def consumer_host(host, store) -> ConsumerHost:
    """An inventory consumer with the index's word on each of its clients."""
    clients = []
    for name in client_names(host):
        status = store.client_status(name)
        material = store.client_material(name) if status == "valid" else None
        clients.append(Client(name, status, material.serial if material else None))
    return ConsumerHost(host.name, session_path(bundle_dir(host.vars)), tuple(clients))


def run_smoke(
    api_names: list[str], from_names: list[str], loaded=None, store=None, now=None
) -> SmokeReport:
    """``inv smoke-test``: plan the cases, run every host's script in parallel, judge the rows.

    Example: ``run_smoke(["api1"], ["bob"]).failed``
    """
    started = time.monotonic()
    loaded, store = loaded or _load_inventory(), store or _open_store()
    now = now or dt.datetime.now(dt.UTC)
    apis, server_cas = api_targets(loaded.select(api_names, None if api_names else "api"), store)
    consumers = [consumer_host(h, store) for h in _consumer_hosts(loaded, from_names)]
    cases = plan_cases(apis, consumers)
    files, crl_changed = certificate_files(store, now)
    crl_paths = {api.host: api.crl_path for api in apis}
    outputs = run_scripts(loaded, cases, files, crl_paths, server_cas)
    cases = collapse_unreachable(cases, outputs)
    client_ca = x509.load_pem_x509_certificate(store.client_ca_pem())
    settle_cases(cases, outputs, store.crl_pem(), client_ca, now)
    notes = [CRL_PUSH_NOTE] if crl_changed else []
    return SmokeReport(cases, time.monotonic() - started, notes=notes)


def api_targets(hosts: list, store) -> tuple[list[ApiTarget], dict[str, bytes]]:
    """The API hosts as targets, and the CA files curl verifies them with: ``server-ca.crt``
    (ours), ``api-ca-<n>.crt`` (a private ACME CA's, a ``files`` chain's), none for a public CA
    (``deliver.server_trust``: the rule the bundles follow)."""
    ours, files, targets = store.server_ca_pem(), {}, []
    for host in hosts:
        pem = server_trust(host.vars, ours)
        name = (
            None if pem is None else "server-ca.crt" if pem == ours else f"api-ca-{len(files)}.crt"
        )
        if name:
            files[name] = pem
        targets.append(api_target(host, name))
    return targets, files


def _consumer_hosts(loaded, from_names: list[str]) -> list:
    """The hosts named by ``--from``, else every host of the consumers group."""
    if from_names:
        return loaded.select(from_names)
    return [loaded.host(name) for name in loaded.groups.get(CONSUMERS, [])]


def _load_inventory():
    from .. import inventory

    return inventory.load()


def _open_store():
    from ..pki.store import PkiStore

    return PkiStore.open()
