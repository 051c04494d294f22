"""mtls-deploy: the front door. Each task parses its flags, calls the engine, prints, exits.

inv lab.up                  # throwaway Debian 12/13 "VPSes" on this machine
inv pki.init                # client CA + server CA in pki/
inv provision --host api1   # nginx mTLS site + FastCGI backend, idempotent
inv issue-client --name bob # client certificate, delivered to the consumer
inv smoke-test              # curl from the remote machines: who gets in
"""

from invoke import Collection

from mtls_deploy import maintain_tasks, pki_tasks, release_tasks, unprovision_tasks
from mtls_deploy.cli import at_least, name_tasks, print_json, raise_on_failure, split_names, task

# --- inventory -------------------------------------------------------------------------------


@task(
    help={
        "host": "show one host's merged variables and where each came from",
        "json": "print one JSON document",
    }
)
def inventory(c, host=None, json=False):
    """List hosts by group, or one host's variables with their source. Ex: inv inventory --host api1"""
    from mtls_deploy import inventory as inv

    loaded = inv.load()
    report = inv.host_report(loaded.host(host)) if host else inv.groups_report(loaded)
    if json:
        return print_json(report)
    for name, value in report.items():
        print(
            f"{name} = {value['value']!r}  ({value['source']})"
            if host
            else f"{name}: {', '.join(value)}"
        )


# --- hosts -----------------------------------------------------------------------------------


@task(
    help={
        "host": "host(s) to trust, comma-separated",
        "replace": "replace a CHANGED key (check the new fingerprint out of band first)",
        "fingerprint": "accept only this key (SHA256:..., as ssh-keygen -lf prints it)",
    }
)
def hosts_trust(c, host, replace=False, fingerprint=None):
    """Record hosts' SSH keys in known_hosts, printing each fingerprint (trust on first use).

    A changed key is refused unless --replace; --fingerprint pins the expected key for scripts.
    Ex: inv hosts.trust --host api1 --fingerprint SHA256:...
    """
    from mtls_deploy.connection import SshTarget
    from mtls_deploy.host_keys import trust_targets
    from mtls_deploy.inventory import load

    loaded = load()
    names = split_names(host)  # host patterns (api*, api:!api3); none trusts none
    targets = [SshTarget.from_vars(h.name, h.vars) for h in (loaded.select(names) if names else [])]
    for line in trust_targets(targets, replace=replace, fingerprint=fingerprint):
        print(line, flush=True)


@task(
    help={
        "host": "hosts or Ansible patterns: api1,bob or 'api*' or 'api:!api3' (default: all)",
        "group": "a group of hosts",
        "command": "the shell command to run",
        "sudo": "run it as root",
    }
)
def hosts_run(c, command, host=None, group=None, sudo=False):
    """Run a command on hosts over SSH, in parallel. Ex: inv hosts.run --command 'uname -r'"""
    from mtls_deploy.hosts import run_command

    raise_on_failure(run_command(split_names(host), group, command, sudo))


# --- lab -------------------------------------------------------------------------------------

LAB_HOSTS_HELP = {"host": "lab hosts, comma-separated (default: every host in the inventory)"}


def lab_hosts(names):
    """The inventory's lab hosts (all when ``names`` is empty) as ``LabHost``s."""
    from mtls_deploy import lab
    from mtls_deploy.inventory import load

    return lab.hosts_from_inventory(load().select(names))


@task(
    help={
        **LAB_HOSTS_HELP,
        "with_acme": "also run Pebble (a test ACME CA) and its DNS on loopback; map the "
        "server_cert: acme hosts' names to their https_listen; trust Pebble's root on the hosts",
    }
)
def lab_up(c, host=None, with_acme=False):
    """Boot the lab hosts, building the Debian base (12, or 13: lab_release) on first use; idempotent.

    Ex: inv lab.up  |  inv lab.up --with-acme (directory https://127.0.0.1:14000/dir)
    """
    from mtls_deploy import lab
    from mtls_deploy.inventory import load
    from mtls_deploy.lab.acme import AcmeLab, acme_records
    from mtls_deploy.project import project_path

    state = project_path(".lab")  # where the inventory's lab key and known_hosts are
    selected = load().select(split_names(host))
    if with_acme:
        acme_records(selected)  # a bad https_listen or name: one line, before anything starts
    for name, outcome in lab.up(lab.hosts_from_inventory(selected), state, print).items():
        print(f"{name}: {outcome}")
    for line in AcmeLab(state).up_for_inventory(selected) if with_acme else ():
        print(line)


