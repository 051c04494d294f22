"""The command line through Invoke's own ``Program``, as ``inv`` runs it, in this process.

tasks.py is loaded by Invoke's loader, as ``inv`` finds it: nothing imports it. Each run parses
real argv, runs the task, and ends as ``inv`` ends: its exit code, its one line on stderr.
(tests/unit/test_cli_errors.py runs the real ``inv`` in a subprocess instead.)
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD_NAMES = {
    "dot-dot-slash": "../etc",
    "slash": "a/b",
    "space": "bob smith",
    "comma": "bob,o=x",
    "double-quote": 'bob"',
    "newline": "bob\nalice",
    "non-ascii": "bøb",
    "upper-case": "Bob",
    "leading-dash": "-bob",
    "empty": "",
    "65-chars": "a" * 65,
    "nul": "bob\x00",
}
ONE_LINE_NAMES = {k: v for k, v in BAD_NAMES.items() if v.strip() and "\n" not in v}


def all_files(root: Path) -> set[str]:
    """Every file under ``root``, as paths relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_the_namespace_is_the_one_inv_lists(inv):
    code, out, _ = inv("--list")
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert code == 0
    assert {
        "provision",
        "issue-client",
        "smoke-test",
        "pki.init",
        "lab.up",
        "hosts.trust",
    } <= listed


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_issue_client_exits_2_on_a_bad_name_and_writes_nothing(pki_store, pki_env, inv, name):
    before = all_files(pki_env.root)
    code, _, err = inv("issue-client", f"--name={name}")
    assert code == 2 and err.startswith("error: invalid client name")
    assert err.count("\n") == 1  # one line, even for a name holding a newline
    assert all_files(pki_env.root) == before


@pytest.mark.parametrize("name", ONE_LINE_NAMES.values(), ids=ONE_LINE_NAMES.keys())
def test_a_names_file_with_a_bad_line_exits_2_and_writes_nothing(pki_store, pki_env, inv, name):
    (pki_env.root / "names.txt").write_text(f"alice\n{name}\ncarol\n")
    before = all_files(pki_env.root)
    code, _, err = inv("issue-client", "--names-file=names.txt")
    assert code == 2 and err.startswith("error: names.txt line 2: invalid client name")
    assert all_files(pki_env.root) == before


def test_tasks_say_to_run_pki_init_first_and_init_refuses_a_second_time(pki_env, inv):
    assert inv("issue-client", "--name=bob")[::2] == (
        1,
        "error: no PKI in pki/: run `inv pki.init` first\n",
    )
    assert inv("pki.init")[0] == 0
    code, _, err = inv("pki.init")
    assert code == 1 and err.startswith("error: ")
    code, out, _ = inv("issue-client", "--name=bob", "--no-deliver")
    assert code == 0 and "bob: issued: new client; bundle " in out


def test_a_bad_whole_number_is_one_line_and_exit_2(pki_env, inv):
    code, _, err = inv("issue-client", "--name=bob", "--days=ten")
    assert code == 2
    assert err == "error: --days 'ten' is not a whole number: give digits, e.g. --days 30\n"


