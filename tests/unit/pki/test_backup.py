"""The PKI in one encrypted file and back (pki/backup.py): sealed, refused, swapped whole."""

import os
import stat

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import backup, verify
from mtls_deploy.pki.store import PkiStore

SECRET = b"backup secret"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    """2**10 instead of 2**17: the format is the same, the tests fast."""
    monkeypatch.setattr(backup, "SCRYPT_LOG2_N", 10)


@pytest.fixture
def issued(pki_store):
    """The PKI with bob (issued), carol (revoked) and api1's server certificate."""
    pki_store.issue_client("bob")
    pki_store.issue_client("carol")
    pki_store.revoke_client("carol")
    pki_store.server_cert("api1", ["api1.example.test"], [])
    return pki_store


def snapshot(root):
    """{relative path: (bytes, mode)} of every file the backup should carry."""
    return {name: (data, mode) for name, (data, mode) in backup.collect(root).items()}


def test_seal_and_unseal_round_trip_and_the_header_is_authenticated():
    sealed = backup.seal(b"plain", SECRET, 10)
    assert sealed.startswith(b"MTLSPKI\x00\x01\x0a") and b"plain" not in sealed
    assert backup.unseal(sealed, SECRET) == b"plain"
    tampered = bytearray(sealed)
    tampered[12] ^= 1  # a byte of the salt, in the authenticated header
    with pytest.raises(BadInput, match="wrong backup passphrase, or the backup is damaged"):
        backup.unseal(bytes(tampered), SECRET)


def test_a_file_that_is_no_backup_is_one_line():
    with pytest.raises(BadInput, match="is not an mtls-deploy PKI backup"):
        backup.unseal(b"-----BEGIN CERTIFICATE-----" * 3, SECRET, "x.pem")


def test_backup_then_restore_into_an_empty_place_gives_the_same_pki(issued, pki_env, tmp_path):
    before = snapshot(issued.path)
    done = backup.backup(issued, tmp_path / "pki.backup", SECRET)
    assert stat.S_IMODE(os.stat(done.path).st_mode) == 0o600 and done.files == len(before)
    assert {"index.sqlite3", "crl.pem", "client-ca.key", "clients/bob/bob.key"} <= set(before)
    target = tmp_path / "elsewhere" / "pki"
    assert backup.restore(done.path, target, SECRET, check=verify.problems) == len(before)
    assert snapshot(target) == before
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    restored = PkiStore.open(target)
    assert [f for f in verify.check(restored) if not f.ok] == []
    assert restored.issue_client("dave").changed  # a working PKI: it signs


def test_restore_over_a_pki_needs_force_and_then_swaps_it_whole(issued, pki_env, tmp_path):
    saved = backup.backup(issued, tmp_path / "pki.backup", SECRET).path
    before = snapshot(issued.path)
    issued.issue_client("erin")  # the PKI moves on after the backup
    moved_on = snapshot(issued.path)
    with pytest.raises(
        UserError, match=r"pki/ already holds a PKI: restoring over it needs --force"
    ):
        backup.restore(saved, issued.path, SECRET)
    assert snapshot(issued.path) == moved_on
    backup.restore(saved, issued.path, SECRET, force=True, check=verify.problems)
    assert snapshot(issued.path) == before  # erin is gone: the backup's PKI, not a mix
    assert [p.name for p in pki_env.root.iterdir() if p.name.startswith(".pki")] == []


def test_a_wrong_passphrase_writes_nothing(issued, pki_env, tmp_path):
    saved = backup.backup(issued, tmp_path / "pki.backup", SECRET).path
    target, before = tmp_path / "new", sorted(os.listdir(tmp_path))
    with pytest.raises(BadInput, match="wrong backup passphrase"):
        backup.restore(saved, target, b"not it")
    assert sorted(os.listdir(tmp_path)) == before  # no target, no half-built copy beside it


def test_an_unsound_pki_in_the_backup_is_not_swapped_in(issued, pki_env, tmp_path):
    (issued.path / "clients" / "bob" / "bob.crt").write_bytes(
        (issued.path / "clients" / "carol" / "carol.crt").read_bytes()
    )
    saved = backup.backup(issued, tmp_path / "pki.backup", SECRET).path
    with pytest.raises(UserError, match=r"does not hold a sound PKI \(client bob: .*not restored"):
        backup.restore(saved, tmp_path / "new", SECRET, check=verify.problems)
    assert not (tmp_path / "new").exists()


def test_a_member_outside_the_pki_is_refused():
    evil = backup.tar_bytes({"../etc/passwd": (b"x", 0o644)})
    with pytest.raises(BadInput, match=r"holds '../etc/passwd', which no PKI holds"):
        backup.untar(evil, "evil.backup")


def test_the_backup_is_not_written_inside_the_pki(issued):
    with pytest.raises(BadInput, match="inside the PKI directory"):
        backup.backup(issued, issued.path / "self.backup", SECRET)