@task(help=LAB_HOSTS_HELP)
def lab_down(c, host=None):
    """Stop the lab's containers and, without --host, Pebble and its DNS: nothing left running.

    Ex: inv lab.down  |  inv lab.down --host bob
    """
    from mtls_deploy import lab
    from mtls_deploy.lab.acme import AcmeLab
    from mtls_deploy.project import project_path

    for name, outcome in lab.down(lab_hosts(split_names(host))).items():
        print(f"{name}: {outcome}")
    if not host:
        print(f"acme: {AcmeLab(project_path('.lab')).down()}")


@task(help=LAB_HOSTS_HELP)
def lab_status(c, host=None):
    """Show each lab host's state, nspawn pid and SSH address, and Pebble's when it runs."""
    from mtls_deploy import lab
    from mtls_deploy.lab.acme import AcmeLab
    from mtls_deploy.project import project_path

    statuses = lab.status(lab_hosts(split_names(host)))
    print(f"{'host':<12} {'state':<8} {'pid':>7}  ssh")
    for s in statuses:
        print(f"{s.name:<12} {s.state:<8} {s.pid or '-':>7}  {s.address}:{s.ssh_port}")
    acme = AcmeLab(project_path(".lab"))
    if pid := acme.status()["pebble"]:
        print(f"{'acme':<12} {'running':<8} {pid:>7}  {acme.directory_url}")


@task(help=LAB_HOSTS_HELP)
def lab_reset(c, host=None):
    """Throw hosts away, boot fresh copies of the base: new VPSes. Ex: inv lab.reset --host api1"""
    from mtls_deploy import lab
    from mtls_deploy.project import project_path

    state = project_path(".lab")
    for name, outcome in lab.reset(lab_hosts(split_names(host)), state, print).items():
        print(f"{name}: reset, {outcome}")


# --- pki -------------------------------------------------------------------------------------


def optional_days(value) -> int | None:
    """``--days``: ``None`` when not given (the inventory's lifetime applies), else a whole
    number of days, at least 1; anything else is one line, exit 2."""
    from mtls_deploy.errors import BadInput

    if value is None:
        return None
    try:
        days = int(value)
    except ValueError:
        raise BadInput(
            f"--days {value!r} is not a whole number: give digits, e.g. --days 30"
        ) from None
    return at_least(days, "--days", 1)


P12_HELP = {
    "p12": "also write <name>.p12 (default; --no-p12 to skip)",
    "p12_legacy": "3DES/SHA-1 .p12 for macOS keychains and older Windows",
}


@task(
    help={
        "key_type": "ec (P-256) or rsa (3072 bits); default: the inventory's pki_key_type, else ec",
        "name": "name in the CAs' subjects",
    }
)
def pki_init(c, key_type=None, name="Example API"):
    """Create the client CA and the server CA (keys encrypted); refuses to overwrite a PKI.

    Passphrase from MTLS_DEPLOY_CA_PASSPHRASE, else a prompt. Ex: inv pki.init --key-type rsa
    """
    from mtls_deploy.clients import inventory_key_type, pki_settings
    from mtls_deploy.pki.store import PkiStore

    key_type = key_type or inventory_key_type()
    store = PkiStore(settings=pki_settings())  # ca_lifetime, crl_lifetime from group_vars/all
    store.init(name=name, key_type=key_type)
    print(
        f"created {store.path}: client CA and server CA ({key_type}), crl.pem valid until "
        f"{store.crl_next_update():%Y-%m-%d}"
    )


@task(
    help={
        "days": "days until nextUpdate (default: the inventory's crl_lifetime, else 180d)",
        "push": "then push it to every host of group api (nginx -t, reload)",
    }
)
def pki_crl(c, days=None, push=False):
    """Re-sign the CRL with a fresh thisUpdate/nextUpdate (an expired CRL locks out every client).

    Ex: inv pki.crl --push
    """
    from mtls_deploy.clients import open_store
    from mtls_deploy.rollout import push_crl

    days = optional_days(days)
    store = open_store()
    store.refresh_crl(days=days)
    print(f"crl.pem re-signed: valid until {store.crl_next_update():%Y-%m-%d %H:%M} UTC")
    if push:
        raise_on_failure(push_crl(store))


