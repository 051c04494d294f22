"""The crash-safe commit alone: a bare SQLite table, plain bytes, and crashes between its steps.

A crash is simulated by doing a transaction's steps by hand and dropping the connection (and the
lock) without the next step, or for real with SIGKILL in a child process; the next writer's
``journal.transaction`` must then finish what the index holds and undo the rest.
"""

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mtls_deploy.errors import UserError
from mtls_deploy.pki import journal

REPO = Path(__file__).resolve().parents[3]


def connect(root: Path) -> sqlite3.Connection:
    db = sqlite3.connect(root / "index.db", isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS rows (serial TEXT PRIMARY KEY)")
    return db


def recorded(db: sqlite3.Connection):
    return lambda serial: db.execute("SELECT 1 FROM rows WHERE serial = ?", (serial,)).fetchone()


def entry(root: Path, serial: str, name: str = "bob", with_key: bool = True):
    folder = root / "clients" / name
    return journal.StagedFiles(serial, folder / f"{name}.crt", folder / f"{name}.key", with_key)


def write_through(root: Path, db, files, cert=b"CERT", key=b"KEY") -> None:
    """One whole transaction: journal, stage, insert, commit."""
    with journal.transaction(root, db, recorded(db)) as tx:
        tx.journal([files])
        tx.stage([(files, cert, key)])
        db.execute("INSERT INTO rows VALUES (?)", (files.serial,))


def steps_until(root: Path, files, last: str) -> None:
    """The steps of a transaction by hand up to ``last`` (journal, stage, insert, commit), then
    the process 'dies': connection and lock gone, nothing else done."""
    db = connect(root)
    tx = journal.Transaction(root, db, recorded(db))
    db.execute("BEGIN IMMEDIATE")
    for step in ("journal", "stage", "insert", "commit"):
        if step == "journal":
            tx.journal([files])
        elif step == "stage":
            tx.stage([(files, b"NEW CERT", b"NEW KEY")])
        elif step == "insert":
            db.execute("INSERT INTO rows VALUES (?)", (files.serial,))
        else:
            db.execute("COMMIT")
        if step == last:
            break
    db.close()  # an open transaction dies with its connection: SQLite rolls it back


def recover(root: Path) -> sqlite3.Connection:
    """The next writer: an empty transaction, which recovers first."""
    db = connect(root)
    with journal.transaction(root, db, recorded(db)):
        pass
    return db


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_a_commit_puts_the_files_in_place_with_their_modes_and_drops_the_journal(tmp_path):
    db, files = connect(tmp_path), entry(tmp_path, "0A")
    write_through(tmp_path, db, files)
    assert files.cert.read_bytes() == b"CERT" and files.key.read_bytes() == b"KEY"
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.parent.stat().st_mode) == 0o700
    assert files_under(tmp_path) == {
        "index.db",
        ".lock",
        "clients/bob/bob.crt",
        "clients/bob/bob.key",
    }
    assert recorded(db)("0A")


def test_an_error_inside_undoes_the_row_and_the_staged_files(tmp_path):
    db, files = connect(tmp_path), entry(tmp_path, "0A")
    with (
        pytest.raises(RuntimeError, match="boom"),
        journal.transaction(tmp_path, db, recorded(db)) as tx,
    ):
        tx.journal([files])
        tx.stage([(files, b"CERT", b"KEY")])
        db.execute("INSERT INTO rows VALUES ('0A')")
        raise RuntimeError("boom")
    assert not recorded(db)("0A")
    assert files_under(tmp_path) == {"index.db", ".lock"}
    assert not (tmp_path / "clients" / "bob").exists()  # the new folder went with its files


def test_a_storage_error_is_one_line_saying_nothing_was_recorded(tmp_path):
    db = connect(tmp_path)
    refused = pytest.raises(UserError, match=r"could not update the PKI .*nothing was recorded")
    with refused, journal.transaction(tmp_path, db, recorded(db)):
        raise OSError("the disk said no")


@pytest.mark.parametrize("last", ["journal", "stage", "insert"])
def test_a_crash_before_the_commit_is_undone_by_the_next_writer(tmp_path, last):
    old = entry(tmp_path, "01")
    write_through(tmp_path, connect(tmp_path), old, b"OLD CERT", b"OLD KEY")
    steps_until(tmp_path, entry(tmp_path, "02"), last)
    db = recover(tmp_path)
    assert not recorded(db)("02")
    assert (old.cert.read_bytes(), old.key.read_bytes()) == (b"OLD CERT", b"OLD KEY")
    assert files_under(tmp_path) == {
        "index.db",
        ".lock",
        "clients/bob/bob.crt",
        "clients/bob/bob.key",
    }


