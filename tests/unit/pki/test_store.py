"""The PKI store: layout, modes, encrypted CA keys, index, CRL; faults: kill, disk full, races."""

import datetime as dt
import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import keys, profile
from mtls_deploy.pki.store import PkiStore

from .test_profile import BAD_NAMES

LAYOUT = [
    "client-ca.crt",
    "client-ca.key",
    "server-ca.crt",
    "server-ca.key",
    "crl.pem",
    "index.sqlite3",
]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rows(pki_dir: Path) -> list[tuple]:
    with sqlite3.connect(pki_dir / "index.sqlite3") as conn:
        return conn.execute(
            "SELECT serial, name, kind, status, revocation_reason FROM certificates ORDER BY id"
        ).fetchall()


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def assert_consistent(pki_dir: Path) -> None:
    """Every client row has its files, holding its serial; no staged, temporary or journal file."""
    with sqlite3.connect(pki_dir / "index.sqlite3") as conn:
        query = (
            "SELECT name, serial, key_stored FROM certificates WHERE kind = 'client' ORDER BY id"
        )
        latest = {name: (serial, key_stored) for name, serial, key_stored in conn.execute(query)}
    for name, (serial, key_stored) in latest.items():
        cert = load_cert(pki_dir / "clients" / name / f"{name}.crt")
        assert profile.serial_hex(cert.serial_number) == serial, name
        key_path = pki_dir / "clients" / name / f"{name}.key"
        assert key_path.exists() == bool(key_stored), name
        if key_stored:
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            assert key.public_key() == cert.public_key(), name
    leftovers = [f for f in all_files(pki_dir) if f.endswith((".staged", ".tmp", ".pending.json"))]
    assert leftovers == []


# --- init and layout ------------------------------------------------------------------------


def test_init_writes_the_layout_with_private_modes(pki_store, pki_env):
    root = pki_env.pki_dir
    assert set(LAYOUT) <= {p.name for p in root.iterdir()}
    assert mode(root) == 0o700
    assert mode(root / "client-ca.key") == mode(root / "server-ca.key") == 0o600
    assert mode(root / "index.sqlite3") == 0o600
    pki_store.issue_client("bob")
    pki_store.server_cert("api1", ["api1.example.test"], [])
    assert mode(root / "clients") == mode(root / "clients" / "bob") == 0o700
    assert mode(root / "clients" / "bob" / "bob.key") == 0o600
    assert mode(root / "servers" / "api1") == 0o700
    assert mode(root / "servers" / "api1" / "api1.key") == 0o600
    assert (root / "servers" / "api1" / "api1.crt").is_file()


def test_init_makes_two_distinct_cas_and_records_them(pki_store, pki_env):
    client_ca, server_ca = (
        load_cert(pki_env.pki_dir / "client-ca.crt"),
        load_cert(pki_env.pki_dir / "server-ca.crt"),
    )
    assert (
        client_ca.subject != server_ca.subject and client_ca.public_key() != server_ca.public_key()
    )
    assert "client CA" in client_ca.subject.rfc4514_string()
    assert [(r[1], r[2]) for r in rows(pki_env.pki_dir)] == [
        ("client-ca", "client-ca"),
        ("server-ca", "server-ca"),
        ("smoke:revoked", "smoke"),  # the smoke test's own (tests/unit/test_pki_smoke_cert.py)
        ("smoke:expired", "smoke"),
    ]


def test_init_refuses_an_existing_pki(pki_store, pki_env):
    before = {p.name: p.read_bytes() for p in pki_env.pki_dir.iterdir() if p.is_file()}
    with pytest.raises(UserError, match="refusing to overwrite") as raised:
        PkiStore(pki_env.pki_dir).init()
    assert raised.value.exit_code == 1
    assert {p.name: p.read_bytes() for p in pki_env.pki_dir.iterdir() if p.is_file()} == before


def test_rsa_pki_uses_rsa_3072_everywhere(pki_env):
    PkiStore(pki_env.pki_dir).init(key_type="rsa")
    store = PkiStore.open()
    result = store.issue_client("bob")
    assert load_cert(pki_env.pki_dir / "client-ca.crt").public_key().key_size == 3072
    assert load_cert(result.cert_path).public_key().key_size == 3072