def test_nothing_imports_tasks_py():
    """The loader ran tasks.py as inv does; no module of ours says ``import tasks``."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("mtls_deploy", "roles", "bench", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if any(
            line.strip() in ("import tasks", "from tasks import")
            or line.strip().startswith(("import tasks ", "from tasks import "))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == [], os.linesep.join(offenders)


# --- the PKI's lifetimes from the inventory (issue 13) ----------------------------------------


@pytest.fixture
def lifetimes(pki_env, monkeypatch):
    """``lifetimes("crl_lifetime: 2m", host_vars="...")``: an inventory of api1 and api2 with
    these lines in group_vars/all.yml (and api2's host_vars)."""
    folder = pki_env.root / "inventory"

    def write(group_vars: str, host_vars: str = "") -> Path:
        (folder / "group_vars").mkdir(parents=True, exist_ok=True)
        (folder / "hosts.yml").write_text("all:\n  hosts:\n    api1:\n    api2:\n")
        (folder / "group_vars" / "all.yml").write_text(group_vars + "\n")
        if host_vars:
            (folder / "host_vars").mkdir(exist_ok=True)
            (folder / "host_vars" / "api2.yml").write_text(host_vars + "\n")
        return folder

    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
    return write


def test_lifetimes_come_from_group_vars_all_and_days_override(pki_env, inv, lifetimes):
    import datetime as dt

    from cryptography import x509

    lifetimes("crl_lifetime: 2m\nclient_lifetime: 4m\nca_lifetime: 1h\nwarn_before: 1m")
    assert inv("pki.init")[0] == 0
    ca = x509.load_pem_x509_certificate((pki_env.pki_dir / "client-ca.crt").read_bytes())
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == dt.timedelta(minutes=63)
    crl = x509.load_pem_x509_crl((pki_env.pki_dir / "crl.pem").read_bytes())
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(seconds=126)
    assert inv("issue-client", "--name=bob", "--no-deliver")[0] == 0
    bob = x509.load_pem_x509_certificate((pki_env.pki_dir / "clients/bob/bob.crt").read_bytes())
    assert bob.not_valid_after_utc - bob.not_valid_before_utc == dt.timedelta(seconds=252)
    code, out, _ = inv("pki.list")
    assert code == 0 and "expiring" not in out.split("bob", 1)[1].splitlines()[0]
    lifetimes("crl_lifetime: 2m\nca_lifetime: 3d")
    assert inv("pki.crl", "--days=2")[0] == 0  # --days beats the inventory
    crl = x509.load_pem_x509_crl((pki_env.pki_dir / "crl.pem").read_bytes())
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=2, minutes=5)


@pytest.mark.parametrize(
    "group_vars, host_vars, message",
    [
        ("crl_lifetime: 180", "", r"error: api1: crl_lifetime 180 is not a duration such as "
         r"365d, 12h, 10m or 90s: add a unit \(s, m, h, d, w or y\) \(set in .*all.yml\)\n"),
        ("warn_before: 30d", "warn_before: 7d", r"error: warn_before differs between hosts "
         r"\(30d, 7d\); set it once, in group_vars/all.yml\n"),
    ],
)  # fmt: skip
def test_a_bad_or_disagreeing_lifetime_is_one_line_and_nothing_written(
    pki_env, inv, lifetimes, group_vars, host_vars, message
):
    lifetimes(group_vars, host_vars)
    code, out, err = inv("pki.init")
    assert (code, out) == (2, "") and re.fullmatch(message, err), err
    assert not pki_env.pki_dir.exists()


# --- pki.backup, pki.restore, pki.verify -------------------------------------------------------


@pytest.fixture
def backup_env(pki_store, pki_env, monkeypatch):
    """bob issued; the backup passphrase in the environment; scrypt cheap for the test."""
    monkeypatch.setattr("mtls_deploy.pki.backup.SCRYPT_LOG2_N", 10)
    monkeypatch.setenv("MTLS_DEPLOY_BACKUP_PASSPHRASE", "backup secret")
    pki_store.issue_client("bob")
    return pki_env


def test_backup_restore_and_verify_through_inv(backup_env, inv, monkeypatch):
    pki, saved = backup_env.pki_dir, backup_env.root / "pki.backup"
    code, out, _ = inv("pki.backup", "--to", str(saved))
    assert (
        code == 0 and out.startswith(f"wrote {saved}: ") and saved.stat().st_mode & 0o777 == 0o600
    )
    before = all_files(pki)
    code, out, err = inv("pki.restore", "--from", str(saved))
    assert (code, out) == (1, "") and err.startswith("error: pki/ already holds a PKI: ")
    assert err.count("\n") == 1
    monkeypatch.setenv("MTLS_DEPLOY_BACKUP_PASSPHRASE", "not it")
    code, _, err = inv("pki.restore", "--from", str(saved), "--force")
    assert code == 2 and err.startswith("error: wrong backup passphrase, or ")
    assert all_files(pki) == before
    monkeypatch.setenv("MTLS_DEPLOY_BACKUP_PASSPHRASE", "backup secret")
    code, out, _ = inv("pki.restore", "--from", str(saved), "--force")
    assert code == 0 and "restored 12 files into" in out
    assert all_files(pki) == before - {".lock"}  # the lock file is made again on the next write
    code, out, _ = inv("pki.verify")
    assert code == 0 and "PROBLEM" not in out and "client-ca.key opens" in out
    (pki / "clients" / "bob" / "bob.key").unlink()
    code, out, err = inv("pki.verify")
    assert code == 1 and "PROBLEM  client bob: pki/clients/bob/bob.key is missing" in out
    assert err == "pki.verify: 1 problem(s)\n"