@task(help={"json": "print one JSON document", "all": "include replaced server certificates"})
def pki_list(c, json=False, all=False):
    """Every certificate: name, kind, serial, not_after, days left, status. Ex: inv pki.list"""
    from mtls_deploy import clients

    store = clients.open_store()
    records = store.list(include_replaced=all)
    if json:
        return print_json(
            {
                "certificates": [r.to_dict() for r in records],
                "crl_next_update": store.crl_next_update().isoformat(),
            }
        )
    print(f"{'name':<24} {'kind':<9} {'serial':<40} {'not_after':<10} {'days':>5}  status")
    for r in records:
        print(
            f"{r.name:<24} {r.kind:<9} {r.serial_hex:<40} {r.not_after:%Y-%m-%d} "
            f"{r.days_left:>5}  {r.status}{f'  ou={r.ou}' if r.ou else ''}"
        )
    if warning := clients.crl_expiry_warning(store):
        print(warning)


@task(
    one_of=("name", "names_file"),
    help={
        "name": "client name (a-z 0-9 . _ -)",
        "names_file": "bulk: a file with one client name a line",
        "days": "validity in days (default: the inventory's client_lifetime, else 365d)",
        "org": "organisation (O=) in the subject",
        "email": "email address for the subjectAltName",
        "ou": "organisational unit (OU=) in the subject, for mtls_routes' allow: {ou: [...]}",
        "reissue": "replace a valid certificate (the old one is revoked once the new one is delivered)",
        "deliver": "deliver each bundle to its consumer host over SSH (default; --no-deliver)",
        "csr": "make the key on the consumer host; only the CSR and certificate travel",
        **P12_HELP,
    },
)
def issue_client(
    c,
    name=None,
    names_file=None,
    days=None,
    org=None,
    email=None,
    ou=None,
    reissue=False,
    p12=True,
    p12_legacy=False,
    deliver=True,
    csr=False,
):
    """Issue client keys and certificates; write each bundle to dist/<name>/ and deliver it.

    Ex: inv issue-client --name bob  |  inv issue-client --name bob --csr
    """
    from mtls_deploy import clients

    days = optional_days(days)
    names = clients.client_names(name, names_file)
    options = clients.IssueOptions(days, org, email, reissue, p12, p12_legacy, deliver, csr, ou)
    raise_on_failure(clients.issue(names, options))


@task(
    one_of=("name", "names_file"),
    help={
        "name": "client name",
        "names_file": "bulk: a file with one client name a line (one CRL, one push)",
        "reason": "key_compromise, superseded, cessation_of_operation, "
        "affiliation_changed or unspecified (default)",
        "push": "push the CRL to every host of group api (default; --no-push to skip)",
    },
)
def revoke_client(c, name=None, names_file=None, reason="unspecified", push=True):
    """Revoke clients' certificates, re-sign the CRL once and push it to every API host.

    Hosts in parallel, each: CRL, nginx -t, reload. Ex: inv revoke-client --name bob
    """
    from mtls_deploy import clients

    names = clients.client_names(name, names_file)
    raise_on_failure(clients.revoke(names, reason, push))


@task(
    help={
        "name": "client name",
        "deliver": "deliver the new bundle (default; --no-deliver)",
        **P12_HELP,
    }
)
def renew_client(c, name, p12=True, p12_legacy=False, deliver=True):
    """Renew a client: a new key and certificate, delivered; then the old one is revoked.

    Revoked as superseded only once the new bundle is delivered; the CRL is pushed to every API
    host. Ex: inv renew-client --name bob
    """
    from mtls_deploy import clients

    raise_on_failure(clients.renew(name, p12, p12_legacy, deliver))


# --- provision -------------------------------------------------------------------------------


@task(
    help={
        "host": "hosts or Ansible patterns: api1,api2 or 'api*' or 'api:!api3'",
        "group": "a group of hosts (default: api)",
        "check": "change nothing; report what would change",
        "diff": "show file diffs",
        "serial": "provision N hosts at a time, stop after a failed batch",
        "json": "print one JSON document",
        "backend": "override the backend: php or python",
    }
)
def provision(
    c, host=None, group=None, check=False, diff=False, serial=0, json=False, backend=None
):
    """Make API hosts match their roles: TLS files, nginx mTLS site, FastCGI backend.

    Ex: inv provision --host api1 --check --diff
    """
    from mtls_deploy.hosts import provision_hosts

    at_least(serial, "--serial", 0, "0, the default, runs every host at once")
    extra = {"backend": backend} if backend else {}
    group_result = provision_hosts(
        split_names(host), group, check, diff, serial or None, json, extra
    )
    raise_on_failure(group_result)


# --- smoke test ------------------------------------------------------------------------------


