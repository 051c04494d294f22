"""``pki.passphrase`` (pki/rekey.py): both CA keys re-encrypted under a new passphrase."""

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import rekey
from mtls_deploy.pki.store import PkiStore


def test_both_keys_open_with_the_new_passphrase_only(pki_store, pki_env):
    assert rekey.change_passphrase(pki_store, b"new secret") == ["client-ca.key", "server-ca.key"]
    assert sorted(p.name for p in pki_env.pki_dir.glob(".*before-passphrase")) == []
    assert (pki_env.pki_dir / "server-ca.key").stat().st_mode & 0o777 == 0o600
    fresh = PkiStore.open(pki_env.pki_dir, passphrase=b"new secret")
    assert fresh.issue_client("bob").changed
    fresh.server_cert("api1", ["api1.example.test"], [])
    old = PkiStore.open(pki_env.pki_dir, passphrase=pki_env.passphrase.encode())
    with pytest.raises(UserError, match="wrong CA passphrase"):
        old.issue_client("carol")


def test_a_wrong_current_passphrase_changes_nothing(pki_store, pki_env):
    keys = {p.name: p.read_bytes() for p in pki_env.pki_dir.glob("*.key")}
    wrong = PkiStore.open(pki_env.pki_dir, passphrase=b"wrong")
    with pytest.raises(UserError, match="wrong CA passphrase"):
        rekey.change_passphrase(wrong, b"new secret")
    assert {p.name: p.read_bytes() for p in pki_env.pki_dir.glob("*.key")} == keys


def test_the_same_passphrase_is_refused(pki_store, pki_env):
    pki_store._load_ca_key("client-ca")
    with pytest.raises(BadInput, match="the new CA passphrase is the current one"):
        rekey.change_passphrase(pki_store, pki_env.passphrase.encode())


def test_a_failed_write_puts_both_old_keys_back(pki_store, pki_env, monkeypatch):
    keys = {p.name: p.read_bytes() for p in pki_env.pki_dir.glob("*.key")}
    real_write, calls = rekey.atomic_write, []

    def second_write_fails(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(rekey, "atomic_write", second_write_fails)
    with pytest.raises(UserError, match="disk full"):
        rekey.change_passphrase(pki_store, b"new secret")
    assert {p.name: p.read_bytes() for p in pki_env.pki_dir.glob("*.key")} == keys
    assert list(pki_env.pki_dir.glob(".*before-passphrase")) == []