def test_open_without_init_says_to_run_it(pki_env):
    with pytest.raises(UserError, match=r"no PKI in pki/: run `inv pki.init` first"):
        PkiStore.open()


def test_pki_dir_defaults_to_pki_in_the_project_directory(pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_PKI_DIR")
    (pki_env.root / "inventory").mkdir()
    (pki_env.root / "docs").mkdir()
    monkeypatch.chdir(pki_env.root / "docs")
    assert PkiStore().path == pki_env.root / "pki"


# --- CA keys and passphrase -----------------------------------------------------------------


def test_ca_keys_are_encrypted_at_rest_with_600000_rounds(pki_env, monkeypatch):
    monkeypatch.setattr(keys, "CA_KEY_KDF_ROUNDS", 600_000)
    PkiStore(pki_env.pki_dir).init()
    for kind in ("client-ca", "server-ca"):
        path = pki_env.pki_dir / f"{kind}.key"
        assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(path.read_bytes(), None)
        assert openssl("pkey", "-in", path, "-passin", "pass:", "-noout").returncode != 0
        assert openssl("pkey", "-in", path, "-passin", "pass:wrong", "-noout").returncode != 0
        opened = openssl("pkey", "-in", path, "-passin", f"pass:{pki_env.passphrase}", "-noout")
        assert opened.returncode == 0, opened.stderr
        parsed = openssl("asn1parse", "-in", path).stdout
        assert "PBES2" in parsed and "hmacWithSHA256" in parsed and "aes-256-cbc" in parsed
        assert ":0927C0" in parsed  # 600 000 PBKDF2 iterations


def openssl(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)


def test_wrong_passphrase_is_a_clear_error_and_writes_nothing(pki_store, pki_env, monkeypatch):
    before_rows, before_files = rows(pki_env.pki_dir), all_files(pki_env.pki_dir)
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "not the passphrase")
    with pytest.raises(UserError, match=r"wrong CA passphrase: pki/client-ca.key does not open"):
        PkiStore.open().issue_client("bob")
    with pytest.raises(UserError, match="wrong CA passphrase"):
        PkiStore.open().server_cert("api1", ["api1.example.test"], [])
    assert rows(pki_env.pki_dir) == before_rows
    assert all_files(pki_env.pki_dir) - {".lock"} == before_files - {".lock"}


def test_passphrase_only_needed_to_sign(pki_store, pki_env, monkeypatch):
    pki_store.issue_client("bob")
    first = pki_store.server_cert("api1", ["api1.example.test"], ["192.0.2.10"])
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    store = PkiStore.open()
    assert not store.issue_client("bob").changed
    again = store.server_cert("api1", ["api1.example.test"], ["192.0.2.10"])
    assert (again.changed, again.cert_pem, again.key_pem) == (False, first.cert_pem, first.key_pem)
    assert store.client_status("bob") == "valid" and store.list()


def test_expired_ca_refuses_says_how_long_ago_and_writes_nothing(pki_env):
    PkiStore(pki_env.pki_dir).init(ca_days=30, now=NOW - dt.timedelta(days=32))
    store = PkiStore.open()
    before = rows(pki_env.pki_dir)
    with pytest.raises(UserError, match=r"expired 2 days ago .* refuses to sign"):
        store.issue_client("bob")
    with pytest.raises(UserError, match="expired 2 days ago"):
        store.refresh_crl()
    assert rows(pki_env.pki_dir) == before
    assert not (pki_env.pki_dir / "clients").exists()


# --- clients --------------------------------------------------------------------------------


def test_issue_is_idempotent_unless_reissue(pki_store, pki_env):
    first = pki_store.issue_client("bob")
    assert first.changed and first.reason == "issued: new client"
    assert first.cert_path == pki_env.pki_dir / "clients" / "bob" / "bob.crt"
    cert_bytes = first.cert_path.read_bytes()
    second = pki_store.issue_client("bob")
    assert not second.changed and second.serial == first.serial and "unchanged" in second.reason
    assert first.cert_path.read_bytes() == cert_bytes
    third = pki_store.issue_client("bob", reissue=True)
    assert third.changed and third.serial != first.serial
    assert f"previous serial {first.serial} revoked as superseded" in third.reason
    assert rows(pki_env.pki_dir)[-2][3:] == ("revoked", "superseded")


