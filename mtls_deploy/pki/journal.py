"""The crash-safe commit: one writer at a time, staged files, a journal, then the index commit.

A write takes an exclusive lock (``.lock``), stages new files beside their final names as
``.<final>.<serial>.staged``, records them in a journal (``.pending.json``), commits the index,
then renames them into place. A run killed anywhere is finished or undone by the next writer:
serials the index holds are published, the rest discarded. So every index row has its files and
no file has a serial the index does not know.

Example::

    with transaction(root, db, is_recorded=index.has_serial) as tx:
        files = StagedFiles(serial, root / "a.crt", root / "a.key")
        tx.journal([files])
        tx.stage([(files, cert_pem, key_pem)])
        db.execute("INSERT ...")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import UserError
from ..files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    atomic_write,
    make_private_dir,
    sync_filesystem,
    write_new_file,
)
from .messages import display, storage_error, unreadable

JOURNAL = ".pending.json"
LOCK = ".lock"


@contextlib.contextmanager
def transaction(
    root: Path, db: sqlite3.Connection, is_recorded: Callable[[str], bool], timeout: float = 120.0
) -> Iterator[Transaction]:
    """One writer at a time: file lock, recovery of a killed run, index transaction (``db``).

    ``is_recorded(serial)`` says whether the index holds a serial (recovery keeps those files).
    A storage error becomes one ``UserError`` line saying what the index holds.
    """
    with file_lock(root, timeout):
        tx = Transaction(root, db, is_recorded)
        try:
            tx.recover()
            db.execute("BEGIN IMMEDIATE")
            yield tx
            tx.commit()
        except BaseException as error:
            tx.abandon()
            if isinstance(error, OSError | sqlite3.Error):
                raise storage_error(error, root, tx.committed) from error
            raise


@contextlib.contextmanager
def file_lock(root: Path, timeout: float) -> Iterator[None]:
    """Hold ``root/.lock`` exclusively; ``UserError`` after ``timeout`` seconds of waiting."""
    try:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except OSError as error:
        raise unreadable(root / LOCK, error, "write") from None
    try:
        _acquire(fd, timeout, root)
        yield
    finally:
        os.close(fd)  # closing releases the lock; so does the process dying


def _acquire(fd: int, timeout: float, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise UserError(
                    f"another run has held {display(root / LOCK)} for {timeout:.0f} s: "
                    "wait for it, then retry"
                ) from None
            time.sleep(0.005)


class StagedFiles:
    """A certificate (and its key, unless a CSR brought only the public key) staged as
    ``.<final>.<serial>.staged`` until the index commits."""

    def __init__(self, serial: str, cert: Path, key: Path, with_key: bool = True):
        self.serial, self.cert, self.key, self.with_key = serial, cert, key, with_key
        folder = str(cert.parent)
        self.staged_cert = f"{folder}/.{cert.name}.{serial}.staged"
        self.staged_key = f"{folder}/.{key.name}.{serial}.staged"

    def pairs(self) -> list[tuple[str, Path]]:
        """(staged, final) for the certificate and, if stored here, the key."""
        pairs = [(self.staged_cert, self.cert)]
        return [*pairs, (self.staged_key, self.key)] if self.with_key else pairs

    def to_journal(self) -> dict:
        """This entry as a line of the journal."""
        return {
            "serial": self.serial,
            "cert": str(self.cert),
            "key": str(self.key),
            "with_key": self.with_key,
        }

    @classmethod
    def from_journal(cls, entry: dict) -> StagedFiles:
        """An entry read back from the journal."""
        return cls(entry["serial"], Path(entry["cert"]), Path(entry["key"]), entry["with_key"])


class Transaction:
    """Journal + staged files around one index transaction (see the module docstring)."""

    def __init__(self, root: Path, db: sqlite3.Connection, is_recorded: Callable[[str], bool]):
        self.root, self.db, self.is_recorded = root, db, is_recorded
        self.entries: list[StagedFiles] = []
        self.committed = False

    def journal(self, entries: list[StagedFiles]) -> None:
        """Record what is about to be staged, durably, before staging it."""
        self.entries.extend(entries)
        document = [entry.to_journal() for entry in self.entries]
        atomic_write(self.root / JOURNAL, json.dumps(document), PRIVATE_FILE_MODE)

    def stage(self, items: list[tuple[StagedFiles, bytes, bytes | None]]) -> None:
        """Write (files, certificate PEM, key PEM) under their staged names, keys 0600.

        A ``None`` key (signed from a CSR) stages the certificate alone."""
        writes = []
        for files, cert_pem, key_pem in items:
            if key_pem is not None:
                writes.append((files.staged_key, key_pem, PRIVATE_FILE_MODE))
            writes.append((files.staged_cert, cert_pem, PUBLIC_FILE_MODE))
        for folder in {files.cert.parent for files, _, _ in items}:
            make_private_dir(folder)
        for path, data, mode in writes:
            write_new_file(path, data, mode)

    def commit(self) -> None:
        """Sync the staged files, commit the index, rename them into place, drop the journal."""
        if self.entries:
            sync_filesystem(self.root)
        self.db.execute("COMMIT")
        self.committed = True
        self._publish(self.entries)

    def abandon(self) -> None:
        """After a failure: roll the index back and delete staged files (or finish if committed)."""
        with contextlib.suppress(sqlite3.Error):
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        with contextlib.suppress(OSError):
            if self.committed:
                self._publish(self.entries)
            else:
                self._discard(self.entries)

    def recover(self) -> None:
        """Finish (committed serials) or undo (the rest) what a killed run left behind."""
        for leftover in self.root.glob(".*.tmp"):  # an atomic_write cut short
            leftover.unlink(missing_ok=True)
        path = self.root / JOURNAL
        if not path.exists():
            return
        entries = [StagedFiles.from_journal(entry) for entry in json.loads(path.read_text())]
        known = {e.serial for e in entries if self.is_recorded(e.serial)}
        self._discard([e for e in entries if e.serial not in known], keep_journal=True)
        self._publish([e for e in entries if e.serial in known], always_sync=True)

    def _publish(self, entries: list[StagedFiles], always_sync: bool = False) -> None:
        for entry in entries:
            for staged, final in entry.pairs():
                with contextlib.suppress(FileNotFoundError):  # already renamed by an earlier try
                    os.replace(staged, final)
            if not entry.with_key:  # signed from a CSR: a key kept from an earlier issue is stale
                entry.key.unlink(missing_ok=True)
        if entries or always_sync:
            sync_filesystem(self.root)
        (self.root / JOURNAL).unlink(missing_ok=True)

    def _discard(self, entries: list[StagedFiles], keep_journal: bool = False) -> None:
        for entry in entries:
            for staged in (entry.staged_cert, entry.staged_key):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staged)
            with contextlib.suppress(OSError):  # a new client's folder, now empty
                entry.cert.parent.rmdir()
        if not keep_journal:
            (self.root / JOURNAL).unlink(missing_ok=True)
