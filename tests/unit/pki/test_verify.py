"""``pki.verify`` (pki/verify.py): index and files agree, the CRL matches, the CA keys open."""

import pytest

from mtls_deploy.pki import verify
from mtls_deploy.pki.store import PkiStore


@pytest.fixture
def issued(pki_store):
    pki_store.issue_client("bob")
    pki_store.issue_client("carol")
    pki_store.revoke_client("carol")
    pki_store.server_cert("api1", ["api1.example.test"], [])
    return pki_store


def bad(store, **options):
    return [f.text for f in verify.check(store, **options) if not f.ok]


def test_a_sound_pki_has_no_problem(issued):
    findings = verify.check(issued)
    assert all(f.ok for f in findings)
    lines = [f.line() for f in findings]
    assert any("index rows and their files agree" in line for line in lines)
    assert "ok       crl.pem lists the 2 revoked certificates, signed by the client CA" in lines
    assert "ok       client-ca.key opens with the passphrase" in lines


def test_a_certificate_swapped_for_another_is_named(issued):
    folder = issued.path / "clients"
    (folder / "bob" / "bob.crt").write_bytes((folder / "carol" / "carol.crt").read_bytes())
    assert any(p.startswith("client bob: pki/clients/bob/bob.crt has serial") for p in bad(issued))


def test_a_missing_key_and_a_stray_file_are_named(issued):
    (issued.path / "clients" / "bob" / "bob.key").unlink()
    stray = issued.path / "clients" / "zed"
    stray.mkdir()
    (stray / "zed.key").write_text("x")
    problems = bad(issued)
    assert "client bob: pki/clients/bob/bob.key is missing or not a readable key" in problems
    assert "pki/clients/zed/zed.key has no certificate beside it" in problems


def test_a_crl_that_differs_from_the_index_is_named(issued):
    issued._index.db.execute("UPDATE certificates SET status = 'valid' WHERE name = 'carol'")
    assert any(p.startswith("crl.pem lacks none and lists [") for p in bad(issued))


def test_a_wrong_ca_passphrase_is_a_problem_not_a_crash(issued, pki_env):
    store = PkiStore.open(pki_env.pki_dir, passphrase=b"wrong")
    assert bad(store) == [
        "wrong CA passphrase: pki/client-ca.key does not open with it "
        "(check MTLS_DEPLOY_CA_PASSPHRASE or MTLS_DEPLOY_CA_PASSPHRASE_FILE)"
    ]
    assert bad(store, open_keys=False) == []
