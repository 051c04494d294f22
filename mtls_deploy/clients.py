"""The client lifecycle as users type it: issue (and deliver), revoke and renew (and push the CRL).

Each function does the whole command and returns the hosts' ``GroupResult``; ``tasks.py`` only
turns a failure into the exit status.
"""

import contextlib
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import BadInput
from .runner import GroupResult

CRL_WARN_DAYS = 30
PRINT_EACH_UP_TO = 20


@dataclass(frozen=True)
class IssueOptions:
    """``inv issue-client`` flags."""

    days: int | None = None  # None: the inventory's client_lifetime (default 365d)
    org: str | None = None
    email: str | None = None
    reissue: bool = False
    p12: bool = True
    p12_legacy: bool = False
    deliver: bool = True
    csr: bool = False
    ou: str | None = None  # an OU in the subject, for mtls_routes' `ou`


def client_names(name: str | None, names_file: str | None) -> list[str]:
    """Names from --name or --names-file (exactly one), all checked before anything is issued."""
    from .pki.profile import parse_names, validate_client_name

    if (name is not None) == bool(names_file):
        raise BadInput("give either --name NAME or --names-file FILE")
    if name is not None:
        return [validate_client_name(name)]
    try:
        names = parse_names(Path(names_file).read_text(), names_file)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise BadInput(f"cannot read {names_file}: {reason}") from None
    if not names:  # else the command would do nothing and say nothing
        raise BadInput(f"{names_file} holds no client name: write one name a line")
    return names


def issue(names: list[str], options: IssueOptions) -> GroupResult:
    """Issue each client (key made here, or on its consumer with ``csr``), deliver the bundles,
    and push the CRL when a ``reissue`` superseded a certificate: the old certificate is revoked
    only once the new one is delivered (or left to the operator: ``--no-deliver``).

    Example: ``issue(["bob"], IssueOptions(org="Example, Inc."))``
    """
    from . import deliver as delivery
    from .api_urls import bundle_apis
    from .pki.bundle import default_dist_dir, issue_bundles
    from .pki.subject import validate_ou

    validate_ou(options.ou)  # one line before anything, a key made on a consumer included
    store = open_store(keep_superseded=True)
    crl_before = store.crl_pem()
    if options.csr:
        from . import deliver_csr

        csr = deliver_csr.CsrOptions(
            options.days, options.org, options.email, options.reissue, options.ou
        )
        report = deliver_csr.issue_with_csr(store, names, csr)
    else:
        with _progress(len(names)) as advance:
            results = issue_bundles(
                store, names, days=options.days, org=options.org, email=options.email,
                ou=options.ou, reissue=options.reissue, p12=options.p12, legacy=options.p12_legacy,
                on_result=advance, api_ca=delivery.bundle_api_ca(store), apis=bundle_apis(),
            )  # fmt: skip
        print_issued(results)
        report = delivery.deliver_bundles(store, names, default_dist_dir(), enabled=options.deliver)
    delivery.print_deliveries(report, default_dist_dir())
    revoke_superseded(store, names, report)
    return _with_crl_push(report.group, store, crl_before)


def revoke(names: list[str], reason: str = "unspecified", push: bool = True) -> GroupResult:
    """Revoke ``names`` (all checked first), re-sign the CRL once and push it to every API host
    (again if all were already revoked, so a failed push can be retried)."""
    from .rollout import push_crl

    store = open_store()
    print_revoked(store.revoke_clients(names, reason), reason)
    return push_crl(store) if push else GroupResult([])


def print_revoked(revoked: dict, reason: str) -> None:
    """One line per client (``None``: already revoked), or a summary for bulk runs."""
    done = {name: serial for name, serial in revoked.items() if serial is not None}
    if len(revoked) > PRINT_EACH_UP_TO:
        print(f"{len(done)} revoked ({reason}), {len(revoked) - len(done)} already revoked")
        return
    for name in revoked:
        if name in done:
            print(f"{name}: revoked serial {done[name]} ({reason}); crl.pem re-signed")
        else:
            print(f"{name}: already revoked")


def renew(
    name: str, p12: bool = True, p12_legacy: bool = False, deliver: bool = True
) -> GroupResult:
    """A new key and certificate for ``name``, the new bundle delivered; then the old one is
    revoked as superseded and the CRL pushed (not when the delivery failed: the client would be
    locked out)."""
    from . import deliver as delivery
    from .api_urls import bundle_apis
    from .pki.bundle import default_dist_dir, write_client_bundle

    store = open_store(keep_superseded=True)
    crl_before = store.crl_pem()
    result = store.renew_client(name)
    api_ca = delivery.bundle_api_ca(store)  # api-ca.crt follows the APIs' server certificates
    folder = write_client_bundle(
        store, name, p12=p12, legacy=p12_legacy, api_ca=api_ca, apis=bundle_apis()
    )
    print(f"{name}: {result.reason}; new serial {result.serial}; bundle {folder}/")
    report = delivery.deliver_bundles(store, [name], default_dist_dir(), enabled=deliver)
    delivery.print_deliveries(report, default_dist_dir())
    revoke_superseded(store, [name], report)
    return _with_crl_push(report.group, store, crl_before)