def test_a_crash_between_the_commit_and_the_renames_is_finished_by_the_next_writer(tmp_path):
    write_through(tmp_path, connect(tmp_path), entry(tmp_path, "01"), b"OLD CERT", b"OLD KEY")
    new = entry(tmp_path, "02")
    steps_until(tmp_path, new, "commit")
    assert new.cert.read_bytes() == b"OLD CERT"  # the index says 02, the files still 01
    recover(tmp_path)
    assert (new.cert.read_bytes(), new.key.read_bytes()) == (b"NEW CERT", b"NEW KEY")
    assert files_under(tmp_path) == {
        "index.db",
        ".lock",
        "clients/bob/bob.crt",
        "clients/bob/bob.key",
    }


def test_a_crash_half_way_through_the_renames_is_finished_too(tmp_path):
    new = entry(tmp_path, "02")
    steps_until(tmp_path, new, "commit")
    os.replace(new.staged_cert, new.cert)  # the certificate made it, the key did not
    recover(tmp_path)
    assert (new.cert.read_bytes(), new.key.read_bytes()) == (b"NEW CERT", b"NEW KEY")
    assert not (tmp_path / journal.JOURNAL).exists()


def test_recovery_keeps_committed_serials_and_drops_the_others_in_one_journal(tmp_path):
    db = connect(tmp_path)
    kept, dropped = entry(tmp_path, "0A", "alice"), entry(tmp_path, "0B", "carol")
    tx = journal.Transaction(tmp_path, db, recorded(db))
    tx.journal([kept, dropped])
    tx.stage([(kept, b"A", b"a"), (dropped, b"C", b"c")])
    db.execute("INSERT INTO rows VALUES ('0A')")  # autocommit: only alice reached the index
    db.close()
    recover(tmp_path)
    assert kept.cert.read_bytes() == b"A" and not (tmp_path / "clients" / "carol").exists()


def test_a_certificate_signed_from_a_csr_replaces_a_stale_key(tmp_path):
    db = connect(tmp_path)
    write_through(tmp_path, db, entry(tmp_path, "01"))
    csr_only = entry(tmp_path, "02", with_key=False)
    write_through(tmp_path, db, csr_only, b"CSR CERT", None)
    assert csr_only.cert.read_bytes() == b"CSR CERT" and not csr_only.key.exists()


def test_leftover_temporary_files_are_removed_by_the_next_writer(tmp_path):
    (tmp_path / ".crl.pem.tmp").write_bytes(b"half")
    recover(tmp_path)
    assert not (tmp_path / ".crl.pem.tmp").exists()


def test_a_second_writer_waits_for_the_lock_then_says_who_holds_it(tmp_path):
    held, release = threading.Event(), threading.Event()

    def holder():
        with journal.file_lock(tmp_path, 5):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        refused = pytest.raises(UserError, match=r"another run has held .*\.lock for 0 s: wait")
        with refused, journal.file_lock(tmp_path, 0.05):
            pass
    finally:
        release.set()
        thread.join()
    with journal.file_lock(tmp_path, 0.05):  # released: free again
        pass


KILLED = """
import os, signal, sqlite3, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from mtls_deploy.pki import journal
root = Path({root!r})
db = sqlite3.connect(root / "index.db", isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS rows (serial TEXT PRIMARY KEY)")
def publish(self, entries, always_sync=False):
    os.kill(os.getpid(), signal.SIGKILL)  # after the commit, before any rename
journal.Transaction._publish = publish
files = journal.StagedFiles("02", root / "c" / "c.crt", root / "c" / "c.key")
recorded = lambda s: db.execute("SELECT 1 FROM rows WHERE serial = ?", (s,)).fetchone()
with journal.transaction(root, db, recorded) as tx:
    tx.journal([files])
    tx.stage([(files, b"CERT", b"KEY")])
    db.execute("INSERT INTO rows VALUES ('02')")
"""


def test_sigkill_between_the_commit_and_the_renames_then_the_next_writer_finishes(tmp_path):
    code = KILLED.format(repo=str(REPO), root=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert not (tmp_path / "c" / "c.crt").exists() and (tmp_path / journal.JOURNAL).exists()
    db = recover(tmp_path)
    assert recorded(db)("02")
    assert (tmp_path / "c" / "c.crt").read_bytes() == b"CERT"
    assert not (tmp_path / journal.JOURNAL).exists()
