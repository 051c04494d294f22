"""``QuickStore``: the tls role's reads of the PKI answer as ``PkiStore`` does, from the files and
verdicts the store already reached on the same bytes, so a no-op run imports no x509."""

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from mtls_deploy.pki import quick, store
from mtls_deploy.pki.quick import QuickStore

HOST, NAMES, IPS = "api1", ["api1.example.com"], ["192.0.2.10"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def memo(tmp_path, monkeypatch):
    """A memo of this test's own (``$XDG_CACHE_HOME``)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mtls-deploy" / "pki-checked.json"


def store_refused(monkeypatch):
    """From here on, opening the real store fails the test: answers must come from the memo."""

    def refuse(*args, **kwargs):
        raise AssertionError("QuickStore opened the store")

    monkeypatch.setattr(store.PkiStore, "open", refuse)


def test_the_files_are_the_stores(pki_store, memo):
    fast = QuickStore()
    assert fast.crl_pem() == pki_store.crl_pem()
    assert fast.client_ca_pem() == pki_store.client_ca_pem()
    assert quick.default_pki_dir() == store.default_pki_dir()
    assert quick.SQLITE_HEADER == store.index.SQLITE_HEADER


def test_during_a_client_ca_rollover_both_client_cas_are_trusted(pki_store, memo):
    pki_store.start_rollover("client")
    assert QuickStore().client_ca_pem() == pki_store.client_ca_pem()
    assert pki_store.client_ca_pem().count(b"BEGIN CERTIFICATE") == 2


def test_crl_dates_come_from_the_memo_once_parsed(pki_store, memo, monkeypatch):
    first = QuickStore()
    dates = first.crl_this_update(), first.crl_next_update()
    assert dates == (pki_store.crl_this_update(), pki_store.crl_next_update())
    store_refused(monkeypatch)
    again = QuickStore()
    assert (again.crl_this_update(), again.crl_next_update()) == dates


def test_a_re_signed_crl_is_read_again(pki_store, memo):
    QuickStore().crl_next_update()
    pki_store.refresh_crl(days=3)
    assert QuickStore().crl_next_update() == pki_store.crl_next_update()


def test_an_up_to_date_certificate_needs_no_store_the_second_time(pki_store, memo, monkeypatch):
    issued = QuickStore().server_cert(HOST, NAMES, IPS)
    assert issued.changed and issued.reason == "issued: no certificate yet"
    assert QuickStore().server_cert_preview(HOST, NAMES, IPS) == (issued.cert_pem, issued.key_pem)
    expected = pki_store.server_cert(HOST, NAMES, IPS)
    store_refused(monkeypatch)
    known = QuickStore().server_cert(HOST, NAMES, IPS)
    assert (known.changed, known.reason) == (False, expected.reason)
    assert (known.cert_pem, known.key_pem, known.chain_pem) == (
        expected.cert_pem,
        expected.key_pem,
        expected.chain_pem,
    )
    assert QuickStore().server_cert_preview(HOST, NAMES, IPS) == (issued.cert_pem, issued.key_pem)


def test_other_names_miss_the_memo(pki_store, memo):
    QuickStore().server_cert(HOST, NAMES, IPS)
    QuickStore().server_cert_preview(HOST, NAMES, IPS)  # remembered
    preview = QuickStore().server_cert_preview(HOST, [*NAMES, "api.example.com"], IPS)
    assert b"would be issued: names changed" in preview[0]


def test_late_in_its_life_the_store_decides_again(pki_store, memo):
    QuickStore().server_cert(HOST, NAMES, IPS)
    QuickStore().server_cert_preview(HOST, NAMES, IPS)  # remembered
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=300)  # of 365: under a third left
    preview = QuickStore().server_cert_preview(HOST, NAMES, IPS, late)
    assert b"would be issued" in preview[0] and b"left (under a third" in preview[0]
    assert QuickStore().server_cert(HOST, NAMES, IPS, late).changed


def test_a_certificate_replaced_on_disk_is_checked_again(pki_store, memo):
    QuickStore().server_cert(HOST, NAMES, IPS)
    QuickStore().server_cert_preview(HOST, NAMES, IPS)  # remembered
    cert = pki_store.path / "servers" / HOST / f"{HOST}.crt"
    cert.write_bytes(pki_store.client_ca_pem())  # another certificate, another key's
    preview = QuickStore().server_cert_preview(HOST, NAMES, IPS)
    assert b"would be issued" in preview[0]


def test_no_pki_is_the_stores_own_line(pki_env, memo):
    from mtls_deploy.errors import UserError

    with pytest.raises(UserError, match="no PKI in .*run `inv pki.init` first"):
        QuickStore()


def test_a_broken_index_is_the_stores_own_line(pki_store, memo):
    from mtls_deploy.errors import UserError

    (pki_store.path / "index.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(UserError, match="is not a readable PKI index"):
        QuickStore()


def test_an_unwritable_memo_only_costs_time(pki_store, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert QuickStore().server_cert(HOST, NAMES, IPS).changed
    assert not QuickStore().server_cert(HOST, NAMES, IPS).changed


@dataclass(frozen=True)
class Context:
    host: str = HOST
    check: bool = False


NO_OP = """
import sys
from mtls_deploy import role_loader
from mtls_deploy.facts import HostFacts
tls = role_loader.load("tls").module
v = {"inventory_hostname": "api1", "server_name": "api1.example.com", "server_aliases": [],
     "server_ip_addresses": [], "tls_dir": "/etc/nginx/mtls", "server_cert": "private",
     "crl_refresh_fraction": 0.33}
class Context:
    host, check = "api1", False
steps = tls.prepare(v, Context())
tls.resources(v, HostFacts())
print(" ".join(f"{s.status}:{s.name}" for s in steps))
print("x509" if "cryptography.x509" in sys.modules else "no x509")
"""


def test_a_no_op_run_of_the_tls_role_imports_no_x509(pki_store, memo, pki_env):
    """Start-up (issue "Architecture"): the second run of an unchanged PKI parses nothing."""
    env = {**os.environ, "PYTHONPATH": REPO}
    runs = [
        subprocess.run([sys.executable, "-c", NO_OP], env=env, cwd=pki_env.root,
                       capture_output=True, text=True, check=True).stdout.split("\n")
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0][:2] == ["changed:server certificate ok:crl", "x509"]
    assert runs[1][:2] == ["ok:server certificate ok:crl", "no x509"]
