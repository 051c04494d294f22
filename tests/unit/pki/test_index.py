"""The index alone: schema, rows, statuses, the queries the store asks; and what the store writes."""

import datetime as dt
import sqlite3

import pytest
from cryptography import x509

from mtls_deploy.pki import index, profile

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca():
    key = profile.generate_key("ec")
    return profile.make_ca(key, "Test CA", NOW), key


def client_cert(ca, name, days=365):
    ca_cert, ca_key = ca
    key = profile.generate_key("ec")
    serial = profile.new_serial()
    return profile.issue_client_cert(ca_cert, ca_key, key.public_key(), name, serial, NOW, days)


@pytest.fixture
def made(tmp_path, ca):
    """A new index holding the CA's row; returns it open."""
    path = tmp_path / "index.sqlite3"
    index.create(path, [index.row(ca[0], "client-ca", "client-ca", NOW)], {"key_type": "ec"})
    opened = index.Index(path)
    yield opened
    opened.close()


def insert(made, ca, name, days=365):
    cert = client_cert(ca, name, days)
    made.insert([index.row(cert, "client", name, NOW)])
    return profile.serial_hex(cert.serial_number)


def test_create_writes_a_private_index_and_leaves_no_temporary(made, tmp_path):
    assert oct(made.path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.sqlite3"]
    made.check(made.path.read_bytes()[:16])
    assert made.meta("key_type") == "ec"


def test_check_refuses_a_file_that_is_not_sqlite(made):
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        made.check(b"PEM or whatever")


def test_latest_is_the_newest_row_and_superseded_ones_are_the_older_valid_ones(made, ca):
    first, second = insert(made, ca, "bob"), insert(made, ca, "bob")
    assert made.latest("client", "bob")["serial"] == second
    assert made.superseded_serials("bob") == [first]
    assert made.latest("client", "nobody") is None
    assert made.client_names() == ["bob"]


def test_serials_are_known_as_text_and_as_numbers(made, ca):
    serial = insert(made, ca, "bob")
    assert made.has_serial(serial) and made.serial_taken(int(serial, 16))
    assert not made.has_serial("00") and not made.serial_taken(1)


def test_revoked_rows_become_crl_entries_and_statuses(made, ca):
    serial = insert(made, ca, "bob")
    made.mark_revoked(serial, "key_compromise", NOW)
    assert made.revocations() == [profile.Revocation(int(serial, 16), NOW, "key_compromise")]
    assert index.row_status(made.latest("client", "bob"), NOW) == "revoked"


@pytest.mark.parametrize(
    "days, days_later, status", [(365, 0, "valid"), (29, 0, "expiring"), (1, 2, "expired")]
)
def test_row_status_counts_the_days_left(made, ca, days, days_later, status):
    insert(made, ca, "bob", days)
    later = NOW + dt.timedelta(days=days_later)
    assert index.row_status(made.latest("client", "bob"), later) == status


def test_an_index_from_before_the_smoke_kind_accepts_it_after_allow_smoke_kind(tmp_path, ca):
    old_schema = index.SCHEMA.replace(", 'smoke')", ")")
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
    old = index.Index(path)
    smoke = dict(index.row(ca[0], "smoke", "smoke:x", NOW), serial="AB")
    with pytest.raises(sqlite3.IntegrityError):
        old.insert([smoke])
    old.allow_smoke_kind()
    old.insert([smoke])
    assert old.latest("smoke", "smoke:x")["serial"] == "AB"


# --- through the store ----------------------------------------------------------------------


def load_cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_index_records_every_column(pki_store, pki_env):
    result = pki_store.issue_client("bob", days=90)
    with sqlite3.connect(pki_env.pki_dir / "index.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM certificates WHERE name = 'bob'").fetchone()
    cert = load_cert(result.cert_path)
    assert row["serial"] == profile.serial_hex(cert.serial_number) == result.serial
    assert (row["kind"], row["subject"], row["status"]) == ("client", "CN=bob", "valid")
    assert dt.datetime.fromisoformat(row["not_before"]) == cert.not_valid_before_utc
    assert dt.datetime.fromisoformat(row["not_after"]) == cert.not_valid_after_utc
    assert row["sha256"] == profile.fingerprint(cert)
    assert row["revoked_at"] is None and row["revocation_reason"] is None