def test_a_serial_already_in_the_index_is_never_reused(pki_store, monkeypatch):
    bob = int(pki_store.issue_client("bob").serial, 16)
    draws = iter([(bob << 1).to_bytes(20, "big")] * 2)
    real = profile.new_serial
    monkeypatch.setattr(
        profile,
        "new_serial",
        lambda taken: real(taken, lambda n: next(draws, None) or os.urandom(n)),
    )
    carol = pki_store.issue_client("carol")
    assert int(carol.serial, 16) != bob
    assert next(draws, "used") == "used"  # both colliding draws were offered and refused


def test_revoked_or_expired_clients_get_a_new_certificate(pki_store):
    pki_store.issue_client("bob")
    pki_store.revoke_client("bob")
    assert pki_store.issue_client("bob").reason == "issued: previous certificate revoked"
    pki_store.issue_client("old", days=1)
    later = NOW + dt.timedelta(days=2)
    assert pki_store.issue_client("old", now=later).reason == "issued: previous certificate expired"


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_client_names_write_nothing(pki_store, pki_env, name):
    before = all_files(pki_env.pki_dir), rows(pki_env.pki_dir)
    with pytest.raises(BadInput) as raised:
        pki_store.issue_client(name)
    assert raised.value.exit_code == 2
    with pytest.raises(BadInput):
        list(pki_store.issue_clients(["good", name]))  # bulk: checked before the first is issued
    assert (all_files(pki_env.pki_dir), rows(pki_env.pki_dir)) == before


def test_renew_revokes_the_old_as_superseded_and_keeps_attributes(pki_store, pki_env):
    old = pki_store.issue_client("bob", days=90, org="ACME", email="bob@example.test")
    new = pki_store.renew_client("bob")
    cert = load_cert(new.cert_path)
    assert new.serial != old.serial and new.changed
    assert cert.subject.rfc4514_string() == "O=ACME,CN=bob"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=90, minutes=5)
    assert profile.san_names(cert) == (set(), set())  # email SAN is an rfc822Name, not DNS/IP
    entry = pki_store.crl().get_revoked_certificate_by_serial_number(int(old.serial, 16))
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.superseded
    )


def test_renew_unknown_client_says_so(pki_store):
    with pytest.raises(UserError, match="no client named 'bob'"):
        pki_store.renew_client("bob")


# --- revocation and CRL ---------------------------------------------------------------------


def test_revoke_updates_index_and_crl_with_reason_and_next_number(pki_store, pki_env):
    serial = pki_store.issue_client("bob").serial
    number = profile.crl_number(pki_store.crl())
    assert pki_store.revoke_client("bob", reason="key_compromise") == serial
    crl = pki_store.crl()
    assert profile.crl_number(crl) == number + 1
    assert crl.is_signature_valid(load_cert(pki_env.pki_dir / "client-ca.crt").public_key())
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert rows(pki_env.pki_dir)[-1][3:] == ("revoked", "key_compromise")
    assert pki_store.client_status("bob") == "revoked"


def test_revoking_twice_changes_nothing(pki_store):
    pki_store.issue_client("bob")
    pki_store.revoke_client("bob")
    crl = pki_store.crl_pem()
    pki_store.revoke_client("bob", reason="key_compromise")
    assert pki_store.crl_pem() == crl


def test_revoking_an_unknown_name_lists_close_matches(pki_store):
    pki_store.issue_client("bob")
    pki_store.issue_client("bobby")
    with pytest.raises(UserError, match=r"no client named 'bbo' in the index; did you mean bob"):
        pki_store.revoke_client("bbo")
    with pytest.raises(UserError, match="pki.list"):
        pki_store.revoke_client("zzzzzz")


def test_refresh_crl_resigns_with_fresh_dates_and_next_number(pki_store):
    number = profile.crl_number(pki_store.crl())
    later = NOW + dt.timedelta(days=100)
    pki_store.refresh_crl(now=later)
    assert pki_store.crl_this_update() == later - dt.timedelta(minutes=5)
    assert pki_store.crl_next_update() == later + dt.timedelta(days=180)
    assert profile.crl_number(pki_store.crl()) == number + 1
    pki_store.refresh_crl(days=7, now=later)
    assert pki_store.crl_next_update() == later + dt.timedelta(days=7)


