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


PKI_TASKS = {"backup": pki_backup, "restore": pki_restore, "verify": pki_verify}
