"""The smoke test's own certificates in the PKI store: made by ``init``, signed by the client CA,
recorded in the index with unique serials (kind ``smoke``), the revoked one in the CRL, keys 0600
in ``smoke/``; made on first use for a PKI from before them; their names refused to clients."""

import datetime as dt
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import profile
from mtls_deploy.pki.store import PkiStore

ROOT = Path(__file__).resolve().parents[2]
OLD_KINDS = "CHECK (kind IN ('client-ca', 'server-ca', 'server', 'client'))"


def index_rows(pki_dir: Path) -> list[tuple]:
    with sqlite3.connect(pki_dir / "index.sqlite3") as conn:
        query = "SELECT serial, name, kind, status, subject FROM certificates ORDER BY id"
        return conn.execute(query).fetchall()


def smoke_rows(pki_dir: Path) -> dict[str, tuple]:
    return {row[1]: row for row in index_rows(pki_dir) if row[2] == "smoke"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_makes_a_revoked_and_an_expired_certificate_recorded_in_the_index(pki_store, pki_env):
    root = pki_env.pki_dir
    rows = smoke_rows(root)
    assert {name: row[3] for name, row in rows.items()} == {
        "smoke:revoked": "revoked",
        "smoke:expired": "valid",  # valid until its not_after, which has passed
    }
    serials = [row[0] for row in index_rows(root)]
    assert len(serials) == len(set(serials)) == 4  # two CAs, two smoke certificates
    client_ca = load(root / "client-ca.crt")
    for label in ("revoked", "expired"):
        cert = load(root / "smoke" / f"{label}.crt")
        cert.verify_directly_issued_by(client_ca)
        assert profile.serial_hex(cert.serial_number) == rows[f"smoke:{label}"][0]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"smoke:{label}"
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        key = serialization.load_pem_private_key(
            (root / "smoke" / f"{label}.key").read_bytes(), None
        )
        assert key.public_key() == cert.public_key()
        assert mode(root / "smoke" / f"{label}.key") == 0o600
    assert mode(root / "smoke") == 0o700


def test_the_revoked_one_is_in_the_crl_for_as_long_as_the_ca_the_expired_one_is_not(
    pki_store, pki_env
):
    root = pki_env.pki_dir
    revoked, expired = load(root / "smoke" / "revoked.crt"), load(root / "smoke" / "expired.crt")
    crl = pki_store.crl()
    assert crl.is_signature_valid(load(root / "client-ca.crt").public_key())
    assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(expired.serial_number) is None
    now = dt.datetime.now(dt.UTC)
    assert revoked.not_valid_after_utc == load(root / "client-ca.crt").not_valid_after_utc
    assert revoked.not_valid_before_utc <= now and expired.not_valid_after_utc < now


def test_pki_list_shows_them_as_kind_smoke(pki_store):
    records = {r.name: r for r in pki_store.list() if r.kind == "smoke"}
    assert {name: r.status for name, r in records.items()} == {
        "smoke:revoked": "revoked",
        "smoke:expired": "expired",
    }


def test_the_store_hands_them_out_without_the_ca_passphrase(pki_store, pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    before = index_rows(pki_env.pki_dir)
    certificates, created = PkiStore.open().smoke_certificates()
    assert not created and sorted(certificates) == ["expired", "revoked"]
    rows = smoke_rows(pki_env.pki_dir)
    for label, stored in certificates.items():
        assert stored.serial == rows[f"smoke:{label}"][0]
        assert stored.cert_pem == (pki_env.pki_dir / "smoke" / f"{label}.crt").read_bytes()
    assert index_rows(pki_env.pki_dir) == before


# --- a PKI made before the smoke test had certificates of its own ----------------------------


def make_it_old(store: PkiStore, root: Path) -> None:
    """What ``init`` left before this change: no smoke rows or files, the old CHECK, a CRL
    without the smoke test's serial."""
    store.close()
    with sqlite3.connect(root / "index.sqlite3") as conn:
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'certificates'"
        ).fetchone()
        conn.execute("DELETE FROM certificates WHERE kind = 'smoke'")
        conn.execute(
            sql.replace("certificates", "old_certificates", 1).replace(
                "CHECK (kind IN ('client-ca', 'server-ca', 'server', 'client', 'smoke'))", OLD_KINDS
            )
        )
        conn.execute("INSERT INTO old_certificates SELECT * FROM certificates")
        conn.execute("DROP TABLE certificates")
        conn.execute("ALTER TABLE old_certificates RENAME TO certificates")
    shutil.rmtree(root / "smoke")
    PkiStore.open(root).refresh_crl()


def test_a_pki_from_before_gets_them_on_first_use_and_keeps_its_rows(pki_store, pki_env):
    root = pki_env.pki_dir
    pki_store.issue_client("bob")
    make_it_old(pki_store, root)
    before = index_rows(root)
    assert (
        OLD_KINDS
        in sqlite3.connect(root / "index.sqlite3")
        .execute("SELECT sql FROM sqlite_master WHERE name = 'certificates'")
        .fetchone()[0]
    )
    store = PkiStore.open()
    number = profile.crl_number(store.crl())
    certificates, created = store.smoke_certificates()
    assert created
    after = index_rows(root)
    assert after[: len(before)] == before
    rows = smoke_rows(root)
    assert sorted(rows) == ["smoke:expired", "smoke:revoked"]
    assert {certificates[label].serial for label in ("revoked", "expired")} == {
        r[0] for r in rows.values()
    }
    crl = store.crl()
    assert profile.crl_number(crl) == number + 1
    assert crl.get_revoked_certificate_by_serial_number(int(certificates["revoked"].serial, 16))
    assert mode(root / "smoke" / "revoked.key") == 0o600
    assert PkiStore.open().smoke_certificates()[1] is False  # made once


def test_a_pki_from_before_needs_the_passphrase_once(pki_store, pki_env, monkeypatch):
    make_it_old(pki_store, pki_env.pki_dir)
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    with pytest.raises(UserError, match="the CA key is encrypted: set MTLS_DEPLOY_CA_PASSPHRASE"):
        PkiStore.open().smoke_certificates()
    assert smoke_rows(pki_env.pki_dir) == {}


def test_lost_files_get_a_new_certificate_and_the_old_row_stays(pki_store, pki_env):
    root = pki_env.pki_dir
    old = smoke_rows(root)["smoke:revoked"][0]
    (root / "smoke" / "revoked.crt").unlink()
    certificates, created = PkiStore.open().smoke_certificates()
    assert created and certificates["revoked"].serial != old
    revoked = [row for row in index_rows(root) if row[1] == "smoke:revoked"]
    assert [(row[0], row[3]) for row in revoked] == [
        (old, "revoked"),
        (certificates["revoked"].serial, "revoked"),
    ]
    crl = PkiStore.open().crl()
    assert {profile.serial_hex(entry.serial_number) for entry in crl} == {
        old,
        certificates["revoked"].serial,
    }


# --- the names are the smoke test's -----------------------------------------------------------


@pytest.mark.parametrize("name", ["smoke:revoked", "smoke:expired"])
def test_clients_cannot_take_the_smoke_names(name):
    with pytest.raises(BadInput, match="reserved for the smoke test"):
        profile.validate_client_name(name)


def test_issue_client_refuses_a_smoke_name_in_one_line(pki_store, pki_env):
    before = index_rows(pki_env.pki_dir)
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "issue-client", "--name", "smoke:revoked"],
        capture_output=True, text=True, cwd=pki_env.root, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MTLS_DEPLOY_INVENTORY": str(ROOT / "inventory")},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: 'smoke:revoked' is reserved for the smoke test's own certificates: choose another name"
    ]
    assert index_rows(pki_env.pki_dir) == before and not (pki_env.pki_dir / "clients").exists()


def test_only_the_smoke_names_get_the_smoke_profile(pki_store):
    ca = load(pki_store.path / "client-ca.crt")
    with pytest.raises(ValueError, match="not one of the smoke test's names"):
        profile.issue_smoke_cert(
            ca,
            profile.generate_key(),
            profile.generate_key().public_key(),
            "bob",
            5,
            dt.datetime.now(dt.UTC),
        )


def test_a_lost_expired_one_is_made_again_without_touching_the_crl(pki_store, pki_env):
    crl = pki_store.crl_pem()
    (pki_env.pki_dir / "smoke" / "expired.key").unlink()
    certificates, crl_changed = PkiStore.open().smoke_certificates()
    assert not crl_changed and PkiStore.open().crl_pem() == crl
    assert [r[3] for r in index_rows(pki_env.pki_dir) if r[1] == "smoke:expired"] == ["valid"] * 2
    assert (pki_env.pki_dir / "smoke" / "expired.key").read_bytes() == certificates[
        "expired"
    ].key_pem
