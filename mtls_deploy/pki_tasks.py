"""The PKI's day-to-day tasks (``inv pki.backup``, ``pki.restore``, ``pki.verify``, ...), kept
out of tasks.py so that it stays one page; tasks.py adds them to its namespace.

Like every task: parse flags, call one function, print, exit; imports inside the function
(start-up time); errors are one line (``cli.task``).
"""

from invoke import Exit

from .cli import task


@task(help={"to": "the backup file to write (0600; keep it, and its passphrase, apart)"})
def pki_backup(c, to):
    """Write the whole PKI (CAs, keys, index, CRL, issued certificates) to one encrypted file.

    Its own passphrase: MTLS_DEPLOY_BACKUP_PASSPHRASE, else a prompt (twice). Ex: inv pki.backup --to pki.backup
    """
    from pathlib import Path

    from .clients import open_store
    from .pki import backup, passphrase

    store = open_store()
    secret = passphrase.secret(passphrase.BACKUP, confirm=True)
    done = backup.backup(store, Path(to), secret)
    print(f"wrote {done.path}: {done.files} files of {store.path}/, encrypted ({done.size} bytes)")


@task(
    help={
        "from": "the backup file written by pki.backup",
        "force": "replace an existing PKI (it is swapped out whole, never mixed)",
    }
)
def pki_restore(c, from_, force=False):
    """Restore the PKI from a backup: built beside, checked, then swapped in at once.

    Passphrase: MTLS_DEPLOY_BACKUP_PASSPHRASE, else a prompt. Ex: inv pki.restore --from pki.backup
    """
    from pathlib import Path

    from .pki import backup, passphrase, verify
    from .pki.store import default_pki_dir

    root, secret = default_pki_dir(), passphrase.secret(passphrase.BACKUP)
    count = backup.restore(Path(from_), root, secret, force=force, check=verify.problems)
    print(f"restored {count} files into {root}/: run `inv pki.verify` to open the CA keys")


@task
def pki_verify(c):
    """Check the PKI: index rows and files agree, the CRL matches, the CA keys open. Exit 0/1.

    Ex: inv pki.verify
    """

    from .clients import open_store
    from .pki import verify

    findings = verify.check(open_store())
    for finding in findings:
        print(finding.line())
    if bad := [f for f in findings if not f.ok]:
        raise Exit(f"pki.verify: {len(bad)} problem(s)", code=1)


@task(
    help={
        "name": "a client, a server's host name, client-ca or server-ca",
        "json": "one JSON document",
    }
)
def pki_show(c, name, json=False):
    """One certificate in full: subject, issuer, serial, dates, SAN, EKU, key, status. Ex: inv pki.show --name bob"""
    from .cli import print_json
    from .clients import delivered_to, open_store
    from .pki import show

    store = open_store()
    facts = show.describe(store, name)
    delivered = delivered_to(name) if facts["kind"] == "client" else None
    if json:
        return print_json({**facts, "delivered_to": delivered})
    print("\n".join(show.lines(facts, delivered)))


@task
def pki_passphrase(c):
    """Change the CA keys' passphrase: both keys re-encrypted, each written atomically.

    Current: the usual source; new: MTLS_DEPLOY_NEW_CA_PASSPHRASE, else a prompt (twice).
    Ex: inv pki.passphrase
    """
    from .clients import open_store
    from .pki import passphrase, rekey

    store = open_store()
    store._load_ca_key("client-ca")  # the current passphrase first: a wrong one asks nothing new
    changed = rekey.change_passphrase(store, passphrase.secret(passphrase.NEW_CA, confirm=True))
    print(f"re-encrypted {' and '.join(changed)} under the new passphrase: update "
          f"{passphrase.PASSPHRASE_ENV} or {passphrase.PASSPHRASE_FILE_ENV} where you set them")  # fmt: skip


@task(
    help={
        "name": "client name: the CSR's subject must be exactly CN=<name>",
        "csr_file": "the PEM certificate request, made elsewhere",
        "out": "directory for <name>.crt, <name>-chain.crt, api-ca.crt (default dist/<name>/)",
        "days": "validity in days (default: the inventory's client_lifetime, else 365d)",
        "reissue": "replace a valid certificate (the old one is revoked: push the CRL)",
    }
)
def sign_csr(c, name, csr_file, out=None, days=None, reissue=False):
    """Sign a CSR made elsewhere (no SSH): checked, recorded, certificate and chain written.

    Ex: inv sign-csr --name bob --csr-file bob.csr
    """
    from pathlib import Path

    from .clients import open_store
    from .pki.bundle import default_dist_dir
    from .pki.exports import sign_csr_file

    days = _optional_days(days)
    out_dir = Path(out) if out else default_dist_dir() / name
    done = sign_csr_file(open_store(), name, Path(csr_file), out_dir, days=days, reissue=reissue)
    print(f"{name}: {done.reason}; serial {done.serial}; wrote {', '.join(map(str, done.files))}")
    if done.crl_changed:
        print("crl.pem re-signed (the previous certificate revoked): run `inv pki.crl --push`")


@task(
    help={
        "name": "client name",
        "out": "directory for <name>.p12 and <name>.p12.pass (default dist/<name>/)",
        "p12_legacy": "3DES/SHA-1 .p12 for macOS keychains and older Windows",
    }
)
def export_p12(c, name, out=None, p12_legacy=False):
    """Write <name>.p12 (key, certificate, client CA) from the stored key. Ex: inv export-p12 --name bob"""
    from pathlib import Path

    from .clients import open_store
    from .pki import profile
    from .pki.bundle import default_dist_dir
    from .pki.exports import export_p12 as export

    profile.validate_client_name(name)
    out_dir = Path(out) if out else default_dist_dir() / name
    p12, password = export(open_store(), name, out_dir, legacy=p12_legacy)
    print(f"wrote {p12} and its password in {password} (both 0600)")


@task(
    help={
        "ca": "the CA to replace: client or server",
        "start": "make the new CA and roll it out beside the old one",
        "finish": "retire the old CA once nothing needs it",
        "force": "with --finish: retire it even though something still does",
    }
)
def pki_rollover(c, ca, start=False, finish=False, force=False):
    """Replace a CA with overlap: --start, then --finish once nothing needs the old one.

    --start: the new CA trusted beside the old, clients re-issued or consumers given the new
    root. Ex: inv pki.rollover --ca client --start
    """
    from .cli import raise_on_failure
    from .errors import BadInput
    from .pki.rollover import check_ca

    check_ca(ca)
    if start == finish or (force and not finish):
        raise BadInput("give --start or --finish (--force only with --finish)")
    from . import rollover

    raise_on_failure(rollover.start(ca) if start else rollover.finish(ca, force))


def _optional_days(value) -> int | None:
    """``--days``: ``None`` when not given, else a whole number of days, at least 1."""
    from .cli import at_least
    from .errors import BadInput

    if value is None:
        return None
    try:
        return at_least(int(value), "--days", 1)
    except ValueError:
        raise BadInput(
            f"--days {value!r} is not a whole number: give digits, e.g. --days 30"
        ) from None


PKI_TASKS = {
    "backup": pki_backup,
    "restore": pki_restore,
    "verify": pki_verify,
    "show": pki_show,
    "passphrase": pki_passphrase,
    "rollover": pki_rollover,
}
TOP_TASKS = [sign_csr, export_p12]  # inv sign-csr, inv export-p12