def test_initial_crl_lists_only_the_smoke_certificate_and_lasts_180_days(pki_store):
    crl = pki_store.crl()
    smoke = pki_store.smoke_certificates()[0]["revoked"]  # init revokes it: CRL #2
    assert profile.crl_number(crl) == 2 and [e.serial_number for e in crl] == [
        int(smoke.serial, 16)
    ]
    # NOW is taken when the module is imported, minutes before this test may run: compare the
    # CRL's own dates, and its start with the clock read around it.
    lifetime = pki_store.crl_next_update() - pki_store.crl_this_update()
    assert (
        dt.timedelta(days=180) <= lifetime <= dt.timedelta(days=180, minutes=5)
    )  # back-dated start
    assert NOW - dt.timedelta(minutes=10) <= pki_store.crl_this_update() <= dt.datetime.now(dt.UTC)


# --- list -----------------------------------------------------------------------------------


def test_list_shows_every_kind_and_status(pki_env):
    PkiStore(pki_env.pki_dir).init(now=NOW - dt.timedelta(days=400))
    store = PkiStore.open()
    store.issue_client("old", days=30, now=NOW - dt.timedelta(days=40))
    store.issue_client("soon", days=10)
    store.issue_client("fine")
    store.issue_client("gone")
    store.revoke_client("gone")
    store.server_cert("api1", ["api1.example.test"], [])
    records = {(r.name, r.kind): r for r in store.list()}
    assert {k: r.status for k, r in records.items()} == {
        ("client-ca", "client-ca"): "valid",
        ("server-ca", "server-ca"): "valid",
        ("api1", "server"): "valid",
        ("old", "client"): "expired",
        ("soon", "client"): "expiring",
        ("fine", "client"): "valid",
        ("gone", "client"): "revoked",
        ("smoke:revoked", "smoke"): "revoked",
        ("smoke:expired", "smoke"): "expired",
    }
    assert records[("soon", "client")].days_left == 9
    assert records[("old", "client")].days_left < 0
    assert all(len(r.serial_hex) % 2 == 0 for r in records.values())
    assert store.client_status("old") == "expired" and store.client_status("nobody") is None


# --- servers --------------------------------------------------------------------------------


def test_server_cert_reissues_only_when_names_change_or_a_third_of_its_life_is_left(pki_store):
    first = pki_store.server_cert("api1", ["api1.example.test"], ["192.0.2.10"])
    assert first.changed and first.reason == "issued: no certificate yet"
    assert first.chain_pem == pki_store.server_ca_pem()
    same = pki_store.server_cert("api1", ["API1.example.test."], ["192.0.2.10"])
    assert not same.changed and same.cert_pem == first.cert_pem
    renamed = pki_store.server_cert(
        "api1", ["api1.example.test", "api.example.test"], ["192.0.2.10"]
    )
    assert renamed.changed and "added ['api.example.test']" in renamed.reason
    near_end = NOW + dt.timedelta(days=245)  # renewed at two thirds of 365 days
    assert not pki_store.server_cert(
        "api1",
        ["api1.example.test", "api.example.test"],
        ["192.0.2.10"],
        now=NOW + dt.timedelta(days=240),
    ).changed
    late = pki_store.server_cert(
        "api1", ["api1.example.test", "api.example.test"], ["192.0.2.10"], now=near_end
    )
    assert late.changed and "days left (under a third of its life)" in late.reason
    statuses = [r.status for r in pki_store.list(include_replaced=True) if r.kind == "server"]
    assert statuses == ["replaced", "replaced", "valid"]


def test_server_cert_preview_issues_nothing(pki_store, pki_env):
    cert, key = pki_store.server_cert_preview("api1", ["api1.example.test"], [])
    assert b"would be issued" in cert and not (pki_env.pki_dir / "servers").exists()
    issued = pki_store.server_cert("api1", ["api1.example.test"], [])
    assert pki_store.server_cert_preview("api1", ["api1.example.test"], []) == (
        issued.cert_pem,
        issued.key_pem,
    )


