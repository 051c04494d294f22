"""CA rollover in the PKI store (``pki/rollover.py``): the client CA's overlap (both CAs trusted, a
CRL per CA, clients re-issued under the new CA, finish refused while old certificates are valid),
the server CA's phases (consumers first, then the switch), bad input, and the index's ``ca``
column added to an index from before rollovers."""

import datetime as dt
import os
import sqlite3

import pytest
from cryptography import x509

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import profile, rollover
from mtls_deploy.pki.store import PkiStore

NOW = dt.datetime.now(dt.UTC)


def certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def crls(path) -> list[x509.CertificateRevocationList]:
    text = path.read_bytes().decode()
    end = "-----END X509 CRL-----"
    blocks = [block + end for block in text.split(end) if "BEGIN X509 CRL" in block]
    return [x509.load_pem_x509_crl(block.encode()) for block in blocks]


def issuer(store, name: str) -> str:
    cert = x509.load_pem_x509_certificate(store.client_material(name).cert_pem)
    return cert.issuer.rfc4514_string()


def listed(crl, serial: str) -> bool:
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


@pytest.fixture
def started(pki_env):
    """A PKI with bob and a revoked carol, its client CA rollover started and switched."""
    PkiStore(pki_env.pki_dir).init(name="Test API")
    store = PkiStore.open(pki_env.pki_dir, keep_superseded=True)
    store.issue_client("bob")
    store.issue_client("carol")
    store.revoke_client("carol")
    store.old = store._ca_cert("client-ca")
    store.new_subject = store.start_rollover("client")
    assert store.switch_to_new_ca("client")
    yield store
    store.close()


def test_start_trusts_the_new_client_ca_before_it_issues(pki_store):
    pki_store.issue_client("bob")
    old = pki_store._ca_cert("client-ca").subject.rfc4514_string()
    new = pki_store.start_rollover("client")
    assert pki_store.rollover_phase("client") == "trusting"
    found = [c.subject.rfc4514_string() for c in certs(pki_store.client_ca_pem())]
    assert found == [old, new]
    assert len(crls(pki_store.path / "crl.pem")) == 2  # a CRL for the new CA from the start
    pki_store.issue_client("dave")
    assert issuer(pki_store, "dave") == old  # not yet: the hosts may not trust the new one
    assert "every API host to trust the new client CA" in pki_store.rollover_waits_for("client")
    assert not pki_store.switch_to_new_ca("server")  # no server rollover: nothing to switch


def test_after_the_switch_both_client_cas_are_trusted_the_new_one_first(started):
    found = certs(started.client_ca_pem())
    assert [c.subject.rfc4514_string() for c in found] == [
        started.new_subject,
        started.old.subject.rfc4514_string(),
    ]
    assert "CN=Test API client CA 2" in started.new_subject
    assert started.rollover_phase("client") == "overlap"
    key = (started.path / "client-ca.key").read_bytes()
    assert b"ENCRYPTED" in key and (started.path / "client-ca.old.key").stat().st_mode & 0o077 == 0


def test_the_crl_file_holds_a_crl_per_client_ca_each_listing_its_own_revocations(started):
    new_crl, old_crl = crls(started.path / "crl.pem")
    new_ca, old_ca = certs(started.client_ca_pem())
    assert new_crl.is_signature_valid(new_ca.public_key())
    assert old_crl.is_signature_valid(old_ca.public_key())
    carol = started._index.latest("client", "carol")["serial"]
    assert listed(old_crl, carol) and not listed(new_crl, carol)
    assert profile.crl_number(started.crl()) == profile.crl_number(new_crl)  # the first parsed


def test_new_clients_and_the_smoke_certificates_come_from_the_new_ca(started):
    started.issue_client("dave")
    assert issuer(started, "dave") == started.new_subject
    smoke, _ = started.smoke_certificates()
    new_crl = crls(started.path / "crl.pem")[0]
    for label in ("revoked", "expired"):
        cert = x509.load_pem_x509_certificate(smoke[label].cert_pem)
        assert cert.issuer.rfc4514_string() == started.new_subject
    assert listed(new_crl, smoke["revoked"].serial)


def test_a_client_renewed_under_the_new_ca_revokes_the_old_one_into_the_old_crl(started):
    old_serial = started._index.latest("client", "bob")["serial"]
    started.renew_client("bob")
    assert issuer(started, "bob") == started.new_subject
    assert started.revoke_superseded(["bob"]) == {"bob": [old_serial]}
    new_crl, old_crl = crls(started.path / "crl.pem")
    assert listed(old_crl, old_serial) and not listed(new_crl, old_serial)


def test_finish_is_refused_while_a_client_of_the_old_ca_is_valid(started):
    bob = started._index.latest("client", "bob")["serial"]
    assert started.old_ca_clients() == [rollover.OldClient("bob", bob)]
    with pytest.raises(UserError, match=f"bob \\(serial {bob}\\).*--force"):
        started.finish_rollover("client")
    assert started.rollover_phase("client") == "overlap"
    assert len(certs(started.client_ca_pem())) == 2


