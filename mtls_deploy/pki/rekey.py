"""``inv pki.passphrase``: both CA keys re-encrypted under a new passphrase.

Both keys are opened with the current passphrase first (a wrong one changes nothing), encrypted
under the new one and checked to open with it, then each written atomically, under the PKI's
write lock. The old encrypted keys stay beside as ``.<kind>.key.before-passphrase`` until both new
ones are in place: a failed write puts both old keys back; a run killed between the two renames
leaves them there, to be renamed back by hand.
"""

from __future__ import annotations

import os

from ..errors import BadInput
from ..files import PRIVATE_FILE_MODE, atomic_write, fsync_directory
from . import keys

KINDS = ("client-ca", "server-ca")


def change_passphrase(store, new: bytes) -> list[str]:
    """Re-encrypt ``client-ca.key`` and ``server-ca.key`` under ``new``; returns the files
    changed. The current passphrase comes from the store (its usual sources)."""
    if store._passphrase is None:
        store._load_ca_key("client-ca")  # asks for the current passphrase once
    if new == store._passphrase:
        raise BadInput("the new CA passphrase is the current one: nothing to change")
    if any(store.rollover_phase(ca) for ca in ("client", "server")):  # a third CA key
        raise BadInput("a CA rollover is in progress: finish it (`inv pki.rollover --ca client|"
                       "server --finish`), then change the passphrase")  # fmt: skip
    with store._transaction():
        sealed = {kind: _reencrypted(store, kind, new) for kind in KINDS}
        kept = _keep_old(store)
        try:
            for kind, pem in sealed.items():
                atomic_write(store.path / f"{kind}.key", pem, PRIVATE_FILE_MODE)
        except BaseException:
            _put_back(store, kept)  # both keys under the old passphrase again
            raise
        for old in kept:
            old.unlink()
        fsync_directory(store.path)
    store._passphrase, store._signers = new, {}
    return [f"{kind}.key" for kind in KINDS]


def _reencrypted(store, kind: str, new: bytes) -> bytes:
    key = store._load_ca_key(kind)
    pem = keys.encrypted_private_key_pem(key, new)
    if keys.load_private_key(pem, new).public_key() != key.public_key():  # belt and braces
        raise ValueError(f"{kind}.key did not survive re-encryption")
    return pem


def _keep_old(store) -> list:
    kept = []
    for kind in KINDS:
        old = store.path / f".{kind}.key.before-passphrase"
        if not old.exists():  # an earlier run killed midway left it: it is the oldest, keep it
            os.link(store.path / f"{kind}.key", old)
        kept.append(old)
    return kept


def _put_back(store, kept: list) -> None:
    for kind, old in zip(KINDS, kept, strict=True):
        key = store.path / f"{kind}.key"
        if key.exists() and os.path.samefile(old, key):  # never rewritten: rename would no-op
            old.unlink()
        else:
            os.replace(old, key)
    fsync_directory(store.path)