# --- pki.show, sign-csr, export-p12, pki.passphrase, revoke-client --names-file ----------------


def csr_file(folder: Path, cn: str = "ext", damage: bool = False, weak: bool = False) -> Path:
    """A PEM CSR for CN=``cn`` (P-256; RSA 2048 when ``weak``; a bad signature if ``damage``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(65537, 2048) if weak else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    der = bytearray(
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    if damage:
        der[-1] ^= 0x01
    path = folder / f"{cn}.csr"
    path.write_bytes(x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM))
    return path


def test_pki_show_through_inv(pki_store, pki_env, inv):
    pki_store.issue_client("bob")
    code, out, _ = inv("pki.show", "--name", "bob")
    assert (
        code == 0 and "subject            CN=bob" in out and "eku                clientAuth" in out
    )
    code, out, _ = inv("pki.show", "--name", "bob", "--json")
    assert code == 0 and '"key_type": "ec P-256"' in out
    assert inv("pki.show", "--name", "bbo") == (
        1, "", "error: no client named 'bbo' in the index; did you mean bob?\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    "damage, weak, message",
    [
        (True, False, "error: the CSR's signature does not verify: regenerate it with its own key\n"),
        (False, True, "error: the CSR's key is not allowed: use ECDSA P-256/P-384 or RSA with at "
         "least 3072 bits\n"),
    ],
    ids=["bad-signature", "rsa-2048"],
)  # fmt: skip
def test_sign_csr_refuses_a_bad_csr_and_writes_nothing(
    pki_store, pki_env, inv, damage, weak, message
):
    path = csr_file(pki_env.root, damage=damage, weak=weak)
    before = all_files(pki_env.root)
    assert inv("sign-csr", "--name", "ext", "--csr-file", str(path)) == (2, "", message)
    assert all_files(pki_env.root) == before


def test_sign_csr_then_export_p12_says_the_key_is_elsewhere(pki_store, pki_env, inv):
    code, out, _ = inv("sign-csr", "--name", "ext", "--csr-file", str(csr_file(pki_env.root)))
    assert code == 0 and "ext: issued: new client; serial " in out
    assert {"ext/ext.crt", "ext/ext-chain.crt", "ext/api-ca.crt"} <= all_files(pki_env.dist_dir)
    code, _, err = inv("export-p12", "--name", "ext")
    assert code == 1 and err.startswith("error: ext's key was made on its consumer host (--csr)")
    pki_store.issue_client("bob")
    code, out, _ = inv("export-p12", "--name", "bob", "--p12-legacy", "--out", "p12")
    assert code == 0 and {"bob.p12", "bob.p12.pass"} == all_files(pki_env.root / "p12")
    code, _, err = inv("export-p12", "--name", "nobody")
    assert code == 1 and err.startswith("error: no client named 'nobody' in the index")


def test_pki_passphrase_through_inv(pki_store, pki_env, inv, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_NEW_CA_PASSPHRASE", "a new one")
    code, out, _ = inv("pki.passphrase")
    assert code == 0 and out.startswith("re-encrypted client-ca.key and server-ca.key")
    code, _, err = inv("issue-client", "--name=bob", "--no-deliver")
    assert code == 1 and err.startswith("error: wrong CA passphrase")
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "a new one")
    assert inv("issue-client", "--name=bob", "--no-deliver")[0] == 0


def test_revoke_client_names_file_signs_one_crl(pki_store, pki_env, inv):
    for name in ("bob", "carol"):
        pki_store.issue_client(name)
    number = int(pki_store._index.meta("crl_number"))
    (pki_env.root / "gone.txt").write_text("bob\n# left the team\ncarol\n")
    code, out, _ = inv("revoke-client", "--names-file", "gone.txt", "--no-push")
    assert code == 0 and out.count("revoked serial") == 2
    assert int(pki_store._index.meta("crl_number")) == number + 1
    (pki_env.root / "more.txt").write_text("bob\nzed\n")
    code, _, err = inv("revoke-client", "--names-file", "more.txt", "--no-push")
    assert code == 1 and err.startswith("error: no client named 'zed' in the index")