@pytest.mark.parametrize("host", ["../x", "a/b", "", "a b"])
def test_server_cert_bad_host_is_bad_input(pki_store, host):
    with pytest.raises(BadInput):
        pki_store.server_cert(host, ["api1.example.test"], [])


# --- CSR: the key stays on the consumer ----------------------------------------------------


def make_csr(name: str, key=None) -> tuple:
    key = key or profile.generate_key("ec")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


def test_sign_client_csr_certifies_the_consumer_key_and_stores_no_key(pki_store, pki_env):
    key, csr = make_csr("bob")
    result = pki_store.sign_client_csr("bob", csr, days=30, org="ACME")
    cert = load_cert(result.cert_path)
    assert result.changed and cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "O=ACME,CN=bob"
    assert not result.key_path.exists()
    material = pki_store.client_material("bob")
    assert material.key_pem is None and material.cert_pem == result.cert_path.read_bytes()
    assert not pki_store.sign_client_csr("bob", make_csr("bob")[1]).changed  # valid: kept
    assert_consistent(pki_env.pki_dir)


def test_csr_client_gets_no_bundle_and_renews_through_its_consumer(pki_store, pki_env):
    from mtls_deploy.pki import bundle

    pki_store.sign_client_csr("bob", make_csr("bob")[1])
    with pytest.raises(UserError, match=r"made on its consumer host \(--csr\)"):
        bundle.write_client_bundle(pki_store, "bob")
    assert bundle.issue_bundles(pki_store, ["bob"], p12=False)[0].bundle_written is False
    assert not (pki_env.dist_dir / "bob").exists()
    with pytest.raises(UserError, match="--csr --reissue"):
        pki_store.renew_client("bob")


def test_csr_reissue_over_a_stored_key_supersedes_it_and_removes_the_key(pki_store, pki_env):
    old = pki_store.issue_client("bob")
    assert old.key_path.exists()
    new = pki_store.sign_client_csr("bob", make_csr("bob")[1], reissue=True)
    assert new.changed and new.serial != old.serial and not new.key_path.exists()
    entry = pki_store.crl().get_revoked_certificate_by_serial_number(int(old.serial, 16))
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.superseded
    )
    assert_consistent(pki_env.pki_dir)


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        (lambda: make_csr("alice")[1], "must be exactly CN=bob"),
        (lambda: make_csr("bob", rsa.generate_private_key(65537, 2048))[1], "key is not allowed"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
         "not a PEM certificate request"),
    ],
    ids=["other-name", "weak-key", "garbage"],
)  # fmt: skip
def test_bad_csr_is_bad_input_and_writes_nothing(pki_store, pki_env, csr, message):
    before = all_files(pki_env.pki_dir), rows(pki_env.pki_dir)
    with pytest.raises(BadInput, match=message):
        pki_store.sign_client_csr("bob", csr())
    assert (all_files(pki_env.pki_dir), rows(pki_env.pki_dir)) == before


# --- the tasks ------------------------------------------------------------------------------


# issue-client and pki.init through Invoke's Program: tests/unit/test_tasks.py


def test_issue_client_task_via_inv_exits_2_for_a_bad_name(pki_store, pki_env):
    inv = Path(sys.executable).with_name("inv")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(inv), "--search-root", str(repo), "issue-client", "--name", "../etc"],
        capture_output=True,
        text=True,
        cwd=pki_env.root,
    )
    assert done.returncode == 2 and "invalid client name '../etc'" in done.stderr
    assert not (pki_env.pki_dir / "clients").exists() and not pki_env.dist_dir.exists()


# --- concurrency ----------------------------------------------------------------------------

ISSUE_ONE = """
import sys, time
from mtls_deploy.pki.store import PkiStore
from mtls_deploy.pki.bundle import issue_bundles
start = float(sys.argv[1] if len(sys.argv) > 1 else "{start}")
time.sleep(max(0, start - time.time()))
print(issue_bundles(PkiStore.open(), ["{name}"], p12=False)[0].issue.serial)
"""