def revoke_superseded(store, names: list[str], report) -> None:
    """Revoke the predecessors of the clients whose new certificate is delivered (or is the
    operator's to deliver: no consumer host, ``--no-deliver``); name those that stay valid."""
    done = report.confirmed() | set(report.undelivered)
    revoked = store.revoke_superseded([name for name in names if name in done])
    waiting = {name: store.superseded_serials(name) for name in names if name not in done}
    waiting = {name: serials for name, serials in waiting.items() if serials}
    if len(revoked) + len(waiting) > PRINT_EACH_UP_TO:
        print(f"{len(revoked)} previous certificates revoked as superseded; "
              f"{len(waiting)} stay valid until their successor is delivered")  # fmt: skip
        return
    for name, serials in revoked.items():
        print(f"{name}: previous serial {', '.join(serials)} revoked as superseded")
    for name, serials in waiting.items():
        print(
            f"{name}: previous serial {', '.join(serials)} stays valid: the new certificate is "
            f"not delivered; fix that and run `inv issue-client --name {name}` to finish"
        )


def _with_crl_push(group: GroupResult, store, crl_before: bytes) -> GroupResult:
    from .rollout import push_crl

    pushed = push_crl(store) if store.crl_pem() != crl_before else GroupResult([])
    return GroupResult(group.results + pushed.results)


def print_issued(results) -> None:
    """One line per client, or a summary for bulk runs."""
    if len(results) <= PRINT_EACH_UP_TO:
        for r in results:
            print(f"{r.issue.name}: {r.issue.reason}; bundle {r.bundle_dir}/")
        return
    issued = sum(r.issue.changed for r in results)
    print(
        f"{len(results)} clients: {issued} issued, {len(results) - issued} unchanged; "
        f"bundles in {results[0].bundle_dir.parent}/"
    )


def _progress(total: int):
    """A rich progress bar on a terminal for bulk issuance; yields the per-client callback."""
    if total < 2 or not sys.stdout.isatty():
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar():
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            job = progress.add_task("issuing", total=total)
            yield lambda _result: progress.advance(job)

    return bar()


def crl_expiry_warning(store, now: datetime | None = None) -> str | None:
    """A warning when crl.pem expires within the store's ``warn_before`` (default 30 days):
    nginx would then reject every client."""
    from .pki.profile import human_duration

    left = store.crl_next_update() - (now or datetime.now(UTC))
    settings = getattr(store, "settings", None)
    if left >= (settings.warn_before if settings else timedelta(days=CRL_WARN_DAYS)):
        return None
    soon = f"in {left.days} days" if left.days >= 1 else f"in {human_duration(left)}"
    state = f"expires {soon}" if left.total_seconds() > 0 else "has EXPIRED"
    return f"warning: crl.pem {state}: run `inv pki.crl --push`"


def pki_settings():
    """The PKI's lifetimes and thresholds (``client_lifetime: 365d``, ...) as the inventory sets
    them for every host (``group_vars/all``), else the defaults: a ``pki.settings.PkiSettings``.

    Hosts that disagree are an error, as for ``pki_key_type``: one PKI, one set of lifetimes.
    """
    from . import inventory
    from .pki.settings import PkiSettings, names

    if inventory.existing_inventory_dir() is None:  # a PKI needs no inventory
        return PkiSettings()
    hosts = list(inventory.load().hosts.values())
    return PkiSettings.from_values({name: _one_value(hosts, name) for name in names()})


def _one_value(hosts, name: str):
    """The one value every host that sets ``name`` gives it (``None``: unset)."""
    chosen = {str(h.vars[name]) for h in hosts if h.vars.get(name) is not None}
    if len(chosen) > 1:
        raise BadInput(
            f"{name} differs between hosts ({', '.join(sorted(chosen))}); "
            "set it once, in group_vars/all.yml"
        )
    return chosen.pop() if chosen else None


def delivered_to(name: str) -> list[str]:
    """The inventory's consumer hosts that receive ``name``'s bundle (``[]`` without one)."""
    from . import inventory
    from .deliver import consumer_hosts

    if inventory.existing_inventory_dir() is None:
        return []
    return [host.name for host in consumer_hosts(inventory.load(), name)]


def open_store(**options):
    """The project's PKI (``PkiStore.open``) with the inventory's settings (``pki_settings``)."""
    from .pki.store import PkiStore

    return PkiStore.open(settings=pki_settings(), **options)


def inventory_key_type(default: str = "ec") -> str:
    """``pki_key_type`` as the inventory sets it for every host (``group_vars/all``), else ec.

    Hosts that disagree are an error: one PKI has one key type.
    """
    from . import inventory

    if inventory.existing_inventory_dir() is None:  # a PKI needs no inventory
        return default
    hosts = inventory.load().hosts.values()
    chosen = {h.vars["pki_key_type"] for h in hosts if h.vars.get("pki_key_type")}
    if len(chosen) > 1:
        raise BadInput(
            f"pki_key_type differs between hosts ({', '.join(sorted(chosen))}); "
            "set it once, in group_vars/all.yml"
        )
    return chosen.pop() if chosen else default