@task(
    help={
        "host": "API hosts or Ansible patterns (default: group api)",
        "from": "consumer hosts to curl from, comma-separated (default: group consumers)",
        "json": "print one JSON document",
    }
)
def smoke_test(c, host=None, from_=None, json=False):
    """curl from the consumers and the API hosts: who gets in; and each host's CRL.

    Bundles, no/revoked/foreign/expired certificates, spoofed identity headers, old TLS, the
    server certificate. Exit 1 on any failure. Ex: inv smoke-test --host api1 --from bob
    """
    from invoke import Exit

    from mtls_deploy.smoke import print_report, run_smoke

    report = run_smoke(split_names(host), split_names(from_))
    print_report(report, as_json=json)
    if report.failed:
        raise Exit(code=1)


# --- status and doctor -----------------------------------------------------------------------


@task(
    help={
        "host": "hosts or Ansible patterns (default: every API and consumer host)",
        "json": "print one JSON document (its shape: mtls_deploy/status/__init__.py)",
        "html": "write the status as one self-contained HTML page (a timeline) to FILE",
        "warn_before": "warn this long before an end, e.g. 30d, 12h (default: the PKI's warn_before)",
    }
)
def status(c, host=None, json=False, html=None, warn_before=None):
    """What expires where, and whether every host holds the PKI's files, read live.

    Exit 0 ok, 1 warning, 2 critical, 3 unknown (monitoring plugins). Ex: inv status --json
    """
    from invoke import Exit

    from mtls_deploy.status.command import status_main

    code = status_main(split_names(host), json, html, warn_before)
    if code:
        raise Exit(code=code)


@task(
    help={
        "name": "the client refused: read its recent requests in the API hosts' logs",
        "cert": "a client certificate file to check (chain, dates, EKU, revoked) and try live",
        "key": "with --cert: its key (checked against it; needed for the live try)",
        "host": "API hosts or Ansible patterns (default: group api)",
    }
)
def doctor(c, name=None, cert=None, key=None, host=None):
    """Why is a client refused? The cause in one sentence and the one command that fixes it.

    Ex: inv doctor --name bob  |  inv doctor --cert bob.crt --key bob.key
    """
    from invoke import Exit

    from mtls_deploy.doctor import doctor_main

    if doctor_main(name, cert, key, split_names(host)):
        raise Exit(code=1)


# --- bench -----------------------------------------------------------------------------------


@task(
    help={
        "only": "benchmarks, comma-separated: provision-noop, fleet, provision-fresh, "
        "mtls-handshakes, api-throughput, deploy-noop, deploy-under-load, pki-bulk (default: "
        "all of these), soak (~7 min)",
        "quick": "a short variant of each, written to bench/results/quick.tmp/",
        "results": "directory for the JSON files (default bench/results/)",
    }
)
def bench(c, only=None, quick=False, results=None):
    """Run the benchmarks on lab hosts fleet1..8; print a table each, write <name>.json.

    Ex: inv bench --only provision-noop,fleet  |  inv bench --quick
    """
    from invoke import Exit

    from bench.run import run_benchmarks

    failed = run_benchmarks(split_names(only), quick, results)
    if failed:
        raise Exit(f"failed: {', '.join(failed)}", code=1)


# --- namespace -------------------------------------------------------------------------------

ns = Collection()
ns.configure({"run": {"echo": False}})
ns.add_task(inventory)
ns.add_task(provision)
ns.add_task(bench)
hosts = Collection("hosts")
hosts.add_task(hosts_trust, "trust")
hosts.add_task(hosts_run, "run")
ns.add_collection(hosts)
lab_ns = Collection("lab")
lab_ns.add_task(lab_up, "up")
lab_ns.add_task(lab_down, "down")
lab_ns.add_task(lab_status, "status")
lab_ns.add_task(lab_reset, "reset")
ns.add_collection(lab_ns)
pki = Collection("pki")
pki.add_task(pki_init, "init")
pki.add_task(pki_crl, "crl")
pki.add_task(pki_list, "list")
for name, pki_task in pki_tasks.PKI_TASKS.items():  # backup, restore, verify, show, ...
    pki.add_task(pki_task, name)
for pki_task in pki_tasks.TOP_TASKS:  # sign-csr, export-p12
    ns.add_task(pki_task)
ns.add_collection(pki)
for top_task in (issue_client, revoke_client, renew_client, smoke_test, status, doctor):
    ns.add_task(top_task)
ns.add_task(maintain_tasks.maintain)
ns.add_task(release_tasks.deploy)
ns.add_task(release_tasks.rollback)
ns.add_task(unprovision_tasks.unprovision)
name_tasks(ns)  # "error: pki.show needs --name"
