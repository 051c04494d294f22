"""CA rollover around the PKI: ``inv pki.rollover``'s bad input (one line, exit 2, nothing
written), what the tls role and the client bundles carry during a rollover (both client CAs
tagged for the push, both server roots in api-ca.crt), and ``status``'s ``rollover`` row."""

from pathlib import Path

import pytest
from cryptography import x509

from mtls_deploy import role_loader
from mtls_deploy.facts import HostFacts
from mtls_deploy.pki.bundle import bundle_is_current, write_client_bundle
from mtls_deploy.status import judge
from mtls_deploy.status.run import pki_snapshot

ROOT = Path(__file__).resolve().parents[3]
V = {
    "inventory_hostname": "api1",
    "server_name": "api1.example.com",
    "server_aliases": [],
    "server_ip_addresses": [],
    "tls_dir": "/etc/nginx/mtls",
    "server_cert": "private",
    "crl_refresh_fraction": 0.33,
}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ca", "client", "--finish"], "error: no client CA rollover in progress: start one "
         "with `inv pki.rollover --ca client --start`\n"),
        (["--ca", "server", "--finish", "--force"], "error: no server CA rollover in progress: "
         "start one with `inv pki.rollover --ca server --start`\n"),
        (["--ca", "intermediate", "--start"], "error: --ca 'intermediate' is not a CA of the "
         "PKI: give --ca client or --ca server\n"),
        (["--ca", "client"], "error: give --start or --finish (--force only with --finish)\n"),
        (["--ca", "client", "--start", "--finish"], "error: give --start or --finish (--force "
         "only with --finish)\n"),
        (["--ca", "client", "--start", "--force"], "error: give --start or --finish (--force "
         "only with --finish)\n"),
    ],
    ids=["finish-without-start", "force-without-start", "unknown-ca", "neither", "both", "force"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(pki_store, pki_env, inv, argv, message):
    before = files(pki_env.pki_dir)
    assert inv("pki.rollover", *argv) == (2, "", message)
    assert files(pki_env.pki_dir) == before


@pytest.mark.parametrize("ca", ["client", "server"])
def test_start_twice_is_one_line_and_writes_nothing(pki_store, pki_env, inv, ca):
    pki_store.start_rollover(ca)
    before = files(pki_env.pki_dir)
    code, out, err = inv("pki.rollover", "--ca", ca, "--start")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: a {ca} CA rollover is already in progress: finish it")
    assert err.endswith(f"finish it with `inv pki.rollover --ca {ca} --finish`\n")
    assert err.count("\n") == 1
    assert files(pki_env.pki_dir) == before


def test_the_tls_role_trusts_both_client_cas_tagged_for_the_push(pki_store):
    pki_store.start_rollover("client")
    resources = role_loader.load("tls").module.resources(V, HostFacts())
    client_ca = next(r for r in resources if r.path.endswith("client-ca.crt"))
    crl = next(r for r in resources if r.path.endswith("crl.pem"))
    assert client_ca.tags == ("client-ca",) and crl.tags == ("crl",)
    assert len(x509.load_pem_x509_certificates(client_ca.content)) == 2
    assert crl.content.count(b"BEGIN X509 CRL") == 2


def test_a_bundle_during_a_server_rollover_holds_both_roots(pki_store, pki_env):
    pki_store.issue_client("bob")
    folder = write_client_bundle(pki_store, "bob")
    assert len(x509.load_pem_x509_certificates((folder / "api-ca.crt").read_bytes())) == 1
    pki_store.start_rollover("server")
    assert not bundle_is_current(pki_store, "bob")  # the rollover re-delivers it
    folder = write_client_bundle(pki_store, "bob")
    roots = x509.load_pem_x509_certificates((folder / "api-ca.crt").read_bytes())
    assert [r.subject for r in roots] == [
        c.subject for c in x509.load_pem_x509_certificates(pki_store.trusted_server_cas_pem())
    ]
    assert len(roots) == 2 and bundle_is_current(pki_store, "bob")


def test_status_shows_a_rollover_and_what_it_waits_for(pki_store):
    assert judge.rollover_checks(pki_snapshot(pki_store)) == []
    pki_store.issue_client("bob")
    pki_store.start_rollover("client")
    pki_store.switch_to_new_ca("client")
    pki_store.start_rollover("server")
    rows = judge.rollover_checks(pki_snapshot(pki_store))
    assert [(r.kind, r.name, r.status) for r in rows] == [
        ("rollover", "client CA", "ok"),
        ("rollover", "server CA", "ok"),
    ]
    assert (
        rows[0].detail
        == "in progress: waiting for the old client CA's valid certificates to be renewed (1): bob"
    )
    assert "waiting for every consumer's api-ca.crt" in rows[1].detail