def test_finish_retires_the_old_ca_once_its_clients_moved(started):
    started.renew_client("bob")
    started.revoke_superseded(["bob"])
    assert started.old_ca_clients() == []
    old = started.finish_rollover("client")
    assert old == started.old.subject.rfc4514_string()
    assert [c.subject.rfc4514_string() for c in certs(started.client_ca_pem())] == [
        started.new_subject
    ]
    assert len(crls(started.path / "crl.pem")) == 1
    assert started.rollover_phase("client") is None
    assert [p.suffix for p in rollover.retired_files(started.path)] == [".crt", ".key"]


def test_an_expired_old_client_does_not_hold_the_finish_back(started):
    assert started.old_ca_clients(now=NOW + dt.timedelta(days=400)) == []
    started.finish_rollover("client", force=True)
    assert started.rollover_phase("client") is None


def test_bad_input_start_twice_finish_without_start_and_an_unknown_ca(started):
    with pytest.raises(BadInput, match="already in progress.*--ca client --finish"):
        started.start_rollover("client")
    with pytest.raises(BadInput, match="no server CA rollover in progress.*--start"):
        started.finish_rollover("server")
    with pytest.raises(BadInput, match="give --ca client or --ca server"):
        started.start_rollover("intermediate")


def test_server_rollover_adds_the_root_first_then_switches_then_retires(pki_store):
    old = pki_store.server_cert("api1", ["api1.test"], [])
    new_subject = pki_store.start_rollover("server")
    assert pki_store.rollover_phase("server") == "consumers"
    roots = certs(pki_store.trusted_server_cas_pem())
    assert [r.subject.rfc4514_string() for r in roots][1] == new_subject
    assert not pki_store.server_cert("api1", ["api1.test"], []).changed  # not yet
    with pytest.raises(UserError, match="consumer's api-ca.crt"):
        pki_store.finish_rollover("server")
    assert pki_store.switch_to_new_ca("server")
    assert pki_store.rollover_phase("server") == "servers"
    issued = pki_store.server_cert("api1", ["api1.test"], [])
    assert issued.changed and "another server CA" in issued.reason
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    assert leaf.issuer.rfc4514_string() == new_subject != old.cert_pem
    assert len(certs(pki_store.trusted_server_cas_pem())) == 2  # the old root until finish
    pki_store.finish_rollover("server")
    assert [r.subject.rfc4514_string() for r in certs(pki_store.trusted_server_cas_pem())] == [
        new_subject
    ]


def test_an_interrupted_switch_is_completed_by_the_next(pki_store):
    new = pki_store.start_rollover("client")
    for ext in ("key", "crt"):  # killed after the old CA was linked aside
        os.link(pki_store.path / f"client-ca.{ext}", pki_store.path / f"client-ca.old.{ext}")
    os.replace(pki_store.path / "client-ca.next.key", pki_store.path / "client-ca.key")
    assert pki_store.rollover_phase("client") == "starting"
    assert pki_store.switch_to_new_ca("client")
    assert pki_store.rollover_phase("client") == "overlap"
    assert pki_store._ca_cert("client-ca").subject.rfc4514_string() == new
    assert not (pki_store.path / "client-ca.next.crt").exists()
    pki_store.issue_client("bob")  # the new key matches the new certificate
    assert issuer(pki_store, "bob") == new


def make_it_old(index) -> None:
    """The index as it was before CA rollovers: the same table without the column ``ca``."""
    with sqlite3.connect(index) as conn:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'certificates'").fetchone()
        lines = [line for line in sql[0].splitlines() if not line.strip().startswith("ca ")]
        old = "\n".join(lines).replace("certificates", "old", 1).replace("1,  --", "1  --")
        columns = [row[1] for row in conn.execute("PRAGMA table_info(certificates)")][:-1]
        conn.execute(old)
        conn.execute(f"INSERT INTO old SELECT {', '.join(columns)} FROM certificates")
        conn.execute("DROP TABLE certificates")
        conn.execute("ALTER TABLE old RENAME TO certificates")


def test_an_index_from_before_rollovers_gets_its_ca_column(pki_store, pki_env):
    pki_store.issue_client("bob")
    index = pki_env.pki_dir / "index.sqlite3"
    make_it_old(index)
    store = PkiStore.open(pki_env.pki_dir)
    assert not store._index.has_ca_column()
    client_ca = store._ca_cert("client-ca").subject.rfc4514_string()
    store.issue_client("dave")  # any write adds it
    with sqlite3.connect(index) as conn:
        found = dict(conn.execute("SELECT name, ca FROM certificates WHERE kind = 'client'"))
        servers = conn.execute("SELECT count(*) FROM certificates WHERE ca IS NULL").fetchone()
    assert found == {"bob": client_ca, "dave": client_ca}
    assert servers == (0,)
    store.start_rollover("client")
    store.switch_to_new_ca("client")
    assert [c.name for c in store.old_ca_clients()] == ["bob", "dave"]


def test_verify_is_clean_during_a_client_rollover(started):
    from mtls_deploy.pki import verify

    started.renew_client("bob")
    started.revoke_superseded(["bob"])  # a revocation in the old CA's CRL only
    assert [f.text for f in verify.check(started) if not f.ok] == []


def test_the_passphrase_is_not_changed_during_a_rollover(started):
    from mtls_deploy.pki import rekey

    before = (started.path / "client-ca.old.key").read_bytes()
    with pytest.raises(BadInput, match="a CA rollover is in progress: finish it"):
        rekey.change_passphrase(started, b"another one")
    assert (started.path / "client-ca.old.key").read_bytes() == before