def test_20_concurrent_issue_processes_get_20_distinct_serials_and_rows(
    pki_store, pki_env, pki_spawn
):
    start = time.time() + 1.5  # every process waits for the same moment, so they really overlap
    processes = [pki_spawn(ISSUE_ONE.format(start=start, name=f"c{i:02d}")) for i in range(20)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 20, [err for _, err in outputs]
    serials = [out.strip() for out, _ in outputs]
    clients = [r for r in rows(pki_env.pki_dir) if r[2] == "client"]
    assert len(set(serials)) == 20 and len(clients) == 20
    assert {r[0] for r in clients} == set(serials) and {r[1] for r in clients} == {
        f"c{i:02d}" for i in range(20)
    }
    assert_consistent(pki_env.pki_dir)
    assert all((pki_env.dist_dir / f"c{i:02d}" / f"c{i:02d}.crt").is_file() for i in range(20))


REVOKE_ONE = """
import time
from mtls_deploy.pki.store import PkiStore
time.sleep(max(0, {start} - time.time()))
PkiStore.open().revoke_client("{name}")
"""


def test_concurrent_revocations_all_land_in_the_crl(pki_store, pki_spawn):
    serials = {int(r.serial, 16) for r in pki_store.issue_clients([f"r{i}" for i in range(6)])}
    serials |= {entry.serial_number for entry in pki_store.crl()}  # the smoke test's own
    number = profile.crl_number(pki_store.crl())
    start = time.time() + 1.0
    processes = [pki_spawn(REVOKE_ONE.format(start=start, name=f"r{i}")) for i in range(6)]
    assert [p.wait(timeout=60) for p in processes] == [0] * 6
    crl = pki_store.crl()
    assert {entry.serial_number for entry in crl} == serials
    assert profile.crl_number(crl) == number + 6  # no lost update of the CRL number


# --- killed runs ----------------------------------------------------------------------------

KILLED_BULK = """
import os, signal
from mtls_deploy.pki import issuance, journal, store
from mtls_deploy.pki.bundle import issue_bundles
commits = 0
original = journal.Transaction.commit
def commit(self):
    global commits
    commits += 1
    if commits == 3 and "{where}" == "before-commit":
        os.kill(os.getpid(), signal.SIGKILL)
    if commits == 3 and "{where}" == "after-commit":
        self.db.execute("COMMIT")
        os.kill(os.getpid(), signal.SIGKILL)
    original(self)
journal.Transaction.commit = commit
issuance.CHUNK = 10
issue_bundles(store.PkiStore.open(), ["n%03d" % i for i in range(40)], p12=False)
"""


@pytest.mark.parametrize("where", ["before-commit", "after-commit"])
def test_sigkill_inside_a_bulk_issue_leaves_a_consistent_pki(pki_store, pki_env, pki_spawn, where):
    process = pki_spawn(KILLED_BULK.format(where=where))
    assert process.wait(timeout=60) == -signal.SIGKILL
    staged = [f for f in all_files(pki_env.pki_dir) if f.endswith(".staged")]
    assert len(staged) == 20 and (pki_env.pki_dir / ".pending.json").exists()  # killed mid-chunk
    issued = len([r for r in rows(pki_env.pki_dir) if r[2] == "client"])
    assert issued == (20 if where == "before-commit" else 30)
    names = [f"n{i:03d}" for i in range(40)]
    PkiStore.open().issue_client("late")  # the next writer finishes or undoes the killed chunk
    assert_consistent(pki_env.pki_dir)
    from mtls_deploy.pki.bundle import bundle_is_current, issue_bundles

    store = PkiStore.open()
    results = issue_bundles(store, names, p12=False)
    assert sum(r.issue.changed for r in results) == 40 - issued
    assert_consistent(pki_env.pki_dir)
    assert all(bundle_is_current(store, n, p12=False) for n in names)
    assert len({r[0] for r in rows(pki_env.pki_dir)}) == len(rows(pki_env.pki_dir))


BULK = """
from mtls_deploy.pki import issuance, store
from mtls_deploy.pki.bundle import issue_bundles
issuance.CHUNK = 25
issue_bundles(store.PkiStore.open(), ["k%04d" % i for i in range({count})], p12=False)
"""


def test_sigkill_from_outside_during_a_bulk_issue_then_rerun_finishes(
    pki_store, pki_env, pki_spawn
):
    process = pki_spawn(BULK.format(count=600))
    deadline = time.time() + 60
    while len(rows(pki_env.pki_dir)) < 2 + 50 and time.time() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    issued = len(rows(pki_env.pki_dir)) - 2
    assert 50 <= issued < 600, "the kill should land in the middle of the run"
    rerun = pki_spawn(BULK.format(count=600))
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
    clients = [r for r in rows(pki_env.pki_dir) if r[2] == "client"]
    assert len(clients) == len({r[1] for r in clients}) == 600
    assert_consistent(pki_env.pki_dir)


# --- disk full ------------------------------------------------------------------------------


def fill(path: Path, leave_pages: int) -> Path:
    """Fill the filesystem holding ``path``, then free ``leave_pages`` pages."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left to flush at close
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - size % 4096 - leave_pages * 4096))
    return filler


@pytest.mark.parametrize("free_pages", [0, 1, 2, 3, 5, 8])
def test_disk_full_is_a_clear_error_and_leaves_the_index_unchanged(pki_env, pki_tmpfs, free_pages):
    pki_tmpfs(pki_env.pki_dir, "2m")
    PkiStore(pki_env.pki_dir).init()
    store = PkiStore.open()
    store.issue_client("bob")
    index_before = (pki_env.pki_dir / "index.sqlite3").read_bytes()
    files_before = all_files(pki_env.pki_dir)
    filler = fill(pki_env.pki_dir, free_pages)
    with pytest.raises(UserError) as raised:
        list(PkiStore.open().issue_clients([f"x{i}" for i in range(20)]))
    message = str(raised.value)
    assert (
        message.startswith("disk full writing ") and "nothing was recorded in the index" in message
    )
    assert (pki_env.pki_dir / "index.sqlite3").read_bytes() == index_before
    assert all_files(pki_env.pki_dir) - {".lock"} == (files_before | {"filler"}) - {".lock"}
    filler.unlink()
    results = list(PkiStore.open().issue_clients([f"x{i}" for i in range(20)]))
    assert all(r.changed for r in results)
    assert_consistent(pki_env.pki_dir)


@pytest.mark.parametrize("size", ["8k", "16k", "24k"])
def test_init_on_a_full_disk_is_clear_and_leaves_the_directory_empty(pki_env, pki_tmpfs, size):
    pki_tmpfs(pki_env.pki_dir, size)
    with pytest.raises(UserError, match="disk full writing"):
        PkiStore(pki_env.pki_dir).init()
    assert list(pki_env.pki_dir.iterdir()) == []
    with pytest.raises(UserError, match="run `inv pki.init` first"):
        PkiStore.open()


def test_a_stale_crl_for_fault_tests_ran_out_yesterday_and_changes_nothing(pki_store, pki_env):
    before = {p: p.read_bytes() for p in pki_env.pki_dir.rglob("*") if p.is_file()}
    stale = x509.load_pem_x509_crl(pki_store.stale_crl_pem())
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(days=1, minutes=1) < stale.next_update_utc < now
    ca = load_cert(pki_env.pki_dir / "client-ca.crt")
    assert stale.is_signature_valid(ca.public_key()) and stale.issuer == ca.subject
    assert {p: p.read_bytes() for p in pki_env.pki_dir.rglob("*") if p.is_file()} == before


def test_revoke_clients_checks_every_name_then_signs_one_crl(pki_store):
    for name in ("bob", "carol", "dave"):
        pki_store.issue_client(name)
    pki_store.revoke_client("dave")
    number = int(pki_store._index.meta("crl_number"))
    with pytest.raises(UserError, match="no client named 'erin'"):
        pki_store.revoke_clients(["bob", "erin"])
    assert pki_store.client_status("bob") == "valid"
    revoked = pki_store.revoke_clients(["bob", "carol", "dave"], "affiliation_changed")
    assert revoked["dave"] is None and revoked["bob"] and revoked["carol"]
    assert int(pki_store._index.meta("crl_number")) == number + 1
    listed = {entry.serial_number for entry in pki_store.crl()}
    assert {int(revoked["bob"], 16), int(revoked["carol"], 16)} <= listed
